"""The lab's network: one namespace per node, one fabric namespace holding the shared segments.

``NAME-fab`` holds the underlay bridge (``ufab``) and the Weave fabric bridge (``wfab``). Each
node ``NAME-nX`` gets a veth pair: its ``eth0`` (192.168.56.x/24) in the node, the peer
``u-nX`` enslaved to the underlay bridge in the fabric namespace. Every interface is created
inside a lab namespace, so the root namespace, and with it the host's network, is never touched.

Ownership: the underlay bridge carries the lab's state directory as its interface alias, so a
second lab that picks the same name can tell whose namespaces these are and say which
``lab down --state-dir`` removes them.

Work is split the usual way: :func:`observe` reads, :func:`plan_network` decides (pure) and
:func:`apply_plan` runs ``ip``. :func:`ip` and :func:`ip_batch` are public for the Weave
emulator, which adds each node's ``weave`` bridge to the fabric.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from weavenomad_lab import netns
from weavenomad_lab.core import PartStatus
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import FABRIC_BRIDGE, UNDERLAY_BRIDGE, UNDERLAY_CIDR, LabLayout

log = logging.getLogger(__name__)

UNDERLAY_PREFIX = int(UNDERLAY_CIDR.split("/")[1])
NODE_INTERFACE = "eth0"
#: the bridge whose alias records the owning state directory
OWNER_BRIDGE = UNDERLAY_BRIDGE


def ip(namespace: str | None, *args: str, timeout: float = 10.0) -> str:
    """Run one ``ip`` command inside ``namespace`` (None: the root namespace); return stdout."""
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    return _run(argv, None, timeout)


def ip_batch(namespace: str | None, lines: Iterable[str], timeout: float = 10.0) -> None:
    """Run several ``ip`` commands (one per line, without the leading ``ip``) in one process."""
    text = "\n".join(lines)
    if text:
        _run(["ip", *(["-n", namespace] if namespace else []), "-batch", "-"], text, timeout)


def _run(argv: list[str], stdin: str | None, timeout: float) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise LabError("the 'ip' command is missing", hint="apt-get install iproute2") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"'{' '.join(argv)}' did not finish in {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        shown = " ".join(argv) + (f" <<< {stdin!r}" if stdin else "")
        raise LabError(f"'{shown}' failed: {detail}")
    return done.stdout


# --------------------------------------------------------------------------------------------
# observe


@dataclass(frozen=True)
class Link:
    up: bool
    master: str | None = None
    alias: str | None = None
    #: IPv4 addresses as "a.b.c.d/len"
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observed:
    """What exists of one lab's network: which namespaces, and the links in each."""

    namespaces: frozenset[str]
    links: dict[str, dict[str, Link]] = field(default_factory=dict)

    def link(self, namespace: str, name: str) -> Link | None:
        return self.links.get(namespace, {}).get(name)


def links_in(namespace: str) -> dict[str, Link]:
    """Every link of ``namespace`` with its state, master, alias and IPv4 addresses."""
    described = json.loads(ip(namespace, "-j", "link", "show") or "[]")
    addressed = json.loads(ip(namespace, "-j", "-4", "addr", "show") or "[]")
    addresses = {
        entry["ifname"]: tuple(
            f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if "local" in a
        )
        for entry in addressed
    }
    return {
        entry["ifname"]: Link(
            up="UP" in entry.get("flags", []),
            master=entry.get("master"),
            alias=entry.get("ifalias") or None,
            addresses=addresses.get(entry["ifname"], ()),
        )
        for entry in described
    }


def existing_namespaces(layout: LabLayout) -> list[str]:
    """The lab's namespace names that exist on this host (ours or another lab's)."""
    return [name for name in layout.namespaces() if netns.exists(name)]


def observe(layout: LabLayout) -> Observed:
    present = existing_namespaces(layout)
    return Observed(frozenset(present), {name: links_in(name) for name in present})


def fabric_owner(layout: LabLayout) -> str | None:
    """The state directory recorded on the fabric namespace, or None when there is none."""
    if not netns.exists(layout.fabric_netns):
        return None
    link = links_in(layout.fabric_netns).get(OWNER_BRIDGE)
    return link.alias if link else None


# --------------------------------------------------------------------------------------------
# decide

#: one step: the namespace to run in (None: root namespace) and the ``ip`` arguments
Step = tuple[str | None, tuple[str, ...]]


def underlay_peer(node_name: str) -> str:
    """The fabric-side name of a node's underlay veth."""
    return f"u-{node_name}"


def plan_network(layout: LabLayout, seen: Observed) -> list[Step]:
    """The ``ip`` commands that turn ``seen`` into the lab's network. Empty when all is there."""
    steps: list[Step] = []
    fab = layout.fabric_netns
    for name in layout.namespaces():
        if name not in seen.namespaces:
            steps.append((None, ("netns", "add", name)))
    for name in layout.namespaces():
        lo = seen.link(name, "lo")
        if lo is None or not lo.up:
            steps.append((name, ("link", "set", "lo", "up")))
    for bridge in (UNDERLAY_BRIDGE, FABRIC_BRIDGE):
        link = seen.link(fab, bridge)
        if link is None:
            steps.append((fab, ("link", "add", bridge, "type", "bridge")))
        if link is None or not link.up:
            steps.append((fab, ("link", "set", bridge, "up")))
    owner = seen.link(fab, OWNER_BRIDGE)
    if owner is None or owner.alias != str(layout.state_dir):
        steps.append((fab, ("link", "set", OWNER_BRIDGE, "alias", str(layout.state_dir))))
    for node in layout.nodes:
        peer_name = underlay_peer(node.name)
        peer = seen.link(fab, peer_name)
        eth = seen.link(node.netns, NODE_INTERFACE)
        if peer is None:
            if eth is not None:  # half of a broken pair: recreate both ends
                steps.append((node.netns, ("link", "del", NODE_INTERFACE)))
            steps.append((fab, ("link", "add", peer_name, "type", "veth", "peer", "name",
                                NODE_INTERFACE, "netns", node.netns)))
            eth = None
        if peer is None or peer.master != UNDERLAY_BRIDGE:
            steps.append((fab, ("link", "set", peer_name, "master", UNDERLAY_BRIDGE)))
        if peer is None or not peer.up:
            steps.append((fab, ("link", "set", peer_name, "up")))
        address = f"{node.host_ip}/{UNDERLAY_PREFIX}"
        if eth is None or address not in eth.addresses:
            steps.append((node.netns, ("addr", "add", address, "dev", NODE_INTERFACE)))
        if eth is None or not eth.up:
            steps.append((node.netns, ("link", "set", NODE_INTERFACE, "up")))
    return steps


def group_steps(steps: Sequence[Step]) -> list[tuple[str | None, list[str]]]:
    """Consecutive steps of one namespace become one ``ip -batch`` (order is kept)."""
    groups: list[tuple[str | None, list[str]]] = []
    for namespace, args in steps:
        line = " ".join(args)
        if groups and groups[-1][0] == namespace:
            groups[-1][1].append(line)
        else:
            groups.append((namespace, [line]))
    return groups


def apply_plan(steps: Sequence[Step]) -> None:
    for namespace, lines in group_steps(steps):
        ip_batch(namespace, lines)


# --------------------------------------------------------------------------------------------
# the component


def node_health(layout: LabLayout, seen: Observed) -> dict[str, tuple[bool, str]]:
    """Per node name (and "" for the fabric): healthy?, and a one-line detail. Pure."""
    fab = layout.fabric_netns
    report: dict[str, tuple[bool, str]] = {}
    missing = [b for b in (UNDERLAY_BRIDGE, FABRIC_BRIDGE) if seen.link(fab, b) is None]
    if fab not in seen.namespaces:
        report[""] = (False, f"namespace {fab} missing")
    elif missing:
        report[""] = (False, f"{fab}: bridge {', '.join(missing)} missing")
    else:
        report[""] = (True, f"{fab}: bridges {UNDERLAY_BRIDGE}, {FABRIC_BRIDGE}")
    for node in layout.nodes:
        eth = seen.link(node.netns, NODE_INTERFACE)
        peer = seen.link(fab, underlay_peer(node.name))
        address = f"{node.host_ip}/{UNDERLAY_PREFIX}"
        if node.netns not in seen.namespaces:
            report[node.name] = (False, f"namespace {node.netns} missing")
        elif eth is None or address not in eth.addresses or not eth.up:
            report[node.name] = (False, f"{node.netns}: {NODE_INTERFACE} {address} not up")
        elif peer is None or peer.master != UNDERLAY_BRIDGE or not peer.up:
            report[node.name] = (False, f"{node.netns}: not attached to {UNDERLAY_BRIDGE}")
        else:
            report[node.name] = (True, f"{node.netns}: {NODE_INTERFACE} {address}")
    return report


class Network:
    name = "network"

    def up(self, lab: LabLayout) -> None:
        apply_plan(plan_network(lab, observe(lab)))

    def down(self, lab: LabLayout) -> None:
        owner = fabric_owner(lab)
        if owner is not None and owner != str(lab.state_dir):
            # the names were freed and taken by another lab since: not ours to delete
            log.warning("namespaces %s belong to the lab in %s now; left alone",
                        ", ".join(existing_namespaces(lab)), owner)
            return
        # deleting a namespace deletes every interface in it, veth peers included
        for name in existing_namespaces(lab):
            ip(None, "netns", "del", name)

    def status(self, lab: LabLayout) -> list[PartStatus]:
        report = node_health(lab, observe(lab))
        healthy, detail = report[""]
        parts = [PartStatus(self.name, None, healthy, None, detail)]
        for node in lab.nodes:
            healthy, detail = report[node.name]
            parts.append(PartStatus(self.name, node.name, healthy, node.host_ip, detail))
        return parts


COMPONENT = Network()

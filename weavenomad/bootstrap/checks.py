"""The node checks shared by ``bootstrap``'s preflight and ``doctor``. Pure: observed facts in,
one :class:`Check` (pass / warn / fail, what was seen, how to fix it) out.

Facts behind the rules (docs/design.md): which Docker API versions a Docker accepts and a Weave
speaks is :mod:`.versions`. Weave needs TCP 6783 (router), UDP 6783/6784 (sleeve, fastdp) and
TCP 6784 (its HTTP API on 127.0.0.1). The isolation guards live in :mod:`.guards`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from weavenomad.bootstrap import versions as vs
from weavenomad.bootstrap.versions import FORK, FORK_VERSION, version_tuple
from weavenomad.clients.weave_ipam import ipam_wait, same_name_peers

PASS, WARN, FAIL = "pass", "warn", "fail"
WEAVE_PORTS = (("tcp", 6783), ("tcp", 6784), ("udp", 6783), ("udp", 6784))
#: Weave needs a kernel at least this new (the weave script's own check)
MIN_KERNEL = (3, 8)
WEAVE_BRIDGE = "weave"


@dataclass(frozen=True)
class Failure:
    """Why a read of a backend failed: the message, the fix its adapter suggests (a token, a
    CA, https://), and whether the backend answered at all (an HTTP error) or not."""

    message: str
    hint: str | None = None
    answered: bool = False


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "fix": self.fix}


# -- preflight items -------------------------------------------------------------------------


def check_privileges(euid: int, needed: bool) -> Check:
    if euid == 0:
        return Check("privileges", PASS, "running as root")
    if needed:
        return Check("privileges", FAIL, "not running as root",
                     "run with sudo: weave, iptables and the Nomad config need root")
    return Check("privileges", WARN, "not running as root: iptables cannot be read",
                 "run with sudo for the isolation checks")


def check_docker(version: Mapping | None, error: str | None) -> Check:
    if version is None:
        return Check("docker", FAIL, f"Docker does not answer: {error}",
                     "start dockerd, or point DOCKER_HOST at it")
    return Check("docker", PASS, f"Docker {version.get('Version')} (API "
                 f"{version.get('MinAPIVersion', '?')}-{version.get('ApiVersion', '?')})")


def check_weave_command(versions: Mapping[str, str] | None, error: str | None,
                        docker_answers: bool = True) -> Check:
    """``docker_answers`` False: the weave command needs Docker (it runs Weave's images), so a
    Docker that is down is what to fix, not Weave's installation."""
    if versions is None and not docker_answers:
        return Check("weave-command", FAIL, f"the weave command cannot run while Docker does "
                     f"not answer: {error}", "start dockerd (the weave command runs Weave's "
                     "images in Docker)")
    if versions is None:
        return Check("weave-command", FAIL, f"the weave command does not run: {error}",
                     f"install Weave Net (weave script 2.8.1, or {FORK} {FORK_VERSION} for "
                     "Docker >= 25) on PATH")
    return Check("weave-command", PASS, f"weave script {weave_script_version(versions)}")


def weave_script_version(versions: Mapping[str, str]) -> str:
    return versions.get("weave script") or versions.get("weave") or "unknown"


def check_docker_weave_api(
    docker_version: Mapping | None, weave_version: str | None, override: str | None,
    launched: bool = True,
) -> Check:
    """Whether the Docker found accepts the API version the Weave found speaks (see
    :func:`.versions.judge` for the fix it names)."""
    name = "docker-weave-api"
    if docker_version is None or weave_version is None:
        return Check(name, WARN, "cannot compare: Docker or weave unavailable")
    verdict = vs.judge(str(docker_version.get("Version")),
                             docker_version.get("MinAPIVersion"),
                             docker_version.get("ApiVersion"), weave_version, override, launched)
    return Check(name, PASS if verdict.ok else FAIL, verdict.detail, verdict.fix)


def check_agent(name: str, title: str, answer: object, failure: Failure | None,
                fix: str) -> Check:
    """``fix`` is for an agent that is not there; an adapter's own hint (a token refused, a
    certificate not trusted) fits better when there is one."""
    if answer is not None:
        return Check(name, PASS, f"{title} answers")
    if failure is None:
        return Check(name, FAIL, f"{title} does not answer", fix)
    if failure.answered:
        return Check(name, FAIL, f"{title} answered with an error: {failure.message}",
                     failure.hint or fix)
    return Check(name, FAIL, f"{title} does not answer: {failure.message}", failure.hint or fix)


def check_ports(listeners: Iterable[tuple[str, int]], weave_running: bool) -> Check:
    taken = sorted(set(listeners) & set(WEAVE_PORTS))
    shown = ", ".join(f"{proto.upper()} {port}" for proto, port in taken)
    if not taken and weave_running:
        # Weave's API answered, so Weave listens somewhere else: another network namespace or
        # host (WEAVE_HTTP_ADDR pointing away, a lab node); the local checks do not see it
        return Check("ports", WARN, "Weave answers, but nothing uses TCP/UDP 6783 and 6784 in "
                     "this network namespace: Weave runs in another one (or on another host), "
                     "which the kernel and iptables checks here do not see",
                     "run doctor on Weave's node, in its network namespace")
    if not taken:
        return Check("ports", PASS, "TCP/UDP 6783 and 6784 are free")
    if weave_running:
        return Check("ports", PASS, f"{shown} in use by Weave")
    return Check("ports", FAIL, f"{shown} in use, but Weave is not running",
                 "find the owner with 'ss -ltnup' and stop it: Weave needs TCP 6783/6784 and "
                 "UDP 6783/6784")


def check_kernel(release: str, iptables_rules: Sequence[str] | None,
                 iptables_error: str | None, root: bool = True) -> Check:
    problems, fixes = [], []
    if version_tuple(release)[:2] < MIN_KERNEL:
        problems.append(f"kernel {release} is older than 3.8")
        fixes.append("upgrade the kernel")
    if iptables_rules is None and not root and not problems:
        return Check("kernel", WARN, f"kernel {release}; iptables cannot be read without root",
                     "run as root to check iptables")
    if iptables_rules is None:
        problems.append(f"iptables does not work: {iptables_error}")
        fixes.append("install iptables and run as root")
    if problems:
        return Check("kernel", FAIL, "; ".join(problems), "; ".join(fixes))
    return Check("kernel", PASS, f"kernel {release}, iptables works")


# -- Weave's state ---------------------------------------------------------------------------


def weave_settings(report: Mapping) -> tuple[IPv4Network | None, IPv4Network | None]:
    ipam = report.get("IPAM") or {}
    try:
        return (IPv4Network(ipam["Range"]) if ipam.get("Range") else None,
                IPv4Network(ipam["DefaultSubnet"]) if ipam.get("DefaultSubnet") else None)
    except ValueError:
        return None, None


def check_weave_router(report: Mapping | None, error: str | None, cluster) -> Check:
    name = "weave-router"
    if report is None:
        return Check(name, FAIL, f"Weave is not running ({error})", "weavenomad bootstrap")
    weave_range, default = weave_settings(report)
    detail = f"Weave {report.get('Version')} runs with range {weave_range}, default {default}"
    if cluster is not None and (weave_range, default) != (cluster.ipalloc_range,
                                                          cluster.default_subnet):
        return Check(name, FAIL, f"{detail}; the registry records {cluster.ipalloc_range}, "
                     f"{cluster.default_subnet}",
                     "weavenomad reset, then weavenomad bootstrap with the recorded range")
    return Check(name, PASS, detail)


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def check_peer_names(report: Mapping | None) -> Check:
    """Weave names its peer after /etc/machine-id: nodes cloned without regenerating it get
    the same name and never connect (Weave takes the other side for itself)."""
    name = "weave-peer-name"
    if report is None:
        return Check(name, FAIL, "Weave is not running", "weavenomad bootstrap")
    clones = same_name_peers(report)
    mine = (report.get("Router") or {}).get("Name")
    if clones:
        return Check(name, FAIL, f"the node at {', '.join(clones)} has this node's Weave peer "
                     f"name {mine}, so Weave never connects them", SAME_NAME_FIX)
    return Check(name, PASS, f"peer name {mine} is this node's alone")


def check_peers(report: Mapping | None) -> Check:
    name = "weave-peers"
    if report is None:
        return Check(name, FAIL, "Weave is not running", "weavenomad bootstrap")
    router = report.get("Router") or {}
    connections = router.get("Connections") or []
    targets = router.get("Targets") or []
    up = sorted(_host(c.get("Address", "")) for c in connections if c.get("State") ==
                "established")
    down = [f"{c.get('Address')} {c.get('State')}" for c in connections
            if c.get("State") != "established"]
    missing = [t for t in targets if _host(t) not in up and re.match(r"^[\d.]+$", _host(t))]
    fix = ("check the --peer addresses and that TCP 6783 and UDP 6783/6784 are open between "
           "the nodes")
    if down or missing:
        return Check(name, FAIL, "not connected: " + ", ".join(down + missing), fix)
    if not up:
        return Check(name, WARN, "no peers connected (a one-node overlay)",
                     "weavenomad bootstrap --peer ADDR on every node")
    return Check(name, PASS, f"{len(up)} peer(s) connected: {', '.join(up)}")


#: how to give a cloned node a peer name of its own
SAME_NAME_FIX = ("on one of the two nodes: 'weavenomad reset', give it a machine id of its own "
                 "(rm /etc/machine-id && systemd-machine-id-setup), then bootstrap it again; or "
                 "set its Weave peer name ('weave launch --name', a MAC-like name of its own)")


def check_ipam(report: Mapping | None) -> Check:
    name = "weave-ipam"
    if report is None:
        return Check(name, FAIL, "Weave is not running", "weavenomad bootstrap")
    ipam = report.get("IPAM")
    if not ipam or not ipam.get("Range"):
        return Check(name, FAIL, "Weave runs without IPAM",
                     "weavenomad reset, then weavenomad bootstrap")
    waiting = ipam_wait(report)
    if waiting is not None:
        peers = (" (" + ", ".join(waiting.peers) + ")") if waiting.peers else ""
        return Check(name, FAIL, f"this node waits for peers: {waiting.describe()}",
                     f"bootstrap the peers named at launch{peers}; the reconciler exposes "
                     "this node's subnets as soon as Weave's IPAM can allocate")
    if ipam.get("Paxos") or not ipam.get("Entries"):
        return Check(name, FAIL, "IPAM is awaiting consensus: no peer owns the range yet",
                     "connect the peers (weave-peers), or run 'weave prime' once")
    return Check(name, PASS, f"IPAM ready: {ipam.get('Range')}, "
                 f"{ipam.get('ActiveIPs', 0)} active address(es) here")


def missing_exposes(exposed: Iterable[IPv4Interface],
                    subnets: Iterable[IPv4Network]) -> list[IPv4Network]:
    """The subnets in which the host has no exposed address."""
    have = list(exposed)
    return [s for s in subnets if not any(a.ip in s for a in have)]


def foreign_in(foreign: Iterable[IPv4Interface],
               subnets: Iterable[IPv4Network]) -> list[IPv4Interface]:
    """The foreign bridge addresses that lie in one of ``subnets`` (Weave may give them to a
    container there)."""
    wanted = list(subnets)
    return [a for a in foreign if any(a.ip in subnet for subnet in wanted)]


def check_exposed(exposed: Sequence[IPv4Interface] | None,
                  subnets: Sequence[IPv4Network],
                  ipam_exposed: Sequence[IPv4Interface] = (),
                  foreign: Sequence[IPv4Interface] = (),
                  default: IPv4Network | None = None, ipam_error: str | None = None,
                  ipam_waits: str | None = None) -> Check:
    """Exposed means: an address the IPAM gave the host, on the bridge. After a reboot the
    IPAM still owns addresses a new bridge lacks (day-two/1a), which is no exposure."""
    name = "weave-exposed"
    if ipam_error:
        return Check(name, FAIL, f"cannot tell: {ipam_error}",
                     "check that Weave's HTTP API answers GET /ip as weave 2.8 does")
    if exposed is None:
        return Check(name, FAIL, "Weave is not running", "weavenomad bootstrap")
    missing = missing_exposes(exposed, subnets)
    clashing = foreign_in(foreign, subnets)
    problems, fixes = [], []
    if missing:
        shown = []
        for subnet in missing:
            lost = [a for a in ipam_exposed if a.ip in subnet]
            shown.append(f"{subnet} (Weave's IPAM owns {lost[0]} for this host, but the weave "
                         "bridge lacks it, as after a reboot)" if lost else str(subnet))
        problems.append("not exposed: " + ", ".join(shown))
        specs = " ".join("net:default" if s == default else f"net:{s}" for s in missing)
        if ipam_waits:
            problems[-1] += f" (this node waits for peers: {ipam_waits})"
            fixes.append("the reconciler exposes them as soon as Weave's IPAM can allocate "
                         "(see weave-ipam)")
        else:
            fixes.append(f"the reconciler exposes them again within seconds of its start; by "
                         f"hand: weave expose {specs}")
    if clashing:
        problems.append("not Weave's (its IPAM did not give them to this host; a container "
                        "may get the same address): " + ", ".join(map(str, clashing)))
        fixes.append("; ".join(f"ip addr del {a} dev weave" for a in clashing))
    if problems:
        return Check(name, FAIL, "; ".join(problems), "; ".join(fixes))
    return Check(name, PASS, f"{len(subnets)} subnet(s) exposed: "
                 + ", ".join(map(str, exposed)))

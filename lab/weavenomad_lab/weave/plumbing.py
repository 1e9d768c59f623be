"""The kernel side of the emulated Weave: bridges, veths, addresses and Weave's iptables rules.

Per launched node (all names as real Weave spells them where it has one):

* bridge ``weave`` in the node's namespace, joined to the fabric bridge ``wfab`` of the lab's
  fabric namespace by a veth pair (``vethwe-bridge`` in the node, ``vwf-<node>`` in the fabric),
  so the weave bridges of all launched nodes form one L2 segment, as Weave's router makes them;
* the filter/FORWARD block Weave 2.8 (``net/bridge.go: configureIPTables``, without NPC) keeps
  at the top of the chain, in this order: ``-i <docker bridge> -o weave -j DROP`` (the guard),
  ``-i weave -o weave -j ACCEPT``, ``-o weave -j WEAVE-EXPOSE``, ``-i weave ! -o weave -j
  ACCEPT`` and ``-o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT``; when one is
  missing at launch, all five are deleted and inserted again at the top (its
  ``ensureRulesAtTop``). Plus the nat chain ``WEAVE``, jumped to from POSTROUTING;
* per ``weave expose`` of ``ADDR/LEN`` (``net/expose.go``): the address on the bridge,
  ``nat WEAVE -s CIDR -d 224.0.0.0/4 -j RETURN`` and ``-s CIDR ! -d CIDR -j MASQUERADE``, and
  ``filter WEAVE-EXPOSE -d CIDR -j ACCEPT``; a launch re-exposes the addresses the bridge kept;
* per attached container a veth ``vethwepl<pid>`` on the bridge whose peer is ``ethwe`` inside
  the container, with the container's addresses and the multicast route Weave adds, and a
  gratuitous ARP per new address (Weave's attach sends one, so reused addresses reach their new
  owner at once).

The lab's nodes have ``net.bridge.bridge-nf-call-iptables=1`` in their namespaces (the
default of a new namespace with br_netfilter, as Docker leaves it on a real host), so frames
bridged between ports of ``weave`` and ``docker0`` traverse the node's FORWARD chain exactly
as on a real host. Everything runs ``ip``/``iptables`` as short subprocesses (each has a
timeout); an attach costs four of them, about 15 ms.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Interface

from weavenomad_lab import layout
from weavenomad_lab.errors import LabError
from weavenomad_lab.netns import nsenter_argv

MTU = 1376  # Weave's default for ethwe (WEAVE_MTU)
CONTAINER_IFNAME = "ethwe"
BRIDGE_PORT = "vethwe-bridge"
LOCAL_PREFIX = "vethwepl"
COMMAND_TIMEOUT = 10.0
#: filter chain of ACCEPTs for exposed subnets; nat chain of Weave's masquerading
EXPOSE_CHAIN = "WEAVE-EXPOSE"
NAT_CHAIN = "WEAVE"
NAT_JUMP = ["POSTROUTING", "-j", NAT_CHAIN]


@dataclass(frozen=True)
class NodeNet:
    """What plumbing needs to know about one node."""

    name: str
    netns: str
    fabric_netns: str
    docker_bridge: str = layout.DOCKER_BRIDGE

    @property
    def fabric_port(self) -> str:
        return f"vwf-{self.name}"[:15]

    @property
    def guard_rule(self) -> list[str]:
        return ["FORWARD", "-i", self.docker_bridge, "-o", layout.WEAVE_BRIDGE, "-j", "DROP"]

    @property
    def bridge_accept_rule(self) -> list[str]:
        bridge = layout.WEAVE_BRIDGE
        return ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]

    @property
    def forward_rules(self) -> list[list[str]]:
        """Weave's filter/FORWARD block, in the order it keeps at the top of the chain."""
        bridge = layout.WEAVE_BRIDGE
        return [
            self.guard_rule,
            self.bridge_accept_rule,
            ["FORWARD", "-o", bridge, "-j", EXPOSE_CHAIN],
            ["FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"],
            ["FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
             "-j", "ACCEPT"],
        ]

    def bridge_mac(self) -> str:
        # stable per node, locally administered like the 7a:… MACs real Weave picks
        digest = hashlib.sha256(self.netns.encode()).digest()
        return "7a:" + ":".join(f"{b:02x}" for b in digest[:5])


@dataclass(frozen=True)
class NetDev:
    mac: str
    addresses: tuple[IPv4Interface, ...]


async def run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
    """Run a short command; returns (exit code, stdout). Failures become one-line LabErrors."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise LabError(
            f"{argv[0]} is not installed", hint="apt-get install iproute2 iptables util-linux"
        ) from None
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), COMMAND_TIMEOUT
        )
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise LabError(f"'{' '.join(argv)}' did not finish in {COMMAND_TIMEOUT:.0f}s") from None
    if check and proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip().splitlines()
        raise LabError(f"'{' '.join(argv)}' failed: {detail[-1] if detail else proc.returncode}")
    return proc.returncode, out.decode()


def ip_argv(netns: str, *args: str) -> list[str]:
    return ["ip", "-n", netns, *args]


def in_container(pid: int, *argv: str) -> list[str]:
    return ["nsenter", "-t", str(pid), "-n", "--", *argv]


async def link_exists(netns: str, name: str) -> bool:
    code, _ = await run(ip_argv(netns, "link", "show", "dev", name), check=False)
    return code == 0


# -- a node's bridge, fabric link and guard ------------------------------------------------


async def bring_up_node(node: NodeNet) -> None:
    """Create what ``weave launch`` creates on a node; harmless when it already exists."""
    fab = node.fabric_netns
    if not await link_exists(fab, layout.FABRIC_BRIDGE):
        await run(ip_argv(fab, "link", "add", layout.FABRIC_BRIDGE, "type", "bridge"))
    await run(ip_argv(fab, "link", "set", layout.FABRIC_BRIDGE, "up"))
    bridge = layout.WEAVE_BRIDGE
    if not await link_exists(node.netns, bridge):
        await run(ip_argv(node.netns, "-batch", "-"), stdin=(
            f"link add {bridge} mtu {MTU} type bridge\n"
            f"link set {bridge} address {node.bridge_mac()}\n"
        ))
    if not await link_exists(node.netns, BRIDGE_PORT):
        await run(ip_argv(
            node.netns, "link", "add", BRIDGE_PORT, "mtu", str(MTU), "type", "veth",
            "peer", "name", node.fabric_port, "mtu", str(MTU), "netns", fab,
        ))
    await run(ip_argv(node.netns, "-batch", "-"), stdin=(
        f"link set {BRIDGE_PORT} master {bridge} up\nlink set {bridge} up\n"
    ))
    await run(ip_argv(fab, "link", "set", node.fabric_port, "master", layout.FABRIC_BRIDGE, "up"))
    await configure_iptables(node)
    bridge = await bridge_netdev(node)
    for address in bridge.addresses if bridge else ():
        await _expose_rules(node, address)  # Weave's reexpose


async def configure_iptables(node: NodeNet) -> None:
    """Weave's chains and its FORWARD block at the top of the chain (see the module doc)."""
    for table, chain in (("filter", EXPOSE_CHAIN), ("nat", NAT_CHAIN)):
        await _clear_chain(node, table, chain)
    if not await rule_installed(node, NAT_JUMP, "nat"):
        await iptables(node, "-t", "nat", "-A", *NAT_JUMP)
    rules = node.forward_rules
    present = [await rule_installed(node, rule) for rule in rules]
    if all(present):
        return
    for position, rule in enumerate(rules, 1):
        while await rule_installed(node, rule):
            await iptables(node, "-D", *rule)
        await iptables(node, "-I", rule[0], str(position), *rule[1:])


async def iptables(node: NodeNet, *args: str, check: bool = True) -> int:
    code, _ = await run(nsenter_argv(node.netns, ["iptables", "-w", *args]), check=check)
    return code


async def rule_installed(node: NodeNet, rule: list[str], table: str = "filter") -> bool:
    return await iptables(node, "-t", table, "-C", *rule, check=False) == 0


async def _clear_chain(node: NodeNet, table: str, chain: str) -> None:
    """Create the chain, or flush it when it exists (go-iptables' ClearChain)."""
    if await iptables(node, "-t", table, "-N", chain, check=False) != 0:
        await iptables(node, "-t", table, "-F", chain)


async def _drop_chain(node: NodeNet, table: str, chain: str) -> None:
    if await iptables(node, "-t", table, "-F", chain, check=False) == 0:
        await iptables(node, "-t", table, "-X", chain, check=False)


async def guard_installed(node: NodeNet) -> bool:
    return await rule_installed(node, node.guard_rule)


async def tear_down_node(node: NodeNet) -> None:
    """Remove what :func:`bring_up_node` and the attaches created (``weave reset``)."""
    for rule in node.forward_rules:
        while await rule_installed(node, rule):
            await iptables(node, "-D", *rule)
    while await rule_installed(node, NAT_JUMP, "nat"):
        await iptables(node, "-t", "nat", "-D", *NAT_JUMP)
    await _drop_chain(node, "filter", EXPOSE_CHAIN)
    await _drop_chain(node, "nat", NAT_CHAIN)
    code, out = await run(ip_argv(node.netns, "-j", "link", "show"), check=False)
    names = [link["ifname"] for link in json.loads(out or "[]")] if code == 0 else []
    doomed = [n for n in names if n.startswith(LOCAL_PREFIX) or n == BRIDGE_PORT]
    if layout.WEAVE_BRIDGE in names:
        doomed.append(layout.WEAVE_BRIDGE)
    if doomed:
        await run(
            ip_argv(node.netns, "-batch", "-"),
            stdin="".join(f"link del {name}\n" for name in doomed),
            check=False,
        )
    if await link_exists(node.fabric_netns, node.fabric_port):
        await run(ip_argv(node.fabric_netns, "link", "del", node.fabric_port), check=False)


async def forget_rules(node: NodeNet) -> None:
    """What a reboot does to the node's iptables: every rule and chain of the filter and nat
    tables is gone (Weave's, the isolation guards, everyone's)."""
    for table in ("filter", "nat"):
        await iptables(node, "-t", table, "-F", check=False)
        await iptables(node, "-t", table, "-X", check=False)


# -- containers ----------------------------------------------------------------------------


async def attach(node: NodeNet, pid: int, addresses: list[IPv4Interface]) -> None:
    """Give the container of ``pid`` an ``ethwe`` on the node's weave bridge carrying
    ``addresses``; when it has one already, only add the missing addresses."""
    current = await container_netdev(pid)
    if current is None:
        local = f"{LOCAL_PREFIX}{pid}"[:15]
        await run(ip_argv(node.netns, "-batch", "-"), stdin=(
            f"link add {local} mtu {MTU} type veth peer name {CONTAINER_IFNAME} mtu {MTU} "
            f"netns {pid}\n"
            f"link set {local} master {layout.WEAVE_BRIDGE} up\n"
        ))
        have: tuple[IPv4Interface, ...] = ()
    else:
        have = current.addresses
    lines = [f"addr add {a} dev {CONTAINER_IFNAME}\n" for a in addresses if a not in have]
    if current is None:
        lines.append(f"link set {CONTAINER_IFNAME} up\n")
        lines.append(f"route add 224.0.0.0/4 dev {CONTAINER_IFNAME}\n")
    if lines:
        await run(in_container(pid, "ip", "-batch", "-"), stdin="".join(lines))
    for address in addresses:
        if address not in have:
            # as Weave's attach does: tell the bridge's neighbours, so a host that still holds
            # the MAC of the address's previous owner (IPAM reuses freed addresses) learns the
            # new one at once instead of after its neighbour entry goes stale
            await run(in_container(pid, "busybox", "arping", "-U", "-c", "1", "-w", "1", "-I",
                                   CONTAINER_IFNAME, str(address.ip)), check=False)


async def container_netdev(pid: int) -> NetDev | None:
    """The container's ``ethwe`` (MAC and IPv4 addresses), None when it has none."""
    code, out = await run(
        in_container(pid, "ip", "-j", "addr", "show", "dev", CONTAINER_IFNAME), check=False
    )
    return _netdev(out) if code == 0 else None


async def bridge_netdev(node: NodeNet) -> NetDev | None:
    """The node's weave bridge with the addresses ``weave expose`` put on it."""
    code, out = await run(
        ip_argv(node.netns, "-j", "addr", "show", "dev", layout.WEAVE_BRIDGE), check=False
    )
    return _netdev(out) if code == 0 else None


def _netdev(ip_json: str) -> NetDev | None:
    links = json.loads(ip_json or "[]")
    if not links:
        return None
    link = links[0]
    addresses = tuple(
        IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    )
    return NetDev(link.get("address", ""), addresses)


# -- weave expose / hide -------------------------------------------------------------------


def expose_rules(address: IPv4Interface) -> list[tuple[str, list[str]]]:
    """(table, rule) that ``weave expose`` of ``address`` adds besides the address itself."""
    cidr = str(address.network)
    return [
        ("nat", [NAT_CHAIN, "-s", cidr, "-d", "224.0.0.0/4", "-j", "RETURN"]),
        ("nat", [NAT_CHAIN, "-s", cidr, "!", "-d", cidr, "-j", "MASQUERADE"]),
        ("filter", [EXPOSE_CHAIN, "-d", cidr, "-j", "ACCEPT"]),
    ]


async def _expose_rules(node: NodeNet, address: IPv4Interface) -> None:
    for table, rule in expose_rules(address):
        if not await rule_installed(node, rule, table):
            await iptables(node, "-t", table, "-A", *rule)


async def expose(node: NodeNet, address: IPv4Interface) -> None:
    """Put a host address on the weave bridge so the node reaches that subnet, with Weave's
    masquerading and WEAVE-EXPOSE rules for it."""
    current = await bridge_netdev(node)
    if current is None:
        raise LabError(f"node {node.name} has no weave bridge", hint="run 'weave launch' first")
    if address not in current.addresses:
        await run(ip_argv(node.netns, "addr", "add", str(address), "dev", layout.WEAVE_BRIDGE))
    await _expose_rules(node, address)


async def hide(node: NodeNet, address: IPv4Interface) -> None:
    current = await bridge_netdev(node)
    if current is not None and address in current.addresses:
        await run(ip_argv(node.netns, "addr", "del", str(address), "dev", layout.WEAVE_BRIDGE))
    remaining = current.addresses if current is not None else ()
    if any(a.network == address.network and a != address for a in remaining):
        return  # another exposed address of the subnet still needs the rules
    for table, rule in expose_rules(address):
        while await rule_installed(node, rule, table):
            await iptables(node, "-t", table, "-D", *rule)

"""What ``/report`` and ``/status`` say about a launched node. Pure: data in, data or text out.

The JSON has the fields and types of Weave 2.8.1's ``WeaveStatus`` (``prog/weaver/http.go``;
recorded in ``fixtures/recorded/weave-report.json``); the texts follow its Go templates
(``statusTemplate``, ``peersTemplate``, ``ipamTemplate`` …) to the space. Every launched node of
the lab counts as a peer connected to every other one: their bridges share the fabric L2,
which is what Weave's router connections give. The range is reported as split evenly between
the launched peers, the way a settled Weave ring ends up.

Except where Weave says otherwise: a launched node with the same peer name (a clone) is refused
("cannot connect to ourself"), a launch target with no Weave running is "failed" with the dial
error and its next retry (multi-node/2), and the ring is the IPAM's (:mod:`.ipam`): none before
consensus, a peer that is gone listed ``unreachable!`` with its share.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from ipaddress import IPv4Address
from typing import Any

VERSION = "2.8.1+lab"
PORT = 6783
CONNECTION_STATES = ("established", "pending", "retrying", "failed", "connecting")


@dataclass(frozen=True)
class PeerInfo:
    node: str
    index: int
    #: Weave's peer name, a MAC-like identifier
    name: str
    nickname: str
    host_ip: str
    uid: int
    short_id: int


def _outbound(me: PeerInfo, other: PeerInfo, my_targets: list[str]) -> bool:
    # the side that named the other as a target dialled it; otherwise the lower index did
    if other.host_ip in my_targets:
        return True
    return me.index < other.index


def report(ctx) -> dict[str, Any]:
    """The ``GET /report`` document for ``ctx`` (an :class:`api.ApiContext`)."""
    me, others = ctx.me, [p for p in ctx.peers if p.node != ctx.me.node]
    connections = [
        {
            "Address": f"{p.host_ip}:{PORT}",
            "Outbound": _outbound(me, p, ctx.targets),
            "State": "established",
            "Info": f"fastdp {p.name}({p.nickname})",
            "Attrs": {"mtu": 1376, "name": "fastdp"},
        }
        for p in others
    ] + [
        {"Address": f"{p.host_ip}:{PORT}", "Outbound": True, "State": "failed",
         "Info": "cannot connect to ourself, retry: never", "Attrs": {}}
        for p in getattr(ctx, "clones", [])
    ] + [
        {"Address": f"{target.rsplit(':', 1)[0]}:{PORT}", "Outbound": True, "State": "failed",
         "Info": f"dial tcp :0->{target.rsplit(':', 1)[0]}:{PORT}: connect: connection refused, "
                 f"retry: {_go_time(time.time() + 2)}", "Attrs": {}}
        for target in getattr(ctx, "unreachable_targets", [])
    ]
    peers = []
    for peer in sorted(ctx.peers, key=lambda p: p.index):
        links = [
            {
                "Name": o.name,
                "NickName": o.nickname,
                "Address": f"{o.host_ip}:{PORT}",
                "Outbound": _outbound(peer, o, ctx.targets if peer.node == me.node else []),
                "Established": True,
            }
            for o in sorted(ctx.peers, key=lambda p: p.index)
            if o.node != peer.node
        ]
        peers.append({
            "Name": peer.name, "NickName": peer.nickname, "UID": peer.uid,
            "ShortID": peer.short_id, "Version": len(links), "Connections": links or None,
        })
    router = {
        "Protocol": "weave",
        "ProtocolMinVersion": 1,
        "ProtocolMaxVersion": 2,
        "Encryption": ctx.encryption,
        "PeerDiscovery": True,
        "Name": me.name,
        "NickName": me.nickname,
        "Port": PORT,
        "Peers": peers,
        "UnicastRoutes": [
            {"Dest": p.name, "Via": "00:00:00:00:00:00" if p.node == me.node else p.name}
            for p in sorted(ctx.peers, key=lambda p: p.index)
        ],
        "BroadcastRoutes": [{"Source": me.name, "Via": [p.name for p in others] or None}],
        "Connections": connections or None,
        "TerminationCount": 0,
        "Targets": list(ctx.targets) or None,
        "OverlayDiagnostics": {"sleeve": None},
        "TrustedSubnets": list(ctx.trusted_subnets),
        "Interface": "weave (lab fabric)",
        "CaptureStats": {"PacketsDropped": 0, "PacketsIfDropped": 0, "PacketsReceived": 0},
        "MACs": [],
    }
    result: dict[str, Any] = {
        "Ready": True,
        "Version": getattr(ctx, "version", VERSION),
        "VersionCheck": {
            "Enabled": False, "Success": False, "NewVersion": "",
            "NextCheckAt": "0001-01-01T00:00:00Z",
        },
        "Router": router,
        "IPAM": {
            "Paxos": getattr(ctx, "paxos", None),
            "Range": str(ctx.ipam.universe),
            "RangeNumIPs": ctx.ipam.universe.num_addresses,
            "ActiveIPs": ctx.ipam.active_count(me.node),
            "DefaultSubnet": str(ctx.default_subnet),
            "Entries": _ring_entries(ctx),
            "PendingClaims": None,
            "PendingAllocates": None,
        },
    }
    if ctx.proxy_addresses:
        result["Proxy"] = {"Addresses": list(ctx.proxy_addresses)}
    return result


def _ring_entries(ctx) -> list[dict]:
    """The ring's shares, one entry per peer; a peer this one does not reach is not known."""
    known = {p.name for p in ctx.peers}
    start = int(ctx.ipam.universe.network_address)
    entries = []
    for share in ctx.ipam.ring.values():
        if share.size:
            entries.append({
                "Token": str(IPv4Address(start)), "Size": share.size, "Peer": share.peer,
                "Nickname": share.nickname, "IsKnownPeer": share.peer in known, "Version": 1,
            })
        start += share.size
    return entries


def _go_time(seconds: float) -> str:
    """A time as Go prints a time.Time (the monotonic reading left out)."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "000 +0000 UTC"


# -- texts -------------------------------------------------------------------------------------


def _print_list(items) -> str:
    return ", ".join(items) if items else "none"


def _counts(counts: dict[str, int], order) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in order if k in counts)


def status_text(rep: dict) -> str:
    router, ipam = rep["Router"], rep["IPAM"]
    conns = router["Connections"] or []
    conn_counts: dict[str, int] = {}
    for conn in conns:
        conn_counts[conn["State"]] = conn_counts.get(conn["State"], 0) + 1
    peer_counts: dict[str, int] = {}
    for peer in router["Peers"]:
        for conn in peer["Connections"] or []:
            key = "established" if conn["Established"] else "pending"
            peer_counts[key] = peer_counts.get(key, 0) + 1
    conn_text = _counts(conn_counts, CONNECTION_STATES)
    peer_text = _counts(peer_counts, ("established", "pending"))
    lines = [
        f"        Version: {rep['Version']} (version check update disabled)",
        "",
        "        Service: router",
        f"       Protocol: {router['Protocol']} "
        f"{router['ProtocolMinVersion']}..{router['ProtocolMaxVersion']}",
        f"           Name: {router['Name']}({router['NickName']})",
        f"     Encryption: {'enabled' if router['Encryption'] else 'disabled'}",
        f"  PeerDiscovery: {'enabled' if router['PeerDiscovery'] else 'disabled'}",
        f"        Targets: {len(router['Targets'] or [])}",
        f"    Connections: {len(conns)}" + (f" ({conn_text})" if conn_text else ""),
        f"          Peers: {len(router['Peers'])}"
        + (f" (with {peer_text} connections)" if peer_text else ""),
        f" TrustedSubnets: {_print_list(router['TrustedSubnets'])}",
        "",
        "        Service: ipam",
        f"         Status: {_ipam_state(ipam)}",
        f"          Range: {ipam['Range']}",
        f"  DefaultSubnet: {ipam['DefaultSubnet']}",
    ]
    if "Proxy" in rep:
        lines += ["", "        Service: proxy",
                  f"        Address: {_print_list(rep['Proxy']['Addresses'])}"]
    return "\n".join(lines) + "\n"


def _ipam_state(ipam: dict) -> str:
    paxos = ipam.get("Paxos")
    if ipam["Entries"]:
        return "ready"
    if paxos and paxos["Elector"]:
        return f"awaiting consensus (quorum: {paxos['Quorum']}, known: {paxos['KnownNodes']})"
    return "priming" if paxos else "idle"


def targets_text(rep: dict) -> str:
    return "".join(f"{t}\n" for t in rep["Router"]["Targets"] or [])


def connections_text(rep: dict) -> str:
    out = []
    for c in rep["Router"]["Connections"] or []:
        attrs = "".join(f"{k}={v}" for k, v in sorted(c["Attrs"].items()) if k != "name")
        arrow = "->" if c["Outbound"] else "<-"
        out.append(f"{arrow} {c['Address']:<21} {c['State']:<11} {c['Info']} {attrs}\n")
    return "".join(out)


def peers_text(rep: dict) -> str:
    out = []
    for peer in rep["Router"]["Peers"]:
        out.append(f"{peer['Name']}({peer['NickName']})\n")
        for c in peer["Connections"] or []:
            arrow = "->" if c["Outbound"] else "<-"
            who = f"{c['Name']}({c['NickName']})"
            state = "established" if c["Established"] else "pending"
            out.append(f"   {arrow} {c['Address']:<21} {who:<37} {state}\n")
    return "".join(out)


def ipam_text(rep: dict) -> str:
    router, ipam = rep["Router"], rep["IPAM"]
    per_peer: dict[str, list] = {}
    for entry in ipam["Entries"]:
        stats = per_peer.setdefault(entry["Peer"], [entry["Nickname"], 0, entry["IsKnownPeer"]])
        stats[1] += entry["Size"]
    out = []

    def line(name: str, nickname: str, ips: int, info: str) -> str:
        share = ips * 100.0 / ipam["RangeNumIPs"]
        return f"{name + '(' + nickname + ')':<37} {ips:>8} IPs ({share:04.1f}% of total) {info}\n"

    if router["Name"] in per_peer:
        nickname, ips, _ = per_peer[router["Name"]]
        out.append(line(router["Name"], nickname, ips, f"({ipam['ActiveIPs']} active)"))
    for name, (nickname, ips, known) in per_peer.items():
        if name != router["Name"]:
            out.append(line(name, nickname, ips, "" if known else "- unreachable!"))
    return "".join(out)


_ACTION = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def render_format(template: str, rep: dict) -> str:
    """``weave report -f``: the lab supports the template actions ``{{.Path.To.Field}}`` and
    ``{{json .Path}}``; anything else is refused rather than rendered wrongly."""

    def value(match: re.Match) -> str:
        node: Any = rep
        for key in filter(None, match.group(2).split(".")):
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"template: format: can't evaluate field {key}")
            node = node[key]
        if match.group(1):
            return json.dumps(node, separators=(",", ":"))
        if node is None:
            return "<no value>"
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node) if not isinstance(node, (dict, list)) else json.dumps(node)

    rendered = _ACTION.sub(value, template)
    if "{{" in rendered:
        raise ValueError("template: format: only {{.Field}} and {{json .Field}} are supported "
                         "by the lab's weave emulation")
    return rendered

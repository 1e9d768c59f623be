"""Whether Weave's IPAM can allocate on this node now, and whom it waits for; whether a peer
has this node's peer name. Pure: a ``GET /report`` document in, a decision out.

Weave's IPAM (``--ipalloc-init consensus``, the default, site/ipam.md) makes no allocation
until a majority of the peers named at ``weave launch`` (and this one) are connected and agree
on who owns the range: a lone first node of a cluster waits, and ``weave expose`` blocks
(recorded: multi-node/1). Once the ring exists, a peer without a share of it is granted space by
a reachable owner; when every owner is unreachable it waits for one. The report says all of
this: ``IPAM.Entries`` (the ring; ``IsKnownPeer`` false for a peer that is gone),
``IPAM.Paxos`` (a consensus under way: ``Quorum``, ``KnownNodes``; ``Elector`` false for an
observer), ``Router.Targets`` and ``Router.Connections``. Before anything asked for an address,
Weave has not started its consensus (no ``Paxos``): the quorum is then worked out from the
targets as Weave does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: what Weave's router says of a connection to a peer with its own peer name (weaveworks/mesh)
SAME_NAME = "cannot connect to ourself"


@dataclass(frozen=True)
class IpamWait:
    """Weave's IPAM cannot allocate here yet: ``reason``; ``peers``: the launch peers (host
    addresses) that are not connected."""

    reason: str
    peers: tuple[str, ...] = ()

    def describe(self) -> str:
        waits = f"; not connected: {', '.join(self.peers)}" if self.peers else ""
        return f"{self.reason}{waits}"


def host_of(address: str) -> str:
    """``192.168.57.12:6783`` -> ``192.168.57.12`` (an address without a port stays)."""
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def unconnected_targets(report: Mapping) -> tuple[str, ...]:
    router = report.get("Router") or {}
    up = {host_of(c.get("Address", "")) for c in router.get("Connections") or []
          if c.get("State") == "established"}
    return tuple(t for t in (host_of(t) for t in router.get("Targets") or []) if t not in up)


def ipam_wait(report: Mapping) -> IpamWait | None:
    """Why Weave's IPAM cannot allocate on this node now; None when it can."""
    router, ipam = report.get("Router") or {}, report.get("IPAM") or {}
    missing = unconnected_targets(report)
    entries = ipam.get("Entries") or []
    me = router.get("Name")
    if entries:
        if any(e.get("Peer") == me and e.get("Size", 0) > 0 for e in entries):
            return None
        owners = [e for e in entries if e.get("Peer") != me and e.get("Size", 0) > 1]
        if any(e.get("IsKnownPeer") for e in owners):
            return None  # a reachable owner grants space on demand
        gone = sorted({e.get("Nickname") or e.get("Peer") for e in owners})
        return IpamWait("Weave's IPAM waits for an address range from its peers, and every "
                        f"peer owning the range is unreachable ({', '.join(gone)})", missing)
    paxos = ipam.get("Paxos")
    if paxos is not None and not paxos.get("Elector", True):
        return IpamWait("Weave's IPAM is an observer waiting for a peer that owns the range",
                        missing)
    targets = router.get("Targets") or []
    connected = sum(1 for c in router.get("Connections") or [] if c.get("State") ==
                    "established")
    quorum = (paxos or {}).get("Quorum") or (len(targets) + 1) // 2 + 1
    known = (paxos or {}).get("KnownNodes") or connected + 1
    if paxos is None and known >= quorum:
        return None
    if paxos is not None and "Quorum" in paxos and known >= quorum:
        return None  # consensus is being reached
    return IpamWait(f"Weave's IPAM awaits consensus: it needs {quorum} of the "
                    f"{len(targets) + 1} peers named at launch connected, {known} are",
                    missing)


def same_name_peers(report: Mapping) -> tuple[str, ...]:
    """The peers (host addresses) Weave refuses because they have this node's peer name."""
    router = report.get("Router") or {}
    return tuple(sorted({host_of(c.get("Address", "")) for c in router.get("Connections") or []
                         if SAME_NAME in (c.get("Info") or "").lower()}))

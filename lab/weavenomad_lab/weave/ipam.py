"""The emulated Weave IPAM: one allocator shared by every node of the lab. Pure data and
decisions; :func:`load`/:meth:`Ipam.save` are the only I/O.

Real Weave splits its range between peers with a CRDT ring; the lab has a single process, so
one table of owned addresses is enough and "never hands out one address twice" holds by
construction. Ownership is per *(node, ident)*, ident being a container ID or ``weave:expose``,
as each Weave peer keeps its own ``owned`` map.

Allocation follows Weave's rules: the lowest free address of the subnet, never the subnet's
first or last address; asking again for the same (node, ident, subnet) gives the address it
already owns (Weave calls it resurrecting); claims (``ip:``) outside the range are not tracked.

The *ring* says which peer owns how much of the range (``weave status ipam``), as Weave's does,
by size only (the shared table already keeps addresses unique): empty until the peers agree
(consensus, see the daemon), then split evenly between the peers that agreed; a peer that joins
later is granted space on demand by a reachable owner (half of the largest aligned free block of
the subnet it asks for: 64 of a /24 holding one address, as recorded in multi-node/3);
``rmpeer`` moves a peer's share to the caller, ``reset`` hands it to a live peer.

Release follows Weave 2.x (``ipam/allocator.go``): when a container is *destroyed* its
addresses are freed at once; when it merely *dies* they are kept for
:data:`CONTAINER_DIED_TIMEOUT` seconds so a restart gets the same address, then freed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from weavenomad.errors import ConflictError, ValidationError
from weavenomad_lab.errors import LabError

DEFAULT_RANGE = IPv4Network("10.32.0.0/12")
EXPOSE_IDENT = "weave:expose"
#: seconds a dead container keeps its addresses (Weave's containerDiedTimeout)
CONTAINER_DIED_TIMEOUT = 30.0
STATE_VERSION = 1

Key = tuple[str, str]  # (node, ident)


@dataclass(frozen=True)
class Allocation:
    interface: IPv4Interface
    node: str
    ident: str

    @property
    def address(self) -> IPv4Address:
        return self.interface.ip


@dataclass
class Share:
    """A peer's part of the range in the ring."""

    peer: str  # Weave's peer name
    nickname: str
    size: int


@dataclass
class Ipam:
    universe: IPv4Network = DEFAULT_RANGE
    allocations: dict[IPv4Address, Allocation] = field(default_factory=dict)
    #: (node, ident) -> time of death (seconds, any monotonic-enough clock the caller uses)
    dead: dict[Key, float] = field(default_factory=dict)
    #: peer name -> its share of the range; empty: no consensus yet
    ring: dict[str, Share] = field(default_factory=dict)

    # -- the ring -----------------------------------------------------------------------------

    def form_ring(self, members: list[tuple[str, str]]) -> None:
        """Consensus among ``members`` ((peer, nickname), in order): the range split evenly."""
        share, extra = divmod(self.universe.num_addresses, len(members))
        self.ring = {peer: Share(peer, nickname, share + (1 if i < extra else 0))
                     for i, (peer, nickname) in enumerate(members)}

    def owns_space(self, peer: str) -> bool:
        return peer in self.ring and self.ring[peer].size > 0

    def grant(self, peer: str, nickname: str, subnet: IPv4Network, donors: set[str]) -> int:
        """Space for a peer that has none, from the reachable owner with the most (0: none
        can give)."""
        owners = [s for s in self.ring.values() if s.peer in donors and s.size > 1]
        if not owners:
            return 0
        donor = max(owners, key=lambda s: s.size)
        size = min(self._donation(subnet), donor.size // 2)
        donor.size -= size
        mine = self.ring.setdefault(peer, Share(peer, nickname, 0))
        mine.size += size
        return size

    def _donation(self, subnet: IPv4Network) -> int:
        """Half of the largest aligned block of ``subnet`` without an allocated address."""
        taken = {a for a in self.allocations if a in subnet}
        for prefix in range(subnet.prefixlen, subnet.max_prefixlen + 1):
            for block in subnet.subnets(new_prefix=prefix):
                if not any(a in block for a in taken):
                    return max(block.num_addresses // 2, 1)
        return 1

    def take_over(self, gone: str, taker: str, nickname: str) -> int:
        """``weave rmpeer``: ``gone``'s share becomes ``taker``'s; returns its size."""
        share = self.ring.pop(gone, None)
        if share is None:
            return 0
        mine = self.ring.setdefault(taker, Share(taker, nickname, 0))
        mine.size += share.size
        return share.size

    def leave(self, peer: str, heir: tuple[str, str] | None) -> None:
        """``weave reset`` of a peer: its share goes to ``heir`` ((peer, nickname), a live
        peer), or stays in the ring of the others when none is there to take it. The last peer
        empties it."""
        if heir is not None:
            self.take_over(peer, *heir)
        elif set(self.ring) <= {peer}:
            self.ring.clear()

    # -- queries ------------------------------------------------------------------------------

    def lookup(
        self, node: str, ident: str, subnet: IPv4Network | None = None
    ) -> list[IPv4Interface]:
        """Addresses (node, ident) owns, in ``subnet`` when given, lowest first."""
        found = [
            a.interface
            for a in self.allocations.values()
            if a.node == node and a.ident == ident and (subnet is None or a.address in subnet)
        ]
        return sorted(found, key=lambda i: i.ip)

    def owned(self, node: str) -> dict[str, list[IPv4Interface]]:
        """ident -> addresses for every ident of ``node``."""
        result: dict[str, list[IPv4Interface]] = {}
        for a in sorted(self.allocations.values(), key=lambda a: a.address):
            if a.node == node:
                result.setdefault(a.ident, []).append(a.interface)
        return result

    def active_count(self, node: str) -> int:
        return sum(1 for a in self.allocations.values() if a.node == node)

    def nodes(self) -> set[str]:
        return {a.node for a in self.allocations.values()}

    # -- changes ------------------------------------------------------------------------------

    def set_universe(self, universe: IPv4Network) -> None:
        """Change the allocation range; only while nothing is allocated in the old one."""
        if universe == self.universe:
            return
        if self.allocations:
            raise ConflictError(
                f"--ipalloc-range {universe} differs from the range {self.universe} that "
                "launched peers use",
                hint=f"launch with --ipalloc-range {self.universe}, or 'weave reset' every node",
            )
        self.universe = universe
        self.ring.clear()

    def allocate(self, node: str, ident: str, subnet: IPv4Network) -> IPv4Interface:
        """The lowest free address of ``subnet`` for (node, ident), or the one it has there."""
        self._check_in_universe(subnet)
        existing = self.lookup(node, ident, subnet)
        if existing:
            self.dead.pop((node, ident), None)
            return existing[0]
        first = int(subnet.network_address) + 1
        last = int(subnet.broadcast_address) - 1
        taken = {int(a) for a in self.allocations if a in subnet}
        for number in range(first, last + 1):
            if number not in taken:
                interface = IPv4Interface(f"{IPv4Address(number)}/{subnet.prefixlen}")
                self.allocations[interface.ip] = Allocation(interface, node, ident)
                self.dead.pop((node, ident), None)
                return interface
        raise ConflictError(
            f"no free address in {subnet}: all {max(last - first + 1, 0)} usable addresses "
            "are in use",
            hint="remove containers of that subnet or use a larger subnet",
        )

    def claim(self, node: str, ident: str, interface: IPv4Interface) -> IPv4Interface:
        """Take exactly ``interface`` for (node, ident). Outside the range it is not tracked,
        like Weave, which leaves such manual addresses to the user."""
        if interface.ip not in self.universe:
            return interface
        owner = self.allocations.get(interface.ip)
        if owner is not None and (owner.node, owner.ident) != (node, ident):
            raise ConflictError(
                f"address {interface.ip} is already owned by {_describe(owner)}",
                hint="choose another address or let Weave allocate one with net:",
            )
        network = interface.network
        if network.prefixlen < 31 and interface.ip in (
            network.network_address,
            network.broadcast_address,
        ):
            raise ValidationError(
                f"address {interface} is the network or broadcast address of {network}"
            )
        self.allocations[interface.ip] = Allocation(interface, node, ident)
        self.dead.pop((node, ident), None)
        return interface

    def release(self, node: str, ident: str) -> list[IPv4Interface]:
        """Free everything (node, ident) owns; returns what was freed."""
        freed = self.lookup(node, ident)
        for interface in freed:
            del self.allocations[interface.ip]
        self.dead.pop((node, ident), None)
        return freed

    def free(self, node: str, ident: str, address: IPv4Address) -> bool:
        owner = self.allocations.get(address)
        if owner is None or (owner.node, owner.ident) != (node, ident):
            return False
        del self.allocations[address]
        if not self.lookup(node, ident):
            self.dead.pop((node, ident), None)
        return True

    def release_node(self, node: str) -> int:
        """Free every address of ``node`` (``weave reset``); returns how many."""
        doomed = [ip for ip, a in self.allocations.items() if a.node == node]
        for ip in doomed:
            del self.allocations[ip]
        for key in [k for k in self.dead if k[0] == node]:
            del self.dead[key]
        return len(doomed)

    def mark_dead(self, node: str, ident: str, now: float) -> bool:
        """Note that a container died; its addresses go after the timeout unless it comes back."""
        if not self.lookup(node, ident):
            return False
        self.dead.setdefault((node, ident), now)
        return True

    def mark_alive(self, node: str, ident: str) -> None:
        self.dead.pop((node, ident), None)

    def next_expiry(self, timeout: float = CONTAINER_DIED_TIMEOUT) -> float | None:
        """When the earliest dead container's addresses are due (None: nothing pending)."""
        return min(self.dead.values()) + timeout if self.dead else None

    def sweep(self, now: float, timeout: float = CONTAINER_DIED_TIMEOUT) -> list[Key]:
        """Free the addresses of containers dead for ``timeout`` seconds or more."""
        expired = [key for key, since in self.dead.items() if now - since >= timeout]
        for node, ident in expired:
            self.release(node, ident)
        return expired

    def forget_missing(self, node: str, existing: Iterable[str]) -> list[str]:
        """Free addresses of containers of ``node`` that no longer exist (missed events)."""
        present = set(existing)
        gone = [
            ident
            for ident in self.owned(node)
            if ident != EXPOSE_IDENT and ident not in present
        ]
        for ident in gone:
            self.release(node, ident)
        return gone

    def _check_in_universe(self, subnet: IPv4Network) -> None:
        if not subnet.subnet_of(self.universe):
            raise ValidationError(
                f"subnet {subnet} is outside the Weave allocation range {self.universe}",
                hint="use a subnet inside --ipalloc-range",
            )

    # -- persistence --------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "version": STATE_VERSION,
            "range": str(self.universe),
            "allocations": [
                {"address": str(a.interface), "node": a.node, "ident": a.ident}
                for a in sorted(self.allocations.values(), key=lambda a: a.address)
            ],
            "dead": [
                {"node": node, "ident": ident, "since": since}
                for (node, ident), since in sorted(self.dead.items())
            ],
            "ring": [{"peer": s.peer, "nickname": s.nickname, "size": s.size}
                     for s in self.ring.values()],
        }

    @classmethod
    def from_json(cls, data: dict) -> Ipam:
        if data.get("version") != STATE_VERSION:
            raise LabError(f"IPAM state version {data.get('version')} is not supported")
        ipam = cls(universe=IPv4Network(data["range"]))
        for entry in data.get("allocations", []):
            interface = IPv4Interface(entry["address"])
            ipam.allocations[interface.ip] = Allocation(interface, entry["node"], entry["ident"])
        for entry in data.get("dead", []):
            ipam.dead[(entry["node"], entry["ident"])] = float(entry["since"])
        for entry in data.get("ring", []):
            ipam.ring[entry["peer"]] = Share(entry["peer"], entry["nickname"], int(entry["size"]))
        return ipam

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(tmp, path)


def load(path: Path) -> Ipam:
    """The saved IPAM, or a fresh one over :data:`DEFAULT_RANGE` when there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return Ipam()
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: unreadable IPAM state: {exc}") from None
    return Ipam.from_json(data)


def _describe(owner: Allocation) -> str:
    who = owner.ident if owner.ident == EXPOSE_IDENT else f"container {owner.ident[:12]}"
    return f"{who} on node {owner.node}"

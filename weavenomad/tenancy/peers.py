"""The cluster's Weave peers in Consul KV, beside the tenant registry: one key per node,
``<prefix>peers/<peer name>``, holding its Weave peer address and peer name.

Each bootstrapped node writes its own key (a key per node: nodes set up at the same moment never
contend for one check-and-set); ``bootstrap`` without ``--peer`` launches Weave towards the
recorded peers, each reconciler keeps Weave connected to the recorded set
(:mod:`weavenomad.reconcile.peerlinks`), and ``node leave`` deletes its node's key, so the
other nodes forget it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from weavenomad.errors import ValidationError


@dataclass(frozen=True)
class PeerRecord:
    """One node's Weave peer as recorded: ``address`` (the host address other peers dial),
    ``name`` (Weave's peer name, from the node's machine id), ``nickname`` (its hostname)."""

    address: str
    name: str
    nickname: str = ""

    def to_json(self) -> dict:
        return {"address": self.address, "name": self.name, "nickname": self.nickname}

    def describe(self) -> str:
        return f"{self.nickname or self.name} ({self.name}) at {self.address}"


def peer_key(prefix: str, name: str) -> str:
    return f"{prefix}peers/{name}"


def decode_peer(raw: bytes | None, key: str) -> PeerRecord:
    """A record as written by :func:`encode_peer`; ValidationError naming the key and the field
    otherwise. Pure."""
    try:
        data = json.loads(raw or b"")
    except ValueError:
        raise ValidationError(f"Consul key {key} is not JSON",
                              hint=f"delete it (consul kv delete {key}); bootstrap writes it "
                                   "again") from None
    if not isinstance(data, dict):
        raise ValidationError(f"Consul key {key} is not a JSON object")
    for field in ("address", "name"):
        if not isinstance(data.get(field), str) or not data[field]:
            raise ValidationError(f"Consul key {key}: {field} is missing or not a string",
                                  hint=f"delete it (consul kv delete {key}); bootstrap on "
                                       "its node writes it again")
    return PeerRecord(data["address"], data["name"], str(data.get("nickname") or ""))


def encode_peer(record: PeerRecord) -> bytes:
    return json.dumps(record.to_json(), sort_keys=True).encode()


def decode_peers(entries: Iterable[dict]) -> tuple[list[PeerRecord], list[str]]:
    """The readable records among ``entries`` (Consul's KV dicts) and one line per unreadable
    one: a broken key of one node must not cut the others off. Pure."""
    records, problems = [], []
    for entry in entries:
        try:
            records.append(decode_peer(entry.get("Value"), entry.get("Key", "?")))
        except ValidationError as exc:
            problems.append(exc.one_line())
    return sorted(records, key=lambda r: (r.address, r.name)), problems


def peers_besides(records: Iterable[PeerRecord], own_addresses: Iterable[str]) -> tuple[str, ...]:
    """The addresses to launch Weave towards: every recorded peer but this node's own. Pure."""
    own = set(own_addresses)
    return tuple(dict.fromkeys(r.address for r in records if r.address not in own))


class PeerRegistry:
    """Reads and writes the peer keys through a :class:`~weavenomad.clients.consul.ConsulAPI`."""

    def __init__(self, consul, prefix: str = "weavenomad/"):
        self.consul = consul
        self.prefix = prefix

    @property
    def folder(self) -> str:
        return self.prefix + "peers/"

    def key(self, name: str) -> str:
        return peer_key(self.prefix, name)

    def read(self, index: int | None = None, wait: float | None = None
             ) -> tuple[int, list[PeerRecord], list[str]]:
        """``(index, records, problems)``; with ``index`` a blocking query."""
        found, entries = self.consul.kv_list(self.folder, index=index, wait=wait)
        records, problems = decode_peers(entries)
        return found, records, problems

    def get(self, name: str) -> PeerRecord | None:
        _, entry = self.consul.kv_get(self.key(name))
        return None if entry is None else decode_peer(entry.get("Value"), self.key(name))

    def record(self, record: PeerRecord) -> bool:
        """Write this node's record; True if written, False if it was so already."""
        if self.get(record.name) == record:
            return False
        self.consul.kv_put(self.key(record.name), encode_peer(record))
        return True

    def remove(self, name: str) -> bool:
        """Delete a node's record; True if there was one."""
        _, entry = self.consul.kv_get(self.key(name))
        if entry is None:
            return False
        self.consul.kv_delete(self.key(name))
        return True

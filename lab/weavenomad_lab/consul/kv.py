"""Consul's key/value store semantics, as plain data (the caller holds the state's lock).

Follows Consul 1.4's state store: a set always writes (even an identical value), a
check-and-set with index 0 only creates, one with N only replaces an entry whose ModifyIndex is
N, a delete-CAS of a missing key succeeds, and deleted keys leave a tombstone so a recursive
read of a prefix reports the index of the delete that emptied it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass
class KVEntry:
    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0

    def view(self) -> dict:
        return {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            # Go marshals a nil []byte (an empty PUT body) as null
            "Value": base64.b64encode(self.value).decode() if self.value else None,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


class KVStore:
    def __init__(self) -> None:
        self._entries: dict[str, KVEntry] = {}
        #: key -> index of the delete that removed it (Consul's tombstones)
        self._graveyard: dict[str, int] = {}
        #: Consul's max("kvs", "tombstones") table index
        self.table_index = 0

    def tombstones(self) -> dict[str, int]:
        return dict(self._graveyard)

    def restore(self, entries: list[KVEntry], tombstones: dict[str, int], index: int) -> None:
        """Take the entries, tombstones and index a restarted server reads from its log."""
        self._entries = {e.key: e for e in entries}
        self._graveyard = dict(tombstones)
        self.table_index = index

    def get(self, key: str) -> KVEntry | None:
        return self._entries.get(key)

    def under(self, prefix: str) -> list[KVEntry]:
        return sorted(
            (e for k, e in self._entries.items() if k.startswith(prefix)), key=lambda e: e.key
        )

    def prefix_index(self, prefix: str, entries: list[KVEntry]) -> int:
        """The index Consul reports for a recursive read or key list of ``prefix``."""
        if not prefix:
            return self.table_index
        highest = max((e.modify_index for e in entries), default=0)
        tombstone = max((i for k, i in self._graveyard.items() if k.startswith(prefix)), default=0)
        return max(highest, tombstone) or self.table_index

    def can_set(self, key: str, cas: int | None) -> bool:
        if cas is None:
            return True
        existing = self._entries.get(key)
        return cas == (existing.modify_index if existing else 0)

    def set(self, key: str, value: bytes | None, flags: int, index: int) -> None:
        existing = self._entries.get(key)
        create = existing.create_index if existing else index
        lock = existing.lock_index if existing else 0
        self._entries[key] = KVEntry(key, value or None, flags, create, index, lock)
        self._graveyard.pop(key, None)
        self.table_index = index

    def can_delete(self, key: str, cas: int | None) -> bool:
        existing = self._entries.get(key)
        return cas is None or existing is None or existing.modify_index == cas

    def delete(self, keys: list[str], index: int) -> list[str]:
        """Remove ``keys`` (those that exist); return the removed ones."""
        removed = [k for k in keys if self._entries.pop(k, None) is not None]
        for key in removed:
            self._graveyard[key] = index
        if removed:
            self.table_index = index
        return removed

    def keys(self, prefix: str, separator: str) -> tuple[list[str], list[KVEntry]]:
        """Keys under ``prefix``, folded at the first ``separator`` after it (as ?keys does)."""
        entries = self.under(prefix)
        if not separator:
            return [e.key for e in entries], entries
        keys: list[str] = []
        for entry in entries:
            rest = entry.key[len(prefix):]
            cut = rest.find(separator)
            key = entry.key if cut < 0 else entry.key[: len(prefix) + cut + len(separator)]
            if not keys or keys[-1] != key:
                keys.append(key)
        return keys, entries

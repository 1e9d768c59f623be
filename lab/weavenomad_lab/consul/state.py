"""The whole simulated Consul cluster in memory: nodes, services, checks, KV and indexes.

One lock guards everything. Every write that changes something takes the next value of one
monotonically increasing index (as Raft's log index) and stamps it on what it touches, on the
tables ``nodes``/``services``/``checks``/``kvs`` and on the per-service index
``service.<name>`` that Consul 1.4 reports in ``X-Consul-Index`` for catalog and health reads.

Reads return an :class:`Answer`: the index Consul would report, the JSON body and the *watch
keys* of what was read. :meth:`ConsulState.wait` is the blocking query: it re-runs the read
when a write touches one of those keys (as memdb watch sets do) and returns once the index
passed the client's, or when the wait is over. Writes that change nothing (an identical
re-registration) do not move any index, and a check whose output changes but whose status does
not is updated without a new index, as Consul defers such syncs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from weavenomad_lab.consul import persist
from weavenomad_lab.consul.kv import KVStore
from weavenomad_lab.consul.reads import Answer, CatalogReads, node_key, service_key
from weavenomad_lab.consul.records import (
    CRITICAL,
    PASSING,
    SERF_CHECK_ID,
    Check,
    CheckDefinition,
    CheckSpec,
    Node,
    Service,
    ServiceSpec,
    node_id_for,
    truncate_output,
)

#: Consul's minimum for DeregisterCriticalServiceAfter (check_deregister_interval_min)
DEREGISTER_MIN = 60.0


class StateError(Exception):
    """A request Consul's agent refuses with 500 and this text."""


class CheckScheduler(Protocol):
    def schedule(self, node: str, check_id: str, generation: int,
                 definition: CheckDefinition) -> None: ...

    def cancel(self, node: str, check_id: str) -> None: ...

    def ttl_reset(self, node: str, check_id: str, generation: int, ttl: float) -> None: ...


@dataclass
class _Watch:
    keys: frozenset[str]
    prefixes: tuple[str, ...]
    event: threading.Event = field(default_factory=threading.Event)

    def matches(self, changes: set[str]) -> bool:
        if not self.keys.isdisjoint(changes):
            return True
        return any(c.startswith(p) for p in self.prefixes for c in changes)


class _Write:
    """One Raft-like write: takes an index only if something changes."""

    def __init__(self, state: ConsulState):
        self._state = state
        self._index: int | None = None
        self.changes: set[str] = set()

    @property
    def index(self) -> int:
        if self._index is None:
            self._state._index += 1
            self._index = self._state._index
        return self._index

    def table(self, *names: str) -> None:
        for name in names:
            self._state._tables[name] = self.index
            self.changes.add(name)


class ConsulState(CatalogReads):
    def __init__(self, datacenter: str = "dc1", *, deregister_min: float = DEREGISTER_MIN,
                 clock: Callable[[], float] = time.monotonic):
        self.datacenter = datacenter
        self.deregister_min = deregister_min
        self._clock = clock
        self._lock = threading.RLock()
        self._index = 0
        self._tables = {"nodes": 0, "services": 0, "checks": 0}
        self._service_index: dict[str, int] = {}
        self._nodes: dict[str, Node] = {}
        self._services: dict[str, dict[str, Service]] = {}
        self._checks: dict[str, dict[str, Check]] = {}
        self.kv = KVStore()
        self._watches: list[_Watch] = []
        self._closed = False
        self._generations = itertools.count(1)
        self._scheduler: CheckScheduler | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _finish(self, write: _Write) -> None:
        if write.changes:
            for watch in self._watches:
                if watch.matches(write.changes):
                    watch.event.set()

    def _touch_service(self, write: _Write, service: Service) -> None:
        self._service_index[service.name.lower()] = write.index
        write.changes.update((service_key(service.name), node_key(service.node)))

    def _touch_check(self, write: _Write, check: Check) -> None:
        write.table("checks")
        write.changes.add(node_key(check.node))
        services = self._services.get(check.node, {})
        owner = services.get(check.service_id)
        for service in [owner] if owner else ([] if check.service_id else services.values()):
            self._touch_service(write, service)

    def attach_scheduler(self, scheduler: CheckScheduler) -> None:
        with self._lock:
            self._scheduler = scheduler
            for checks in self._checks.values():
                for check in checks.values():
                    self._schedule(check)

    def _schedule(self, check: Check) -> None:
        definition = check.definition
        if self._scheduler is None or definition is None:
            return
        if definition.runnable:
            self._scheduler.schedule(check.node, check.check_id, check.generation, definition)
        elif definition.kind == "ttl":
            self._scheduler.ttl_reset(check.node, check.check_id, check.generation,
                                      definition.ttl)

    def close(self) -> None:
        """Wake every blocking query so a server can shut down."""
        with self._lock:
            self._closed = True
            for watch in self._watches:
                watch.event.set()

    @property
    def index(self) -> int:
        """The last Raft-like index handed out."""
        with self._lock:
            return self._index

    def has_node(self, name: str) -> bool:
        with self._lock:
            return name in self._nodes

    def node(self, name: str) -> Node:
        with self._lock:
            return self._nodes[name]

    def nodes(self) -> list[Node]:
        with self._lock:
            return list(self._nodes.values())

    # -- what a restart keeps ----------------------------------------------------------------

    def dump(self) -> dict:
        """Everything a restarted Consul still has (see :mod:`.persist`)."""
        with self._lock:
            return {
                "index": self._index, "tables": dict(self._tables),
                "service_index": dict(self._service_index),
                "nodes": {name: {
                    "services": [persist.service_to_json(s) for s in services.values()
                                 if s.agent_local],
                    "checks": [persist.check_to_json(c) for c in self._checks[name].values()
                               if c.agent_local]}
                    for name, services in self._services.items()},
                "kv": persist.kv_to_json(self.kv),
            }

    def restore(self, data: dict) -> None:
        """Take back what :meth:`dump` saved, for the nodes this cluster has (call before
        the check runner starts: it schedules the restored checks)."""
        with self._lock:
            self._index = max(self._index, int(data["index"]))
            for table, index in data["tables"].items():
                self._tables[table] = max(self._tables.get(table, 0), int(index))
            self._service_index.update({k: int(v) for k, v in data["service_index"].items()})
            for name, saved in data["nodes"].items():
                if name not in self._nodes:
                    continue
                for raw in saved["services"]:
                    service = persist.service_from_json(name, raw)
                    self._services[name][service.service_id] = service
                for raw in saved["checks"]:
                    check = persist.check_from_json(name, raw, next(self._generations))
                    if check.status == CRITICAL:
                        check.critical_since = self._clock()
                    self._checks[name][check.check_id] = check
                    self._schedule(check)
            self.kv = persist.kv_from_json(data["kv"])

    # -- writes -----------------------------------------------------------------------------

    def add_node(self, name: str, address: str, *, server: bool = False,
                 netns: str | None = None, meta: dict[str, str] | None = None) -> None:
        """Join a node (a lab node's agent): its catalog entry and ``serfHealth`` check, and
        for a server the ``consul`` service."""
        with self._lock:
            write = _Write(self)
            node = Node(name, address, self.datacenter, server, write.index, write.index,
                        {"consul-network-segment": "", **(meta or {})}, node_id_for(name), netns)
            self._nodes[name] = node
            self._services[name] = {}
            self._checks[name] = {}
            write.table("nodes", "checks")
            write.changes.add(node_key(name))
            self._checks[name][SERF_CHECK_ID] = Check(
                name, SERF_CHECK_ID, "Serf Health Status", PASSING, "",
                "Agent alive and reachable", "", None, write.index, write.index,
                agent_local=False)
            if server:
                consul = Service(name, "consul", "consul", (), "", 8300, {}, False, (1, 1),
                                 create_index=write.index, modify_index=write.index,
                                 agent_local=False)
                self._services[name]["consul"] = consul
                write.table("services")
                self._touch_service(write, consul)
            self._finish(write)

    def register_service(self, node: str, spec: ServiceSpec,
                         replace_existing_checks: bool = False) -> None:
        with self._lock:
            write = _Write(self)
            services = self._services[node]
            existing = services.get(spec.service_id)
            service = Service(node, spec.service_id, spec.name, spec.tags, spec.address,
                              spec.port, dict(spec.meta), spec.enable_tag_override,
                              spec.weights, spec.kind, namespace=spec.namespace,
                              partition=spec.partition)
            if existing is None or not existing.same_definition(service):
                service.create_index = existing.create_index if existing else write.index
                service.modify_index = write.index
                services[spec.service_id] = service
                write.table("services")
                if existing is not None and existing.name.lower() != service.name.lower():
                    self._forget_service_name(write, existing)
                self._touch_service(write, service)
            kept = {c.check_id for c in spec.checks}
            for check_spec in spec.checks:
                self._upsert_check(write, node, replace(
                    check_spec, namespace=spec.namespace, partition=spec.partition))
            if replace_existing_checks:
                for check in list(self._checks[node].values()):
                    if check.service_id == spec.service_id and check.check_id not in kept:
                        self._delete_check(write, check)
            self._finish(write)

    def deregister_service(self, node: str, service_id: str) -> None:
        """Remove a service and its checks; an unknown id is fine (Consul 1.4 answers 200)."""
        with self._lock:
            write = _Write(self)
            self._delete_service(write, node, service_id)
            self._finish(write)

    def _delete_service(self, write: _Write, node: str, service_id: str) -> None:
        service = self._services[node].get(service_id)
        if service is None or not service.agent_local:
            return
        for check in list(self._checks[node].values()):
            if check.service_id == service_id:
                self._delete_check(write, check)
        del self._services[node][service_id]
        write.table("services")
        self._forget_service_name(write, service)

    def _forget_service_name(self, write: _Write, service: Service) -> None:
        """After ``service`` left its name: bump the name's index, or drop it with the last
        instance (reads then fall back to the table indexes, as Consul's do)."""
        lname = service.name.lower()
        remaining = any(s.name.lower() == lname for svcs in self._services.values()
                        for s in svcs.values() if s is not service)
        if remaining:
            self._service_index[lname] = write.index
        else:
            self._service_index.pop(lname, None)
        write.changes.update((service_key(service.name), node_key(service.node)))

    def register_check(self, node: str, spec: CheckSpec) -> None:
        with self._lock:
            owner = self._services[node].get(spec.service_id) if spec.service_id else None
            if spec.service_id and owner is None:
                raise StateError(f'ServiceID "{spec.service_id}" does not exist')
            if owner is not None:  # a service's check lives where its service does
                spec = replace(spec, namespace=owner.namespace, partition=owner.partition)
            write = _Write(self)
            self._upsert_check(write, node, spec)
            self._finish(write)

    def _upsert_check(self, write: _Write, node: str, spec: CheckSpec) -> None:
        existing = self._checks[node].get(spec.check_id)
        if existing is not None and (
            existing.definition == spec.definition
            and (existing.name, existing.notes, existing.service_id)
            == (spec.name, spec.notes, spec.service_id)
            and spec.status in (None, existing.status)
        ):
            return  # an identical re-registration keeps the check's state and schedule
        status = spec.status or CRITICAL
        check = Check(
            node, spec.check_id, spec.name, status, spec.notes,
            spec.definition.unsupported_output(), spec.service_id, spec.definition,
            existing.create_index if existing else write.index, write.index,
            next(self._generations), self._clock() if status == CRITICAL else None,
            namespace=spec.namespace, partition=spec.partition,
        )
        self._checks[node][spec.check_id] = check
        self._touch_check(write, check)
        if existing is not None and self._scheduler is not None:
            self._scheduler.cancel(node, spec.check_id)
        self._schedule(check)

    def deregister_check(self, node: str, check_id: str) -> None:
        with self._lock:
            check = self._checks[node].get(check_id)
            if check is None or not check.agent_local:
                return
            write = _Write(self)
            self._delete_check(write, check)
            self._finish(write)

    def _delete_check(self, write: _Write, check: Check) -> None:
        del self._checks[check.node][check.check_id]
        self._touch_check(write, check)
        if self._scheduler is not None:
            self._scheduler.cancel(check.node, check.check_id)

    def _set_status(self, write: _Write, check: Check, status: str, output: str) -> None:
        output = truncate_output(output)
        if status == check.status:
            check.output = output  # output-only: no new index (Consul defers these syncs)
            return
        check.status, check.output = status, output
        check.modify_index = write.index
        check.critical_since = self._clock() if status == CRITICAL else None
        self._touch_check(write, check)

    def update_ttl(self, node: str, check_id: str, status: str, output: str) -> None:
        """agent/check/pass|warn|fail|update: set a TTL check's status and restart its TTL."""
        with self._lock:
            check = self._checks[node].get(check_id)
            definition = check.definition if check else None
            if check is None or definition is None or definition.kind != "ttl":
                raise StateError(f'CheckID "{check_id}" does not have associated TTL')
            write = _Write(self)
            check.ttl_output = truncate_output(output)
            self._set_status(write, check, status, output)
            if self._scheduler is not None:
                self._scheduler.ttl_reset(node, check_id, check.generation, definition.ttl)
            self._finish(write)

    def record_check_result(self, node: str, check_id: str, generation: int, status: str,
                            output: str) -> None:
        """A probe's result; ignored when the check was replaced or removed meanwhile."""
        with self._lock:
            check = self._checks.get(node, {}).get(check_id)
            if check is None or check.generation != generation:
                return
            write = _Write(self)
            self._set_status(write, check, status, output)
            self._finish(write)

    def expire_ttl(self, node: str, check_id: str, generation: int) -> None:
        with self._lock:
            check = self._checks.get(node, {}).get(check_id)
            if check is None or check.generation != generation:
                return
            output = "TTL expired"
            if check.ttl_output:
                output += f" (last output before timeout follows): {check.ttl_output}"
            write = _Write(self)
            self._set_status(write, check, CRITICAL, output)
            self._finish(write)

    def reap_critical_services(self) -> list[tuple[str, str]]:
        """Deregister services whose check has been critical longer than its
        DeregisterCriticalServiceAfter (at least :attr:`deregister_min`), as the agent's
        reaper does. Returns the (node, service id) pairs removed."""
        now = self._clock()
        with self._lock:
            doomed = set()
            for checks in self._checks.values():
                for check in checks.values():
                    limit = check.definition.deregister_after if check.definition else 0.0
                    if (limit > 0 and check.service_id and check.critical_since is not None
                            and now - check.critical_since > max(limit, self.deregister_min)):
                        doomed.add((check.node, check.service_id))
            write = _Write(self)
            for node, service_id in sorted(doomed):
                self._delete_service(write, node, service_id)
            self._finish(write)
            return sorted(doomed)

    # -- KV writes --------------------------------------------------------------------------

    def kv_put(self, key: str, value: bytes | None, flags: int, cas: int | None) -> bool:
        with self._lock:
            if not self.kv.can_set(key, cas):
                return False
            write = _Write(self)
            self.kv.set(key, value, flags, write.index)
            write.changes.update(("kvs", f"kv:{key}"))
            self._finish(write)
            return True

    def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        with self._lock:
            if not recurse and not self.kv.can_delete(key, cas):
                return False
            keys = [e.key for e in self.kv.under(key)] if recurse else [key]
            write = _Write(self)
            if any(self.kv.get(k) for k in keys):
                removed = self.kv.delete(keys, write.index)
                write.changes.update(["kvs", *(f"kv:{k}" for k in removed)])
            self._finish(write)
            return True

    # -- reads ------------------------------------------------------------------------------

    def wait(self, query: Callable[[], Answer], min_index: int, timeout: float) -> Answer:
        """Run ``query``; if its index is not past ``min_index``, block until a write touches
        what it read, then run it again, until ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                answer = query()
                remaining = deadline - time.monotonic()
                if min_index <= 0 or answer.index > min_index or remaining <= 0 or self._closed:
                    return answer
                watch = _Watch(answer.watch, answer.prefixes)
                self._watches.append(watch)
            try:
                watch.event.wait(remaining)
            finally:
                with self._lock:
                    self._watches.remove(watch)

"""The I/O half of a pass before planning: read the service agent (Consul's), Docker, Weave and
the tenant registry into one :class:`~weavenomad.reconcile.model.Observation`, with the Nomad
allocations the daemon's watcher holds.

A container's Weave addresses rarely change while it lives, so they are cached by container ID
(cleared at every full resync); a full pass costs two agent lists, a registry read, one
Docker list and Weave's ``GET /ip``. A pass for the allocations of an event reads only theirs
(each service with its checks from ``/v1/agent/health/service/id/<id>``, Docker's list by the
allocation label, Weave's list only for a container with no cached address), so its reads do
not grow with the services on the node. That one answer (every address this peer owns)
gives the addresses of all new containers at once, and the host's exposed ones: those it
owns for ``weave:expose`` *and* that are on the host's weave bridge, read from the kernel
(after a reboot Weave comes back with a new, empty bridge while its persisted IPAM still owns
them; day-two/1a). A bridge address in a tenant's subnet that the IPAM did not give the host is
*foreign* (it may clash with a container's). A container Weave does not list, or every
container while Weave is down, is read from ``ethwe`` (:mod:`weavenomad.reconcile.ethwe`).
Weave's answer also overrules the cache: a relaunched Weave that lost its IPAM (``weave
reset``) re-attaches running containers with new addresses, and :meth:`Observer.moved` tells
the daemon's Weave watcher when that happened, or when the bridge changed.

Failures that the pass can live with (Weave down, the registry unreadable) are kept in
:attr:`Observer.soft_errors` for the daemon to log and count; the others raise and fail the
pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from weavenomad.clients.weave import EXPOSE_IDENT
from weavenomad.errors import BackendError, NotFoundError, WeavenomadError
from weavenomad.reconcile import ethwe
from weavenomad.reconcile.desired import nomad_service_ids
from weavenomad.reconcile.model import (
    Allocation,
    Container,
    Observation,
    Tenancy,
    allocation_from_api,
    container_from_summary,
    tenancy_of,
)
from weavenomad.reconcile.registrations import (
    MASK_PREFIX,
    NOMAD_TASK_PREFIX,
    AgentCheck,
    AgentService,
    ServiceAgent,
    alloc_behind,
    twin_id,
)

log = logging.getLogger(__name__)


def node_id_of(nomad, configured: str | None) -> str:
    """The Nomad node to serve: ``configured``, else the local agent's client node."""
    if configured:
        return configured
    me = nomad.agent_self()
    node_id = ((me.get("stats") or {}).get("client") or {}).get("node_id")
    if not node_id:
        raise NotFoundError("the local Nomad agent runs no client, so it has no node",
                            hint="pass --node-id, or point NOMAD_ADDR at the node's own agent")
    return str(node_id)


def _listing(owned: Mapping[str, list[IPv4Interface]], ident: str) -> tuple[IPv4Interface, ...]:
    return tuple(sorted(owned.get(ident) or ()))


def exposure(owned: Mapping[str, list[IPv4Interface]] | None,
             bridge: tuple[IPv4Interface, ...] | None
             ) -> tuple[tuple[IPv4Interface, ...] | None, tuple[IPv4Interface, ...]]:
    """(the host's exposed addresses, the foreign ones on its bridge). Exposed: owned by
    ``weave:expose`` and on the bridge (None when Weave did not answer; IPAM's word alone when
    the bridge could not be read). Foreign: on the bridge, not the IPAM's. Pure."""
    if owned is None:
        return None, ()
    ipam = _listing(owned, EXPOSE_IDENT)
    if bridge is None:
        return ipam, ()
    given = {address.ip for address in ipam}
    return (tuple(sorted(a for a in bridge if a.ip in given)),
            tuple(sorted(a for a in bridge if a.ip not in given)))


def started_at(inspect: Mapping) -> float | None:
    """Docker's ``State.StartedAt`` as epoch seconds (nanoseconds cut to microseconds)."""
    text = ((inspect.get("State") or {}).get("StartedAt") or "").rstrip("Z")
    if not text or text.startswith("0001-"):
        return None
    head, _, fraction = text.partition(".")
    try:
        moment = datetime.fromisoformat(head + "+00:00")
    except ValueError:
        return None
    return moment.timestamp() + (float("0." + fraction[:6]) if fraction else 0.0)


class AllocationCache:
    """Nomad's node allocations parsed once per (ID, ModifyIndex)."""

    def __init__(self):
        self._parsed: dict[str, tuple[int, Allocation]] = {}

    def parse(self, raw_allocations: list[dict]) -> dict[str, Allocation]:
        return self.parse_changes(raw_allocations)[0]

    def parse_changes(self, raw_allocations: list[dict]
                      ) -> tuple[dict[str, Allocation], set[str]]:
        """(the allocations by ID, the IDs that are new, changed or gone since the last
        call)."""
        parsed, changed = {}, set()
        for raw in raw_allocations:
            alloc_id, modify = str(raw.get("ID") or ""), int(raw.get("ModifyIndex") or 0)
            cached = self._parsed.get(alloc_id)
            if cached is None or cached[0] != modify:
                cached = (modify, allocation_from_api(raw))
                changed.add(alloc_id)
            parsed[alloc_id] = cached
        changed |= set(self._parsed) - set(parsed)
        self._parsed = parsed
        return {alloc_id: alloc for alloc_id, (_, alloc) in parsed.items()}, changed


#: a scoped observation asks the agent and Docker per allocation; for more allocations than
#: this (a burst of events, a restart of the agent) the lists of the whole node cost less
SCOPED_READS_MAX = 16


class OursCount:
    """The agent's twins and masks per allocation as the observations saw them, so that a
    scoped observation can say how many there are elsewhere without reading them."""

    def __init__(self):
        self._by_alloc: dict[str | None, tuple[int, int]] = {}
        self._twins = self._masks = 0

    @staticmethod
    def _counted(services: Mapping[str, AgentService], checks: Mapping[str, AgentCheck]
                 ) -> dict[str | None, tuple[int, int]]:
        found: dict[str | None, list[int]] = {}
        for service in services.values():
            if service.ours:
                found.setdefault(alloc_behind(service.id), [0, 0])[0] += 1
        for check in checks.values():
            if check.id.startswith(MASK_PREFIX):
                found.setdefault(alloc_behind(check.id), [0, 0])[1] += 1
        return {alloc: (twins, masks) for alloc, (twins, masks) in found.items()}

    def replace(self, services: Mapping[str, AgentService],
                checks: Mapping[str, AgentCheck]) -> None:
        self._by_alloc = self._counted(services, checks)
        self._twins = sum(t for t, _ in self._by_alloc.values())
        self._masks = sum(m for _, m in self._by_alloc.values())

    def update(self, scope: frozenset[str], services: Mapping[str, AgentService],
               checks: Mapping[str, AgentCheck]) -> tuple[int, int]:
        """Take in a scoped observation; (twins, masks) out of ``scope``."""
        for alloc_id in scope:
            twins, masks = self._by_alloc.pop(alloc_id, (0, 0))
            self._twins -= twins
            self._masks -= masks
        elsewhere = (self._twins, self._masks)
        for alloc_id, (twins, masks) in self._counted(services, checks).items():
            if alloc_id in scope:
                self._by_alloc[alloc_id] = (twins, masks)
                self._twins += twins
                self._masks += masks
        return elsewhere


class Observer:
    def __init__(self, *, agent: ServiceAgent, docker, weave, registry=None,
                 proc: Path = Path("/proc"), clock: Callable[[], float] = time.time,
                 bridge: Callable[[], tuple[IPv4Interface, ...]] | None = None):
        self.agent = agent
        self.docker = docker
        self.weave = weave
        self.registry = registry
        self.proc = proc
        self.clock = clock
        #: reads the addresses on this host's weave bridge
        self.bridge = bridge or (lambda: ethwe.read_bridge(proc))
        self.soft_errors: list[WeavenomadError] = []
        self._lock = threading.Lock()
        self._addresses: dict[str, tuple[IPv4Interface, ...]] = {}
        #: cached containers whose addresses came from Weave's list (not from ``ethwe``)
        self._listed: set[str] = set()
        #: this host's addresses for ``weave:expose`` in Weave's IPAM, and on its bridge, as
        #: the last pass saw them (None: not known)
        self._ipam_exposed: tuple[IPv4Interface, ...] | None = None
        self._bridge: tuple[IPv4Interface, ...] | None = None
        self._started: dict[str, float] = {}
        self._weave_default: IPv4Network | None = None
        self._last_tenancy = Tenancy()
        #: the tenancy the last full observation used (scoped ones reuse it)
        self._seen_tenancy = Tenancy()
        self._full_seen = False
        self._ours = OursCount()

    # -- hints from the event watchers ---------------------------------------------------------

    def note_started(self, container_id: str, when: float) -> None:
        with self._lock:
            self._started[container_id] = when

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._addresses.pop(container_id, None)
            self._listed.discard(container_id)
            self._started.pop(container_id, None)

    def forget_addresses(self) -> None:
        with self._lock:
            self._addresses.clear()
            self._listed.clear()

    def moved(self, owned: Mapping[str, list[IPv4Interface]]) -> bool:
        """Whether Weave's answer ``owned`` (or this host's bridge) contradicts what the last
        pass used: a cached container's addresses, or this host's exposed addresses."""
        with self._lock:
            if any(self._stale(cid, owned) for cid in self._addresses):
                return True
            exposed, bridge = self._ipam_exposed, self._bridge
        if exposed is not None and _listing(owned, EXPOSE_IDENT) != exposed:
            return True
        return bridge is not None and self._read_bridge(quiet=True) not in (None, bridge)

    def _stale(self, container_id: str, owned: Mapping[str, list[IPv4Interface]]) -> bool:
        """(Lock held.) Weave lists the container with other addresses than the cached ones,
        or no longer lists addresses that came from its list."""
        listed = _listing(owned, container_id)
        if listed:
            return listed != self._addresses[container_id]
        return container_id in self._listed

    # -- the observation -----------------------------------------------------------------------

    def observe(self, allocations: Mapping[str, Allocation],
                scope: frozenset[str] | None = None,
                service_ids: Iterable[str] = ()) -> Observation:
        """The whole node (``scope`` None), or only what the allocations in ``scope`` need:
        their services with their checks (``service_ids``: the IDs the daemon's service
        watch lists for them, to which the IDs their jobs name and the twins' are added),
        their containers, and Weave's list only if one of those has no known address. The
        registry, Weave's exposure and the bridge are a full pass's business (a tenant's
        change or Weave's triggers one); a scoped observation has no exposure (None). Until a
        full observation was made, and for more than ``SCOPED_READS_MAX`` allocations, the
        whole node is read (the plan stays scoped)."""
        self.soft_errors = []
        if scope is not None and self._full_seen and len(scope) <= SCOPED_READS_MAX:
            return self._observe_scope(allocations, scope, service_ids)
        # four independent reads from three daemons: side by side, a pass waits for the
        # slowest instead of their sum (the agent's lists dominate on a full node)
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="observe") as pool:
            reads = (pool.submit(self.agent.services), pool.submit(self.agent.checks),
                     pool.submit(self._weave_owned),
                     pool.submit(self.docker.nomad_containers, all=True))
        services, checks, owned, listed = (read.result() for read in reads)
        containers = self._containers(listed, allocations, owned)
        bridge = self._read_bridge() if owned is not None else None
        exposed, foreign = exposure(owned, bridge)
        with self._lock:
            self._ipam_exposed = _listing(owned, EXPOSE_IDENT) if owned is not None else None
            self._bridge = bridge
        self._ours.replace(services, checks)
        self._seen_tenancy = tenancy = self._tenancy()
        self._full_seen = True
        return Observation(allocations=allocations, services=services, checks=checks,
                           containers=containers, tenancy=tenancy, exposed=exposed,
                           foreign=foreign)

    def _observe_scope(self, allocations: Mapping[str, Allocation], scope: frozenset[str],
                       service_ids: Iterable[str]) -> Observation:
        wanted = set(service_ids)
        for alloc_id in scope:
            alloc = allocations.get(alloc_id)
            if alloc is not None:
                wanted |= nomad_service_ids(alloc)
        wanted |= {twin_id(sid) for sid in wanted if sid.startswith(NOMAD_TASK_PREFIX)}
        ordered = sorted(wanted)
        if len(ordered) > 1:
            with ThreadPoolExecutor(max_workers=min(len(ordered), 8),
                                    thread_name_prefix="observe") as pool:
                answers = list(pool.map(self.agent.local_service, ordered))
        else:
            answers = [self.agent.local_service(sid) for sid in ordered]
        services, checks = {}, {}
        for service, its_checks in answers:
            if service is not None:
                services[service.id] = service
                checks.update(its_checks)
        listed = [summary for alloc_id in sorted(scope)
                  for summary in self.docker.nomad_containers(all=True, alloc_id=alloc_id)]
        owned = self._weave_owned() if self._unknown_addresses(listed) else None
        containers = self._containers(listed, allocations, owned, scope)
        twins_elsewhere, masks_elsewhere = self._ours.update(scope, services, checks)
        return Observation(allocations=allocations, services=services, checks=checks,
                           containers=containers, tenancy=self._seen_tenancy,
                           twins_elsewhere=twins_elsewhere, masks_elsewhere=masks_elsewhere)

    def _unknown_addresses(self, listed: list[dict]) -> bool:
        """Whether a running container among ``listed`` has no cached addresses."""
        with self._lock:
            return any(c.running and c.id not in self._addresses
                       for c in map(container_from_summary, listed) if c is not None)

    def _read_bridge(self, quiet: bool = False) -> tuple[IPv4Interface, ...] | None:
        try:
            return tuple(sorted(self.bridge()))
        except OSError as exc:
            if not quiet:
                self.soft_errors.append(BackendError(
                    f"cannot read this host's weave bridge ({exc}); judging exposure from "
                    "Weave's IPAM alone", backend="system"))
            return None

    def _weave_owned(self) -> dict[str, list[IPv4Interface]] | None:
        try:
            return self.weave.owned()
        except WeavenomadError as exc:
            self.soft_errors.append(exc)
            return None

    def _containers(self, listed: list[dict], allocations: Mapping[str, Allocation],
                    owned: Mapping[str, list[IPv4Interface]] | None,
                    scope: frozenset[str] | None = None) -> dict[tuple[str, str], Container]:
        """``listed``: Docker's task containers, of the whole node or (``scope``) of those
        allocations, whose cache entries alone are then judged."""
        found = [c for c in map(container_from_summary, listed) if c is not None]
        with self._lock:
            live = {c.id for c in found}
            cached = set(self._addresses) if scope is None else \
                {c.id for c in found if c.id in self._addresses}
            stale = cached - live
            if owned is not None:
                stale |= {cid for cid in cached if self._stale(cid, owned)}
            for gone in stale:
                del self._addresses[gone]
                self._listed.discard(gone)
            if scope is None:
                for gone in set(self._started) - live:
                    del self._started[gone]
            known = {c.id: self._addresses[c.id] for c in found if c.id in self._addresses}
            started = {c.id: self._started[c.id] for c in found if c.id in self._started}
        missing = [c for c in found if c.running and c.id not in known]
        if missing:
            known.update(self._look_up(missing, allocations, started, owned))
        result = {}
        for container in found:
            addresses = known.get(container.id) if container.running else ()
            result[(container.alloc_id, container.task)] = Container(
                container.id, container.alloc_id, container.task, container.running,
                addresses, started.get(container.id))
        return result

    def _look_up(self, containers: list[Container], allocations: Mapping[str, Allocation],
                 started: dict[str, float], owned: Mapping[str, list[IPv4Interface]] | None
                 ) -> dict[str, tuple[IPv4Interface, ...] | None]:
        """Addresses of containers not in the cache; None where they cannot be found out."""
        answers: dict[str, tuple[IPv4Interface, ...] | None] = {}
        learned: dict[str, tuple[IPv4Interface, ...]] = {}
        listed_ids: set[str] = set()
        for container in containers:
            alloc = allocations.get(container.alloc_id)
            task = alloc.task(container.task) if alloc else None
            wants = task.wants_overlay if task else False
            listed = _listing(owned, container.id) if owned is not None else None
            if listed:
                answers[container.id] = learned[container.id] = listed
                listed_ids.add(container.id)
                continue
            if owned is not None and not wants:
                # Weave answered and the task did not ask for the overlay: nothing to find
                answers[container.id] = learned[container.id] = ()
                continue
            answers[container.id] = addresses = self._from_ethwe(container, started)
            if addresses:
                learned[container.id] = addresses
        with self._lock:
            self._addresses.update(learned)
            self._listed.difference_update(learned)
            self._listed.update(listed_ids)
        return answers

    def _from_ethwe(self, container: Container, started: dict[str, float]
                    ) -> tuple[IPv4Interface, ...] | None:
        try:
            inspect = self.docker.inspect(container.id)
        except WeavenomadError as exc:
            self.soft_errors.append(exc)
            return None
        pid = int((inspect.get("State") or {}).get("Pid") or 0)
        when = started_at(inspect)
        if when is not None and container.id not in started:
            started[container.id] = when
            with self._lock:
                self._started.setdefault(container.id, when)
        if pid <= 0:
            return None
        try:
            return ethwe.read_ethwe(pid, self.proc)
        except OSError as exc:
            log.debug("cannot read ethwe of container %s (pid %d): %s", container.id[:12], pid,
                      exc)
            return None

    def _tenancy(self) -> Tenancy:
        """The registry's tenants and quarantine. A registry that cannot be read (a corrupt
        record, a token that may not read it) is a soft error, and the pass audits with the
        last registry it could read, so that a bad record does not blind the audit."""
        tenancy = self._last_tenancy
        if self.registry is not None:
            try:
                cluster = self.registry.cluster()
                tenancy = tenancy_of(self.registry.load(),
                                     cluster.default_subnet if cluster else None)
                self._last_tenancy = tenancy
            except WeavenomadError as exc:
                if isinstance(exc, BackendError) and exc.temporary:
                    raise
                self.soft_errors.append(exc)
        if tenancy.default_subnet is None:
            tenancy = replace(tenancy, default_subnet=self._weave_default_subnet())
        return tenancy

    def _weave_default_subnet(self) -> IPv4Network | None:
        if self._weave_default is None:
            try:
                self._weave_default = self.weave.default_subnet()
            except (WeavenomadError, ValueError):
                return None
        return self._weave_default

"""``plan(observation) -> Plan``: the actions that make the local agent hold exactly the wanted
twins and masks. Pure: plain data in, plain data out (docker-compose's ``convergence_plan``
habit), in neutral terms: an action carries the wanted twin or mask, and the registry's module
(:mod:`weavenomad.reconcile.consul`) turns it into the agent's request.

Drift is found by comparing data: a twin is re-registered (with exactly its checks) when it is
missing or its name, tags, address, port, digest or set of checks differs; a mask
when it is missing, attached elsewhere, not critical, or says something else. Whatever of ours
is not wanted is removed, but for the twin of a task whose container runs on at the same
address while Nomad waits to take it over again (a Weave restart: :func:`desired.keep_orphan`),
which is kept for a bounded while. Actions come in a safe order: the mask that hides Nomad's
instance before its twin, and a twin only once its mask is in place (``requires``), so no read
ever finds the Docker-bridge address beside a healthy twin (the twin starts healthy when the
reconciler's own probe of its checks passes: :mod:`.probe`). When the twin's registration then
fails, the applier takes a mask this plan added off again, so a failed write never leaves a
service with no instance at all.

A pass need not look at the whole node: ``scope`` (the allocations an event concerns) limits
the plan to the Nomad services, twins and masks of those allocations, so the work of an event
does not grow with the services on the node; the daemon's resyncs, and events it cannot pin
to allocations, plan the whole node.

Before any of that, the host must be *exposed* on every tenant subnet (an address of its own on
the weave bridge), or neither Consul's checks of the twins nor anything else on the host reaches
the tasks. Bootstrap exposes the subnets the registry holds at that time; tenants created later
are exposed here, on every node, within a pass of ``tenant create``, and so is every subnet the
host lost its address in (a reboot brings a new, empty bridge while Weave's IPAM still owns the
addresses: exposing again puts the same ones back). Exposure is only ever added: hiding a
subnet is ``weavenomad reset``'s business, because an address on the bridge may be the
operator's own. An address on the bridge inside a wanted subnet that Weave's IPAM did not give
the host is a problem (logged, counted): Weave may hand it to a container.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from weavenomad.config import ReconcilerSettings
from weavenomad.reconcile.desired import (
    FOREIGN_BRIDGE_ADDRESS,
    ID_TAKEN,
    Problem,
    desire,
    keep_orphan,
)
from weavenomad.reconcile.model import Observation
from weavenomad.reconcile.registrations import (
    CRITICAL,
    MASK_PREFIX,
    META_DIGEST,
    AgentCheck,
    AgentService,
    Mask,
    Twin,
    alloc_behind,
)

EXPOSE_SUBNET = "expose-subnet"
REGISTER_TWIN = "register-twin"
REGISTER_MASK = "register-mask"
SET_TTL = "set-ttl"
REMOVE_MASK = "remove-mask"
REMOVE_TWIN = "remove-twin"
#: the subject of problems about this host's weave bridge (not a service)
BRIDGE_SUBJECT = "weave-bridge"
#: the order in which the applier runs the kinds
ORDER = (EXPOSE_SUBNET, REGISTER_MASK, REGISTER_TWIN, SET_TTL, REMOVE_MASK, REMOVE_TWIN)
#: why a registration is made: the agent does not have it at all
MISSING = "missing"


@dataclass(frozen=True)
class Action:
    kind: str
    #: the service or check ID; for expose-subnet the subnet
    id: str
    #: why: "missing", "address 172.17.0.2 -> 10.32.1.1", "not wanted", …
    why: str = ""
    #: register-twin: the twin to register
    twin: Twin | None = None
    #: register-mask: the mask to register
    mask: Mask | None = None
    #: register-twin: the ID of the mask that must have been registered by this plan first
    requires: str | None = None
    #: set-ttl: the status to set
    status: str | None = None

    @property
    def container_id(self) -> str | None:
        """The container behind a twin being registered (start-to-advertised latency)."""
        return self.twin.container_id if self.twin is not None else None

    @property
    def is_drift(self) -> bool:
        """A change found, as opposed to the periodic refresh of a mirror's TTL."""
        return self.why != "refresh"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    problems: tuple[Problem, ...] = ()
    #: Nomad services whose answer may change by itself shortly (look again soon)
    waiting: tuple[str, ...] = ()
    twins: int = 0
    masks: int = 0
    #: TTL checks that follow a Nomad check's status (the daemon then watches check statuses)
    mirrors: int = 0
    #: twins kept although Nomad's service is gone, by ID: since when (epoch seconds)
    kept: Mapping[str, float] = field(default_factory=dict)
    #: when the earliest kept twin is due to be looked at again (epoch seconds)
    next_look: float | None = None

    @property
    def converged(self) -> bool:
        return not any(a.is_drift for a in self.actions)

    def count(self, kind: str) -> int:
        return sum(1 for a in self.actions if a.kind == kind)


def twin_drift(twin: Twin, existing: AgentService, checks_on_it: set[str]) -> str | None:
    """What differs between the wanted twin and the agent's copy, or None."""
    differences = []
    for label, wanted, have in (
        ("name", twin.name, existing.name),
        ("address", twin.address, existing.address),
        ("port", twin.port, existing.port),
        ("tags", list(twin.tags), list(existing.tags)),
        ("definition", twin.digest, existing.meta.get(META_DIGEST)),
    ):
        if wanted != have:
            differences.append(f"{label} {have!r} -> {wanted!r}")
    if set(twin.check_ids) != checks_on_it:
        differences.append(f"checks {sorted(checks_on_it)} -> {sorted(twin.check_ids)}")
    return "; ".join(differences) or None


def mask_drift(mask: Mask, existing: AgentCheck | None) -> str | None:
    if existing is None:
        return MISSING
    if existing.service_id != mask.service_id:
        return f"attached to {existing.service_id!r}"
    if existing.status != CRITICAL:
        return f"status {existing.status}"
    if existing.notes != mask.notes:
        return "notes changed"
    return None


def _checks_by_service(checks: Mapping[str, AgentCheck]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for check in checks.values():
        found.setdefault(check.service_id, set()).add(check.id)
    return found


def _twin_actions(twin: Twin, obs: Observation, on_service: dict[str, set[str]],
                  refresh_mirrors: bool, mask_first: str | None) -> list[Action]:
    """``mask_first``: the ID of its mask when this plan registers that mask too."""
    existing = obs.services.get(twin.id)
    drift = MISSING if existing is None else twin_drift(twin, existing,
                                                        on_service.get(twin.id, set()))
    if drift is not None:
        return [Action(REGISTER_TWIN, twin.id, drift, twin=twin, requires=mask_first)]
    actions = []
    for mirror in twin.mirrors:
        have = obs.checks.get(mirror.id)
        if have is None or have.status != mirror.status:
            actions.append(Action(SET_TTL, mirror.id, why=f"mirror {mirror.status}",
                                  status=mirror.status))
        elif refresh_mirrors:
            actions.append(Action(SET_TTL, mirror.id, why="refresh", status=mirror.status))
    return actions


def unexposed_subnets(obs: Observation) -> list[IPv4Network]:
    """Tenant subnets, quarantined ones (a deleted tenant's tasks still run there and stay
    advertised, so Consul's checks must reach them) and the default subnet, in which the host
    has no address yet; none when Weave did not say what is exposed."""
    if obs.exposed is None:
        return []
    return sorted((subnet for subnet in _wanted_subnets(obs)
                   if not any(address.ip in subnet for address in obs.exposed)),
                  key=lambda subnet: (int(subnet.network_address), subnet.prefixlen))


def _wanted_subnets(obs: Observation) -> set[IPv4Network]:
    wanted = set(obs.tenancy.subnets.values()) | set(obs.tenancy.quarantined)
    if obs.tenancy.default_subnet is not None:
        wanted.add(obs.tenancy.default_subnet)
    return wanted


def foreign_bridge_problems(obs: Observation) -> list[Problem]:
    """A problem per address on the weave bridge, inside a wanted subnet, that Weave's IPAM
    did not give this host."""
    wanted = _wanted_subnets(obs)
    return [Problem(BRIDGE_SUBJECT, FOREIGN_BRIDGE_ADDRESS,
                    f"{address} on the weave bridge is not Weave's (its IPAM did not give it to "
                    f"this host) and may clash with a container's address: remove it (ip addr "
                    f"del {address} dev weave)")
            for address in obs.foreign if any(address.ip in s for s in wanted)]


def _in_scope(service_or_check_id: str, scope: frozenset[str] | None) -> bool:
    """Whether a Nomad service, a twin or a mask (by ID) belongs to an allocation in scope."""
    return scope is None or alloc_behind(service_or_check_id) in scope


def plan(obs: Observation, settings: ReconcilerSettings | None = None, *, now: float = 0.0,
         refresh_mirrors: bool = False, orphans: Mapping[str, float] | None = None,
         scope: frozenset[str] | None = None) -> Plan:
    """Everything one pass must change in the local agent, ``now`` (epoch seconds).
    ``orphans``: the twins an earlier pass kept without their Nomad service, and since when
    (the plan's ``kept``). ``scope``: the allocation IDs to look at (None: the whole node);
    out of scope, the agent's twins and masks are counted as they are."""
    settings = settings or ReconcilerSettings()
    on_service = _checks_by_service(obs.checks)
    actions: list[Action] = []
    problems: list[Problem] = []
    waiting: list[str] = []
    twins: dict[str, Twin] = {}
    masks: dict[str, Mask] = {}
    for subnet in unexposed_subnets(obs):
        actions.append(Action(EXPOSE_SUBNET, str(subnet), why="the host has no address in it"))
    problems.extend(foreign_bridge_problems(obs))
    for service in sorted(obs.services.values(), key=lambda s: s.id):
        if not service.nomad_task or not _in_scope(service.id, scope):
            continue
        outcome = desire(service, obs, settings, now)
        problems.extend(outcome.problems)
        if outcome.waiting:
            waiting.append(service.id)
        twin, mask = outcome.twin, outcome.mask
        if twin is not None:
            taken = obs.services.get(twin.id)
            if taken is not None and not taken.ours:
                problems.append(Problem(service.id, ID_TAKEN, f"service ID {twin.id} is "
                                        "registered by someone else", None))
                continue
        mask_first = None
        if mask is not None:
            masks[mask.id] = mask
            drift = mask_drift(mask, obs.checks.get(mask.id))
            if drift is not None:
                actions.append(Action(REGISTER_MASK, mask.id, drift, mask=mask))
                mask_first = mask.id
        if twin is not None:
            twins[twin.id] = twin
            actions.extend(_twin_actions(twin, obs, on_service, refresh_mirrors, mask_first))
    kept: dict[str, float] = {}
    looks: list[float] = []
    #: out of scope: the agent's twins and masks as they are, orphans kept as they were
    twins_elsewhere, masks_elsewhere = obs.twins_elsewhere, obs.masks_elsewhere
    for service in obs.services.values():
        if service.ours and service.id not in twins:
            if not _in_scope(service.id, scope):
                twins_elsewhere += 1
                if service.id in (orphans or {}):
                    kept[service.id] = orphans[service.id]
                continue
            since = (orphans or {}).get(service.id, now)
            until = keep_orphan(service, obs, settings, now, since)
            if until is not None:
                kept[service.id] = since
                looks.append(until)
                continue
            actions.append(Action(REMOVE_TWIN, service.id, why="not wanted"))
    for check in obs.checks.values():
        if check.id.startswith(MASK_PREFIX) and check.id not in masks:
            if not _in_scope(check.id, scope):
                masks_elsewhere += 1
                continue
            actions.append(Action(REMOVE_MASK, check.id, why="not wanted"))
    actions.sort(key=lambda a: (ORDER.index(a.kind), a.id))
    mirrors = sum(len(t.mirrors) for t in twins.values())
    in_scope_kept = sum(1 for k in kept if _in_scope(k, scope))
    return Plan(tuple(actions), tuple(problems), tuple(waiting),
                len(twins) + in_scope_kept + twins_elsewhere, len(masks) + masks_elsewhere,
                mirrors, kept, min(looks, default=None))

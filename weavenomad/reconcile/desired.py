"""What the registry should hold for one Nomad service: a twin, a mask, a problem, or nothing.
Pure, and in neutral terms (:mod:`weavenomad.reconcile.registrations`): which address and port,
name, tags and meta, which checks aimed where, which mask saying what.

:func:`desire` applies the rules of :mod:`weavenomad.reconcile` to one ``_nomad-task-`` service
of the local agent; :mod:`weavenomad.reconcile.plan` compares the results with what the agent
holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from weavenomad.config import ReconcilerSettings
from weavenomad.reconcile.model import (
    Allocation,
    CheckSpec,
    Container,
    Observation,
    ServiceSpec,
    TaskSpec,
    Tenancy,
)
from weavenomad.reconcile.registrations import (
    CRITICAL,
    META_DIGEST,
    META_MANAGED,
    META_SOURCE,
    MIRROR,
    AgentService,
    Mask,
    Twin,
    TwinCheck,
    alloc_of,
    digest_of,
    mask_id,
    nomad_service_id,
    twin_check_id,
    twin_id,
)
from weavenomad.runtime.durations import NANOSECONDS_PER_SECOND
from weavenomad.tenancy.contract import (
    HIDDEN_PREFIX,
    META_SERVICE,
    held_public_name,
    public_tag,
)
from weavenomad.tenancy.weavecidr import parse_subnet

#: check types the reconciler re-aims at the Weave address
REAIMABLE = ("tcp", "http", "grpc")

# problem reasons (metric label values and log keys)
PORT_UNRESOLVED = "port-unresolved"
CHECK_NOT_REAIMABLE = "check-not-reaimable"
NO_WEAVE_ADDRESS = "no-weave-address"
TENANT_VIOLATION = "tenant-violation"
TENANT_UNKNOWN = "tenant-unknown"
UNKNOWN_SERVICE = "unknown-service"
ID_TAKEN = "id-taken"
FOREIGN_BRIDGE_ADDRESS = "foreign-bridge-address"


@dataclass(frozen=True)
class Problem:
    """Something about one service that the reconciler cannot fix; logged once, counted."""

    service_id: str
    reason: str
    detail: str
    tenant: str | None = None


@dataclass(frozen=True)
class Outcome:
    twin: Twin | None = None
    mask: Mask | None = None
    problems: tuple[Problem, ...] = ()
    #: the answer may change soon by itself (an address not assigned yet): look again shortly
    waiting: bool = False


NOTHING = Outcome()


def held(service: AgentService) -> bool:
    """Whether ``run`` had Nomad register ``service`` under a private name
    (:mod:`weavenomad.jobs.services`): its twin then takes the public name and tags, and it
    needs no mask, as nobody asks for the private name."""
    return held_public_name(service.name, service.meta) is not None


def public_face(service: AgentService) -> tuple[str, tuple[str, ...]]:
    """The name and tags a twin of ``service`` answers with: a held service's public ones (as
    Nomad interpolated them in its meta), else its own."""
    if held(service):
        return service.meta[META_SERVICE], tuple(public_tag(tag) for tag in service.tags)
    return service.name, tuple(service.tags)


def container_port(label: str, alloc: Allocation, task: TaskSpec | None) -> int | None:
    """The port inside the container for a service or check port label; 0 when there is no
    label, None when it cannot be resolved."""
    if not label:
        return 0
    if label.isdigit():
        return int(label) or None
    for mapping in alloc.shared_ports:
        if mapping.label == label:
            return mapping.container_port or None
    if task is not None:
        if label in task.port_map:
            return task.port_map[label] or None
        for mapping in task.ports:
            if mapping.label == label:
                return mapping.container_port or None
    return None


def tenant_subnet(alloc: Allocation, tenancy: Tenancy) -> tuple[IPv4Network | None, bool]:
    """(the subnet the allocation's tenant owns, whether that could be decided). A job without
    tenant meta has no subnet to keep to: (None, True). A deleted tenant's job keeps to its
    quarantined subnet, even when a new tenant of the same name exists."""
    if not alloc.tenant and not alloc.tenant_subnet:
        return None, True
    deleted = deleted_tenants_subnet(alloc, tenancy)
    if deleted is not None:
        return deleted, True
    if alloc.tenant and alloc.tenant in tenancy.subnets:
        return tenancy.subnets[alloc.tenant], True
    text = (alloc.tenant_subnet or "").strip()
    if text == "default":
        return tenancy.default_subnet, tenancy.default_subnet is not None
    try:
        return parse_subnet(text), True
    except Exception:  # noqa: BLE001 - any unparsable meta means: cannot decide
        return None, False


def deleted_tenants_subnet(alloc: Allocation, tenancy: Tenancy) -> IPv4Network | None:
    """The quarantined subnet that the allocation's job holds as its deleted tenant's own (its
    tenant and subnet meta name that quarantine), or None."""
    return next((subnet for subnet, deleted in tenancy.quarantined.items()
                 if alloc.tenant == deleted and alloc.tenant_subnet == str(subnet)), None)


def _enters(network: IPv4Network | IPv4Address, subnet: IPv4Network) -> bool:
    if isinstance(network, IPv4Address):
        return network in subnet
    return network.overlaps(subnet)


def trespassed(network: IPv4Network | IPv4Address, alloc: Allocation, tenancy: Tenancy
               ) -> str | None:
    """Whose subnet ``network`` (an address, or a subnet a task asks for) enters
    although the allocation's job is not theirs: "tenant globex's subnet 10.32.2.0/24", "deleted
    tenant acme's quarantined subnet 10.32.1.0/24"; None when it enters only the job's own (or
    nobody's). Only the job's tenant meta makes it a tenant's: a job run around ``weavenomad
    run`` is nobody's, wherever its ``WEAVE_CIDR`` puts it."""
    for name, subnet in sorted(tenancy.subnets.items()):
        if _enters(network, subnet) and alloc.tenant != name:
            return f"tenant {name}'s subnet {subnet}"
    own = deleted_tenants_subnet(alloc, tenancy)
    for subnet, deleted in sorted(tenancy.quarantined.items()):
        if _enters(network, subnet) and subnet != own:
            return f"deleted tenant {deleted}'s quarantined subnet {subnet}"
    return None


def _service_specs(alloc: Allocation) -> list[tuple[str, ServiceSpec, TaskSpec | None]]:
    """(task name or ``group-<group>``, the job's service, the task) of every service."""
    found = [(f"group-{alloc.group}", s, None) for s in alloc.group_services]
    return found + [(t.name, s, t) for t in alloc.tasks for s in t.services]


def nomad_service_ids(alloc: Allocation) -> set[str]:
    """The IDs Nomad registers the allocation's services under, where the job names them
    plainly (a name with ``${…}`` is Nomad's to interpolate: only the agent knows it). Pure."""
    return {nomad_service_id(alloc.id, task_name, spec.name, spec.port_label)
            for task_name, spec, _ in _service_specs(alloc) if "${" not in spec.name}


def match_service(service: AgentService, alloc: Allocation
                  ) -> tuple[str, ServiceSpec, TaskSpec | None] | None:
    """(task name or ``group-<group>``, the job's service, the task) behind Nomad's service.
    Names with ``${…}`` are interpolated by Nomad, so they match by the registered name."""
    for task_name, spec, task in _service_specs(alloc):
        name = service.name if "${" in spec.name else spec.name
        if nomad_service_id(alloc.id, task_name, name, spec.port_label) == service.id:
            return task_name, spec, task
    return None


def _group_container(alloc: Allocation, obs: Observation
                     ) -> tuple[Container | None, TaskSpec | None]:
    """A group service's container: the leader's, else the first running task's (in job order)
    that has a Weave address, else one whose address is not known yet."""
    running = []
    for task in alloc.tasks:
        container = obs.containers.get((alloc.id, task.name))
        if container is not None and container.running:
            running.append((container, task))
    if not running:
        return None, None
    for wanted in (lambda c, t: t.leader, lambda c, t: bool(c.addresses),
                   lambda c, t: c.addresses is None):
        found = next(((c, t) for c, t in running if wanted(c, t)), None)
        if found is not None:
            return found
    return running[0]


def _target(check: CheckSpec, ip: str, port: int) -> str:
    """Where a re-aimed check probes: ``ip:port``, or for http the URL."""
    if check.kind != "http":
        return f"{ip}:{port}"
    path = check.path or "/"
    return f"{check.protocol or 'http'}://{ip}:{port}{'' if path.startswith('/') else '/'}{path}"


def _reaimed(check: CheckSpec, check_id: str, name: str, ip: str, port: int) -> TwinCheck:
    return TwinCheck(
        check_id, name, check.kind, _target(check, ip, port), check.interval_ns,
        check.timeout_ns, check.initial_status, method=check.method, header=check.header,
        tls_skip_verify=check.tls_skip_verify, grpc_service=check.grpc_service,
        grpc_use_tls=check.grpc_use_tls)


def _twin(service: AgentService, spec: ServiceSpec, alloc: Allocation, task: TaskSpec | None,
          ip: str, port: int, obs: Observation, settings: ReconcilerSettings,
          container: Container) -> tuple[Twin | None, list[Problem]]:
    twin = twin_id(service.id)
    checks, problems = [], []
    for index, check in enumerate(spec.checks):
        check_id, name = twin_check_id(twin, index), check.name or f"check {index}"
        if check.kind in REAIMABLE:
            check_port = container_port(check.port_label or spec.port_label, alloc, task)
            if not check_port:
                label = check.port_label or spec.port_label or "(none)"
                return None, [Problem(service.id, PORT_UNRESOLVED,
                                      f"check {check.name!r}: port label {label!r} resolves to "
                                      "no container port", alloc.tenant)]
            checks.append(_reaimed(check, check_id, name, ip, check_port))
            continue
        nomad_check = next((c for c in obs.checks.values()
                            if c.service_id == service.id and c.name == check.name), None)
        checks.append(TwinCheck(
            check_id, name, MIRROR, status=nomad_check.status if nomad_check else CRITICAL,
            ttl_ns=settings.mirror_ttl * NANOSECONDS_PER_SECOND,
            notes=f"mirrors Nomad's {check.kind or 'unknown'} check {check.name!r}, which "
                  "cannot be aimed at an address"))
        problems.append(Problem(service.id, CHECK_NOT_REAIMABLE,
                                f"check {check.name!r} of type {check.kind or 'unknown'} cannot "
                                "be re-aimed; the twin mirrors its status", alloc.tenant))
    meta = {**service.meta, META_MANAGED: "true", META_SOURCE: service.id}
    name, tags = public_face(service)

    def made(meta: dict[str, str]) -> Twin:
        return Twin(twin, service.id, name, ip, port, tags, meta, service.enable_tag_override,
                    tuple(checks), container.id, service.namespace, service.partition)

    return made({**meta, META_DIGEST: digest_of(made(meta))}), problems


def desire(service: AgentService, obs: Observation, settings: ReconcilerSettings,
           now: float) -> Outcome:
    """The twin and mask that Nomad's ``service`` calls for, with the rules of the package."""
    alloc = obs.allocations.get(alloc_of(service.id) or "")
    if alloc is None:
        return Outcome(waiting=True)  # our Nomad snapshot lags behind Consul
    if not alloc.active:
        return NOTHING
    matched = match_service(service, alloc)
    if matched is None:
        return Outcome(problems=(Problem(service.id, UNKNOWN_SERVICE,
                                         f"no service of job {alloc.job_id!r} has this ID",
                                         alloc.tenant),))
    task_name, spec, task = matched
    if task is None:
        container, task_for_ports = _group_container(alloc, obs)
        wants_overlay = any(t.wants_overlay for t in alloc.tasks)
    else:
        container, task_for_ports = obs.containers.get((alloc.id, task_name)), task
        wants_overlay = task.wants_overlay
    if container is None or not container.running:
        return NOTHING  # not started yet, or stopping: Nomad adds or drops its service itself
    if container.addresses is None:
        return Outcome(waiting=True)
    if not container.addresses:
        if not wants_overlay:
            return NOTHING  # not on the overlay: Nomad's address is the only one
        recent = container.started_at is not None and \
            now - container.started_at < settings.address_grace
        if recent:
            return Outcome(waiting=True)
        return Outcome(problems=(Problem(service.id, NO_WEAVE_ADDRESS,
                                         f"container {container.id[:12]} has no Weave address",
                                         alloc.tenant),))
    subnet, decided = tenant_subnet(alloc, obs.tenancy)
    if not decided:
        return Outcome(problems=(Problem(service.id, TENANT_UNKNOWN,
                                         f"the subnet of tenant {alloc.tenant!r} is unknown",
                                         alloc.tenant),))
    address = choose_address(container.addresses, subnet)
    if address is None:
        listed = " ".join(str(a) for a in container.addresses)
        mask = Mask(mask_id(service.id), service.id,
                    f"weavenomad: tenant violation: {listed} outside tenant "
                    f"{alloc.tenant or alloc.tenant_subnet}'s subnet {subnet}; not advertised",
                    service.namespace, service.partition)
        return Outcome(mask=mask, problems=(Problem(
            service.id, TENANT_VIOLATION, f"Weave address {listed} lies outside tenant "
            f"{alloc.tenant or alloc.tenant_subnet!r}'s subnet {subnet}", alloc.tenant),))
    trespass = next(((a, whose) for a in container.addresses
                     if (whose := trespassed(a.ip, alloc, obs.tenancy))), None)
    if trespass is not None:
        intruder, whose = trespass
        job = f"job {alloc.job_id} ({f'tenant {alloc.tenant}' if alloc.tenant else 'no tenant'})"
        mask = Mask(mask_id(service.id), service.id,
                    f"weavenomad: tenant violation: {intruder} in {whose}, which {job} may not "
                    "use; not advertised", service.namespace, service.partition)
        return Outcome(mask=mask, problems=(Problem(
            service.id, TENANT_VIOLATION, f"Weave address {intruder} lies in {whose}, which "
            f"{job} may not use", alloc.tenant),))
    port = container_port(spec.port_label, alloc, task_for_ports)
    if port is None:
        return Outcome(problems=(Problem(service.id, PORT_UNRESOLVED,
                                         f"port label {spec.port_label!r} resolves to no "
                                         "container port", alloc.tenant),))
    ip = str(address.ip)
    if service.address == ip and service.port == port and not held(service):
        return NOTHING  # Nomad already advertises the Weave address
    twin, problems = _twin(service, spec, alloc, task_for_ports, ip, port, obs, settings,
                           container)
    if twin is None:
        return Outcome(problems=tuple(problems))
    if held(service):
        return Outcome(twin=twin, problems=tuple(problems))
    mask = Mask(mask_id(service.id), service.id,
                f"weavenomad: superseded by {twin.id} at {ip}:{port} (Weave address)",
                service.namespace, service.partition)
    return Outcome(twin=twin, mask=mask, problems=tuple(problems))


def keep_orphan(twin: AgentService, obs: Observation, settings: ReconcilerSettings, now: float,
                since: float) -> float | None:
    """Until when (epoch seconds) to keep a twin whose Nomad service is gone, or None to
    remove it now. A Weave restart breaks Nomad's wait on every task's container: Nomad says
    "Terminated: unexpected EOF", deregisters the services and, after the restart delay, takes
    the still running container over again (day-two/1c). The twin goes on answering for such a
    task meanwhile, never past a real stop: an allocation Nomad wants stopped, a container that
    is not running, an address that is not the twin's any more; and never past the restart
    Nomad announced plus a margin (or, unannounced, a fixed while from ``since``)."""
    source = twin.meta.get(META_SOURCE) or ""
    alloc = obs.allocations.get(alloc_of(source) or "")
    if alloc is None or not alloc.active:
        return None
    # a held service's name, when Nomad interpolated it, is the prefix and the twin's name
    registered = HIDDEN_PREFIX + twin.name if twin.meta.get(META_SERVICE) else twin.name
    matched = match_service(AgentService(source, registered), alloc)
    if matched is None:
        return None
    _, _, task = matched
    if task is None:
        container, task = _group_container(alloc, obs)
    else:
        container = obs.containers.get((alloc.id, task.name))
    if container is None or not container.running:
        return None
    if container.addresses is not None and twin.address not in {
            str(address.ip) for address in container.addresses}:
        return None
    announced = task.restarting_until if task is not None else None
    deadline = (announced + settings.keep_twin_margin if announced is not None
                else since + settings.keep_twin_unannounced)
    return deadline if now <= deadline else None


def choose_address(addresses, subnet: IPv4Network | None) -> IPv4Interface | None:
    """The lowest address inside ``subnet`` (any, without one); None if none is inside."""
    candidates = sorted(a for a in addresses if subnet is None or a.ip in subnet)
    return candidates[0] if candidates else None

"""The reconciler's plain data: what one pass observes of Nomad, Docker and Weave, and the whole
:class:`Observation` (the registry's part is :mod:`weavenomad.reconcile.registrations`).

The ``*_from_api`` functions turn Nomad's and Docker's JSON into these records; they are pure and
keep only what :mod:`weavenomad.reconcile.plan` needs, so a snapshot of 200 allocations (each
with its whole job) is parsed once, not on every pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from types import MappingProxyType

from weavenomad.reconcile.registrations import AgentCheck, AgentService
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT, held_public_name

#: the label Nomad (>= 0.10.2) puts on every task container
NOMAD_ALLOC_LABEL = "com.hashicorp.nomad.alloc_id"


# --------------------------------------------------------------------------------------------
# Nomad


@dataclass(frozen=True)
class PortMapping:
    label: str
    value: int  # the host port
    to: int = 0  # the container port; 0 or -1: the same as value

    @property
    def container_port(self) -> int:
        return self.to if self.to > 0 else self.value


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str  # tcp, http, grpc, script
    port_label: str = ""
    path: str = ""
    protocol: str = ""
    method: str = ""
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    tls_skip_verify: bool = False
    grpc_service: str = ""
    grpc_use_tls: bool = False
    initial_status: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port_label: str = ""
    address_mode: str = "auto"
    checks: tuple[CheckSpec, ...] = ()
    #: the public name of a service ``run`` holds under a private one (its meta
    #: ``weavenomad-service``, as the job states it); empty for one submitted around ``run``
    public_name: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    driver: str = "docker"
    #: the task's WEAVE_CIDR, None when it has none
    weave_cidr: str | None = None
    leader: bool = False
    #: the Docker driver's legacy ``port_map``: label -> container port
    port_map: Mapping[str, int] = field(default_factory=dict)
    #: ports of the task's own network (Nomad < 0.12 style)
    ports: tuple[PortMapping, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    #: when Nomad starts the task again (epoch seconds), while it waits out its restart delay
    #: (its last event is "Restarting": after a Weave restart broke Nomad's wait on the
    #: container, which runs on, day-two/1c); None otherwise
    restarting_until: float | None = None

    @property
    def wants_overlay(self) -> bool:
        return self.weave_cidr is not None and self.weave_cidr.strip() != "none"


@dataclass(frozen=True)
class Allocation:
    id: str
    job_id: str
    group: str
    desired_status: str
    client_status: str
    tenant: str | None = None
    tenant_subnet: str | None = None
    tasks: tuple[TaskSpec, ...] = ()
    group_services: tuple[ServiceSpec, ...] = ()
    #: the group network's ports (AllocatedResources.Shared.Ports)
    shared_ports: tuple[PortMapping, ...] = ()

    @property
    def active(self) -> bool:
        return self.desired_status == "run" and self.client_status in ("pending", "running")

    def task(self, name: str) -> TaskSpec | None:
        return next((t for t in self.tasks if t.name == name), None)


def _ports(entries) -> tuple[PortMapping, ...]:
    found = []
    for port in entries or ():
        try:
            found.append(PortMapping(str(port.get("Label") or ""), int(port.get("Value") or 0),
                                     int(port.get("To") or 0)))
        except (TypeError, ValueError):
            continue
    return tuple(found)


def _network_ports(networks) -> tuple[PortMapping, ...]:
    found: list[PortMapping] = []
    for network in networks or ():
        found += _ports((network.get("ReservedPorts") or []) + (network.get("DynamicPorts") or []))
    return tuple(found)


def _port_map(config: Mapping) -> dict[str, int]:
    """Docker's ``port_map``: canonical JSON has a list of maps, HCL users may give a map."""
    raw = config.get("port_map") or {}
    entries = raw if isinstance(raw, list) else [raw]
    found: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, Mapping):
            for label, port in entry.items():
                try:
                    found[str(label)] = int(port)
                except (TypeError, ValueError):
                    continue
    return found


def _header(raw) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, Mapping):
        return ()
    return tuple(sorted((str(k), tuple(str(v) for v in (vs if isinstance(vs, list) else [vs])))
                        for k, vs in raw.items()))


def check_from_api(raw: Mapping) -> CheckSpec:
    return CheckSpec(
        name=str(raw.get("Name") or ""), kind=str(raw.get("Type") or "").lower(),
        port_label=str(raw.get("PortLabel") or ""), path=str(raw.get("Path") or ""),
        protocol=str(raw.get("Protocol") or ""), method=str(raw.get("Method") or ""),
        header=_header(raw.get("Header")), interval_ns=int(raw.get("Interval") or 0),
        timeout_ns=int(raw.get("Timeout") or 0), tls_skip_verify=bool(raw.get("TLSSkipVerify")),
        grpc_service=str(raw.get("GRPCService") or ""),
        grpc_use_tls=bool(raw.get("GRPCUseTLS")),
        initial_status=str(raw.get("InitialStatus") or ""),
    )


def service_from_api(raw: Mapping) -> ServiceSpec:
    return ServiceSpec(
        name=str(raw.get("Name") or ""), port_label=str(raw.get("PortLabel") or ""),
        address_mode=str(raw.get("AddressMode") or "auto"),
        checks=tuple(check_from_api(c) for c in raw.get("Checks") or ()),
        public_name=held_public_name(str(raw.get("Name") or ""), raw.get("Meta")) or "",
    )


def restarting_until(state: Mapping | None) -> float | None:
    """From a task's state: the epoch second Nomad starts it again, when its last event says
    it is restarting ("Task restarting in 16.06s": Time + StartDelay, nanoseconds). Pure."""
    events = (state or {}).get("Events") or []
    if (state or {}).get("State") != "pending" or not events:
        return None
    last = events[-1]
    if last.get("Type") != "Restarting":
        return None
    try:
        return (int(last.get("Time") or 0) + int(last.get("StartDelay") or 0)) / 1e9
    except (TypeError, ValueError):
        return None


def allocation_from_api(raw: Mapping) -> Allocation:
    """The parts of a Nomad allocation (with its embedded job) that the plan needs."""
    job = raw.get("Job") or {}
    group_name = raw.get("TaskGroup") or ""
    group = next((g for g in job.get("TaskGroups") or () if g.get("Name") == group_name), {})
    resources = raw.get("AllocatedResources") or {}
    task_resources = resources.get("Tasks") or {}
    task_states = raw.get("TaskStates") or {}
    tasks = []
    for task in group.get("Tasks") or ():
        name = task.get("Name") or ""
        config = task.get("Config") or {}
        env = task.get("Env") or {}
        cidr = env.get("WEAVE_CIDR")
        tasks.append(TaskSpec(
            name=name, driver=str(task.get("Driver") or ""),
            weave_cidr=str(cidr) if cidr is not None else None, leader=bool(task.get("Leader")),
            port_map=MappingProxyType(_port_map(config)),
            ports=_network_ports((task_resources.get(name) or {}).get("Networks")),
            services=tuple(service_from_api(s) for s in task.get("Services") or ()),
            restarting_until=restarting_until(task_states.get(name)),
        ))
    meta = {**(job.get("Meta") or {})}
    shared = resources.get("Shared") or {}
    return Allocation(
        id=str(raw.get("ID") or ""), job_id=str(raw.get("JobID") or job.get("ID") or ""),
        group=group_name, desired_status=str(raw.get("DesiredStatus") or ""),
        client_status=str(raw.get("ClientStatus") or ""),
        tenant=meta.get(META_TENANT) or None, tenant_subnet=meta.get(META_SUBNET) or None,
        tasks=tuple(tasks),
        group_services=tuple(service_from_api(s) for s in group.get("Services") or ()),
        shared_ports=_ports(shared.get("Ports")) + _network_ports(shared.get("Networks")),
    )


# --------------------------------------------------------------------------------------------
# Docker and Weave


@dataclass(frozen=True)
class Container:
    id: str
    alloc_id: str
    task: str
    running: bool
    #: its Weave addresses; None when they could not be found out in this pass
    addresses: tuple[IPv4Interface, ...] | None = None
    #: when it started (epoch seconds), if an event told us
    started_at: float | None = None


def container_from_summary(summary: Mapping) -> Container | None:
    """A task container from ``/containers/json``; None for anything Nomad did not start.
    Nomad names its containers ``<task>-<allocID>``."""
    alloc_id = (summary.get("Labels") or {}).get(NOMAD_ALLOC_LABEL)
    names = [n.lstrip("/") for n in summary.get("Names") or ()]
    if not alloc_id:
        return None
    suffix = "-" + alloc_id
    task = next((n[: -len(suffix)] for n in names if n.endswith(suffix)), None)
    if not task:
        return None
    return Container(id=str(summary.get("Id") or ""), alloc_id=alloc_id, task=task,
                     running=summary.get("State") == "running")


@dataclass(frozen=True)
class Tenancy:
    """What the tenant audit needs: the registry's subnets, the cluster's default subnet, and
    the quarantined subnets of deleted tenants (subnet -> the deleted tenant's name)."""

    subnets: Mapping[str, IPv4Network] = field(default_factory=dict)
    default_subnet: IPv4Network | None = None
    quarantined: Mapping[IPv4Network, str] = field(default_factory=dict)


def tenancy_of(registry, default_subnet: IPv4Network | None) -> Tenancy:
    """The audit's view of a tenant registry (a :class:`weavenomad.tenancy.model.Registry`)."""
    return Tenancy(dict(registry.subnets()), default_subnet,
                   {subnet: q.tenant for subnet, q in registry.quarantined.items()})


@dataclass(frozen=True)
class Observation:
    allocations: Mapping[str, Allocation] = field(default_factory=dict)
    services: Mapping[str, AgentService] = field(default_factory=dict)
    checks: Mapping[str, AgentCheck] = field(default_factory=dict)
    #: running and stopped task containers by (allocation ID, task name)
    containers: Mapping[tuple[str, str], Container] = field(default_factory=dict)
    tenancy: Tenancy = field(default_factory=Tenancy)
    #: the host's exposed addresses: Weave's IPAM owns them for ``weave:expose`` and they are
    #: on the host's weave bridge; None when Weave did not answer, so nothing is known
    exposed: tuple[IPv4Interface, ...] | None = None
    #: addresses on the weave bridge that Weave's IPAM did not give the host
    foreign: tuple[IPv4Interface, ...] = ()
    #: a scoped observation (the allocations of an event): the agent's twins and masks of
    #: the other allocations, as last seen, which the plan counts without looking at them
    twins_elsewhere: int = 0
    masks_elsewhere: int = 0

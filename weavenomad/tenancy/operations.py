"""What the ``tenant`` commands do, one function each, on top of the registry and Nomad.

A deleted tenant's subnet is quarantined (:meth:`TenantRegistry.retire`), and only the
commands that write the registry lift quarantines: ``tenant delete`` and ``tenant create`` ask
Nomad who still holds addresses in each quarantined subnet (:mod:`.holders`) and free those
nobody holds. When Nomad cannot be asked, nothing is freed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from weavenomad.errors import ConflictError, ValidationError, WeavenomadError
from weavenomad.tenancy import holders
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT
from weavenomad.tenancy.holders import LIVE_STATES
from weavenomad.tenancy.model import Cluster, Registry, Tenant
from weavenomad.tenancy.registry import TenantRegistry
from weavenomad.tenancy.weavecidr import parse_subnet


def registry_for(settings) -> TenantRegistry:
    from weavenomad.clients import consul_client

    return TenantRegistry(consul_client(settings), settings.kv_prefix)



def cluster_from_flags(ipalloc_range: str | None, default_subnet: str | None) -> Cluster | None:
    if ipalloc_range is None and default_subnet is None:
        return None
    if ipalloc_range is None or default_subnet is None:
        raise ValidationError("--ipalloc-range and --default-subnet go together")
    return Cluster(parse_subnet(ipalloc_range, what="--ipalloc-range"),
                   parse_subnet(default_subnet, what="--default-subnet"))


@dataclass(frozen=True)
class QuarantineCheck:
    """What Nomad says about the quarantined subnets: those nobody holds any more, and why
    each other one stays (for messages)."""

    released: frozenset[IPv4Network] = frozenset()
    held: Mapping[IPv4Network, str] = field(default_factory=dict)
    #: Nomad could not be asked: nothing is released
    error: WeavenomadError | None = None


def check_quarantine(connect_nomad: Callable[[], Any] | None,
                     registry: Registry) -> QuarantineCheck:
    """Ask Nomad who holds addresses in each quarantined subnet; ``connect_nomad`` gives the
    Nomad client (called only when something is quarantined; None: do not ask)."""
    subnets = list(registry.quarantined)
    if not subnets or connect_nomad is None:
        return QuarantineCheck()
    try:
        found = holders.read_holders(connect_nomad(), subnets)
    except WeavenomadError as exc:
        reason = ("Nomad could not be asked whether tasks still hold addresses in it "
                  f"({exc.one_line()})")
        return QuarantineCheck(held={subnet: reason for subnet in subnets}, error=exc)
    return QuarantineCheck(frozenset(s for s, held in found.items() if not held),
                           {s: holders.describe(held) for s, held in found.items() if held})


def create_tenant(
    registry: TenantRegistry,
    name: str,
    *,
    cidr: str | None = None,
    prefix_len: int = 24,
    description: str = "",
    labels: Mapping[str, str] | None = None,
    cluster: Cluster | None = None,
    connect_nomad: Callable[[], Any] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Tenant:
    """Create a tenant; with ``connect_nomad`` (which gives the Nomad client, only asked for
    when something is quarantined), quarantined subnets that no task holds any more are freed
    in the same write (and may be the new tenant's)."""
    if cluster is not None:
        registry.record_cluster(cluster)
    subnet = parse_subnet(cidr, what="--cidr") if cidr else None
    check = check_quarantine(connect_nomad, registry.load())
    created = registry.create(name, cidr=subnet, prefix_len=prefix_len,
                              description=description, labels=dict(labels or {}),
                              released=check.released, held=check.held)
    if check.error is not None and warn is not None:
        warn(f"cannot ask Nomad whether tasks still hold addresses in the quarantined subnets "
             f"({check.error.one_line()}); they stay quarantined")
    return created


def tenant_allocations(nomad, tenant: Tenant) -> list[dict]:
    """Live allocations of jobs recorded as this tenant's (by name, or by subnet when the job
    was run with ``--tenant net:CIDR``)."""
    found = []
    for stub in nomad.jobs():
        if stub.get("Status") == "dead":
            continue
        meta = nomad.job(stub["ID"]).get("Meta") or {}
        if meta.get(META_TENANT) != tenant.name and meta.get(META_SUBNET) != str(tenant.subnet):
            continue
        _, allocations = nomad.job_allocations(stub["ID"])
        for alloc in allocations:
            if alloc.get("ClientStatus") in LIVE_STATES:
                found.append({"ID": alloc["ID"], "JobID": alloc["JobID"],
                              "TaskGroup": alloc.get("TaskGroup"), "NodeID": alloc.get("NodeID"),
                              "ClientStatus": alloc["ClientStatus"]})
    return found


def describe_tenant(tenant: Tenant) -> dict:
    return {"name": tenant.name, **tenant.to_json()}


def quarantine_lines(registry: Registry) -> list[str]:
    """``tenant list``'s lines for the quarantined subnets (none: no lines)."""
    if not registry.quarantined:
        return []
    lines = ["", "quarantined subnets (no new tenant gets them while tasks hold addresses in "
             "them; 'tenant create' frees them once none does):"]
    lines += [f"{subnet}  quarantined: tenant {q.tenant}, deleted {q.deleted}"
              for subnet, q in sorted(registry.quarantined.items(),
                                      key=lambda item: int(item[0].network_address))]
    return lines


@dataclass(frozen=True)
class Deletion:
    tenant: Tenant
    #: why the subnet stays quarantined; None when it is free again
    held: str | None = None

    @property
    def name(self) -> str:
        return self.tenant.name

    def to_json(self) -> dict:
        return {**describe_tenant(self.tenant), "quarantined": self.held is not None,
                "held": self.held}

    def text(self) -> str:
        line = f"deleted tenant {self.tenant.name} ({self.tenant.subnet})"
        if self.held is None:
            return line
        return f"{line}; {self.tenant.subnet} stays quarantined: {self.held}"


def delete_tenant(registry: TenantRegistry, nomad, name: str, *, force: bool = False
                  ) -> Deletion:
    """Delete a tenant (refused while its jobs run, unless ``force``); its subnet is
    quarantined first, then freed at once if Nomad shows no task in it."""
    tenant = registry.load().get(name)
    if not force:
        live = tenant_allocations(nomad, tenant)
        if live:
            jobs = sorted({a["JobID"] for a in live})
            raise ConflictError(
                f"tenant {name!r} still has {len(live)} running allocation(s) of job(s) "
                f"{', '.join(jobs)}", hint="stop them first, or pass --force"
            )
    # quarantined before Nomad is asked: a job registered meanwhile is seen, not missed
    tenant = registry.retire(name)
    check = check_quarantine(lambda: nomad, registry.load())
    if check.released:
        registry.release(check.released)
    return Deletion(tenant, check.held.get(tenant.subnet))

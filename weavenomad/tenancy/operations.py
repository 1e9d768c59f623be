"""What the ``tenant`` commands do, one function each, on top of the registry and Nomad."""

from __future__ import annotations

from collections.abc import Mapping

from weavenomad.errors import ConflictError, ValidationError
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT
from weavenomad.tenancy.model import Cluster, Tenant
from weavenomad.tenancy.registry import TenantRegistry
from weavenomad.tenancy.weavecidr import parse_subnet

#: allocation client states that still hold an address in the tenant's subnet
LIVE_STATES = ("pending", "running")


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


def create_tenant(
    registry: TenantRegistry,
    name: str,
    *,
    cidr: str | None = None,
    prefix_len: int = 24,
    description: str = "",
    labels: Mapping[str, str] | None = None,
    cluster: Cluster | None = None,
) -> Tenant:
    if cluster is not None:
        registry.record_cluster(cluster)
    subnet = parse_subnet(cidr, what="--cidr") if cidr else None
    return registry.create(name, cidr=subnet, prefix_len=prefix_len, description=description,
                           labels=dict(labels or {}))


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


def delete_tenant(registry: TenantRegistry, nomad, name: str, *, force: bool = False) -> Tenant:
    tenant = registry.load().get(name)
    if not force:
        live = tenant_allocations(nomad, tenant)
        if live:
            jobs = sorted({a["JobID"] for a in live})
            raise ConflictError(
                f"tenant {name!r} still has {len(live)} running allocation(s) of job(s) "
                f"{', '.join(jobs)}", hint="stop them first, or pass --force"
            )
    return registry.delete(name)

from ipaddress import IPv4Network

import pytest
from fakes import FakeKV

from weavenomad.errors import ConflictError, ValidationError
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.operations import (
    cluster_from_flags,
    create_tenant,
    delete_tenant,
    tenant_allocations,
)
from weavenomad.tenancy.registry import TenantRegistry


class FakeNomad:
    """Jobs with meta, and their allocations, as Nomad's list/read endpoints give them."""

    def __init__(self, jobs):
        self._jobs = jobs  # id -> (meta, [allocations])

    def jobs(self):
        return [{"ID": job_id, "Status": "running"} for job_id in self._jobs]

    def job(self, job_id):
        return {"ID": job_id, "Meta": self._jobs[job_id][0]}

    def job_allocations(self, job_id, index=None, wait=None):
        return 1, self._jobs[job_id][1]

    def nodes(self):  # (no node: nothing holds an address in a quarantined subnet)
        return []


def alloc(ident, status):
    return {"ID": ident, "JobID": "web", "TaskGroup": "g", "NodeID": "n", "ClientStatus": status}


@pytest.fixture
def registry():
    reg = TenantRegistry(FakeKV())
    create_tenant(reg, "acme", cluster=cluster_from_flags("10.32.0.0/16", "10.32.0.0/24"))
    return reg


def test_allocations_found_by_tenant_name_or_subnet(registry):
    acme = registry.load().get("acme")
    nomad = FakeNomad({
        "web": ({"weavenomad.tenant": "acme"}, [alloc("a1", "running"), alloc("a2", "complete")]),
        "raw": ({"weavenomad.subnet": "10.32.1.0/24"}, [alloc("a3", "pending")]),
        "other": ({"weavenomad.tenant": "globex"}, [alloc("a4", "running")]),
    })
    assert sorted(a["ID"] for a in tenant_allocations(nomad, acme)) == ["a1", "a3"]


def test_delete_refused_while_allocations_run_unless_forced(registry):
    nomad = FakeNomad({"web": ({"weavenomad.tenant": "acme"}, [alloc("a1", "running")])})
    with pytest.raises(ConflictError, match="still has 1 running allocation.*--force"):
        delete_tenant(registry, nomad, "acme")
    assert "acme" in registry.load().tenants
    delete_tenant(registry, nomad, "acme", force=True)
    assert "acme" not in registry.load().tenants


def test_delete_allowed_when_nothing_runs(registry):
    nomad = FakeNomad({"web": ({"weavenomad.tenant": "acme"}, [alloc("a1", "complete")])})
    assert delete_tenant(registry, nomad, "acme").name == "acme"


def test_cluster_flags_go_together():
    assert cluster_from_flags(None, None) is None
    with pytest.raises(ValidationError, match="go together"):
        cluster_from_flags("10.32.0.0/16", None)
    assert cluster_from_flags("10.32.0.0/16", "10.32.0.0/24") == Cluster(
        IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))

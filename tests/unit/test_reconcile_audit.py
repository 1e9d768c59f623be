"""Issue 15: the tenant audit covers every task, not only jobs carrying the tenant meta. A task
with an address in a tenant's subnet whose job is not that tenant's (no tenant meta, as a job
run around ``weavenomad run``, or another tenant's), or in a deleted tenant's quarantined
subnet, is a violation: masked, no twin, a problem (logged and counted by the daemon), and a
``status`` row; a deleted tenant's own tasks are advertised and shown as such."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Interface, IPv4Network

from reconcile_fakes import FakeDocker, FakeWeave, web_allocation
from reconcile_support import (
    job_allocation,
    nomad_service,
    observation_of,
    tcp_service,
    tenancy,
    weave_container,
)
from test_reconcile_faults import NoConsul
from test_reconcile_status import instances, nomad, twin

from weavenomad.errors import ValidationError
from weavenomad.reconcile import desired, status
from weavenomad.reconcile.consul import ConsulAgent, mask_definition
from weavenomad.reconcile.model import allocation_from_api
from weavenomad.reconcile.observe import AllocationCache, Observer
from weavenomad.reconcile.plan import REGISTER_MASK, REGISTER_TWIN, plan
from weavenomad.tenancy.model import Cluster, Quarantine, Registry, Tenant

ALLOC = "11111111-2222-3333-4444-555555555555"
A = "aaaaaaaa-0000-0000-0000-000000000001"
ACME = {"weavenomad.tenant": "acme", "weavenomad.subnet": "10.32.1.0/24"}
QUARANTINE = dataclasses.replace(tenancy(globex="10.32.2.0/24"),
                                 quarantined={IPv4Network("10.32.1.0/24"): "acme"})


def outcome(meta, *addresses, cidr="net:10.32.2.0/24", audit=None):
    raw = job_allocation(ALLOC, meta=meta, tasks=[{
        "Name": "web", "Driver": "docker", "Env": {"WEAVE_CIDR": cidr},
        "Services": [tcp_service("web", "8080")]}])
    service = nomad_service(ALLOC, "web", "web", "8080", port=8080)
    return plan(observation_of([raw], [service], [weave_container(ALLOC, "web", *addresses)],
                               tenancy=audit or tenancy(acme="10.32.1.0/24",
                                                        globex="10.32.2.0/24")))


def kinds(result):
    return [a.kind for a in result.actions]


def test_a_job_without_tenant_meta_in_a_tenants_subnet_is_a_violation():
    result = outcome(None, "10.32.2.7/24")
    assert kinds(result) == [REGISTER_MASK] and result.twins == 0
    notes = mask_definition(result.actions[0].mask)["Notes"]
    assert notes == ("weavenomad: tenant violation: 10.32.2.7/24 in tenant globex's subnet "
                     "10.32.2.0/24, which job web (no tenant) may not use; not advertised")
    (problem,) = result.problems
    assert problem.reason == desired.TENANT_VIOLATION and problem.tenant is None
    assert problem.detail == ("Weave address 10.32.2.7/24 lies in tenant globex's subnet "
                              "10.32.2.0/24, which job web (no tenant) may not use")


def test_any_address_of_a_task_counts_not_only_the_one_advertised():
    # acme's job with a second address in globex's subnet: acme's address would be chosen
    result = outcome(ACME, "10.32.1.4/24", "10.32.2.7/24")
    assert kinds(result) == [REGISTER_MASK]
    assert "tenant globex's subnet" in result.problems[0].detail
    assert result.problems[0].tenant == "acme"


def test_jobs_without_tenant_meta_elsewhere_are_advertised_as_before():
    for address in ("10.32.0.9/24", "10.32.9.9/24"):  # the default subnet, nobody's subnet
        assert kinds(outcome(None, address, cidr="net:default")) == [REGISTER_MASK,
                                                                      REGISTER_TWIN]


def test_a_quarantined_subnet_is_its_deleted_tenants_only():
    own = outcome(ACME, "10.32.1.4/24", cidr="net:10.32.1.0/24", audit=QUARANTINE)
    assert kinds(own) == [REGISTER_MASK, REGISTER_TWIN] and not own.problems
    intruder = outcome(None, "10.32.1.4/24", cidr="net:10.32.1.0/24", audit=QUARANTINE)
    assert kinds(intruder) == [REGISTER_MASK]
    assert "deleted tenant acme's quarantined subnet 10.32.1.0/24" in intruder.problems[0].detail


# -- status --------------------------------------------------------------------------------------


def alloc(alloc_id, meta, cidr, services=True):
    return allocation_from_api(job_allocation(alloc_id, meta=meta, tasks=[{
        "Name": "web", "Driver": "docker", "Env": {"WEAVE_CIDR": cidr},
        "Services": [tcp_service("web", "8080")] if services else None}]))


def test_status_shows_violations_and_a_deleted_tenants_tasks():
    bypass = alloc(A, None, "net:10.32.2.0/24")
    quiet = alloc("bbbbbbbb-0000-0000-0000-000000000002", None, "net:10.32.2.0/24",
                  services=False)
    leftover = alloc("cccccccc-0000-0000-0000-000000000003", ACME, "net:10.32.1.0/24")
    health = {"web": [nomad(A, True), nomad(leftover.id, True), twin(leftover.id, "10.32.1.3")]}
    found = status.rows([(bypass, "n1"), (quiet, "n1"), (leftover, "n2")], instances(health),
                        QUARANTINE)
    by_alloc = {r.alloc_id[:1]: r for r in found}
    assert by_alloc["a"].state == status.TENANT_VIOLATION
    assert (by_alloc["b"].service, by_alloc["b"].task) == ("-", "web")  # no service: listed
    assert by_alloc["b"].state == status.TENANT_VIOLATION
    assert by_alloc["c"].state == status.TENANT_DELETED and by_alloc["c"].subnet == "10.32.1.0/24"
    assert not any(r.correct for r in found)
    assert status.explanations(found) == [
        "tenant deleted: its tenant was deleted: the subnet stays quarantined, out of reach of "
        "new tenants, until this task stops",
        "tenant violation: its WEAVE_CIDR puts it into a subnet that is not its job's (another "
        "tenant's, or a quarantined one): not advertised, see the reconciler's log"]
    # --tenant globex lists what intrudes into globex's subnet; a deleted tenant's name works
    assert status.concerns(bypass, "globex", QUARANTINE)
    assert not status.concerns(leftover, "globex", QUARANTINE)

    class Deleted:
        def load(self):
            return Registry({"globex": Tenant("globex", IPv4Network("10.32.2.0/24"), "x")},
                            {IPv4Network("10.32.1.0/24"): Quarantine(
                                IPv4Network("10.32.1.0/24"), "acme", "x")})

    assert status.tenant_filter("acme", Deleted()) == "acme"


# -- the observer --------------------------------------------------------------------------------


class FlakyRegistry:
    """A registry whose tenants document turns corrupt (a hand edit) after the first read."""

    def __init__(self):
        self.reads = 0

    def cluster(self):
        return Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))

    def load(self):
        self.reads += 1
        if self.reads > 1:
            raise ValidationError("Consul key weavenomad/tenants: tenant 'acme': field "
                                  "'subnet' is missing")
        return Registry({"acme": Tenant("acme", IPv4Network("10.32.1.0/24"), "x")})


def test_a_registry_that_turns_corrupt_is_a_soft_error_and_the_audit_keeps_the_last_one():
    docker = FakeDocker()
    container = docker.start(A, "web")
    weave = FakeWeave()
    weave.addresses[container] = [IPv4Interface("10.32.1.1/24")]
    observer = Observer(agent=ConsulAgent(NoConsul()), docker=docker, weave=weave,
                        registry=FlakyRegistry())
    allocations = AllocationCache().parse([web_allocation(A)])
    first = observer.observe(allocations)
    assert first.tenancy.subnets == {"acme": IPv4Network("10.32.1.0/24")}
    assert observer.soft_errors == []
    second = observer.observe(allocations)
    assert second.tenancy == first.tenancy
    assert [e.one_line() for e in observer.soft_errors] == [
        "Consul key weavenomad/tenants: tenant 'acme': field 'subnet' is missing"]


def test_a_deleted_tenants_tasks_keep_to_its_quarantine_when_its_name_is_taken_again():
    again = dataclasses.replace(QUARANTINE, subnets={"acme": IPv4Network("10.32.5.0/24"),
                                                     "globex": IPv4Network("10.32.2.0/24")})
    leftover = outcome(ACME, "10.32.1.4/24", cidr="net:10.32.1.0/24", audit=again)
    assert kinds(leftover) == [REGISTER_MASK, REGISTER_TWIN] and not leftover.problems
    new_acme = {"weavenomad.tenant": "acme", "weavenomad.subnet": "10.32.5.0/24"}
    intruder = outcome(new_acme, "10.32.1.4/24", cidr="net:10.32.1.0/24", audit=again)
    assert kinds(intruder) == [REGISTER_MASK]
    assert "outside tenant 'acme''s subnet 10.32.5.0/24" in intruder.problems[0].detail

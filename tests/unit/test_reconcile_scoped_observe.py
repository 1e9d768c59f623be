"""Scoped observation (issue 16, "Fast"): a pass for the allocations of an event reads only
what they need (their services with their checks, one at a time from the agent; their
containers; Weave's list only for a container with no known address), whatever the number of
services on the node, and counts the other allocations' twins and masks from earlier passes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from reconcile_fakes import FakeDocker, FakeWeave, web_allocation

from weavenomad.reconcile.desired import nomad_service_ids, trespassed
from weavenomad.reconcile.model import Tenancy, allocation_from_api
from weavenomad.reconcile.observe import SCOPED_READS_MAX, Observer, OursCount
from weavenomad.reconcile.registrations import AgentCheck, AgentService, mask_id, twin_id


def alloc_id(index: int) -> str:
    return f"{index:08d}-0000-4000-8000-000000000000"


def sid(index: int) -> str:
    return f"_nomad-task-{alloc_id(index)}-web-web-8080"


class CountingAgent:
    """An agent's services and checks in memory, counting what the observer asks."""

    backend = "consul"

    def __init__(self):
        self.services_: dict[str, AgentService] = {}
        self.checks_: dict[str, AgentCheck] = {}
        self.calls: list[str] = []

    def services(self):
        self.calls.append("services")
        return dict(self.services_)

    def checks(self):
        self.calls.append("checks")
        return dict(self.checks_)

    def local_service(self, service_id):
        self.calls.append(service_id)
        service = self.services_.get(service_id)
        if service is None:
            return None, {}
        return service, {c.id: c for c in self.checks_.values() if c.service_id == service_id}


class CountingDocker(FakeDocker):
    def __init__(self):
        super().__init__()
        self.listed: list[str | None] = []

    def nomad_containers(self, alloc_id=None, all=True):
        self.listed.append(alloc_id)
        return super().nomad_containers(alloc_id, all)


class CountingWeave(FakeWeave):
    def __init__(self):
        super().__init__()
        self.reads = 0

    def owned(self):
        self.reads += 1
        return super().owned()


def node(services: int):
    """A node of ``services`` allocations of one service each, all twinned and masked."""
    agent, docker, weave = CountingAgent(), CountingDocker(), CountingWeave()
    allocations = {}
    for index in range(services):
        alloc = allocation_from_api(web_allocation(alloc_id(index)))
        allocations[alloc.id] = alloc
        container = docker.start(alloc.id, "web")
        weave.addresses[container] = [IPv4Interface(f"10.32.1.{index % 250 + 1}/24")]
        agent.services_[sid(index)] = AgentService(sid(index), "web", "172.17.0.5", 8080)
        agent.services_[twin_id(sid(index))] = AgentService(
            twin_id(sid(index)), "web", "10.32.1.1", 8080, meta={"weavenomad-managed": "true"})
        agent.checks_[mask_id(sid(index))] = AgentCheck(mask_id(sid(index)), sid(index),
                                                       status="critical")
    observer = Observer(agent=agent, docker=docker, weave=weave,
                        bridge=weave.bridge_addresses)
    return observer, allocations, agent, docker, weave


def test_an_event_reads_its_allocations_alone_however_many_services_the_node_has():
    for services in (10, 200):
        observer, allocations, agent, docker, weave = node(services)
        full = observer.observe(allocations)
        assert len(full.services) == 2 * services
        agent.calls.clear()
        docker.listed.clear()
        weave.reads = 0
        scope = frozenset({alloc_id(3)})
        seen = observer.observe(allocations, scope, {sid(3)})
        assert sorted(agent.calls) == sorted([sid(3), twin_id(sid(3))])
        assert docker.listed == [alloc_id(3)] and weave.reads == 0  # its address is known
        assert set(seen.services) == {sid(3), twin_id(sid(3))}
        assert set(seen.checks) == {mask_id(sid(3))}
        assert list(seen.containers) == [(alloc_id(3), "web")]
        assert seen.containers[(alloc_id(3), "web")].addresses  # from the cache
        assert (seen.twins_elsewhere, seen.masks_elsewhere) == (services - 1, services - 1)
        assert seen.exposed is None and seen.tenancy == full.tenancy


def test_a_new_container_asks_weave_and_keeps_the_others_cached_addresses():
    observer, allocations, agent, docker, weave = node(5)
    observer.observe(allocations)
    new = allocation_from_api(web_allocation(alloc_id(9)))
    allocations = {**allocations, new.id: new}
    container = docker.start(new.id, "web")
    weave.addresses[container] = [IPv4Interface("10.32.1.99/24")]
    weave.reads = 0
    seen = observer.observe(allocations, frozenset({new.id}))
    assert weave.reads == 1
    assert seen.containers[(new.id, "web")].addresses == (IPv4Interface("10.32.1.99/24"),)
    assert agent.calls[-2:] == sorted([sid(9), twin_id(sid(9))])  # named by its job
    weave.reads = 0
    again = observer.observe(allocations, frozenset({alloc_id(1)}))
    assert weave.reads == 0 and again.containers[(alloc_id(1), "web")].addresses


def test_the_first_observation_and_a_large_scope_read_the_whole_node():
    observer, allocations, agent, _, _ = node(SCOPED_READS_MAX + 2)
    observer.observe(allocations, frozenset({alloc_id(0)}))
    assert sorted(agent.calls) == ["checks", "services"]
    agent.calls.clear()
    many = frozenset(alloc_id(i) for i in range(SCOPED_READS_MAX + 1))
    seen = observer.observe(allocations, many)
    assert sorted(agent.calls) == ["checks", "services"]
    assert len(seen.services) == 2 * (SCOPED_READS_MAX + 2)


def test_counts_elsewhere_follow_what_scoped_observations_saw():
    count = OursCount()
    twin_a, twin_b = twin_id(sid(1)), twin_id(sid(2))
    services = {twin_a: AgentService(twin_a, "web", meta={"weavenomad-managed": "true"}),
                twin_b: AgentService(twin_b, "web", meta={"weavenomad-managed": "true"})}
    checks = {mask_id(sid(1)): AgentCheck(mask_id(sid(1)), sid(1))}
    count.replace(services, checks)
    # allocation 2's twin went: what is elsewhere of allocation 1 stays counted
    assert count.update(frozenset({alloc_id(2)}), {}, {}) == (1, 1)
    assert count.update(frozenset({alloc_id(1)}), {}, {}) == (0, 0)
    assert count.update(frozenset({alloc_id(2)}), {twin_b: services[twin_b]}, {}) == (0, 0)
    assert count.update(frozenset({alloc_id(1)}), {}, {}) == (1, 0)


def test_the_ids_a_job_names_for_its_services():
    alloc = allocation_from_api(web_allocation(alloc_id(4), name="api", port="9090"))
    assert nomad_service_ids(alloc) == {f"_nomad-task-{alloc_id(4)}-web-api-9090"}


def test_an_address_trespasses_like_its_host_network():
    alloc = allocation_from_api(web_allocation(alloc_id(1)))
    tenancy = Tenancy({"globex": IPv4Network("10.32.2.0/24")})
    assert trespassed(IPv4Address("10.32.2.7"), alloc, tenancy) == \
        trespassed(IPv4Network("10.32.2.7/32"), alloc, tenancy) == \
        "tenant globex's subnet 10.32.2.0/24"
    assert trespassed(IPv4Address("10.32.1.7"), alloc, tenancy) is None

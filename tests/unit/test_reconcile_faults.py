"""What the fault suite (tests/faults) found, pinned down without a lab.

* Weave may move a running container: relaunched after losing its IPAM (``weave reset``), it
  re-attaches running containers with new addresses, and no Docker, Nomad or Consul event says
  so. The reconciler's cache of addresses must give way to Weave's answer, and its Weave
  watcher must start a pass soon, long before the resync.
* A backend that fails, recovers and fails again is logged again by its watcher (it was logged
  once per daemon life)."""

from __future__ import annotations

import dataclasses
import logging
import time
from ipaddress import IPv4Interface, IPv4Network

from reconcile_fakes import FakeDocker, FakeWeave, web_allocation
from test_reconcile_daemon import FAST, A, B, twin, wait_until, world  # noqa: F401 - fixture

from weavenomad.clients.weave import EXPOSE_IDENT
from weavenomad.reconcile.consul import ConsulAgent
from weavenomad.reconcile.observe import AllocationCache, Observer
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.registry import TenantRegistry

QUICK = dataclasses.replace(FAST, resync=300.0, weave_poll=0.05)


class NoConsul:
    def agent_services(self):
        return {}

    def agent_checks(self):
        return {}


def observer_with(container_address: str) -> tuple[Observer, FakeDocker, FakeWeave, str, dict]:
    docker, weave = FakeDocker(), FakeWeave()
    container = docker.start(A, "web")
    weave.addresses[container] = [IPv4Interface(container_address)]
    allocations = AllocationCache().parse([web_allocation(A)])
    observer = Observer(agent=ConsulAgent(NoConsul()), docker=docker, weave=weave,
                        bridge=weave.bridge_addresses)
    return observer, docker, weave, container, allocations


def addresses(observation, alloc_id: str = A) -> tuple:
    return observation.containers[(alloc_id, "web")].addresses


def test_weaves_answer_overrules_the_cached_address():
    observer, _, weave, container, allocations = observer_with("10.32.1.1/24")
    assert addresses(observer.observe(allocations)) == (IPv4Interface("10.32.1.1/24"),)
    assert not observer.moved(weave.owned())
    weave.addresses[container] = [IPv4Interface("10.32.1.7/24")]  # re-attached elsewhere
    assert observer.moved(weave.owned())
    assert addresses(observer.observe(allocations)) == (IPv4Interface("10.32.1.7/24"),)
    assert not observer.moved(weave.owned())


def test_while_weave_is_down_the_cache_holds_and_an_address_weave_dropped_is_stale():
    observer, _, weave, container, allocations = observer_with("10.32.1.1/24")
    observer.observe(allocations)
    weave.down = True
    assert addresses(observer.observe(allocations)) == (IPv4Interface("10.32.1.1/24"),)
    weave.down = False
    del weave.addresses[container]  # Weave lost its IPAM and has not re-attached it yet
    assert observer.moved(weave.owned())
    assert addresses(observer.observe(allocations)) is None  # no longer known, not the old one


def test_a_lost_exposure_counts_as_a_move():
    observer, _, weave, _, allocations = observer_with("10.32.1.1/24")
    observer.observe(allocations)
    assert not observer.moved(weave.owned())
    del weave.addresses[EXPOSE_IDENT]
    assert observer.moved(weave.owned())


def test_a_re_attached_container_moves_its_twin_within_a_poll(world):  # noqa: F811
    container = world.run_allocation(A)
    world.run_allocation(B, "10.32.1.2/24")
    world.start(QUICK)
    wait_until("the twins", lambda: {twin(A), twin(B)} <= set(world.services()))
    assert world.services()[twin(A)]["Address"] == "10.32.1.1"
    moved = time.monotonic()
    world.weave.addresses[container] = [IPv4Interface("10.32.1.9/24")]
    wait_until("the twin at the new address",
               lambda: world.services()[twin(A)]["Address"] == "10.32.1.9", timeout=3)
    assert time.monotonic() - moved < 2
    assert world.services()[twin(B)]["Address"] == "10.32.1.2"


def test_weave_back_after_a_reset_gets_the_tenant_subnets_exposed_again(world):  # noqa: F811
    registry = TenantRegistry(world.consul, "test-reconcile/")
    registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    registry.create("acme", cidr=IPv4Network("10.32.1.0/24"))
    world.run_allocation(A)
    world.start(QUICK)
    wait_until("the exposure", lambda: world.weave.exposed_calls, timeout=3)
    world.weave.down = True  # weave reset: the exposures go with the IPAM
    world.weave.addresses = {}
    world.weave.bridge = []  # and the bridge with its addresses
    time.sleep(0.3)
    world.weave.down = False  # weave launch
    acme = IPv4Network("10.32.1.0/24")
    wait_until("the exposure again", lambda: world.weave.exposed_calls.count(acme) == 2,
               timeout=3)
    # and the cluster's default subnet, which bootstrap had exposed before the reset
    assert set(world.weave.exposed_calls) == {acme, IPv4Network("10.32.0.0/24")}


def test_a_watcher_that_recovered_logs_the_next_outage_again(world, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="weavenomad.reconciler")
    world.run_allocation(A)
    world.start(QUICK)
    wait_until("the twin", lambda: twin(A) in world.services())

    def outages_logged() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("watching weave:"))

    for outage in (1, 2):
        world.weave.down = True
        wait_until(f"outage {outage} in the log", lambda n=outage: outages_logged() == n,
                   timeout=3)
        world.weave.down = False
        time.sleep(1.0)  # the watcher reads again (its backoff is at most 0.5 s here)
    assert outages_logged() == 2


def test_a_reboot_that_left_the_bridge_empty_is_exposed_again_with_the_same_addresses(world):  # noqa: F811
    """Recorded (day-two/1a): after a reboot Weave's IPAM still owns the host's addresses but
    its new bridge has none; the reconciler puts them back (the same ones, from the IPAM)."""
    registry = TenantRegistry(world.consul, "test-reconcile/")
    registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    registry.create("acme", cidr=IPv4Network("10.32.1.0/24"))
    world.run_allocation(A)
    world.start(QUICK)
    wait_until("the exposure", lambda: len(world.weave.bridge) == 2, timeout=3)
    before = sorted(world.weave.bridge)
    world.weave.bridge = []  # the reboot: a new bridge, the IPAM kept
    wait_until("the bridge exposed again", lambda: sorted(world.weave.bridge) == before,
               timeout=5)
    assert sorted(world.weave.addresses["weave:expose"]) == before


def weave_restart(world, alloc_id: str, delay: float) -> None:  # noqa: F811
    """What Nomad does when a Weave restart breaks its wait on the task (day-two/1c): the
    allocation is pending, its task 'Restarting' in ``delay`` s, its service deregistered."""
    now = time.time_ns()
    alloc = web_allocation(alloc_id, client_status="pending")
    alloc["TaskStates"] = {"web": {"State": "pending", "Events": [
        {"Type": "Terminated", "Time": now, "Message": "unexpected EOF"},
        {"Type": "Restarting", "Time": now, "StartDelay": int(delay * 1e9)}]}}
    world.nomad.set_allocations([alloc])
    world.agent.ok("PUT", f"/v1/agent/service/deregister/_nomad-task-{alloc_id}-web-web-8080")


def test_a_weave_restart_costs_no_answer_and_a_real_stop_still_ends_the_twin(world):  # noqa: F811
    from reconcile_fakes import nomad_registration

    container = world.run_allocation(A)
    world.start(QUICK)
    wait_until("the twin", lambda: world.passing() == [(twin(A), "10.32.1.1", 8080)])
    weave_restart(world, A, delay=1.0)
    for _ in range(15):  # Nomad's restart delay and then some: the twin keeps answering
        assert world.passing() == [(twin(A), "10.32.1.1", 8080)]
        time.sleep(0.1)
    # Nomad takes the container over again and registers its service: masked at once
    world.nomad.set_allocations([web_allocation(A)])
    world.agent.ok("PUT", "/v1/agent/service/register", nomad_registration(A))
    wait_until("the mask", lambda: f"weavenomad-mask-{A}-web-web-8080" in world.checks())
    assert world.passing() == [(twin(A), "10.32.1.1", 8080)]
    # another Weave restart, but the container dies meanwhile: the twin goes at once
    weave_restart(world, A, delay=30.0)
    time.sleep(0.3)
    assert twin(A) in world.services()
    world.docker.stop(container)
    wait_until("the twin gone", lambda: twin(A) not in world.services(), timeout=2)


def test_a_kept_twin_goes_when_nomad_never_takes_the_container_over(world):  # noqa: F811
    world.run_allocation(A)
    settings = dataclasses.replace(QUICK, keep_twin_margin=0.5)
    world.start(settings)
    wait_until("the twin", lambda: twin(A) in world.services())
    weave_restart(world, A, delay=0.5)
    time.sleep(0.4)
    assert twin(A) in world.services()
    # nothing wakes the daemon: its own look at the bound removes the twin
    wait_until("the twin gone after its bound", lambda: twin(A) not in world.services(),
               timeout=3)


def test_a_corrupt_ipam_answer_is_a_soft_error_and_nothing_is_judged_from_it():
    from weavenomad.errors import BackendError

    observer, _, weave, _, allocations = observer_with("10.32.1.1/24")

    def corrupt():
        raise BackendError("Weave answered GET /ip with an unreadable IPAM list: owned is str, "
                           "not a list", backend="weave")

    weave.owned = corrupt
    observation = observer.observe(allocations)
    assert observation.exposed is None  # no exposure is planned on a guess
    assert [e.backend for e in observer.soft_errors] == ["weave"]
    assert "owned is str" in observer.soft_errors[0].one_line()

"""Event passes plan only the allocations an event names (issue 16, "Fast"): the same actions
for them as a full plan, nothing for the others, the node's counts kept, and work that does not
grow with the services on the node. And how the daemon finds the allocations an event names."""

from __future__ import annotations

from dataclasses import replace

from reconcile_fakes import FakeDocker, FakeNomad, FakeWeave, web_allocation
from reconcile_support import (
    ALLOC_A,
    ALLOC_B,
    MASK_A,
    MASK_B,
    SID_B,
    TWIN_A,
    TWIN_B,
    nomad_service,
    observation_of,
    recorded_observation,
    weave_container,
    with_checks,
    with_services,
)
from test_reconcile_plan import converge, kinds

from weavenomad.reconcile import plan as planner
from weavenomad.reconcile.daemon import Reconciler
from weavenomad.reconcile.desired import Problem
from weavenomad.reconcile.model import NOMAD_ALLOC_LABEL
from weavenomad.reconcile.observe import AllocationCache
from weavenomad.reconcile.plan import (
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    REMOVE_TWIN,
    plan,
)
from weavenomad.reconcile.registrations import alloc_behind


def test_the_allocation_behind_a_nomad_service_a_twin_and_a_mask():
    assert alloc_behind(f"_nomad-task-{ALLOC_A}-httpbackend-httpbackend-8081") == ALLOC_A
    assert alloc_behind(TWIN_B) == ALLOC_B and alloc_behind(MASK_A) == ALLOC_A
    assert alloc_behind("_nomad-client-abc") is None and alloc_behind("consul") is None
    assert alloc_behind("weavenomad-short-id") is None


def test_a_scoped_plan_does_for_its_allocation_what_the_full_plan_does():
    obs = recorded_observation()
    one = converge(obs, scope=frozenset({ALLOC_A}))
    assert kinds(plan(obs, scope=frozenset({ALLOC_A}))) == [(REGISTER_MASK, MASK_A),
                                                            (REGISTER_TWIN, TWIN_A)]
    # B was out of scope: the full plan finds exactly B's pair still to do
    assert kinds(plan(one)) == [(REGISTER_MASK, MASK_B), (REGISTER_TWIN, TWIN_B)]
    assert plan(one, scope=frozenset({ALLOC_A})).actions == ()
    assert plan(one, scope=frozenset({ALLOC_A})).twins == 1 == plan(one).twins - 1


def test_a_scoped_plan_removes_only_its_allocations_leftovers_and_counts_the_node():
    done = converge(recorded_observation())
    stopped = {key: replace(c, running=c.alloc_id != ALLOC_B)
               for key, c in done.containers.items()}
    gone = replace(with_services(done, drop=(SID_B,)), containers=stopped)
    scoped = plan(gone, scope=frozenset({ALLOC_B}))
    assert kinds(scoped) == [(REMOVE_MASK, MASK_B), (REMOVE_TWIN, TWIN_B)]
    # the node's counts, as the full plan gives them: A's pair, counted as the agent holds it
    assert (scoped.twins, scoped.masks) == (1, 1) == (plan(gone).twins, plan(gone).masks)
    assert plan(gone, scope=frozenset({ALLOC_A})).actions == ()
    # a mask of A that went missing is not B's business
    assert plan(with_checks(done, drop=(MASK_A,)), scope=frozenset({ALLOC_B})).actions == ()


def test_kept_orphans_out_of_scope_are_carried_over():
    done = converge(recorded_observation())
    gone = with_services(done, drop=(SID_B,))
    kept = plan(gone, scope=frozenset({ALLOC_A}), orphans={TWIN_B: 5.0})
    assert kept.kept == {TWIN_B: 5.0} and kept.actions == ()


def big_node(allocations: int):
    """``allocations`` allocations of one service each, converged but for the last one."""
    raws, services, containers = [], [], []
    for index in range(allocations):
        alloc_id = f"{index:08d}-0000-0000-0000-000000000000"
        raws.append(web_allocation(alloc_id))
        services.append(nomad_service(alloc_id, "web", "web", "8080", port=8080))
        address = f"10.32.{index // 250}.{index % 250 + 1}/16"
        containers.append(weave_container(alloc_id, "web", address))
    obs = observation_of(raws, services, containers)
    last = raws[-1]["ID"]
    return converge(obs, scope=frozenset(a["ID"] for a in raws[:-1])), last


def test_an_event_plan_does_not_grow_with_the_services_on_the_node(monkeypatch):
    calls = []
    real = planner.desire
    monkeypatch.setattr(planner, "desire", lambda service, *a: calls.append(service.id) or
                        real(service, *a))
    obs, new = big_node(300)
    calls.clear()
    scoped = plan(obs, scope=frozenset({new}))
    assert [a.kind for a in scoped.actions] == [REGISTER_MASK, REGISTER_TWIN]
    assert len(calls) == 1 and scoped.twins == 300
    calls.clear()
    assert [a.kind for a in plan(obs).actions] == [REGISTER_MASK, REGISTER_TWIN]
    assert len(calls) == 300  # the resync's full plan looks at everything


# -- what an event names -------------------------------------------------------------------------


def test_the_allocation_cache_says_which_allocations_came_changed_or_went():
    cache = AllocationCache()
    a, b = web_allocation(ALLOC_A), web_allocation(ALLOC_B)
    assert cache.parse_changes([a, b])[1] == {ALLOC_A, ALLOC_B}
    assert cache.parse_changes([a, b])[1] == set()
    assert cache.parse_changes([a, {**b, "ModifyIndex": 11}])[1] == {ALLOC_B}
    parsed, changed = cache.parse_changes([a])
    assert changed == {ALLOC_B} and set(parsed) == {ALLOC_A}


class ServicesAgent:
    backend = "consul"

    def watched_services(self, answer):
        return answer["Services"]


def a_reconciler() -> Reconciler:
    return Reconciler(nomad=FakeNomad(), consul=None, docker=FakeDocker(), weave=FakeWeave(),
                      agent=ServicesAgent())


def test_events_name_their_allocations_and_the_rest_look_at_the_whole_node():
    r = a_reconciler()
    nomads = {f"_nomad-task-{ALLOC_A}-web-web-8080": {"Port": 1}}
    r._services_changed({"Services": nomads})  # the first answer: nothing to compare with
    assert r._take_triggers() == ({"consul"}, None)
    r._services_changed({"Services": {**nomads, f"_nomad-task-{ALLOC_B}-web-web-8080": {}}})
    r._services_changed({"Services": {**nomads, f"_nomad-task-{ALLOC_B}-web-web-8080": {},
                                      "consul": {}}})  # not ours, nor Nomad's task's
    assert r._take_triggers() == ({"consul"}, {ALLOC_B})
    r._container_event({"Action": "start", "Actor": {"ID": "c1", "Attributes": {
        NOMAD_ALLOC_LABEL: ALLOC_A}}})
    assert r._take_triggers() == ({"docker"}, {ALLOC_A})
    r._allocations_changed([web_allocation(ALLOC_A)])  # Nomad's first answer
    assert r._take_triggers() == ({"nomad"}, None)
    r._allocations_changed([web_allocation(ALLOC_A), web_allocation(ALLOC_B)])
    r._container_event({"Action": "die", "Actor": {"ID": "c2"}})  # no label: anything
    assert r._take_triggers() == ({"nomad", "docker"}, None)


def test_the_service_watch_gives_each_allocation_its_service_ids():
    r = a_reconciler()
    sid_a, sid_b = f"_nomad-task-{ALLOC_A}-web-web-8080", f"_nomad-task-{ALLOC_B}-web-web-8080"
    r._services_changed({"Services": {sid_a: {}, "consul": {}}})
    r._services_changed({"Services": {sid_a: {}, sid_b: {}, TWIN_B: {}}})
    assert r._service_ids(frozenset({ALLOC_B})) == {sid_b, TWIN_B}
    assert r._service_ids(frozenset({ALLOC_A, ALLOC_B})) == {sid_a, sid_b, TWIN_B}
    r._services_changed({"Services": {sid_b: {}}})
    assert r._service_ids(frozenset({ALLOC_A})) == set()


def test_a_scoped_pass_resolves_only_its_own_allocations_problems(caplog):
    r = a_reconciler()
    sid_a, sid_b = f"_nomad-task-{ALLOC_A}-web-web-8080", f"_nomad-task-{ALLOC_B}-web-web-8080"
    problems = [Problem(sid, "no-weave-address", f"{sid} has none") for sid in (sid_a, sid_b)]
    r._problems(problems)
    caplog.clear()
    with caplog.at_level("INFO"):
        r._problems([], frozenset({ALLOC_B}))  # B's is gone; A's was not looked at
    assert [m for m in caplog.messages if m.startswith("resolved")] == [
        f"resolved: {sid_b} has none"]
    assert (sid_a, "no-weave-address") in r._reported

"""Applying a plan: kinds in the plan's order, the actions of one kind several at a time, a
mask never without its twin, and an agent that stops answering ends the pass."""

from __future__ import annotations

import threading

import pytest

from weavenomad.errors import BackendNotFound, BackendServerError, BackendUnavailable
from weavenomad.reconcile.apply import apply as apply_to
from weavenomad.reconcile.consul import ConsulAgent
from weavenomad.reconcile.plan import (
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    REMOVE_TWIN,
    Action,
    Plan,
)
from weavenomad.reconcile.registrations import Mask, Twin


class Agent:
    """Records every call in order; ``fail`` maps an ID to the error its call raises."""

    def __init__(self, fail: dict | None = None, barrier: threading.Barrier | None = None,
                 delay: float = 0.0):
        self.fail = fail or {}
        self.barrier = barrier
        self.delay = delay
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _call(self, kind: str, ident: str) -> None:
        if self.barrier is not None and kind == REGISTER_TWIN:
            self.barrier.wait()  # only passes when the twins are registered side by side
        with self.lock:
            self.calls.append((kind, ident))
        if ident in self.fail:
            raise self.fail[ident]
        threading.Event().wait(self.delay)

    def service_register(self, body, replace_existing_checks=False):
        self._call(REGISTER_TWIN, body["ID"])

    def check_register(self, body):
        self._call(REGISTER_MASK, body["ID"])

    def check_deregister(self, check_id):
        self._call(REMOVE_MASK, check_id)

    def service_deregister(self, service_id):
        self._call(REMOVE_TWIN, service_id)


def apply(agent: Agent, plan: Plan, **kwargs):
    """Apply through the Consul module, whose requests the agent records."""
    return apply_to(ConsulAgent(agent), plan, **kwargs)


def twin(ident: str) -> Action:
    return Action(REGISTER_TWIN, ident, twin=Twin(ident, "_nomad-task-" + ident, "web",
                                                  "10.32.1.1", 8080))


def mask(ident: str, requires: str) -> Action:
    return Action(REGISTER_MASK, ident, mask=Mask(ident, "_nomad-task-" + requires, "masked"),
                  requires=requires)


def plan_of(*actions: Action) -> Plan:
    return Plan(actions=actions)


def test_kinds_run_in_the_plans_order_and_a_kinds_actions_side_by_side():
    agent = Agent(barrier=threading.Barrier(3, timeout=10))
    plan = plan_of(twin("t1"), twin("t2"), twin("t3"), mask("m1", "t1"), mask("m2", "t2"),
                   Action(REMOVE_MASK, "old-mask"), Action(REMOVE_TWIN, "old-twin"))
    result = apply(agent, plan)
    assert result.complete and [a.id for a in result.done] == [a.id for a in plan.actions]
    kinds = [kind for kind, _ in agent.calls]
    assert kinds == [REGISTER_TWIN] * 3 + [REGISTER_MASK] * 2 + [REMOVE_MASK, REMOVE_TWIN]


def test_a_failed_twin_keeps_its_mask_back_and_the_others_go_ahead():
    refused = BackendServerError("Consul failed", backend="consul", status=500, body="boom")
    agent = Agent(fail={"t1": refused})
    result = apply(agent, plan_of(twin("t1"), twin("t2"), mask("m1", "t1"), mask("m2", "t2")))
    assert [(a.id, e) for a, e in result.failed] == [("t1", refused)]
    assert [a.id for a in result.skipped] == ["m1"]
    assert [a.id for a in result.done] == ["t2", "m2"]
    assert ("register-mask", "m1") not in agent.calls


def test_an_agent_that_stops_answering_ends_the_pass():
    down = BackendUnavailable("Consul does not answer", backend="consul")
    agent = Agent(fail={"t1": down})
    plan = plan_of(twin("t1"), mask("m1", "t1"), Action(REMOVE_TWIN, "old"))
    result = apply(agent, plan, workers=1)
    assert result.aborted is down and not result.complete
    assert [a.id for a in result.skipped] == ["t1", "m1", "old"]
    assert agent.calls == [(REGISTER_TWIN, "t1")]


def test_after_the_agent_went_away_the_rest_of_a_kind_is_not_tried():
    down = BackendUnavailable("Consul does not answer", backend="consul")
    agent = Agent(fail={"t1": down}, delay=0.02)  # t1 fails long before the others are done
    result = apply(agent, plan_of(*(twin(f"t{i}") for i in range(1, 40))), workers=2)
    assert result.aborted is down
    assert len(agent.calls) < 39 and len(result.done) + len(result.skipped) == 39


@pytest.mark.parametrize("workers", [1, 8])
def test_removing_what_is_gone_already_is_done_and_progress_is_reported(workers):
    gone = BackendNotFound("no such service", backend="consul", status=404)
    agent = Agent(fail={"old-twin": gone})
    ticks = []
    result = apply(agent, plan_of(Action(REMOVE_MASK, "old-mask"), Action(REMOVE_TWIN, "old-twin"),
                                  Action(REMOVE_TWIN, "older-twin")),
                   progress=lambda: ticks.append(threading.current_thread()), workers=workers)
    assert result.complete and len(result.done) == 3
    assert ticks == [threading.current_thread()] * 3


def test_a_mask_whose_nomad_service_vanished_meanwhile_is_no_failure():
    vanished = BackendServerError("Consul failed", backend="consul", status=500,
                                  body='ServiceID "_nomad-task-x" does not exist')
    agent = Agent(fail={"m1": vanished})
    result = apply(agent, plan_of(twin("t1"), mask("m1", "t1")))
    assert [a.id for a in result.vanished] == ["m1"] and result.complete

"""Carry out a :class:`~weavenomad.reconcile.plan.Plan` against the local agent (a
:class:`~weavenomad.reconcile.registrations.ServiceAgent`, Consul's in
:mod:`weavenomad.reconcile.consul`).

Each action is one agent call, so nothing is ever half-written: a twin and its checks go in one
registration. A twin goes in only once the mask that hides Nomad's instance is in place (its
``requires``): a twin whose mask was refused is skipped (Nomad's Docker-bridge instance would
stand beside it), one whose Nomad service vanished meanwhile has nothing to stand in for. When a
twin is refused after its new mask went in, the mask comes off again (``undone``), so the
service is never left without an instance. Just before the twins are registered, their checks
are probed once (:mod:`.probe`) and registered with the verdicts as their starting status. A
refused action (403, 400) is recorded and the rest go on; when the agent stops answering, the
rest are left for the next pass. A mask whose Nomad service went away
meanwhile has nothing to hide: that is no failure. Exposing a subnet is a call to the local
Weave's API; when Weave fails, the agent's actions still go ahead.

The plan's kinds run one after another in its order (masks before the twins that need them,
masks removed before twins); the actions of one kind are independent of each other and go to
the agent ``WORKERS`` at a time, as a churn of 50 services is 100 agent calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network

from weavenomad.errors import BackendNotFound, BackendUnavailable, WeavenomadError
from weavenomad.reconcile.plan import (
    EXPOSE_SUBNET,
    MISSING,
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    REMOVE_TWIN,
    SET_TTL,
    Action,
    Plan,
)
from weavenomad.reconcile.probe import Prober, with_statuses
from weavenomad.reconcile.registrations import CRITICAL, ServiceAgent


@dataclass
class ApplyResult:
    done: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, WeavenomadError]] = field(default_factory=list)
    skipped: list[Action] = field(default_factory=list)
    #: masks whose Nomad service went away between observing and applying: nothing to hide
    vanished: list[Action] = field(default_factory=list)
    #: masks taken off again because their twin was refused
    undone: list[Action] = field(default_factory=list)
    #: set when the agent stopped answering; the remaining actions were not tried
    aborted: WeavenomadError | None = None

    @property
    def complete(self) -> bool:
        return not (self.failed or self.skipped or self.aborted)


#: agent calls in flight at once within one kind of action
WORKERS = 8
#: an action left alone because the agent stopped answering meanwhile
_NOT_TRIED = object()
#: a mask not registered because its Nomad service is gone
_VANISHED = object()


def _call(agent: ServiceAgent, action: Action) -> object:
    """None when done, or :data:`_VANISHED`."""
    if action.kind == REGISTER_TWIN:
        agent.register_twin(action.twin)
    elif action.kind == REGISTER_MASK:
        if not agent.register_mask(action.mask):
            return _VANISHED
    elif action.kind == SET_TTL:
        agent.set_status(action.id, action.status or CRITICAL)
    elif action.kind == REMOVE_MASK:
        agent.remove_mask(action.id)
    elif action.kind == REMOVE_TWIN:
        agent.remove_twin(action.id)
    else:  # pragma: no cover - plan only makes the kinds above
        raise ValueError(f"unknown action kind {action.kind!r}")
    return None


def apply(agent: ServiceAgent, plan: Plan, progress: Callable[[], None] | None = None, *,
          weave=None, workers: int = WORKERS, prober: Prober | None = None) -> ApplyResult:
    result = ApplyResult()
    failed: set[str] = set()
    vanished: set[str] = set()
    actions = plan.actions
    start = 0
    while start < len(actions):
        end = start
        while end < len(actions) and actions[end].kind == actions[start].kind:
            end += 1
        group, start = actions[start:end], end
        if group[0].kind == EXPOSE_SUBNET:
            for action in group:
                _expose(weave, action, result)
            continue
        runnable = []
        for action in group:
            if action.requires is not None and action.requires in vanished:
                result.vanished.append(action)
            elif action.requires is not None and action.requires in failed:
                result.skipped.append(action)
            else:
                runnable.append(action)
        if group[0].kind == REGISTER_TWIN and prober is not None:
            runnable = _probed(prober, runnable)
        for action, outcome in _run_all(agent, runnable, workers, progress):
            _record(action, outcome, result, failed, vanished)
        if group[0].kind == REGISTER_TWIN:
            _undo_masks(agent, plan, failed, result)
        if result.aborted is not None:
            result.skipped.extend(actions[end:])
            return result
    return result


def _probed(prober: Prober, actions: Sequence[Action]) -> list[Action]:
    """The twins' registrations with their checks' starting status from one probe each."""
    statuses = prober.statuses(check for action in actions for check in action.twin.checks)
    return [replace(action, twin=with_statuses(action.twin, statuses)) for action in actions]


def _undo_masks(agent: ServiceAgent, plan: Plan, failed: set[str],
                result: ApplyResult) -> None:
    """Take off the masks this plan added for twins that were then refused: Nomad's instance
    is better than none (the next pass tries both again)."""
    added = {a.id for a in result.done if a.kind == REGISTER_MASK and a.why == MISSING}
    for action in plan.actions:
        if action.kind == REGISTER_TWIN and action.id in failed and action.requires in added:
            try:
                agent.remove_mask(action.requires)
            except WeavenomadError as exc:
                result.failed.append((Action(REMOVE_MASK, action.requires,
                                             f"its twin {action.id} was refused"), exc))
            else:
                result.undone.append(Action(REMOVE_MASK, action.requires,
                                            f"its twin {action.id} was refused"))


def _record(action: Action, outcome: object, result: ApplyResult, failed: set[str],
            vanished: set[str]) -> None:
    if outcome is None:
        result.done.append(action)
    elif outcome is _NOT_TRIED:
        result.skipped.append(action)
    elif outcome is _VANISHED:
        result.vanished.append(action)
        vanished.add(action.id)
    elif isinstance(outcome, BackendNotFound):
        if action.kind in (REMOVE_MASK, REMOVE_TWIN):
            result.done.append(action)  # gone already: that is what we wanted
        else:
            result.failed.append((action, _not_found(action)))
            failed.add(action.id)
    elif isinstance(outcome, BackendUnavailable):
        result.aborted = result.aborted or outcome
        result.skipped.append(action)
    else:
        result.failed.append((action, outcome))
        failed.add(action.id)


def _run_all(agent: ServiceAgent, actions: Sequence[Action], workers: int,
             progress: Callable[[], None] | None) -> list[tuple[Action, object]]:
    """Each action's outcome, in the actions' order: None (done), _VANISHED, the error, or
    _NOT_TRIED (the agent stopped answering first). ``progress`` is called here, in the
    caller's thread, after each action."""
    stopped = threading.Event()

    def attempt(action: Action) -> object:
        if stopped.is_set():
            return _NOT_TRIED
        try:
            return _call(agent, action)
        except WeavenomadError as exc:
            if isinstance(exc, BackendUnavailable):
                stopped.set()
            return exc

    if len(actions) <= 1 or workers <= 1:
        outcomes = []
        for action in actions:
            outcomes.append((action, attempt(action)))
            if progress is not None:
                progress()
        return outcomes
    with ThreadPoolExecutor(max_workers=min(workers, len(actions)),
                            thread_name_prefix="apply") as pool:
        futures = [pool.submit(attempt, action) for action in actions]
        for _ in as_completed(futures):
            if progress is not None:
                progress()
    return [(action, future.result()) for action, future in zip(actions, futures, strict=True)]


def _expose(weave, action: Action, result: ApplyResult) -> None:
    if weave is None:
        result.skipped.append(action)
        return
    try:
        weave.refuse_while_waiting()  # not a request Weave would hold for as long as that
        weave.expose_subnet(IPv4Network(action.id))
    except WeavenomadError as exc:
        result.failed.append((action, exc))
    else:
        result.done.append(action)


def _not_found(action: Action) -> WeavenomadError:
    return BackendNotFound(f"Consul no longer knows {action.id} ({action.kind})",
                           backend="consul")

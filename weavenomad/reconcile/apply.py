"""Carry out a :class:`~weavenomad.reconcile.plan.Plan` against the local Consul agent.

Each action is one agent call, so nothing is ever half-written: a twin and its checks go in one
``agent/service/register`` with ``replace-existing-checks``. An action whose twin failed is
skipped (its mask would hide Nomad's instance with nothing in its place). A refused action (403,
400) is recorded and the rest go on; when Consul stops answering, the rest are left for the
next pass. Exposing a subnet is a call to the local Weave's API; when Weave fails, the Consul
actions still go ahead.

The plan's kinds run one after another in its order (twins before the masks that need them,
masks removed before twins); the actions of one kind are independent of each other and go to
the agent ``WORKERS`` at a time, as a churn of 50 services is 100 agent calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from weavenomad.errors import BackendNotFound, BackendUnavailable, WeavenomadError
from weavenomad.reconcile.plan import (
    EXPOSE_SUBNET,
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    REMOVE_TWIN,
    SET_TTL,
    Action,
    Plan,
)


@dataclass
class ApplyResult:
    done: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, WeavenomadError]] = field(default_factory=list)
    skipped: list[Action] = field(default_factory=list)
    #: masks whose Nomad service went away between observing and applying: nothing to hide
    vanished: list[Action] = field(default_factory=list)
    #: set when the agent stopped answering; the remaining actions were not tried
    aborted: WeavenomadError | None = None

    @property
    def complete(self) -> bool:
        return not (self.failed or self.skipped or self.aborted)


def _call(consul, action: Action) -> None:
    if action.kind == REGISTER_TWIN:
        consul.service_register(action.body, replace_existing_checks=True)
    elif action.kind == REGISTER_MASK:
        consul.check_register(action.body)
    elif action.kind == SET_TTL:
        consul.check_ttl(action.id, action.status or "critical")
    elif action.kind == REMOVE_MASK:
        consul.check_deregister(action.id)
    elif action.kind == REMOVE_TWIN:
        consul.service_deregister(action.id)
    else:  # pragma: no cover - plan only makes the kinds above
        raise ValueError(f"unknown action kind {action.kind!r}")


#: agent calls in flight at once within one kind of action
WORKERS = 8
#: an action left alone because the agent stopped answering meanwhile
_NOT_TRIED = object()


def apply(consul, plan: Plan, progress: Callable[[], None] | None = None, *,
          weave=None, workers: int = WORKERS) -> ApplyResult:
    result = ApplyResult()
    failed_twins: set[str] = set()
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
            if action.requires is not None and action.requires in failed_twins:
                result.skipped.append(action)
            else:
                runnable.append(action)
        for action, outcome in _run_all(consul, runnable, workers, progress):
            _record(action, outcome, result, failed_twins)
        if result.aborted is not None:
            result.skipped.extend(actions[end:])
            return result
    return result


def _record(action: Action, outcome: object, result: ApplyResult,
            failed_twins: set[str]) -> None:
    if outcome is None:
        result.done.append(action)
    elif outcome is _NOT_TRIED:
        result.skipped.append(action)
    elif isinstance(outcome, BackendNotFound):
        if action.kind in (REMOVE_MASK, REMOVE_TWIN):
            result.done.append(action)  # gone already: that is what we wanted
        else:
            result.failed.append((action, _not_found(action)))
            failed_twins.add(action.id)
    elif isinstance(outcome, BackendUnavailable):
        result.aborted = result.aborted or outcome
        result.skipped.append(action)
    elif action.kind == REGISTER_MASK and _service_gone(outcome):
        result.vanished.append(action)
    else:
        result.failed.append((action, outcome))
        failed_twins.add(action.id)


def _run_all(consul, actions: Sequence[Action], workers: int,
             progress: Callable[[], None] | None) -> list[tuple[Action, object]]:
    """Each action's outcome, in the actions' order: None (done), the error, or _NOT_TRIED
    (the agent stopped answering first). ``progress`` is called here, in the caller's
    thread, after each action."""
    stopped = threading.Event()

    def attempt(action: Action) -> object:
        if stopped.is_set():
            return _NOT_TRIED
        try:
            _call(consul, action)
        except WeavenomadError as exc:
            if isinstance(exc, BackendUnavailable):
                stopped.set()
            return exc
        return None

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
        weave.expose_subnet(IPv4Network(action.id))
    except WeavenomadError as exc:
        result.failed.append((action, exc))
    else:
        result.done.append(action)


def _service_gone(exc: WeavenomadError) -> bool:
    """Consul (1.4 and later) refuses a check on an unknown service with 500 and this text."""
    text = getattr(exc, "body", "") or exc.message
    return "does not exist" in text and "ServiceID" in text


def _not_found(action: Action) -> WeavenomadError:
    return BackendNotFound(f"Consul no longer knows {action.id} ({action.kind})",
                           backend="consul")

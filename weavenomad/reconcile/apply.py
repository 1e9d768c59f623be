"""Carry out a :class:`~weavenomad.reconcile.plan.Plan` against the local Consul agent.

Each action is one agent call, so nothing is ever half-written: a twin and its checks go in one
``agent/service/register`` with ``replace-existing-checks``. An action whose twin failed is
skipped (its mask would hide Nomad's instance with nothing in its place). A refused action (403,
400) is recorded and the rest go on; when Consul stops answering, the rest are left for the
next pass. Exposing a subnet is a call to the local Weave's API; when Weave fails, the Consul
actions still go ahead.
"""

from __future__ import annotations

from collections.abc import Callable
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


def apply(consul, plan: Plan, progress: Callable[[], None] | None = None, *,
          weave=None) -> ApplyResult:
    result = ApplyResult()
    failed_twins: set[str] = set()
    for index, action in enumerate(plan.actions):
        if action.requires is not None and action.requires in failed_twins:
            result.skipped.append(action)
            continue
        if action.kind == EXPOSE_SUBNET:
            _expose(weave, action, result)
            continue
        try:
            _call(consul, action)
        except BackendNotFound:
            if action.kind in (REMOVE_MASK, REMOVE_TWIN):
                result.done.append(action)  # gone already: that is what we wanted
            else:
                result.failed.append((action, _not_found(action)))
                failed_twins.add(action.id)
        except BackendUnavailable as exc:
            result.aborted = exc
            result.skipped.extend(plan.actions[index:])
            return result
        except WeavenomadError as exc:
            if action.kind == REGISTER_MASK and _service_gone(exc):
                result.vanished.append(action)
                continue
            result.failed.append((action, exc))
            failed_twins.add(action.id)
        else:
            result.done.append(action)
        if progress is not None:
            progress()
    return result


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

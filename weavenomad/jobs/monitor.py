"""Watching a registered job like ``nomad job run`` does: evaluation, placements, deployment.

The decisions are pure functions of Nomad's JSON (an evaluation, a deployment); the loop in
:func:`watch` only fetches with blocking queries and reports. Exit codes follow ``nomad job
run``: 0 success, 2 placement failures (or a failed deployment), 1 error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from weavenomad.errors import ExitCode, WeavenomadError

EVAL_DONE = {"complete", "failed", "canceled", "blocked"}
DEPLOYMENT_DONE = {"successful", "failed", "cancelled", "paused", "blocked"}


@dataclass(frozen=True)
class Outcome:
    exit_code: ExitCode
    lines: tuple[str, ...] = ()
    deployment_id: str | None = None


@dataclass
class Progress:
    """What has been said already, so a watcher prints each change once."""

    said: set[str] = field(default_factory=set)

    def new(self, lines: list[str]) -> list[str]:
        fresh = [line for line in lines if line not in self.said]
        self.said.update(fresh)
        return fresh


def placement_failures(evaluation: dict) -> list[str]:
    """One line per task group Nomad could not place, with its reasons."""
    lines = []
    for group, metric in sorted((evaluation.get("FailedTGAllocs") or {}).items()):
        metric = metric or {}
        reasons = []
        if metric.get("NodesEvaluated") == 0:
            reasons.append("no nodes were eligible for evaluation")
        for label, key in (("class", "ClassFiltered"), ("constraint", "ConstraintFiltered"),
                           ("dimension", "DimensionExhausted")):
            for name, count in sorted((metric.get(key) or {}).items()):
                reasons.append(f"{label} {name!r} filtered {count} node(s)")
        if metric.get("NodesAvailable") and not any(metric["NodesAvailable"].values()):
            reasons.append("no nodes available in the job's datacenters")
        detail = "; ".join(reasons) or "no reason given"
        lines.append(f"placement failure: task group {group!r}: {detail}")
    return lines


def judge_evaluation(evaluation: dict) -> Outcome | None:
    """None while the evaluation is still pending; else what it means for the run."""
    status = evaluation.get("Status")
    if status not in EVAL_DONE:
        return None
    failures = placement_failures(evaluation)
    if status == "failed":
        text = evaluation.get("StatusDescription") or "evaluation failed"
        return Outcome(ExitCode.ERROR, (f"evaluation {evaluation.get('ID', '')[:8]}: {text}",))
    if failures or status == "blocked":
        return Outcome(ExitCode.ATTENTION, tuple(failures or ["evaluation blocked"]))
    return Outcome(ExitCode.OK, (), evaluation.get("DeploymentID") or None)


def deployment_lines(deployment: dict) -> list[str]:
    """Per task group: desired / placed / healthy / unhealthy, as ``nomad`` shows them."""
    lines = []
    for group, state in sorted((deployment.get("TaskGroups") or {}).items()):
        lines.append(
            f"deployment {deployment.get('ID', '')[:8]} {group}: desired "
            f"{state.get('DesiredTotal', 0)}, placed {state.get('PlacedAllocs', 0)}, "
            f"healthy {state.get('HealthyAllocs', 0)}, unhealthy {state.get('UnhealthyAllocs', 0)}"
        )
    return lines


def judge_deployment(deployment: dict) -> Outcome | None:
    status = deployment.get("Status")
    if status not in DEPLOYMENT_DONE:
        return None
    description = deployment.get("StatusDescription") or status
    line = f"deployment {deployment.get('ID', '')[:8]} {status}: {description}"
    if status == "successful":
        return Outcome(ExitCode.OK, (line,))
    return Outcome(ExitCode.ATTENTION, (line,))


def watch(
    nomad,
    job_id: str,
    eval_id: str,
    report: Callable[[str], None],
    *,
    timeout: float = 600.0,
    stop: threading.Event | None = None,
    wait: float = 5.0,
) -> ExitCode:
    """Follow evaluation ``eval_id`` of ``job_id``, then its deployment, until done; return
    the exit code. Blocking queries on the job's evaluations and deployments show each change
    as it happens without polling."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout
    progress = Progress()
    index, outcome = 0, None
    while outcome is None:
        index, evaluations = nomad.job_evaluations(job_id, index=index, wait=wait)
        evaluation = _by_id(evaluations, eval_id)
        outcome = judge_evaluation(evaluation) if evaluation else None
        if outcome is None:
            # a follow-up eval (e.g. after blocked placements) may replace this one
            eval_id = (evaluation or {}).get("NextEval") or eval_id
            _check_deadline(deadline, stop, "evaluation", eval_id)
    for line in progress.new(list(outcome.lines)):
        report(line)
    if outcome.exit_code != ExitCode.OK or not outcome.deployment_id:
        return outcome.exit_code
    index = 0
    while True:
        index, deployments = nomad.job_deployments(job_id, index=index, wait=wait)
        deployment = _by_id(deployments, outcome.deployment_id) or {}
        for line in progress.new(deployment_lines(deployment)):
            report(line)
        done = judge_deployment(deployment)
        if done is not None:
            for line in progress.new(list(done.lines)):
                report(line)
            return done.exit_code
        _check_deadline(deadline, stop, "deployment", outcome.deployment_id)


def _by_id(items: list[dict], ident: str) -> dict | None:
    return next((item for item in items if item.get("ID") == ident), None)


def _check_deadline(deadline: float, stop: threading.Event, what: str, ident: str) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    if time.monotonic() > deadline:
        raise WeavenomadError(
            f"gave up watching {what} {ident[:8]}; it may still finish",
            hint="see nomad job status, or use weavenomad run --detach",
        )

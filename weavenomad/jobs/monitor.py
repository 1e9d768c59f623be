"""Watching a registered job like ``nomad job run`` does: evaluation, placements, deployment.

The decisions are pure functions of Nomad's JSON (an evaluation, a deployment); the loop in
:func:`watch` only fetches with blocking queries and reports :class:`Event` records, which the
CLI prints as lines (stdout for results, stderr for progress), redraws in place on a terminal,
or writes as one JSON object each. Exit codes follow ``nomad job run``: 0 success, 2 placement
failures (or a failed deployment), 1 error. Placement failures read as Nomad's CLI words them
(``command/monitor.go`` ``formatAllocMetrics``): "Resources exhausted on 1 nodes",
"Dimension "memory" exhausted on 1 nodes", "Evaluation "…" waiting for additional capacity".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from weavenomad.errors import ExitCode, WeavenomadError

EVAL_DONE = {"complete", "failed", "canceled", "blocked"}
DEPLOYMENT_DONE = {"successful", "failed", "cancelled", "paused", "blocked"}

#: where an event's text goes: the command's result (stdout), or what happens on the way,
#: warnings and hints (stderr, never in the JSON output)
RESULT = "result"
PROGRESS = "progress"
WARNING = "warning"
HINT = "hint"

#: ``paint(text, style)``: the text coloured for a terminal (or left alone)
Paint = Callable[[str, str], str]


@dataclass(frozen=True)
class Event:
    """One thing a run has to say. ``data`` is its JSON form (with ``event`` = ``kind``),
    ``lines`` its text for people; a terminal may show ``live`` instead, redrawn in place
    until the next event of the same kind."""

    kind: str
    data: dict
    lines: tuple[str, ...]
    stream: str = RESULT
    live: tuple[str, ...] = ()
    #: the lines coloured, for events whose parts have colours of their own (a plan's diff)
    styler: Callable[[Paint], tuple[str, ...]] | None = field(default=None, compare=False)

    def styled(self, paint: Paint) -> tuple[str, ...]:
        return self.styler(paint) if self.styler is not None else self.lines

    def to_json(self) -> dict:
        return {"event": self.kind, **self.data}


Report = Callable[[Event], None]


@dataclass(frozen=True)
class Outcome:
    exit_code: ExitCode
    lines: tuple[str, ...] = ()
    deployment_id: str | None = None


@dataclass
class Progress:
    """What has been said already, so a watcher reports each change once."""

    said: set[str] = field(default_factory=set)

    def new(self, lines: list[str]) -> list[str]:
        fresh = [line for line in lines if line not in self.said]
        self.said.update(fresh)
        return fresh


def _sorted_counts(counts: Mapping | None) -> list[tuple[str, int]]:
    return sorted((str(k), int(v or 0)) for k, v in (counts or {}).items())


def alloc_metric_lines(metric: Mapping, prefix: str = "") -> list[str]:
    """Why placements failed, one line each, in the words of Nomad's CLI."""
    lines = []
    if metric.get("NodesEvaluated") == 0:
        lines.append("* No nodes were eligible for evaluation")
    for datacenter, available in _sorted_counts(metric.get("NodesAvailable")):
        if available == 0:
            lines.append(f'* No nodes are available in datacenter "{datacenter}"')
    for name, count in _sorted_counts(metric.get("ClassFiltered")):
        lines.append(f'* Class "{name}": {count} nodes excluded by filter')
    for name, count in _sorted_counts(metric.get("ConstraintFiltered")):
        lines.append(f'* Constraint "{name}": {count} nodes excluded by filter')
    if int(metric.get("NodesExhausted") or 0) > 0:
        lines.append(f"* Resources exhausted on {int(metric['NodesExhausted'])} nodes")
    for name, count in _sorted_counts(metric.get("ClassExhausted")):
        lines.append(f'* Class "{name}" exhausted on {count} nodes')
    for name, count in _sorted_counts(metric.get("DimensionExhausted")):
        lines.append(f'* Dimension "{name}" exhausted on {count} nodes')
    for name in metric.get("QuotaExhausted") or []:
        lines.append(f'* Quota limit hit "{name}"')
    return [prefix + line for line in lines]


def placement_failures(evaluation: dict) -> list[str]:
    """The task groups Nomad could not place and why, as ``nomad job run`` says it."""
    failed = evaluation.get("FailedTGAllocs") or {}
    if not failed:
        return []
    lines = [f'Evaluation "{evaluation.get("ID", "")[:8]}" finished with status '
             f'"{evaluation.get("Status", "")}" but failed to place all allocations:']
    for group in sorted(failed):
        metric = failed[group] or {}
        count = int(metric.get("CoalescedFailures") or 0) + 1
        noun = "allocation" if count == 1 else "allocations"
        lines.append(f'  Task Group "{group}" (failed to place {count} {noun}):')
        lines += alloc_metric_lines(metric, "    ") or ["    * no reason given"]
    if evaluation.get("BlockedEval"):
        lines.append(f'  Evaluation "{evaluation["BlockedEval"][:8]}" waiting for additional '
                     "capacity to place remainder")
    return lines


def judge_evaluation(evaluation: dict) -> Outcome | None:
    """None while the evaluation is still pending; else what it means for the run."""
    status = evaluation.get("Status")
    if status not in EVAL_DONE:
        return None
    failures = placement_failures(evaluation)
    if status == "failed":
        text = evaluation.get("StatusDescription") or "evaluation failed"
        return Outcome(ExitCode.ERROR, (f'Evaluation "{evaluation.get("ID", "")[:8]}" '
                                        f'finished with status "failed": {text}',))
    if failures:
        return Outcome(ExitCode.ATTENTION, tuple(failures))
    if status == "blocked":
        text = evaluation.get("StatusDescription") or "waiting for capacity"
        return Outcome(ExitCode.ATTENTION, (f'Evaluation "{evaluation.get("ID", "")[:8]}" '
                                            f'is blocked: {text}',))
    return Outcome(ExitCode.OK, (), evaluation.get("DeploymentID") or None)


def _group_states(deployment: dict) -> list[tuple[str, dict]]:
    return sorted((deployment.get("TaskGroups") or {}).items())


def deployment_lines(deployment: dict) -> list[str]:
    """Per task group: desired / placed / healthy / unhealthy, one line each."""
    lines = []
    for group, state in _group_states(deployment):
        lines.append(
            f"deployment {deployment.get('ID', '')[:8]} {group}: desired "
            f"{state.get('DesiredTotal', 0)}, placed {state.get('PlacedAllocs', 0)}, "
            f"healthy {state.get('HealthyAllocs', 0)}, unhealthy {state.get('UnhealthyAllocs', 0)}"
        )
    return lines


def deployment_table(deployment: dict) -> list[str]:
    """The deployment as Nomad's deployment monitor shows it, for redrawing in place."""
    status = deployment.get("Status") or "running"
    description = deployment.get("StatusDescription") or ""
    rows = [("Task Group", "Desired", "Placed", "Healthy", "Unhealthy")]
    rows += [(group, str(state.get("DesiredTotal", 0)), str(state.get("PlacedAllocs", 0)),
              str(state.get("HealthyAllocs", 0)), str(state.get("UnhealthyAllocs", 0)))
             for group, state in _group_states(deployment)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=True)).rstrip()
             for row in rows]
    head = f'Deployment "{deployment.get("ID", "")[:8]}" {status}'
    return [head + (f": {description}" if description else ""), *table]


def deployment_summary(deployment: dict) -> dict:
    return {"id": deployment.get("ID", ""), "status": deployment.get("Status"),
            "description": deployment.get("StatusDescription") or "",
            "task_groups": {group: {"desired": state.get("DesiredTotal", 0),
                                    "placed": state.get("PlacedAllocs", 0),
                                    "healthy": state.get("HealthyAllocs", 0),
                                    "unhealthy": state.get("UnhealthyAllocs", 0)}
                            for group, state in _group_states(deployment)}}


def judge_deployment(deployment: dict) -> Outcome | None:
    status = deployment.get("Status")
    if status not in DEPLOYMENT_DONE:
        return None
    description = deployment.get("StatusDescription") or status
    line = f"deployment {deployment.get('ID', '')[:8]} {status}: {description}"
    if status == "successful":
        return Outcome(ExitCode.OK, (line,))
    return Outcome(ExitCode.ATTENTION, (line,))


def evaluation_event(evaluation: dict, outcome: Outcome) -> Event:
    data = {"id": evaluation.get("ID", ""), "status": evaluation.get("Status"),
            "status_description": evaluation.get("StatusDescription") or "",
            "deployment_id": evaluation.get("DeploymentID") or None,
            "blocked_eval": evaluation.get("BlockedEval") or None,
            "failed_task_groups": evaluation.get("FailedTGAllocs") or {},
            "exit_code": int(outcome.exit_code)}
    if outcome.lines:
        return Event("evaluation", data, outcome.lines, RESULT)
    follow = f"; deployment {outcome.deployment_id[:8]}" if outcome.deployment_id else ""
    return Event("evaluation", data, (f"evaluation {data['id'][:8]} {data['status']}{follow}",),
                 PROGRESS)


def watch(
    nomad,
    job_id: str,
    eval_id: str,
    report: Report,
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
    index, outcome, evaluation = 0, None, None
    while outcome is None:
        index, evaluations = nomad.job_evaluations(job_id, index=index, wait=wait)
        evaluation = _by_id(evaluations, eval_id)
        outcome = judge_evaluation(evaluation) if evaluation else None
        if outcome is None:
            # a follow-up eval (e.g. after blocked placements) may replace this one
            eval_id = (evaluation or {}).get("NextEval") or eval_id
            _check_deadline(deadline, stop, "evaluation", eval_id)
    report(evaluation_event(evaluation or {}, outcome))
    if outcome.exit_code != ExitCode.OK or not outcome.deployment_id:
        return outcome.exit_code
    index = 0
    while True:
        index, deployments = nomad.job_deployments(job_id, index=index, wait=wait)
        deployment = _by_id(deployments, outcome.deployment_id) or {}
        fresh = progress.new(deployment_lines(deployment))
        summary, table = deployment_summary(deployment), tuple(deployment_table(deployment))
        if fresh:
            report(Event("deployment", summary, tuple(fresh), PROGRESS, table))
        done = judge_deployment(deployment)
        if done is not None:
            style = "green" if done.exit_code == ExitCode.OK else "red"
            report(Event("deployment", summary, done.lines, RESULT, table,
                         styler=lambda paint, lines=done.lines, style=style: tuple(
                             paint(line, style) for line in lines)))
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

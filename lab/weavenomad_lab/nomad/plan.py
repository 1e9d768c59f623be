"""``POST /v1/job/<id>/plan``: the scheduler's dry run of a submitted job, as Nomad 1.0 answers
it (``nomad/job_endpoint.go`` ``Plan``, ``scheduler/annotate.go``). Pure: the stored job, its
allocations and the nodes in, the answer out; nothing is stored.

Recorded on real Nomad 1.0.18 (``tests/fixtures/recorded/plan-dns-catalog-checks/a1``-``a3``):
an unregistered job answers ``Diff.Type`` "Added" with ``Place`` = count and
``JobModifyIndex`` 0; the registered job resubmitted unchanged "None" with every allocation
ignored; a count raised from 2 to 3 "Edited", the ``Count`` field annotated "forces create",
``{"create": 1, "in-place update": 2}`` (the running allocations move to the new version in
place). ``Index`` is the job modify index the answer is based on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from weavenomad_lab.nomad import jobdiff, scheduler, shapes
from weavenomad_lab.nomad import jobs as jobspec

FORCES_CREATE = "forces create"
FORCES_DESTROY = "forces destroy"
FORCES_IN_PLACE = "forces in-place update"
FORCES_DESTRUCTIVE = "forces create/destroy update"
#: DesiredTGUpdates key -> the group diff's ``Updates`` key (annotate.go's UpdateType*)
UPDATE_NAMES = (("Ignore", "ignore"), ("Place", "create"), ("Migrate", "migrate"),
                ("Stop", "destroy"), ("Canary", "canary"), ("InPlaceUpdate", "in-place update"),
                ("DestructiveUpdate", "create/destroy update"))
#: task fields whose change does not replace the allocation, and objects that update in place
IN_PLACE_FIELDS = frozenset({"KillTimeout"})
IN_PLACE_OBJECTS = frozenset({"LogConfig", "Service", "Constraint"})


def planned_job(existing: dict | None, job: dict) -> dict:
    """The submitted (canonical) job as the scheduler would see it once registered: the next
    version when its spec changed, the stored one's version otherwise."""
    planned = copy.deepcopy(job)
    if existing is None:
        planned["Version"] = 0
    else:
        changed = jobspec.spec_changed(existing, job)
        planned["Version"] = existing["Version"] + (1 if changed else 0)
        planned["CreateIndex"] = existing["CreateIndex"]
    return planned


def desired_updates(job: dict, allocs: list[dict], plan: scheduler.Plan) -> dict[str, dict]:
    """``Annotations.DesiredTGUpdates``: per task group, what the dry run would do to each
    allocation (a replaced allocation counts once, as a destructive update)."""
    live = {a["ID"]: a for a in allocs if scheduler.is_live(a)}
    names = [g["Name"] for g in job.get("TaskGroups") or []] if not job.get("Stop") else []
    names += sorted({a["TaskGroup"] for a in live.values()} - set(names))
    updates = {}
    for name in names:
        mine = {aid for aid, a in live.items() if a["TaskGroup"] == name}
        stopped = [why for aid, why in plan.stop if aid in mine]
        destructive = stopped.count(scheduler.ALLOC_UPDATING)
        in_place = sum(1 for aid in plan.in_place if aid in mine)
        placed = sum(1 for p in plan.place if p.group == name)
        updates[name] = {
            "Ignore": len(mine) - len(stopped) - in_place,
            "Place": max(placed - destructive, 0),
            "Migrate": 0,
            "Stop": stopped.count(scheduler.ALLOC_NOT_NEEDED),
            "InPlaceUpdate": in_place,
            "DestructiveUpdate": destructive,
            "Canary": 0,
            "Preemptions": 0,
        }
    return updates


def annotate(diff: dict, updates: dict[str, dict]) -> dict:
    """``scheduler.Annotate``: each group's ``Updates``, the count change's and each changed
    task's consequence."""
    for group in diff.get("TaskGroups") or []:
        counts = updates.get(group["Name"])
        if counts is not None:
            group["Updates"] = {name: counts[key] for key, name in UPDATE_NAMES
                                if counts[key]} or None
        for field in group.get("Fields") or []:
            if field["Name"] == "Count":
                old, new = int(field["Old"] or 0), int(field["New"] or 0)
                if old != new:
                    field["Annotations"] = [FORCES_CREATE if new > old else FORCES_DESTROY]
        for task in group.get("Tasks") or []:
            note = _task_annotation(task, group["Type"])
            if note:
                task["Annotations"] = [note]
    return diff


def _task_annotation(task: dict, group_type: str) -> str | None:
    if task["Type"] == jobdiff.NONE:
        return None
    if group_type in (jobdiff.ADDED, jobdiff.DELETED):
        if task["Type"] == jobdiff.ADDED:
            return FORCES_CREATE
        if task["Type"] == jobdiff.DELETED:
            return FORCES_DESTROY
    destructive = any(f["Name"] not in IN_PLACE_FIELDS for f in task.get("Fields") or [])
    destructive = destructive or any(o["Name"] not in IN_PLACE_OBJECTS
                                     for o in task.get("Objects") or [])
    return FORCES_DESTRUCTIVE if destructive else FORCES_IN_PLACE


def plan_answer(existing: dict | None, job: dict, allocs: list[dict], nodes: list[dict], *,
                diff: bool, new_id: Callable[[], str], now: int) -> dict:
    """The plan endpoint's answer for the canonical, valid ``job``; ``existing`` is the stored
    job of that ID (None when there is none), ``allocs`` its allocations."""
    planned = planned_job(existing, job)
    plan = scheduler.schedule(planned, allocs, nodes)
    updates = desired_updates(planned, allocs, plan)
    modify_index = existing["JobModifyIndex"] if existing else 0
    created = None
    if plan.failed:
        created = [shapes.new_evaluation(
            eval_id=new_id(), job=planned, triggered_by="queued-allocs", now=now,
            status="blocked", StatusDescription="created to place remaining allocations")]
    return {
        "Annotations": {"DesiredTGUpdates": updates, "PreemptedAllocs": None},
        "FailedTGAllocs": copy.deepcopy(plan.failed) or None,
        "JobModifyIndex": modify_index,
        "CreatedEvals": created,
        "Diff": annotate(jobdiff.job_diff(existing, job), updates) if diff else None,
        "NextPeriodicLaunch": None,
        "Warnings": jobspec.warnings(job),
        "Index": modify_index,
    }

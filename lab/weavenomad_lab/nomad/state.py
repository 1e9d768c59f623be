"""The simulated Nomad servers' state: one Raft-like index, tables of jobs, evaluations,
allocations, deployments and nodes, blocking queries, and the event stream's log.

Every write happens under one condition variable, takes the next index, records it as the
object's ModifyIndex and the table's index, appends events and wakes every waiter, so a
blocking query returns within milliseconds of the change. Scheduling is synchronous: a
register or a node change runs :func:`scheduler.schedule` and applies its plan at once.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from weavenomad_lab.nomad import deployments, plan, scheduler, shapes
from weavenomad_lab.nomad import jobs as jobspec
from weavenomad_lab.nomad.gostyle import new_uuid, now_ns

TABLES = ("jobs", "evals", "allocs", "deployment", "nodes")
DEFAULT_WAIT = 5 * 60.0
MAX_WAIT = 10 * 60.0
EVENT_BUFFER = 1000


class NomadError(Exception):
    """An error the HTTP layer answers with ``status`` and the plain-text ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class NomadState:
    def __init__(self, clock: Callable[[], int] = now_ns, new_id: Callable[[], str] = new_uuid):
        self._cond = threading.Condition()
        self._clock = clock
        self._new_id = new_id
        self.index = 1
        self.table_index = dict.fromkeys(TABLES, 1)
        self.jobs: dict[tuple[str, str], dict] = {}
        self.job_versions: dict[tuple[str, str], list[dict]] = {}
        self.evals: dict[str, dict] = {}
        self.allocs: dict[str, dict] = {}
        self.deployments: dict[str, dict] = {}
        self.nodes: dict[str, dict] = {}
        self.events: deque[dict] = deque(maxlen=EVENT_BUFFER)

    # -- reading and blocking ----------------------------------------------------------------

    def read(self, compute: Callable[[], tuple[int, Any]], min_index: int = 0,
             wait: float | None = None) -> tuple[int, Any]:  # fmt: skip
        """``compute()`` under the lock; with ``min_index`` wait (at most ``wait`` seconds plus
        Nomad's jitter of wait/16) until its index passes ``min_index``."""
        with self._cond:
            index, value = compute()
            if min_index <= 0 or index > min_index:
                return max(index, 1), copy.deepcopy(value)
            timeout = min(wait if wait is not None else DEFAULT_WAIT, MAX_WAIT)
            deadline = time.monotonic() + timeout + random.uniform(0, timeout / 16)
            while index <= min_index:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                index, value = compute()
            return max(index, 1), copy.deepcopy(value)

    def wait_for_change(self, after_index: int, timeout: float) -> int:
        """Block until anything is written after ``after_index``; return the current index."""
        with self._cond:
            self._cond.wait_for(lambda: self.index > after_index, timeout)
            return self.index

    def events_after(self, index: int) -> list[dict]:
        with self._cond:
            return [copy.deepcopy(batch) for batch in self.events if batch["Index"] > index]

    # -- writing -----------------------------------------------------------------------------

    def _bump(self, *tables: str) -> int:
        self.index += 1
        for table in tables:
            self.table_index[table] = self.index
        return self.index

    def _emit(self, index: int, events: list[dict]) -> None:
        for event in events:
            event["Index"] = index
            event.setdefault("Namespace", "default")
            event.setdefault("FilterKeys", None)
        self.events.append({"Index": index, "Events": events})
        self._cond.notify_all()

    # -- nodes -------------------------------------------------------------------------------

    def upsert_node(self, node: dict) -> None:
        """A client (re-)registers its node or reports new fingerprints; blocked evaluations
        are retried, as Nomad unblocks them when node capacity or drivers change."""
        with self._cond:
            index = self._bump("nodes")
            old = self.nodes.get(node["ID"])
            stored = copy.deepcopy(node)
            stored["CreateIndex"] = old["CreateIndex"] if old else index
            stored["ModifyIndex"] = index
            self.nodes[node["ID"]] = stored
            self._emit(index, [{"Topic": "Node", "Type": "NodeRegistration", "Key": node["ID"],
                                "Payload": {"Node": copy.deepcopy(stored)}}])  # fmt: skip
            node_class = stored.get("ComputedClass") or ""
            for evaluation in list(self.evals.values()):
                if evaluation["Status"] != "blocked":
                    continue
                # Nomad's blocked-evals tracker: a node change unblocks an evaluation unless it
                # found that node's class ineligible (a driver or constraint check failed), so
                # a driver turning healthy on the same node leaves it blocked (recorded:
                # day-two/1b-after-relaunch-nomad-job-httpbackend-evaluations.json)
                if (evaluation.get("ClassEligibility") or {}).get(node_class) is False:
                    continue
                self._unblock(evaluation)

    def node_ids(self) -> list[str]:
        with self._cond:
            return list(self.nodes)

    # -- jobs --------------------------------------------------------------------------------

    def register_job(self, job: dict, enforce_index: bool = False,
                     job_modify_index: int = 0) -> dict:  # fmt: skip
        """Store a new job version (or keep the unchanged one), evaluate it, and return the
        register answer's fields. Raises NomadError for invalid jobs as Nomad does."""
        job = jobspec.canonicalize(job)
        problem = jobspec.validate(job)
        if problem:
            raise NomadError(500, problem)
        key = (job["Namespace"], job["ID"])
        with self._cond:
            existing = self.jobs.get(key)
            if enforce_index:
                current = existing["JobModifyIndex"] if existing else 0
                if job_modify_index != current:
                    if job_modify_index == 0:
                        detail = "job already exists"
                    elif not existing:
                        detail = "job does not exist"
                    else:
                        detail = f"job exists with conflicting job modify index: {current}"
                    raise NomadError(
                        500, f"Enforcing job modify index {job_modify_index}: {detail}"
                    )
            if existing is None or jobspec.spec_changed(existing, job):
                index = self._bump("jobs")
                job["SubmitTime"] = self._clock()
                job["CreateIndex"] = existing["CreateIndex"] if existing else index
                job["ModifyIndex"] = job["JobModifyIndex"] = index
                job["Version"] = existing["Version"] + 1 if existing else 0
                job["Stable"] = False
                job["Status"] = "pending"
                self.jobs[key] = job
                self.job_versions.setdefault(key, []).insert(0, copy.deepcopy(job))
                self._emit(index, [self._job_event("JobRegistered", job)])
            job = self.jobs[key]
            evaluation = self._evaluate(job, "job-register", job["JobModifyIndex"])
            return {
                "EvalCreateIndex": evaluation["CreateIndex"],
                "EvalID": evaluation["ID"],
                "Index": evaluation["CreateIndex"],
                "JobModifyIndex": job["JobModifyIndex"],
                "KnownLeader": False,
                "LastContact": 0,
                "Warnings": jobspec.warnings(job),
            }

    def plan_job(self, job: dict, diff: bool = True) -> dict:
        """The scheduler's dry run of ``job`` (``POST /v1/job/<id>/plan``): nothing is stored.
        Raises NomadError for invalid jobs, as a register would."""
        job = jobspec.canonicalize(job)
        problem = jobspec.validate(job)
        if problem:
            raise NomadError(500, problem)
        with self._cond:
            key = (job["Namespace"], job["ID"])
            allocs = [a for a in self.allocs.values()
                      if (a["Namespace"], a["JobID"]) == key]  # fmt: skip
            return copy.deepcopy(plan.plan_answer(
                self.jobs.get(key), job, allocs, list(self.nodes.values()), diff=diff,
                new_id=self._new_id, now=self._clock()))

    def evaluate_job(self, namespace: str, job_id: str) -> dict:
        """``nomad job eval``: a new evaluation of the registered job, which a blocked one
        waiting for a node change does not get by itself."""
        with self._cond:
            job = self.jobs.get((namespace, job_id))
            if job is None:
                raise NomadError(404, "job not found")
            evaluation = self._evaluate(job, "job-register", job["JobModifyIndex"])
            return {"EvalCreateIndex": evaluation["CreateIndex"], "EvalID": evaluation["ID"],
                    "Index": evaluation["CreateIndex"], "JobModifyIndex": job["JobModifyIndex"],
                    "KnownLeader": False, "LastContact": 0, "Warnings": ""}

    def deregister_job(self, namespace: str, job_id: str, purge: bool = False) -> dict:
        key = (namespace, job_id)
        with self._cond:
            job = self.jobs.get(key)
            if job is None:
                raise NomadError(404, "job not found")
            index = self._bump("jobs")
            if purge:
                del self.jobs[key]
                self.job_versions.pop(key, None)
                stopped = copy.deepcopy(job)
                stopped["Stop"] = True
            else:
                job["Stop"] = True
                job["ModifyIndex"] = job["JobModifyIndex"] = index
                job["Version"] += 1
                job["SubmitTime"] = self._clock()
                self.job_versions[key].insert(0, copy.deepcopy(job))
                stopped = job
            self._emit(index, [self._job_event("JobDeregistered", stopped)])
            evaluation = self._evaluate(stopped, "job-deregister", index, purged=purge)
            return {
                "EvalCreateIndex": evaluation["CreateIndex"],
                "EvalID": evaluation["ID"],
                "Index": evaluation["CreateIndex"],
                "JobModifyIndex": index,
                "KnownLeader": False,
                "LastContact": 0,
                "VolumeEvalID": "",
                "VolumeEvalIndex": 0,
            }

    def _job_event(self, kind: str, job: dict) -> dict:
        return {"Topic": "Job", "Type": kind, "Key": job["ID"],
                "Namespace": job["Namespace"], "Payload": {"Job": copy.deepcopy(job)}}  # fmt: skip

    # -- evaluation and plans ----------------------------------------------------------------

    def _evaluate(self, job: dict, triggered_by: str, job_modify_index: int,
                  purged: bool = False) -> dict:  # fmt: skip
        now = self._clock()
        index = self._bump("evals")
        evaluation = shapes.new_evaluation(
            eval_id=self._new_id(), job=job, triggered_by=triggered_by, now=now,
            status="pending", JobModifyIndex=job_modify_index,
        )  # fmt: skip
        evaluation.update(CreateIndex=index, ModifyIndex=index, SnapshotIndex=index)
        self.evals[evaluation["ID"]] = evaluation
        self._emit(index, [{"Topic": "Evaluation", "Type": "EvaluationUpdated",
                            "Key": evaluation["ID"], "Namespace": evaluation["Namespace"],
                            "Payload": {"Evaluation": copy.deepcopy(evaluation)}}])  # fmt: skip
        self._process(evaluation, None if purged else job)
        return evaluation

    def _process(self, evaluation: dict, job: dict | None) -> None:
        job_id, namespace = evaluation["JobID"], evaluation["Namespace"]
        allocs = [a for a in self.allocs.values()
                  if a["JobID"] == job_id and a["Namespace"] == namespace]  # fmt: skip
        plan = scheduler.schedule(job, allocs, list(self.nodes.values()))
        if plan.changes_anything():
            self._apply_plan(evaluation, job, plan)
        index = self._bump("evals")
        evaluation.update(Status="complete", ModifyIndex=index, ModifyTime=self._clock())
        groups = (job or {}).get("TaskGroups") or []
        queued = {g["Name"]: plan.queued.get(g["Name"], 0) for g in groups}
        evaluation["QueuedAllocations"] = queued or None
        if plan.failed:
            evaluation["FailedTGAllocs"] = plan.failed
            blocked = self._blocked_eval(evaluation, job, plan.class_eligibility)
            evaluation["BlockedEval"] = blocked["ID"]
        elif evaluation["TriggeredBy"] != "queued-allocs":
            self._cancel_blocked(job_id)  # everything placed: nothing left to wait for
        events = [{"Topic": "Evaluation", "Type": "EvaluationUpdated", "Key": evaluation["ID"],
                   "Namespace": namespace, "Payload": {"Evaluation": copy.deepcopy(evaluation)}}]
        if job is not None and (namespace, job_id) in self.jobs:
            self._refresh_job_status(self.jobs[(namespace, job_id)], events)
        self._emit(index, events)

    def _cancel_blocked(self, job_id: str) -> None:
        for other in self.evals.values():
            if other["JobID"] == job_id and other["Status"] == "blocked":
                other["Status"] = "canceled"
                other["StatusDescription"] = f'evaluation "{other["ID"]}" successful'
                other["ModifyIndex"] = self.index

    def _blocked_eval(self, previous: dict, job: dict | None,
                      eligibility: dict[str, bool]) -> dict:
        # an older blocked evaluation of the same job is superseded, as in Nomad's eval broker
        for other in self.evals.values():
            if other["JobID"] == previous["JobID"] and other["Status"] == "blocked":
                other["Status"] = "canceled"
                other["StatusDescription"] = "evaluation superseded by a newer blocked one"
        index = self._bump("evals")
        blocked = shapes.new_evaluation(
            eval_id=self._new_id(), job=job or {"ID": previous["JobID"]},
            triggered_by="queued-allocs", now=self._clock(), status="blocked",
            PreviousEval=previous["ID"], ClassEligibility=dict(eligibility),
            StatusDescription="created to place remaining allocations",
        )  # fmt: skip
        blocked.update(CreateIndex=index, ModifyIndex=index, SnapshotIndex=index)
        self.evals[blocked["ID"]] = blocked
        return blocked

    def _unblock(self, blocked: dict) -> None:
        job = self.jobs.get((blocked["Namespace"], blocked["JobID"]))
        blocked["Status"] = "complete" if job is None else "pending"
        if job is not None:
            self._process(blocked, job)

    def _apply_plan(self, evaluation: dict, job: dict | None, plan: scheduler.Plan) -> None:
        now = self._clock()
        index = self._bump("allocs")
        events: list[dict] = []
        for alloc_id, description in plan.stop:
            alloc = self.allocs[alloc_id]
            alloc.update(DesiredStatus="stop", DesiredDescription=description,
                         ModifyIndex=index, AllocModifyIndex=index, ModifyTime=now)  # fmt: skip
            events.append(self._alloc_event("PlanResult", alloc))
        deployment_id = ""
        if (plan.place or plan.in_place) and job is not None:
            deployment_id = deployments.attach(
                self.deployments, job, plan, index, now, self._new_id,
                in_place=tuple(self.allocs[a]["TaskGroup"] for a in plan.in_place))
            self.table_index["deployment"] = index
            if deployment_id:
                evaluation["DeploymentID"] = deployment_id
        for alloc_id in plan.in_place:
            alloc = self.allocs[alloc_id]
            alloc.update(Job=copy.deepcopy(job), ModifyIndex=index, AllocModifyIndex=index,
                         ModifyTime=now)  # fmt: skip
            if deployment_id and alloc["DeploymentID"] != deployment_id:
                # joins the new version's deployment, its health to be told again
                alloc.update(DeploymentID=deployment_id, DeploymentStatus=None)
            events.append(self._alloc_event("PlanResult", alloc))
        if plan.place and job is not None:
            for placement in plan.place:
                group = next(g for g in job["TaskGroups"] if g["Name"] == placement.group)
                node = self.nodes[placement.node_id]
                metrics = shapes.alloc_metrics(
                    [placement.node_id], {dc: 1 for dc in job.get("Datacenters") or []}
                )
                alloc = shapes.new_allocation(
                    alloc_id=self._new_id(), job=job, group=group, index=placement.index,
                    node=node, eval_id=evaluation["ID"], deployment_id=deployment_id,
                    metrics=metrics, group_ports=[], now=now,
                )  # fmt: skip
                alloc.update(CreateIndex=index, ModifyIndex=index, AllocModifyIndex=index)
                if placement.canary:
                    alloc["DeploymentStatus"] = {"Canary": True, "Healthy": None,
                                                 "ModifyIndex": index, "Timestamp": None}
                    counts = self.deployments[deployment_id]["TaskGroups"][placement.group]
                    counts["PlacedCanaries"] = (counts["PlacedCanaries"] or []) + [alloc["ID"]]
                self.allocs[alloc["ID"]] = alloc
                events.append(self._alloc_event("PlanResult", alloc))
        if job is not None:
            events.append(self._job_event("PlanResult", job))
        self._emit(index, events)

    def _alloc_event(self, kind: str, alloc: dict) -> dict:
        # the event carries no job: copying the allocation's (large) job only to drop it cost
        # every task event on a full node
        payload = copy.deepcopy({key: value for key, value in alloc.items() if key != "Job"})
        payload["Job"] = None
        payload.update(AllocStates=None, NextAllocation="", PreviousAllocation="")
        return {"Topic": "Allocation", "Type": kind, "Key": alloc["ID"],
                "Namespace": alloc["Namespace"],
                "FilterKeys": [alloc["JobID"], alloc["DeploymentID"]],
                "Payload": {"Allocation": payload}}  # fmt: skip

    def _refresh_job_status(self, job: dict, events: list[dict]) -> None:
        mine = self.allocs_of(lambda a: (a["JobID"], a["Namespace"]) == (job["ID"],
                                                                         job["Namespace"]))
        status = scheduler.job_status(mine, [e for e in self.evals.values()
                                             if e["JobID"] == job["ID"]])  # fmt: skip
        if status != job["Status"]:
            job["Status"] = status
            job["ModifyIndex"] = self.index
            self.table_index["jobs"] = self.index
            events.append(self._job_event("EvaluationUpdated", job))

    # -- client updates ----------------------------------------------------------------------

    def update_alloc(self, alloc_id: str, **changes: Any) -> None:
        """A client reports ClientStatus, ClientDescription, TaskStates, DeploymentStatus."""
        with self._cond:
            alloc = self.allocs.get(alloc_id)
            if alloc is None:
                return
            index = self._bump("allocs")
            health = changes.pop("DeploymentHealthy", None)
            alloc.update(copy.deepcopy(changes))
            alloc.update(ModifyIndex=index, ModifyTime=self._clock())
            events = [self._alloc_event("AllocationUpdated", alloc)]
            status = alloc["DeploymentStatus"] or {}
            if health is not None and status.get("Healthy") is None:
                alloc["DeploymentStatus"] = {
                    "Canary": bool(status.get("Canary")), "Healthy": health,
                    "ModifyIndex": index, "Timestamp": shapes.rfc3339(self._clock()),
                }  # fmt: skip
                self._count_health(alloc, health, index, events)
            key = (alloc["Namespace"], alloc["JobID"])
            if key in self.jobs:
                self._refresh_job_status(self.jobs[key], events)
                if changes.get("ClientStatus") == "failed" and not alloc["FollowupEvalID"]:
                    self._plan_reschedule(alloc, self.jobs[key])
            self._emit(index, events)

    def _plan_reschedule(self, alloc: dict, job: dict) -> None:
        """A failed allocation of a running job is replaced after the group's reschedule delay
        (exponential per earlier failure at the same index, capped at MaxDelay), through a
        follow-up evaluation as Nomad's reconciler does."""
        group = next((g for g in job["TaskGroups"] if g["Name"] == alloc["TaskGroup"]), None)
        failures = sum(1 for a in self.allocs.values()
                       if a["JobID"] == alloc["JobID"] and a["Name"] == alloc["Name"]
                       and a["ClientStatus"] == "failed")  # fmt: skip
        delay = scheduler.reschedule_delay((group or {}).get("ReschedulePolicy") or {}, failures)
        if job.get("Stop") or delay is None:
            return
        index = self._bump("evals")
        followup = shapes.new_evaluation(
            eval_id=self._new_id(), job=job, triggered_by="alloc-failure", now=self._clock(),
            status="pending", WaitUntil=shapes.rfc3339(self._clock() + delay),
            PreviousEval=alloc["EvalID"],
        )  # fmt: skip
        followup.update(CreateIndex=index, ModifyIndex=index, SnapshotIndex=index)
        self.evals[followup["ID"]] = followup
        alloc["FollowupEvalID"] = followup["ID"]
        timer = threading.Timer(delay / 1e9, self._run_followup, args=(followup["ID"],))
        timer.daemon = True
        timer.start()

    def _run_followup(self, eval_id: str) -> None:
        with self._cond:
            evaluation = self.evals.get(eval_id)
            if evaluation is None or evaluation["Status"] != "pending":
                return
            job = self.jobs.get((evaluation["Namespace"], evaluation["JobID"]))
            if job is None or job.get("Stop"):
                evaluation["Status"] = "canceled"
                return
            self._process(evaluation, job)

    def _count_health(self, alloc: dict, healthy: bool, index: int, events: list[dict]) -> None:
        deployment = self.deployments.get(alloc.get("DeploymentID") or "")
        if deployment is None or deployment["Status"] != "running":
            return
        group = alloc["TaskGroup"]
        healthy_canaries = sum(
            1 for a in self.allocs.values()
            if a["DeploymentID"] == deployment["ID"] and a["TaskGroup"] == group
            and scheduler.is_canary(a) and (a["DeploymentStatus"] or {}).get("Healthy"))
        if healthy and deployments.canaries_healthy(deployment, group, healthy_canaries):
            deployments.count_health(deployment, group, healthy, index)
            self._promote(deployment, index, events)
            return
        if deployments.count_health(deployment, group, healthy, index):
            job = self.jobs.get((deployment["Namespace"], deployment["JobID"]))
            if job is not None and job["Version"] == deployment["JobVersion"]:
                job["Stable"] = True
                job["ModifyIndex"] = index
                self.table_index["jobs"] = index
        self.table_index["deployment"] = index
        events.append({"Topic": "Deployment", "Type": "DeploymentStatusUpdate",
                       "Key": deployment["ID"], "Namespace": deployment["Namespace"],
                       "FilterKeys": [deployment["JobID"]],
                       "Payload": {"Deployment": copy.deepcopy(deployment)}})  # fmt: skip

    def promote_deployment(self, deployment_id: str) -> dict:
        """``POST /v1/deployment/promote/<id>`` with ``All``: the canaries become ordinary
        allocations and the rest of the update goes ahead."""
        with self._cond:
            deployment = self.deployments.get(deployment_id)
            if deployment is None:
                raise NomadError(404, "deployment not found")
            if deployment["Status"] != "running":
                raise NomadError(500, f"can't promote terminal deployment: status "
                                      f"{deployment['Status']!r}")
            if not any(g["DesiredCanaries"] for g in deployment["TaskGroups"].values()):
                raise NomadError(500, "no canaries to promote")
            index = self._bump("deployment", "allocs")
            events: list[dict] = []
            evaluation = self._promote(deployment, index, events)
            self._emit(index, events)
            return {"EvalID": evaluation["ID"], "EvalCreateIndex": evaluation["CreateIndex"],
                    "DeploymentModifyIndex": index, "Index": index, "KnownLeader": False,
                    "LastContact": 0, "RevertedJobVersion": None}

    def _promote(self, deployment: dict, index: int, events: list[dict]) -> dict:
        """Clear the canary flag of the deployment's allocations (Nomad's
        ``UpdateDeploymentPromotion``) and evaluate the job again."""
        for counts in deployment["TaskGroups"].values():
            counts["Promoted"] = True
        deployment["ModifyIndex"] = index
        for alloc in self.allocs.values():
            if alloc["DeploymentID"] == deployment["ID"] and scheduler.is_canary(alloc):
                alloc["DeploymentStatus"] = dict(alloc["DeploymentStatus"], Canary=False,
                                                 ModifyIndex=index)
                alloc["ModifyIndex"] = index
                events.append(self._alloc_event("AllocationUpdated", alloc))
        events.append({"Topic": "Deployment", "Type": "DeploymentPromotion",
                       "Key": deployment["ID"], "Namespace": deployment["Namespace"],
                       "FilterKeys": [deployment["JobID"]],
                       "Payload": {"Deployment": copy.deepcopy(deployment)}})  # fmt: skip
        job = self.jobs[(deployment["Namespace"], deployment["JobID"])]
        return self._evaluate(job, "deployment-watcher", job["JobModifyIndex"])

    # -- queries used by the HTTP layer and clients ------------------------------------------

    def allocs_of(self, predicate: Callable[[dict], bool]) -> list[dict]:
        return [a for a in self.allocs.values() if predicate(a)]

    def max_modify(self, items: Iterable[dict], table: str) -> int:
        return max((i["ModifyIndex"] for i in items), default=self.table_index[table])


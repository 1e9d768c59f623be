"""The JSON objects of Nomad 1.0's API, built from plain data. Pure functions, no state.

Field names, nesting and types follow the recorded answers in
``tests/fixtures/recorded/nomad-*.json`` (allocation, job allocations, evaluations,
deployments, nodes); where nothing was recorded they follow Nomad 1.0's ``structs`` package.
"""

from __future__ import annotations

import copy
from typing import Any

from weavenomad_lab.nomad.gostyle import duration_string, rfc3339

NODE_VERSION = "1.0.18"

# -- task events and states ----------------------------------------------------------------

_EVENT_FIELDS: dict[str, Any] = {
    "Details": {},
    "DiskLimit": 0,
    "DisplayMessage": "",
    "DownloadError": "",
    "DriverError": "",
    "DriverMessage": "",
    "ExitCode": 0,
    "FailedSibling": "",
    "FailsTask": False,
    "GenericSource": "",
    "KillError": "",
    "KillReason": "",
    "KillTimeout": 0,
    "Message": "",
    "RestartReason": "",
    "SetupError": "",
    "Signal": 0,
    "StartDelay": 0,
    "TaskSignal": "",
    "TaskSignalReason": "",
    "Time": 0,
    "Type": "",
    "ValidationError": "",
    "VaultError": "",
}


def task_event(kind: str, time_ns: int, **fields: Any) -> dict:
    """One TaskEvent with Nomad's DisplayMessage for its kind."""
    event = copy.deepcopy(_EVENT_FIELDS)
    event.update(fields)
    event["Type"] = kind
    event["Time"] = time_ns
    if not event["DisplayMessage"]:
        event["DisplayMessage"] = _display_message(event)
    return event


def _display_message(event: dict) -> str:
    kind = event["Type"]
    if kind == "Received":
        return "Task received by client"
    if kind == "Started":
        return "Task started by client"
    if kind == "Terminated":
        text = f"Exit Code: {event['ExitCode']}"
        if event["Signal"]:
            text += f", Signal: {event['Signal']}"
        if event["Message"]:
            text += f', Exit Message: "{event["Message"]}"'
        return text
    if kind == "Restarting":
        return f"Task restarting in {duration_string(event['StartDelay'])}"
    if kind == "Not Restarting":
        return event["RestartReason"]
    if kind == "Killing":
        wait = duration_string(event["KillTimeout"])
        return f"Sent interrupt. Waiting {wait} before force killing"
    if kind == "Killed":
        return event["KillError"] or "Task successfully killed"
    if kind == "Driver Failure":
        return event["DriverError"]
    if kind == "Driver":
        return event["DriverMessage"]
    return event["Message"]


def task_state() -> dict:
    return {
        "Events": [],
        "Failed": False,
        "FinishedAt": None,
        "LastRestart": None,
        "Restarts": 0,
        "StartedAt": None,
        "State": "pending",
    }


def time_or_none(nanos: int | None) -> str | None:
    return rfc3339(nanos) if nanos else None


# -- allocations -----------------------------------------------------------------------------


def alloc_metrics(node_ids: list[str], nodes_available: dict[str, int]) -> dict:
    return {
        "AllocationTime": 200000,
        "ClassExhausted": None,
        "ClassFiltered": None,
        "CoalescedFailures": 0,
        "ConstraintFiltered": None,
        "DimensionExhausted": None,
        "NodesAvailable": nodes_available,
        "NodesEvaluated": len(node_ids),
        "NodesExhausted": 0,
        "NodesFiltered": 0,
        "QuotaExhausted": None,
        "ScoreMetaData": [
            {
                "NodeID": node_id,
                "NormScore": 0.0,
                "Scores": {
                    "binpack": 0.0,
                    "job-anti-affinity": 0.0,
                    "node-affinity": 0.0,
                    "node-reschedule-penalty": 0.0,
                },
            }
            for node_id in node_ids
        ],
        "Scores": None,
    }


def _task_network(network: dict, node_ip: str) -> dict:
    placed = copy.deepcopy(network)
    placed["IP"] = node_ip
    placed["Device"] = "eth0"
    return placed


def task_resources(task: dict, node_ip: str) -> dict:
    """The legacy ``Resources`` of one task as placed on a node (network IP filled in)."""
    res = task.get("Resources") or {}
    networks = res.get("Networks")
    return {
        "CPU": res.get("CPU") or 0,
        "Devices": None,
        "DiskMB": res.get("DiskMB") or 0,
        "IOPS": res.get("IOPS") or 0,
        "MemoryMB": res.get("MemoryMB") or 0,
        "Networks": [_task_network(n, node_ip) for n in networks] if networks else None,
    }


def new_allocation(
    *,
    alloc_id: str,
    job: dict,
    group: dict,
    index: int,
    node: dict,
    eval_id: str,
    deployment_id: str,
    metrics: dict,
    group_ports: list[dict],
    now: int,
) -> dict:
    """A freshly placed allocation, as the plan applier stores it (ClientStatus pending)."""
    node_ip = node["Attributes"]["unique.network.ip-address"]
    disk = (group.get("EphemeralDisk") or {}).get("SizeMB") or 300
    tasks = {t["Name"]: task_resources(t, node_ip) for t in group.get("Tasks") or []}
    shared_networks = None
    if group.get("Networks"):
        shared_networks = [_task_network(n, node_ip) for n in group["Networks"]]
        shared_networks[0]["Mode"] = shared_networks[0].get("Mode") or "host"
    return {
        "AllocModifyIndex": 0,
        "AllocatedResources": {
            "Shared": {"DiskMB": disk, "Networks": shared_networks, "Ports": group_ports or None},
            "TaskLifecycles": {name: None for name in tasks},
            "Tasks": {
                name: {
                    "Cpu": {"CpuShares": res["CPU"]},
                    "Devices": None,
                    "Memory": {"MemoryMB": res["MemoryMB"]},
                    "Networks": copy.deepcopy(res["Networks"]),
                }
                for name, res in tasks.items()
            },
        },
        "ClientDescription": "",
        "ClientStatus": "pending",
        "CreateIndex": 0,
        "CreateTime": now,
        "DeploymentID": deployment_id,
        "DeploymentStatus": None,
        "DesiredDescription": "",
        "DesiredStatus": "run",
        "DesiredTransition": {"ForceReschedule": None, "Migrate": None, "Reschedule": None},
        "EvalID": eval_id,
        "FollowupEvalID": "",
        "ID": alloc_id,
        "Job": copy.deepcopy(job),
        "JobID": job["ID"],
        "Metrics": metrics,
        "ModifyIndex": 0,
        "ModifyTime": now,
        "Name": f"{job['ID']}.{group['Name']}[{index}]",
        "Namespace": job.get("Namespace") or "default",
        "NetworkStatus": {"Address": "", "DNS": None, "InterfaceName": ""},
        "NodeID": node["ID"],
        "NodeName": node["Name"],
        "PreemptedAllocations": None,
        "PreemptedByAllocation": "",
        "RescheduleTracker": None,
        "Resources": {
            "CPU": sum(r["CPU"] for r in tasks.values()),
            "Devices": None,
            "DiskMB": disk,
            "IOPS": 0,
            "MemoryMB": sum(r["MemoryMB"] for r in tasks.values()),
            "Networks": next((r["Networks"] for r in tasks.values() if r["Networks"]), None),
        },
        "SharedResources": {
            "CPU": 0,
            "Devices": None,
            "DiskMB": disk,
            "IOPS": 0,
            "MemoryMB": 0,
            "Networks": shared_networks,
        },
        "TaskGroup": group["Name"],
        "TaskResources": tasks,
        "TaskStates": None,
    }


_ALLOC_STUB_FIELDS = (
    "ClientDescription", "ClientStatus", "CreateIndex", "CreateTime", "DeploymentStatus",
    "DesiredDescription", "DesiredStatus", "DesiredTransition", "EvalID", "FollowupEvalID",
    "ID", "JobID", "ModifyIndex", "ModifyTime", "Name", "Namespace", "NodeID", "NodeName",
    "PreemptedAllocations", "PreemptedByAllocation", "RescheduleTracker", "TaskGroup",
    "TaskStates",
)  # fmt: skip


def alloc_stub(alloc: dict) -> dict:
    """AllocListStub: what ``/v1/job/ID/allocations`` and ``/v1/allocations`` list."""
    stub = {key: copy.deepcopy(alloc.get(key)) for key in _ALLOC_STUB_FIELDS}
    stub["JobType"] = alloc["Job"]["Type"]
    stub["JobVersion"] = alloc["Job"]["Version"]
    return stub


def alloc_full(alloc: dict) -> dict:
    """The allocation as ``/v1/allocation/ID`` shows it (no list-only fields)."""
    out = copy.deepcopy(alloc)
    if not any((out.get("DesiredTransition") or {}).values()):
        out.pop("DesiredTransition", None)
    for key in ("DesiredDescription", "FollowupEvalID", "PreemptedAllocations",
                "PreemptedByAllocation", "RescheduleTracker"):
        if not out.get(key):
            out.pop(key, None)
    return out


# -- evaluations, deployments, jobs ------------------------------------------------------------


def new_evaluation(
    *, eval_id: str, job: dict, triggered_by: str, now: int, status: str = "pending", **extra: Any
) -> dict:
    evaluation = {
        "CreateTime": now,
        "ID": eval_id,
        "JobID": job["ID"],
        "ModifyTime": now,
        "Namespace": job.get("Namespace") or "default",
        "Priority": job.get("Priority") or 50,
        "Status": status,
        "TriggeredBy": triggered_by,
        "Type": job.get("Type") or "service",
    }
    evaluation.update({k: v for k, v in extra.items() if v not in (None, "", {}, [])})
    return evaluation


def new_deployment(*, deployment_id: str, job: dict, placed: dict[str, int], now: int) -> dict:
    groups = {}
    for group in job["TaskGroups"]:
        update = group.get("Update") or {}
        progress = update.get("ProgressDeadline") or 0
        groups[group["Name"]] = {
            "AutoPromote": bool(update.get("AutoPromote")),
            "AutoRevert": bool(update.get("AutoRevert")),
            "DesiredCanaries": 0,
            "DesiredTotal": group.get("Count", 1),
            "HealthyAllocs": 0,
            "PlacedAllocs": placed.get(group["Name"], 0),
            "PlacedCanaries": None,
            "ProgressDeadline": progress,
            "Promoted": False,
            "RequireProgressBy": rfc3339(now + progress) if progress else None,
            "UnhealthyAllocs": 0,
        }
    return {
        "CreateIndex": 0,
        "ID": deployment_id,
        "IsMultiregion": False,
        "JobCreateIndex": job["CreateIndex"],
        "JobID": job["ID"],
        "JobModifyIndex": job["JobModifyIndex"],
        "JobSpecModifyIndex": job["JobModifyIndex"],
        "JobVersion": job["Version"],
        "ModifyIndex": 0,
        "Namespace": job.get("Namespace") or "default",
        "Status": "running",
        "StatusDescription": "Deployment is running",
        "TaskGroups": groups,
    }


def job_summary(job: dict, allocs: list[dict]) -> dict:
    summary = {
        g["Name"]: {"Complete": 0, "Failed": 0, "Lost": 0, "Queued": 0, "Running": 0, "Starting": 0}
        for g in job["TaskGroups"]
    }
    buckets = {"pending": "Starting", "running": "Running", "complete": "Complete",
               "failed": "Failed", "lost": "Lost"}  # fmt: skip
    for alloc in allocs:
        group = summary.setdefault(alloc["TaskGroup"], dict.fromkeys(buckets.values(), 0))
        group[buckets.get(alloc["ClientStatus"], "Starting")] += 1
    return {
        "Children": {"Dead": 0, "Pending": 0, "Running": 0},
        "CreateIndex": job["CreateIndex"],
        "JobID": job["ID"],
        "ModifyIndex": job["ModifyIndex"],
        "Namespace": job.get("Namespace") or "default",
        "Summary": summary,
    }


def job_stub(job: dict, allocs: list[dict]) -> dict:
    """JobListStub: one entry of ``/v1/jobs``."""
    return {
        "CreateIndex": job["CreateIndex"],
        "Datacenters": list(job.get("Datacenters") or []),
        "ID": job["ID"],
        "JobModifyIndex": job["JobModifyIndex"],
        "JobSummary": job_summary(job, allocs),
        "ModifyIndex": job["ModifyIndex"],
        "Name": job["Name"],
        "Namespace": job.get("Namespace") or "default",
        "ParameterizedJob": bool(job.get("ParameterizedJob")),
        "ParentID": job.get("ParentID") or "",
        "Periodic": bool(job.get("Periodic")),
        "Priority": job.get("Priority") or 50,
        "Status": job["Status"],
        "StatusDescription": job.get("StatusDescription") or "",
        "Stop": bool(job.get("Stop")),
        "SubmitTime": job.get("SubmitTime"),
        "Type": job["Type"],
    }


# -- nodes -------------------------------------------------------------------------------------

_NODE_STUB_FIELDS = (
    "CreateIndex", "Datacenter", "Drain", "Drivers", "HostVolumes", "ID", "ModifyIndex",
    "Name", "NodeClass", "SchedulingEligibility", "Status", "StatusDescription",
)  # fmt: skip


def node_stub(node: dict) -> dict:
    stub = {key: copy.deepcopy(node.get(key)) for key in _NODE_STUB_FIELDS}
    stub["Address"] = node["Attributes"]["unique.network.ip-address"]
    stub["Version"] = node["Attributes"]["nomad.version"]
    return stub


def driver_info(detected: bool, healthy: bool, description: str, attributes: dict | None,
                now: int) -> dict:  # fmt: skip
    return {
        "Attributes": attributes,
        "Detected": detected,
        "HealthDescription": description,
        "Healthy": healthy,
        "UpdateTime": rfc3339(now),
    }

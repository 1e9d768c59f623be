"""Nomad's defaults for a decoded job: ``Job.Canonicalize`` of Nomad's ``api`` package
(Nomad 1.0.18), and Go's zero values.

:func:`canonicalize` fills defaults the way Nomad does, :func:`complete` adds every remaining
field with its Go zero value so the result has the exact shape of Nomad's JSON answer.
"""

from __future__ import annotations

import copy
from typing import Any

# The job model lived in this module before; emit.py and the tests still read it from here.
from weavenomad_lab.nomad.jobspec.schema import (
    BLOCK,
    BLOCKS,
    CONSTRAINT,
    CONSTRAINT_ZERO,
    HOUR,
    MINUTE,
    SECOND,
    Struct,
)

# -- Canonicalize (api/jobs.go, api/tasks.go, api/services.go, api/resources.go @ 1.0) --------


def _defaults(target: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    for key, value in defaults.items():
        if target.get(key) is None:
            target[key] = copy.deepcopy(value)
    return target


def _merged(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base or {})
    merged.update({k: v for k, v in (override or {}).items() if v is not None})
    return merged


DEFAULT_UPDATE = {"Stagger": 30 * SECOND, "MaxParallel": 1, "HealthCheck": "checks",
                  "MinHealthyTime": 10 * SECOND, "HealthyDeadline": 5 * MINUTE,
                  "ProgressDeadline": 10 * MINUTE, "AutoRevert": False, "Canary": 0,
                  "AutoPromote": False}
DEFAULT_MIGRATE = {"MaxParallel": 1, "HealthCheck": "checks", "MinHealthyTime": 10 * SECOND,
                   "HealthyDeadline": 5 * MINUTE}
NO_RESCHEDULE = {"Attempts": 0, "Interval": 0, "Delay": 0, "DelayFunction": "", "MaxDelay": 0,
                  "Unlimited": False}
DEFAULT_RESCHEDULE = {
    "service": {"Delay": 30 * SECOND, "DelayFunction": "exponential", "MaxDelay": HOUR,
                "Unlimited": True, "Attempts": 0, "Interval": 0},
    "batch": {"Attempts": 1, "Interval": 24 * HOUR, "Delay": 5 * SECOND,
              "DelayFunction": "constant", "MaxDelay": 0, "Unlimited": False},
}
DEFAULT_RESTART = {
    "service": {"Delay": 15 * SECOND, "Attempts": 2, "Interval": 30 * MINUTE, "Mode": "fail"},
    "batch": {"Delay": 15 * SECOND, "Attempts": 3, "Interval": 24 * HOUR, "Mode": "fail"},
}
DEFAULT_EPHEMERAL_DISK = {"Sticky": False, "Migrate": False, "SizeMB": 300}
DEFAULT_LOGS = {"MaxFiles": 10, "MaxFileSizeMB": 10}
DEFAULT_RESOURCES = {"CPU": 100, "MemoryMB": 300}
JOB_DEFAULTS = {"ID": "", "ParentID": "", "Namespace": "default", "Priority": 50,
                "Stop": False, "Region": "global", "Type": "service", "AllAtOnce": False,
                "ConsulToken": "", "VaultToken": "", "VaultNamespace": "", "NomadTokenID": "",
                "Status": "", "StatusDescription": "", "Stable": False, "Version": 0,
                "CreateIndex": 0, "ModifyIndex": 0, "JobModifyIndex": 0}


def is_empty_update(update: dict[str, Any]) -> bool:
    return not any(update.get(key) for key in DEFAULT_UPDATE)


def canonicalize(job: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``Job.Canonicalize`` on a decoded job dict; returns a new dict."""
    job = _defaults(copy.deepcopy(job), JOB_DEFAULTS)
    job.setdefault("Name", None)
    _defaults(job, {"Name": job["ID"]})
    if job.get("Update") is not None:
        _defaults(job["Update"], DEFAULT_UPDATE)
    elif job["Type"] == "service":
        job["Update"] = dict(DEFAULT_UPDATE)
    for group in job.get("TaskGroups") or []:
        _canonicalize_group(group, job)
    return job


def _canonicalize_group(group: dict[str, Any], job: dict[str, Any]) -> None:
    kind = job["Type"]
    _defaults(group, {"Name": "", "Count": 1})
    group["EphemeralDisk"] = _defaults(group.get("EphemeralDisk") or {}, DEFAULT_EPHEMERAL_DISK)
    job_update = job.get("Update")
    if job_update is not None and group.get("Update") is not None:
        group["Update"] = _merged(job_update, group["Update"])
    elif job_update is not None and not is_empty_update(job_update):
        group["Update"] = dict(job_update)
    if group.get("Update") is not None:
        _defaults(group["Update"], DEFAULT_UPDATE)
    if job.get("Reschedule") is not None:
        group["ReschedulePolicy"] = _merged(job["Reschedule"], group.get("ReschedulePolicy"))
    if group.get("ReschedulePolicy") is None and kind != "system":
        group["ReschedulePolicy"] = {}
    if group.get("ReschedulePolicy") is not None:
        _defaults(group["ReschedulePolicy"], DEFAULT_RESCHEDULE.get(kind, NO_RESCHEDULE))
    if job.get("Migrate") is not None:
        group["Migrate"] = _merged(job["Migrate"], group.get("Migrate"))
    if group.get("Migrate") is None and kind == "service":
        group["Migrate"] = {}
    if group.get("Migrate") is not None:
        _defaults(group["Migrate"], DEFAULT_MIGRATE)
    restart_kind = "service" if kind in ("service", "system") else "batch"
    group["RestartPolicy"] = _merged(DEFAULT_RESTART[restart_kind], group.get("RestartPolicy"))
    for task in group.get("Tasks") or []:
        _canonicalize_task(task, group, job)
    for service in group.get("Services") or []:
        _canonicalize_service(service, None, group, job)


def _canonicalize_task(task: dict[str, Any], group: dict[str, Any], job: dict[str, Any]):
    task["Resources"] = _defaults(task.get("Resources") or {}, DEFAULT_RESOURCES)
    _defaults(task, {"KillTimeout": 5 * SECOND})
    task["LogConfig"] = _defaults(task.get("LogConfig") or {}, DEFAULT_LOGS)
    for service in task.get("Services") or []:
        _canonicalize_service(service, task, group, job)
    if not (task.get("Lifecycle") or {}).get("Hook"):
        task["Lifecycle"] = None
    task["RestartPolicy"] = _merged(group["RestartPolicy"], task.get("RestartPolicy"))


def _canonicalize_service(service, task, group, job) -> None:
    if not service.get("Name"):
        parts = [job["Name"], group["Name"]] + ([task.get("Name", "")] if task else [])
        service["Name"] = "-".join(parts)
    if not service.get("AddressMode"):
        service["AddressMode"] = "auto"
    for check in service.get("Checks") or []:
        restart, own = service.get("CheckRestart"), check.get("CheckRestart")
        if restart is None:
            restart = own
        elif own is not None:  # CheckRestart.Merge: only set or true values override
            restart = dict(restart)
            restart.update({k: v for k, v in own.items()
                            if (v is not None if k == "Grace" else bool(v))})
        if restart is not None:
            restart = _defaults(dict(restart), {"Grace": SECOND})
        check["CheckRestart"] = restart
        for key in ("SuccessBeforePassing", "FailuresBeforeCritical"):
            check[key] = max(check.get(key) or 0, 0)


def complete(struct: Struct, value: dict[str, Any]) -> dict[str, Any]:
    """Every field of ``struct`` present, unset ones with Go's zero value (JSON shape)."""
    if struct is CONSTRAINT:
        return {**CONSTRAINT_ZERO, **value}
    out = {}
    for f in struct.fields:
        item = value.get(f.api)
        if item is None:
            out[f.api] = copy.deepcopy(f.zero)
        elif f.kind == BLOCK:
            out[f.api] = complete(f.struct, item)
        elif f.kind == BLOCKS:
            out[f.api] = [complete(f.struct, v) for v in item]
        else:
            out[f.api] = item
    return out

"""What Nomad's agent and server do to a submitted job before storing it. Pure functions.

``canonicalize`` fills the defaults Nomad's ``api.Job.Canonicalize`` and the server's
``structs.Job.Canonicalize`` fill (a register body may be minimal), ``validate`` returns
Nomad's multi-line validation text (answered with status 500, as real Nomad does), and
``warnings`` the deprecation notes a register answer carries.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from weavenomad_lab.nomad.gostyle import HOUR, MINUTE, SECOND

_SERVICE_RESTART = {"Attempts": 2, "Delay": 15 * SECOND, "Interval": 30 * MINUTE, "Mode": "fail"}
_BATCH_RESTART = {"Attempts": 3, "Delay": 15 * SECOND, "Interval": 24 * HOUR, "Mode": "fail"}
_SERVICE_RESCHEDULE = {
    "Attempts": 0, "Delay": 30 * SECOND, "DelayFunction": "exponential", "Interval": 0,
    "MaxDelay": HOUR, "Unlimited": True,
}  # fmt: skip
_BATCH_RESCHEDULE = {
    "Attempts": 1, "Delay": 5 * SECOND, "DelayFunction": "constant", "Interval": 24 * HOUR,
    "MaxDelay": 0, "Unlimited": False,
}  # fmt: skip
_UPDATE = {
    "AutoPromote": False, "AutoRevert": False, "Canary": 0, "HealthCheck": "checks",
    "HealthyDeadline": 5 * MINUTE, "MaxParallel": 1, "MinHealthyTime": 10 * SECOND,
    "ProgressDeadline": 10 * MINUTE, "Stagger": 30 * SECOND,
}  # fmt: skip
_MIGRATE = {
    "HealthCheck": "checks", "HealthyDeadline": 5 * MINUTE, "MaxParallel": 1,
    "MinHealthyTime": 10 * SECOND,
}  # fmt: skip
_JOB_TYPES = ("service", "batch", "system")
_SERVICE_NAME = re.compile(r"^(?i:[a-z0-9]|[a-z0-9][a-z0-9\-]{0,61}[a-z0-9])$")
_ENV_REFERENCE = re.compile(r"\$\{[^}]*\}")


def _default(target: dict, key: str, value: Any) -> None:
    if target.get(key) is None:
        target[key] = copy.deepcopy(value)


def _merge_defaults(given: dict | None, defaults: dict) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def canonicalize(job: dict) -> dict:
    """A copy of ``job`` with every default Nomad fills in before it stores a job."""
    job = copy.deepcopy(job)
    _default(job, "Region", "global")
    _default(job, "Namespace", "default")
    _default(job, "Type", "service")
    _default(job, "Priority", 50)
    if not job.get("Name"):
        job["Name"] = job.get("ID") or ""
    for key, value in (("Stop", False), ("AllAtOnce", False), ("Dispatched", False),
                       ("ParentID", ""), ("ConsulToken", ""), ("VaultToken", ""),
                       ("VaultNamespace", ""), ("NomadTokenID", ""), ("Status", ""),
                       ("StatusDescription", ""), ("Stable", False), ("Version", 0)):  # fmt: skip
        _default(job, key, value)
    for key in ("Constraints", "Affinities", "Spreads", "Meta", "Multiregion", "Periodic",
                "ParameterizedJob", "Payload", "Datacenters", "TaskGroups"):  # fmt: skip
        job.setdefault(key, None)
    batch = job["Type"] == "batch"
    job_update = job.get("Update")
    for group in job.get("TaskGroups") or []:
        _canonicalize_group(job, group, batch, job_update)
    # The stored job keeps only the job-level fields of the update block; the rest went into
    # each group above (structs.Job has no Migrate/Reschedule either).
    job["Update"] = {
        **{key: type(value)() for key, value in _UPDATE.items()},
        "MaxParallel": (job_update or {}).get("MaxParallel", _UPDATE["MaxParallel"]),
        "Stagger": (job_update or {}).get("Stagger") or _UPDATE["Stagger"],
    }
    job.pop("Migrate", None)
    job.pop("Reschedule", None)
    return job


def _canonicalize_group(job: dict, group: dict, batch: bool, job_update: dict | None) -> None:
    _default(group, "Count", 1)
    group["RestartPolicy"] = _merge_defaults(
        group.get("RestartPolicy"), _BATCH_RESTART if batch else _SERVICE_RESTART
    )
    group["ReschedulePolicy"] = _merge_defaults(
        group.get("ReschedulePolicy"), _BATCH_RESCHEDULE if batch else _SERVICE_RESCHEDULE
    )
    group["EphemeralDisk"] = _merge_defaults(
        group.get("EphemeralDisk"), {"Migrate": False, "SizeMB": 300, "Sticky": False}
    )
    if batch:
        group.setdefault("Update", None)
        group.setdefault("Migrate", None)
    else:
        group["Update"] = _merge_defaults(
            group.get("Update"), _merge_defaults(job_update, _UPDATE)
        )
        group["Migrate"] = _merge_defaults(group.get("Migrate"), _MIGRATE)
    for key in ("Affinities", "Constraints", "Meta", "Networks", "Scaling", "Services",
                "ShutdownDelay", "Spreads", "StopAfterClientDisconnect", "Volumes"):  # fmt: skip
        group.setdefault(key, None)
    for service in group.get("Services") or []:
        _canonicalize_service(job, group, "", service)
    for task in group.get("Tasks") or []:
        _canonicalize_task(job, group, task)


def _canonicalize_task(job: dict, group: dict, task: dict) -> None:
    _default(task, "KillTimeout", 5 * SECOND)
    _default(task, "ShutdownDelay", 0)
    _default(task, "Config", {})
    for key, value in (("KillSignal", ""), ("Kind", ""), ("Leader", False), ("User", "")):
        _default(task, key, value)
    task["LogConfig"] = _merge_defaults(task.get("LogConfig"),
                                        {"MaxFileSizeMB": 10, "MaxFiles": 10})  # fmt: skip
    task["RestartPolicy"] = _merge_defaults(task.get("RestartPolicy"), group["RestartPolicy"])
    resources = _merge_defaults(task.get("Resources"), {"CPU": 100, "MemoryMB": 300})
    for key in ("DiskMB", "IOPS"):
        resources[key] = resources.get(key) or 0
    resources.setdefault("Devices", None)
    resources.setdefault("Networks", None)
    task["Resources"] = resources
    for key in ("Affinities", "Artifacts", "CSIPluginConfig", "Constraints", "DispatchPayload",
                "Env", "Lifecycle", "Meta", "ScalingPolicies", "Services", "Templates",
                "Vault", "VolumeMounts"):  # fmt: skip
        task.setdefault(key, None)
    for service in task.get("Services") or []:
        _canonicalize_service(job, group, task["Name"] if "Name" in task else "", service)


def _canonicalize_service(job: dict, group: dict, task_name: str, service: dict) -> None:
    _default(service, "AddressMode", "auto")
    for key, value in (("EnableTagOverride", False), ("PortLabel", ""), ("TaskName", "")):
        _default(service, key, value)
    service.pop("Id", None)
    service.pop("CheckRestart", None)
    for key in ("CanaryMeta", "CanaryTags", "Connect", "Meta", "Tags", "Checks"):
        if not service.get(key):
            service[key] = None
    service["Name"] = _replace_env(service.get("Name") or "", job, group, task_name)
    for check in service.get("Checks") or []:
        check.pop("Id", None)
        for key, value in (("AddressMode", ""), ("Command", ""), ("Expose", False),
                           ("FailuresBeforeCritical", 0), ("GRPCService", ""),
                           ("GRPCUseTLS", False), ("InitialStatus", ""), ("Method", ""),
                           ("Path", ""), ("PortLabel", ""), ("Protocol", ""),
                           ("SuccessBeforePassing", 0), ("TLSSkipVerify", False),
                           ("TaskName", ""), ("Interval", 0), ("Timeout", 0)):  # fmt: skip
            _default(check, key, value)
        for key in ("Args", "CheckRestart", "Header"):
            check.setdefault(key, None)
        if not check.get("Name"):
            check["Name"] = f"service: {json.dumps(service['Name'])} check"


def _replace_env(name: str, job: dict, group: dict, task_name: str) -> str:
    values = {
        "JOB": job.get("Name") or job.get("ID") or "",
        "TASKGROUP": group.get("Name") or "",
        "TASK": task_name,
        "BASE": f"{job.get('Name')}-{group.get('Name')}-{task_name}",
    }
    for key, value in values.items():
        name = name.replace("${" + key + "}", value)
    return name


# -- validation --------------------------------------------------------------------------------


def multierror(errors: list[str]) -> str:
    """go-multierror's text: ``1 error occurred:\\n\\t* …\\n\\n``."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def validate(job: dict) -> str | None:
    """Nomad's validation text for a canonical job, or None when it is valid."""
    errors: list[str] = []
    if not job.get("Region"):
        errors.append("Missing job region")
    if not job.get("ID"):
        errors.append("Missing job ID")
    elif " " in job["ID"]:
        errors.append("Job ID contains a space")
    elif "\x00" in job["ID"]:
        errors.append("Job ID contains a null character")
    if not job.get("Name"):
        errors.append("Missing job name")
    if job.get("Type") not in _JOB_TYPES:
        errors.append(f"Invalid job type: {json.dumps(job.get('Type'))}")
    if not 1 <= int(job.get("Priority") or 0) <= 100:
        errors.append("Job priority must be between [1, 100]")
    if not job.get("Datacenters"):
        errors.append("Missing job datacenters")
    if not job.get("TaskGroups"):
        errors.append("Missing job task groups")
    seen: dict[str, int] = {}
    for position, group in enumerate(job.get("TaskGroups") or [], start=1):
        name = group.get("Name") or ""
        if not name:
            errors.append(f"Job task group {position} missing name")
        elif name in seen:
            errors.append(f"Job task group {position} redefines '{name}' from group {seen[name]}")
        else:
            seen[name] = position
    for group in job.get("TaskGroups") or []:
        group_errors = _validate_group(job, group)
        if group_errors:
            errors.append(f"Task group {group.get('Name')} validation failed: "
                          f"{multierror(group_errors)}")  # fmt: skip
    return multierror(errors) if errors else None


def _validate_group(job: dict, group: dict) -> list[str]:
    errors: list[str] = []
    if (group.get("Count") or 0) < 0:
        errors.append("Task group count can't be negative")
    if not group.get("Tasks"):
        errors.append("Missing tasks for task group")
    restart = group.get("RestartPolicy") or {}
    if restart.get("Mode") not in ("delay", "fail"):
        errors.append(f"Unsupported restart mode: {json.dumps(restart.get('Mode'))}")
    names: dict[str, int] = {}
    for position, task in enumerate(group.get("Tasks") or [], start=1):
        name = task.get("Name") or ""
        if name in names:
            errors.append(f"Task {position} redefines '{name}' from task {names[name]}")
        elif name:
            names[name] = position
        task_errors = _validate_task(task)
        if task_errors:
            errors.append(f"Task {name} validation failed: {multierror(task_errors)}")
    for service in group.get("Services") or []:
        errors.extend(_validate_service(service))
    return errors


def _validate_task(task: dict) -> list[str]:
    errors: list[str] = []
    if not task.get("Name"):
        errors.append("Missing task name")
    elif "/" in task["Name"] or "\\" in task["Name"]:
        errors.append("Task name cannot include slashes")
    if not task.get("Driver"):
        errors.append("Missing task driver")
    if (task.get("KillTimeout") or 0) < 0:
        errors.append("KillTimeout must be a positive value")
    resources = task.get("Resources") or {}
    if (resources.get("CPU") or 0) < 1:
        errors.append(f"minimum CPU value is 1; got {resources.get('CPU') or 0}")
    if (resources.get("MemoryMB") or 0) < 10:
        errors.append(f"minimum MemoryMB value is 10; got {resources.get('MemoryMB') or 0}")
    if task.get("Driver") == "docker" and not (task.get("Config") or {}).get("image"):
        errors.append("1 error occurred:\n\t* Missing required field \"image\"\n\n")
    for service in task.get("Services") or []:
        errors.extend(_validate_service(service))
    return errors


def _validate_service(service: dict) -> list[str]:
    errors: list[str] = []
    name = service.get("Name") or ""
    if not _SERVICE_NAME.match(_ENV_REFERENCE.sub("ENV-VAR", name)):
        errors.append(
            "Service name must be valid per RFC 1123 and can contain only alphanumeric "
            f"characters or dashes: {json.dumps(name)}"
        )
    if service.get("AddressMode") not in ("", "auto", "host", "driver", "alloc"):
        errors.append(f'Service address_mode must be "auto", "host", or "driver"; not '
                      f"{json.dumps(service.get('AddressMode'))}")  # fmt: skip
    for check in service.get("Checks") or []:
        problem = _check_problem(service, check)
        if problem:
            errors.append(f"Check {check.get('Name')} invalid: {problem}")
    return errors


def _check_problem(service: dict, check: dict) -> str | None:
    kind = (check.get("Type") or "").lower()
    if kind in ("tcp", "http", "grpc") and not (service.get("PortLabel") or check.get("PortLabel")):
        return (f"check requires a port but neither check nor service "
                f"{json.dumps(service.get('Name'))} have a port")  # fmt: skip
    if kind not in ("tcp", "http", "grpc", "script"):
        return f'invalid type ({json.dumps(check.get("Type"))}), must be one of "http", "tcp", or "script" type'  # noqa: E501
    if kind == "http" and not check.get("Path"):
        return "http type must have a valid http path"
    if (check.get("Interval") or 0) < SECOND:
        return "missing required value interval. Interval cannot be less than 1s"
    if (check.get("Timeout") or 0) < SECOND:
        return "missing required value timeout. Timeout cannot be less than 1s"
    return None


def warnings(job: dict) -> str:
    """The ``Warnings`` text of a register or plan answer: deprecated task-level networks.
    Each group's warning wraps one go-multierror per task, prefixed with the task's name, in
    one per group (recorded: ``plan-dns-catalog-checks/a1``, ``setup-run.txt``)."""
    notes = []
    deprecated = ("task network resources have been deprecated as of Nomad 0.12.0. Please "
                  "configure networking via group network block.")
    for group in job.get("TaskGroups") or []:
        tasks = [multierror([f"Task {json.dumps(task['Name'])}: {deprecated}"])
                 for task in group.get("Tasks") or []
                 if (task.get("Resources") or {}).get("Networks")]
        if tasks:
            notes.append(f"Group {json.dumps(group['Name'])} has warnings: {multierror(tasks)}")
    if not notes:
        return ""
    return f"{len(notes)} warning(s):\n\n" + "\n".join(f"* {n}" for n in notes)


_SPEC_IGNORED = ("Status", "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex",
                 "ModifyIndex", "JobModifyIndex")  # fmt: skip


def spec_changed(old: dict, new: dict) -> bool:
    """Whether a re-submitted job differs from the stored one (Nomad's ``SpecChanged``)."""
    strip = lambda job: {k: v for k, v in job.items() if k not in _SPEC_IGNORED}  # noqa: E731
    return strip(old) != strip(new)


def group_spec(group: dict) -> dict:
    """What must be equal for an allocation to be kept in place across job versions. Services
    update in place (Nomad's ``tasksUpdated`` leaves them out: the client registers the new
    ones, which is where tags and canary tags change)."""
    ignored = ("Count", "Update", "Migrate", "ReschedulePolicy", "Scaling", "Services")
    spec = {k: v for k, v in group.items() if k not in ignored}
    spec["Tasks"] = [{k: v for k, v in task.items() if k != "Services"}
                     for task in group.get("Tasks") or []]
    return spec

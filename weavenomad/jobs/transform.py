"""Put a job's Docker tasks into one tenant's Weave subnet. Pure: canonical job JSON in and out.

What a task needs to land in the tenant subnet through the Weave proxy:
- ``WEAVE_CIDR=net:<subnet>`` in its environment (kept when the job already asks for an address
  inside the subnet, e.g. a static ``ip:``);
- a Docker network mode the proxy attaches: empty, ``default``, ``bridge`` or ``none``. The proxy
  skips named networks, so ``network_mode = "weave"`` (a common habit from Weave's docker plugin)
  silently keeps the task off the tenant subnet: it is removed, with a warning;
- no group network namespace (``network { mode = "bridge" }`` or CNI): Nomad then runs the task as
  ``container:<pause>``, which the proxy skips.

And its Consul services are held under private names (:mod:`weavenomad.jobs.services`), so
that only the reconciler's twins, at the Weave address, answer for the names and tags consumers
ask for, on every read path.

Anything that would place a task outside the tenant is refused rather than rewritten, because
the job's author asked for it explicitly; :mod:`weavenomad.jobs.policy` lists what is refused
and why. Non-Docker tasks are left alone, with a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from weavenomad.jobs import policy, services
from weavenomad.tenancy import weavecidr
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT, TenantTarget


@dataclass(frozen=True)
class Change:
    """One value the transform set or removed, named as Nomad's plan diff names it: a job
    field (``group`` None), a task field (``Env[WEAVE_CIDR]``) or a key of a task's ``Config``
    object (``section`` "Config")."""

    field: str
    old: str | None
    new: str | None
    group: str | None = None
    task: str | None = None
    section: str | None = None

    def describe(self) -> str:
        """``Env[WEAVE_CIDR] = "net:10.32.1.0/24"``, prefixed by its group and task."""
        where = "" if self.group is None else f"group {json.dumps(self.group)}: "
        if self.group is not None and self.task is not None:
            where = f"group {json.dumps(self.group)} task {json.dumps(self.task)}: "
        name = f"{self.section} {self.field}" if self.section else self.field
        if self.new is None:
            return f"{where}{name} {json.dumps(self.old)} removed"
        return f"{where}{name} = {json.dumps(self.new)}"

    def to_json(self) -> dict:
        return {"group": self.group, "task": self.task, "section": self.section,
                "field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class TransformResult:
    job: dict
    warnings: tuple[str, ...]
    changes: tuple[Change, ...] = ()


def _transform_task(
    task: Any, target: TenantTarget, cidr: str, where: str, warnings: list[str],
    changes: list[Change], group: str, job_name: str,
) -> dict:
    task = policy.as_object(task, where, "task")
    policy.check_keys(task, "task", where)
    if task.get("Driver") != "docker":
        warnings.append(
            f"{where} uses driver {task.get('Driver')!r}: left alone, it will not join the "
            "Weave overlay"
        )
        return task  # type: ignore[return-value]
    config = dict(policy.as_object(task.get("Config"), where, "Config"))
    name = str(task.get("Name") or "")
    if policy.check_docker_task(task, config, target, where, warnings):
        changes.append(Change("network_mode", str(config.pop("network_mode")), None, group,
                              name, "Config"))
        warnings.append(
            f"{where}: removed network_mode = \"weave\": the Weave proxy does not attach "
            "containers on named networks, so WEAVE_CIDR would be ignored"
        )
    env = dict(policy.as_object(task.get("Env"), where, "Env"))
    existing = env.get(weavecidr.ENV_NAME)
    if existing is not None:
        policy.check_job_cidr(existing, target, where)
    else:
        env[weavecidr.ENV_NAME] = cidr
        changes.append(Change(f"Env[{weavecidr.ENV_NAME}]", None, cidr, group, name))
    transformed = {**task, "Config": config, "Env": env}
    if task.get("Services"):
        held, renamed = services.hold_services(task["Services"], where,
                                               f"{job_name}-{group}-{name}")
        transformed["Services"] = held
        changes.extend(Change("Name", old, new, group, name, "Service") for old, new in renamed)
    return transformed


def _label(record: Any, keys: tuple[str, ...], index: int | None = None) -> str:
    """How errors name a job, group or task: its name, else its position."""
    if isinstance(record, dict):
        for key in keys:
            if record.get(key):
                return repr(record[key])
    return "?" if index is None else f"#{index}"


def apply_tenant(job: Any, target: TenantTarget) -> TransformResult:
    """Return a copy of ``job`` whose Docker tasks all run in ``target``'s subnet.

    Raises :class:`ValidationError` naming the job, group, task and field when the job would
    place a task outside the tenant (:mod:`weavenomad.jobs.policy`). The input is not
    modified; only the changed parts are copied, which keeps large jobs fast.
    """
    job = policy.as_object(job, "the job", "document")
    where_job = f"job {_label(job, ('ID', 'Name'))}"
    policy.check_keys(job, "job", where_job)
    warnings: list[str] = []
    changes: list[Change] = []
    cidr = target.weave_cidr
    job_name = str(job.get("Name") or job.get("ID") or "")
    groups = []
    for index, group in enumerate(policy.as_list(job.get("TaskGroups"), where_job,
                                                 "TaskGroups")):
        where_group = f"{where_job} group {_label(group, ('Name',), index)}"
        group = policy.as_object(group, where_group, "group")
        policy.check_keys(group, "group", where_group)
        policy.check_group_networks(group, where_group)
        group_name = str(group.get("Name") or "")
        tasks = []
        for number, task in enumerate(policy.as_list(group.get("Tasks"), where_group, "Tasks")):
            where_task = f"{where_group} task {_label(task, ('Name',), number)}"
            tasks.append(_transform_task(task, target, cidr, where_task, warnings, changes,
                                         group_name, job_name))
        transformed = {**group, "Tasks": tasks}
        # a group service stands for the group's Docker tasks; without one, nothing joins Weave
        docker = any(isinstance(t, dict) and t.get("Driver") == "docker" for t in tasks)
        if docker and group.get("Services"):
            held, renamed = services.hold_services(group["Services"], where_group,
                                                   f"{job_name}-{group_name}")
            transformed["Services"] = held
            changes.extend(Change("Name", old, new, group_name, None, "Service")
                           for old, new in renamed)
        groups.append(transformed)
    meta = dict(policy.as_object(job.get("Meta"), where_job, "Meta"))
    job_changes = []
    for key, value in ((META_TENANT, target.label), (META_SUBNET, target.subnet_text)):
        if meta.get(key) != value:
            old = meta.get(key)
            job_changes.append(Change(f"Meta[{key}]", None if old is None else str(old), value))
        meta[key] = value
    return TransformResult({**job, "TaskGroups": groups, "Meta": meta}, tuple(warnings),
                           tuple(job_changes + changes))

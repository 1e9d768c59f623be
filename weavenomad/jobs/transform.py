"""Put a job's Docker tasks into one tenant's Weave subnet. Pure: canonical job JSON in and out.

What a task needs to land in the tenant subnet through the Weave proxy:
- ``WEAVE_CIDR=net:<subnet>`` in its environment (kept when the job already asks for an address
  inside the subnet, e.g. a static ``ip:``);
- a Docker network mode the proxy attaches: empty, ``default``, ``bridge`` or ``none``. The proxy
  skips named networks, so ``network_mode = "weave"`` (a common habit from Weave's docker plugin)
  silently keeps the task off the tenant subnet: it is removed, with a warning;
- no group network namespace (``network { mode = "bridge" }`` or CNI): Nomad then runs the task as
  ``container:<pause>``, which the proxy skips.

Anything that would place a task outside the tenant is refused rather than rewritten, because
the job's author asked for it explicitly; :mod:`weavenomad.jobs.policy` lists what is refused
and why. Non-Docker tasks are left alone, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weavenomad.jobs import policy
from weavenomad.tenancy import weavecidr
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT, TenantTarget


@dataclass(frozen=True)
class TransformResult:
    job: dict
    warnings: tuple[str, ...]


def _transform_task(
    task: Any, target: TenantTarget, cidr: str, where: str, warnings: list[str]
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
    if policy.check_docker_task(task, config, target, where, warnings):
        del config["network_mode"]
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
    return {**task, "Config": config, "Env": env}


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
    cidr = target.weave_cidr
    groups = []
    for index, group in enumerate(policy.as_list(job.get("TaskGroups"), where_job,
                                                 "TaskGroups")):
        where_group = f"{where_job} group {_label(group, ('Name',), index)}"
        group = policy.as_object(group, where_group, "group")
        policy.check_keys(group, "group", where_group)
        policy.check_group_networks(group, where_group)
        tasks = []
        for number, task in enumerate(policy.as_list(group.get("Tasks"), where_group, "Tasks")):
            where_task = f"{where_group} task {_label(task, ('Name',), number)}"
            tasks.append(_transform_task(task, target, cidr, where_task, warnings))
        groups.append({**group, "Tasks": tasks})
    meta = dict(policy.as_object(job.get("Meta"), where_job, "Meta"))
    meta[META_TENANT] = target.label
    meta[META_SUBNET] = target.subnet_text
    return TransformResult({**job, "TaskGroups": groups, "Meta": meta}, tuple(warnings))

"""Deployments of the simulated Nomad, as pure functions over the deployment table: one
deployment per job version that places allocations (service jobs with an update block), its
placed/healthy/unhealthy counts, and the verdict (successful once every group has its
``DesiredTotal`` healthy allocations, failed at the first unhealthy one)."""

from __future__ import annotations

from collections.abc import Callable

from weavenomad_lab.nomad import shapes
from weavenomad_lab.nomad.scheduler import Plan


def attach(deployments: dict[str, dict], job: dict, plan: Plan, index: int, now: int,
           new_id: Callable[[], str], in_place: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The ID of the deployment the plan's placements belong to ("" for none), creating it
    (and cancelling one of an older job version) as Nomad's deployment watcher does.
    ``in_place``: the task group of each allocation the plan updates in place, which joins the
    new deployment as a placed one (Nomad's ``computeJobAllocs`` gives it the deployment's ID
    and clears its deployment status, so its health counts again)."""
    if job["Type"] != "service" or not any(
        (g.get("Update") or {}).get("MaxParallel") for g in job["TaskGroups"]
    ):
        return ""
    placed: dict[str, int] = {}
    for group in [p.group for p in plan.place] + list(in_place):
        placed[group] = placed.get(group, 0) + 1
    for deployment in deployments.values():
        if deployment["JobID"] != job["ID"] or deployment["Status"] != "running":
            continue
        if deployment["JobVersion"] == job["Version"]:
            for group, number in placed.items():
                deployment["TaskGroups"][group]["PlacedAllocs"] += number
            _note_canaries(deployment, job, plan)
            deployment["ModifyIndex"] = index
            return deployment["ID"]
        deployment.update(Status="cancelled", ModifyIndex=index,
                          StatusDescription="Cancelled due to newer version of job")  # fmt: skip
    deployment = shapes.new_deployment(deployment_id=new_id(), job=job, placed=placed, now=now)
    deployment.update(CreateIndex=index, ModifyIndex=index)
    _note_canaries(deployment, job, plan)
    deployments[deployment["ID"]] = deployment
    return deployment["ID"]


def _note_canaries(deployment: dict, job: dict, plan: Plan) -> None:
    for placement in plan.place:
        if placement.canary:
            group = deployment["TaskGroups"][placement.group]
            spec = next(g for g in job["TaskGroups"] if g["Name"] == placement.group)
            group["DesiredCanaries"] = int((spec.get("Update") or {}).get("Canary") or 0)


def canaries_healthy(deployment: dict, group: str, healthy_canaries: int) -> bool:
    """Whether an auto-promoting group's canaries are all healthy (time to promote)."""
    counts = deployment["TaskGroups"][group]
    return (counts["AutoPromote"] and not counts["Promoted"] and counts["DesiredCanaries"] > 0
            and healthy_canaries >= counts["DesiredCanaries"])


def count_health(deployment: dict, group: str, healthy: bool, index: int) -> bool:
    """Record one allocation's health; True when this made the deployment successful."""
    counts = deployment["TaskGroups"][group]
    counts["HealthyAllocs" if healthy else "UnhealthyAllocs"] += 1
    deployment["ModifyIndex"] = index
    if not healthy:
        deployment.update(Status="failed",
                          StatusDescription="Failed due to unhealthy allocations")  # fmt: skip
        return False
    if any(g["DesiredCanaries"] and not g["Promoted"] for g in deployment["TaskGroups"].values()):
        return False  # a canary deployment waits for its promotion
    if all(g["HealthyAllocs"] >= g["DesiredTotal"] for g in deployment["TaskGroups"].values()):
        deployment.update(Status="successful",
                          StatusDescription="Deployment completed successfully")  # fmt: skip
        return True
    return False

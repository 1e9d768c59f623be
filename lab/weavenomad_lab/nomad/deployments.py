"""Deployments of the simulated Nomad, as pure functions over the deployment table: one
deployment per job version that places allocations (service jobs with an update block), its
placed/healthy/unhealthy counts, and the verdict (successful once every group has its
``DesiredTotal`` healthy allocations, failed at the first unhealthy one)."""

from __future__ import annotations

from collections.abc import Callable

from weavenomad_lab.nomad import shapes
from weavenomad_lab.nomad.scheduler import Plan


def attach(deployments: dict[str, dict], job: dict, plan: Plan, index: int, now: int,
           new_id: Callable[[], str]) -> str:  # fmt: skip
    """The ID of the deployment the plan's placements belong to ("" for none), creating it
    (and cancelling one of an older job version) as Nomad's deployment watcher does."""
    if job["Type"] != "service" or not any(
        (g.get("Update") or {}).get("MaxParallel") for g in job["TaskGroups"]
    ):
        return ""
    for deployment in deployments.values():
        if deployment["JobID"] != job["ID"] or deployment["Status"] != "running":
            continue
        if deployment["JobVersion"] == job["Version"]:
            for placement in plan.place:
                deployment["TaskGroups"][placement.group]["PlacedAllocs"] += 1
            deployment["ModifyIndex"] = index
            return deployment["ID"]
        deployment.update(Status="cancelled", ModifyIndex=index,
                          StatusDescription="Cancelled due to newer version of job")  # fmt: skip
    placed: dict[str, int] = {}
    for placement in plan.place:
        placed[placement.group] = placed.get(placement.group, 0) + 1
    deployment = shapes.new_deployment(deployment_id=new_id(), job=job, placed=placed, now=now)
    deployment.update(CreateIndex=index, ModifyIndex=index)
    deployments[deployment["ID"]] = deployment
    return deployment["ID"]


def count_health(deployment: dict, group: str, healthy: bool, index: int) -> bool:
    """Record one allocation's health; True when this made the deployment successful."""
    counts = deployment["TaskGroups"][group]
    counts["HealthyAllocs" if healthy else "UnhealthyAllocs"] += 1
    deployment["ModifyIndex"] = index
    if not healthy:
        deployment.update(Status="failed",
                          StatusDescription="Failed due to unhealthy allocations")  # fmt: skip
        return False
    if all(g["HealthyAllocs"] >= g["DesiredTotal"] for g in deployment["TaskGroups"].values()):
        deployment.update(Status="successful",
                          StatusDescription="Deployment completed successfully")  # fmt: skip
        return True
    return False

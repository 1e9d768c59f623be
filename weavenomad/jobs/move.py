"""Jobs that change tenant: ``run`` and ``plan`` refuse to move a registered job into another
tenant unless ``--move-tenant`` asks for it, and a move must replace every allocation. Pure.

A move is a change of the registered job's tenant meta (name or subnet). It is refused by
default because it is rarely meant: the same job file run for a second tenant would otherwise
take the first tenant's service away from it without a word. When asked, the move is checked
against Nomad's own plan before anything is registered: every allocation of a task group with
a Docker task must be replaced (a create/destroy update), never updated in place, because an
allocation updated in place keeps its containers and their addresses in the old tenant's
subnet under the new tenant's job. (Nomad replaces a task whose ``Env`` changed, so the
tenant transform's new ``WEAVE_CIDR`` already forces it; the check makes sure.) The
registration then enforces the job modify index that was planned against, so a change by
someone else in between is refused instead of moved over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from weavenomad.errors import ConflictError
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT, TenantTarget

#: the flag that allows a move
FLAG = "--move-tenant"


@dataclass(frozen=True)
class Move:
    """The registered job's tenant (label and subnet text, as its meta has them)."""

    job_id: str
    tenant: str
    subnet: str
    #: the registered job's JobModifyIndex
    index: int

    def describe(self) -> str:
        return f"tenant {self.tenant} ({self.subnet})"

    def to_json(self) -> dict:
        return {"tenant": self.tenant, "subnet": self.subnet}


def tenant_move(registered: Mapping | None, target: TenantTarget) -> Move | None:
    """The move that registering into ``target`` would be; None when the job is not
    registered, carries no tenant meta (it joins a tenant, nobody's is taken), or is already
    the target's."""
    if registered is None:
        return None
    meta = registered.get("Meta") or {}
    tenant, subnet = meta.get(META_TENANT), meta.get(META_SUBNET)
    if not tenant and not subnet:
        return None
    if tenant == target.label and subnet == target.subnet_text:
        return None
    return Move(str(registered.get("ID") or ""), str(tenant or "-"), str(subnet or "-"),
                int(registered.get("JobModifyIndex") or 0))


def refuse_unasked(move: Move, target: TenantTarget) -> ConflictError:
    return ConflictError(
        f"job {move.job_id!r} is registered in {move.describe()}, not {target.label} "
        f"({target.subnet_text})",
        hint=f"pass {FLAG} to move it: Nomad replaces all its allocations, whose tasks get "
             "addresses in the new subnet")


def overlay_groups(job: Mapping) -> list[str]:
    """The task groups with a Docker task (on the overlay through Weave's proxy)."""
    return [str(group.get("Name") or "") for group in job.get("TaskGroups") or ()
            if any(task.get("Driver") == "docker" for task in group.get("Tasks") or ())]


def check_replaced(move: Move, job: Mapping, plan_answer: Mapping, target: TenantTarget) -> None:
    """Refuse the move when Nomad's plan would update an overlay group's allocations in place
    while the subnet changes: those tasks would keep their old-tenant addresses."""
    if move.subnet == target.subnet_text:
        return  # the same subnet under another name: the tasks may stay where they are
    updates = (plan_answer.get("Annotations") or {}).get("DesiredTGUpdates") or {}
    stuck = {group: int((updates.get(group) or {}).get("InPlaceUpdate") or 0)
             for group in overlay_groups(job)}
    stuck = {group: count for group, count in stuck.items() if count}
    if stuck:
        listed = ", ".join(f"{group} ({count})" for group, count in sorted(stuck.items()))
        raise ConflictError(
            f"moving job {move.job_id!r}: Nomad would update allocations of task group(s) "
            f"{listed} in place, and their tasks would keep addresses in {move.subnet}",
            hint="stop the job first ('nomad job stop'), then run it in the new tenant")

"""The service/batch scheduler of the simulated Nomad: a pure function from (job, its
allocations, the nodes) to a plan. Nothing here touches state; ``state.py`` applies plans.

What it does, after Nomad's generic scheduler: keep ``Count`` allocations per task group,
named ``job.group[i]``; replace allocations whose group changed (destructive update), update
the others in place; stop surplus ones and all of a stopped job; spread placements over the
feasible nodes (fewest allocations of this job first, then fewest overall). Feasible means:
ready and eligible, in one of the job's datacenters, every task's driver detected and healthy,
the job/group/task constraints this lab supports satisfied, and CPU/memory left.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from weavenomad_lab.nomad import jobs as jobspec

ALLOC_NOT_NEEDED = "alloc not needed due to job update"
ALLOC_UPDATING = "alloc is being updated due to job update"
TERMINAL = ("complete", "failed", "lost")
_INDEX = re.compile(r"\[(\d+)\]$")
_TARGET = re.compile(r"^\$\{(node|attr|meta)\.(.+)\}$")


@dataclass(frozen=True)
class Placement:
    group: str
    index: int
    node_id: str
    #: a canary of a destructive update, placed beside the old allocations until promoted
    canary: bool = False


@dataclass
class Plan:
    place: list[Placement] = field(default_factory=list)
    #: (alloc ID, DesiredDescription)
    stop: list[tuple[str, str]] = field(default_factory=list)
    #: allocations that stay but now run the new job version
    in_place: list[str] = field(default_factory=list)
    #: group -> AllocMetric of the placements that found no node
    failed: dict[str, dict] = field(default_factory=dict)
    #: group -> number of allocations that could not be placed
    queued: dict[str, int] = field(default_factory=dict)
    #: computed node class -> whether its nodes passed the feasibility checks (drivers,
    #: constraints) for a group that could not be placed; what a blocked evaluation keeps
    class_eligibility: dict[str, bool] = field(default_factory=dict)

    def changes_anything(self) -> bool:
        return bool(self.place or self.stop or self.in_place)


def job_status(allocs: list[dict], evals: list[dict]) -> str:
    """Nomad's ``getJobStatus`` for service/batch jobs: running while any allocation is,
    pending while an evaluation is outstanding, dead once everything is terminal."""
    if any(is_live(a) for a in allocs):
        return "running"
    if any(e["Status"] in ("pending", "blocked") for e in evals):
        return "pending"
    return "dead" if (evals or allocs) else "pending"


def reschedule_delay(policy: dict, failures: int) -> int | None:
    """Nanoseconds before a failed allocation is replaced (``failures`` counts the failed
    allocations at its index, itself included), or None when the policy allows no more."""
    if not (policy.get("Unlimited") or policy.get("Attempts")):
        return None
    if not policy.get("Unlimited") and failures > int(policy.get("Attempts") or 0):
        return None
    delay = int(policy.get("Delay") or 0)
    if policy.get("DelayFunction") == "exponential":
        delay *= 2 ** max(0, failures - 1)
    if policy.get("MaxDelay"):
        delay = min(delay, int(policy["MaxDelay"]))
    return delay


def alloc_index(alloc: dict) -> int:
    match = _INDEX.search(alloc.get("Name", ""))
    return int(match.group(1)) if match else 0


def is_live(alloc: dict) -> bool:
    return alloc["DesiredStatus"] == "run" and alloc["ClientStatus"] not in TERMINAL


def schedule(job: dict | None, allocs: list[dict], nodes: list[dict]) -> Plan:
    """The plan that brings ``allocs`` (all of one job) in line with ``job``."""
    plan = Plan()
    live = [a for a in allocs if is_live(a)]
    if job is None or job.get("Stop"):
        plan.stop = [(a["ID"], ALLOC_NOT_NEEDED) for a in live]
        return plan
    groups = {g["Name"]: g for g in job.get("TaskGroups") or []}
    usage = _node_usage(nodes, live)
    for alloc in live:
        if alloc["TaskGroup"] not in groups:
            plan.stop.append((alloc["ID"], ALLOC_NOT_NEEDED))
    for name, group in groups.items():
        _plan_group(job, group, [a for a in live if a["TaskGroup"] == name], nodes, usage, plan)
    return plan


def is_canary(alloc: dict) -> bool:
    """An unpromoted canary (promotion clears the flag, as Nomad's state store does)."""
    return bool((alloc.get("DeploymentStatus") or {}).get("Canary"))


def _plan_group(job: dict, group: dict, live: list[dict], nodes: list[dict],
                usage: dict[str, Counter], plan: Plan) -> None:  # fmt: skip
    count = int(group.get("Count") or 0)
    wanted_spec = jobspec.group_spec(group)

    def current(alloc: dict) -> bool:
        old_group = _find_group(alloc["Job"], group["Name"])
        return old_group is not None and jobspec.group_spec(old_group) == wanted_spec

    canaries = int((group.get("Update") or {}).get("Canary") or 0)
    if canaries and any(not current(a) for a in live) and all(
            is_canary(a) for a in live if current(a)):
        # a destructive update with canaries, not promoted yet: the old allocations stay and
        # the canaries run beside them (Nomad's reconciler, "canary" updates)
        _place_canaries(job, group, [a for a in live if current(a)], canaries, nodes, usage,
                        plan)
        return
    kept: set[int] = set()
    # at one index a current allocation (a promoted canary) wins over an outdated one
    for alloc in sorted(live, key=lambda a: (alloc_index(a), not current(a), a["CreateIndex"])):
        index = alloc_index(alloc)
        if index >= count or index in kept:
            plan.stop.append((alloc["ID"], ALLOC_NOT_NEEDED))
            _release(usage, alloc)
            continue
        if not current(alloc):
            plan.stop.append((alloc["ID"], ALLOC_UPDATING))
            _release(usage, alloc)
            continue
        kept.add(index)
        if alloc["Job"].get("Version") != job.get("Version"):
            plan.in_place.append(alloc["ID"])
    missing = [i for i in range(count) if i not in kept]
    failures = 0
    metric: dict | None = None
    for index in missing:
        node, metric_or_none = _choose_node(job, group, nodes, usage, plan.class_eligibility)
        if node is None:
            failures += 1
            metric = metric or metric_or_none
            continue
        plan.place.append(Placement(group["Name"], index, node["ID"]))
        _claim(usage, node["ID"], job["ID"], group)
    if failures and metric is not None:
        metric["CoalescedFailures"] = failures - 1
        plan.failed[group["Name"]] = metric
        plan.queued[group["Name"]] = failures


def _place_canaries(job: dict, group: dict, placed: list[dict], wanted: int, nodes: list[dict],
                    usage: dict[str, Counter], plan: Plan) -> None:
    taken = {alloc_index(a) for a in placed}
    free = (i for i in range(max(wanted, 1) + len(taken)) if i not in taken)
    for _ in range(wanted - len(placed)):
        node, metric = _choose_node(job, group, nodes, usage, plan.class_eligibility)
        if node is None:
            if metric is not None:
                plan.failed[group["Name"]] = metric
                plan.queued[group["Name"]] = plan.queued.get(group["Name"], 0) + 1
            continue
        plan.place.append(Placement(group["Name"], next(free), node["ID"], canary=True))
        _claim(usage, node["ID"], job["ID"], group)


def _find_group(job: dict, name: str) -> dict | None:
    return next((g for g in job.get("TaskGroups") or [] if g["Name"] == name), None)


# -- node usage --------------------------------------------------------------------------------


def _group_demand(group: dict) -> tuple[int, int]:
    cpu = sum(((t.get("Resources") or {}).get("CPU") or 0) for t in group.get("Tasks") or [])
    mem = sum(((t.get("Resources") or {}).get("MemoryMB") or 0) for t in group.get("Tasks") or [])
    return cpu, mem


def _node_usage(nodes: list[dict], live: list[dict]) -> dict[str, Counter]:
    usage: dict[str, Counter] = {n["ID"]: Counter() for n in nodes}
    for alloc in live:
        group = _find_group(alloc["Job"], alloc["TaskGroup"]) or {}
        _claim(usage, alloc["NodeID"], alloc["JobID"], group)
    return usage


def _claim(usage: dict[str, Counter], node_id: str, job_id: str, group: dict) -> None:
    cpu, mem = _group_demand(group)
    counter = usage.setdefault(node_id, Counter())
    counter["allocs"] += 1
    counter[f"job:{job_id}"] += 1
    counter["cpu"] += cpu
    counter["memory"] += mem


def _release(usage: dict[str, Counter], alloc: dict) -> None:
    group = _find_group(alloc["Job"], alloc["TaskGroup"]) or {}
    cpu, mem = _group_demand(group)
    counter = usage.get(alloc["NodeID"])
    if counter is not None:
        counter["allocs"] -= 1
        counter[f"job:{alloc['JobID']}"] -= 1
        counter["cpu"] -= cpu
        counter["memory"] -= mem


# -- feasibility -------------------------------------------------------------------------------


def _choose_node(job: dict, group: dict, nodes: list[dict], usage: dict[str, Counter],
                 eligibility: dict[str, bool]) -> tuple[dict | None, dict | None]:  # fmt: skip
    datacenters = job.get("Datacenters") or []
    in_dcs = [n for n in nodes if n.get("Datacenter") in datacenters]
    available = {dc: 0 for dc in datacenters}
    for node in in_dcs:
        if _ready(node):
            available[node["Datacenter"]] += 1
    metric = _failure_metric(len([n for n in in_dcs if _ready(n)]), available)
    candidates = []
    for node in in_dcs:
        if not _ready(node):
            continue
        reason = _filter_reason(job, group, node, usage)
        node_class = node.get("ComputedClass") or ""
        # Nomad's feasibility checker marks a class eligible once one of its nodes passed, and
        # ineligible when its nodes fail a driver or constraint check
        eligibility[node_class] = eligibility.get(node_class, False) or not reason
        if reason:
            metric["NodesFiltered"] += 1
            metric["ConstraintFiltered"] = metric["ConstraintFiltered"] or {}
            metric["ConstraintFiltered"][reason] = metric["ConstraintFiltered"].get(reason, 0) + 1
            continue
        exhausted = _exhausted_dimension(group, node, usage[node["ID"]])
        if exhausted:
            metric["NodesExhausted"] += 1
            metric["DimensionExhausted"] = metric["DimensionExhausted"] or {}
            dims = metric["DimensionExhausted"]
            dims[exhausted] = dims.get(exhausted, 0) + 1
            continue
        candidates.append(node)
    if not candidates:
        return None, metric
    candidates.sort(key=lambda n: (usage[n["ID"]][f"job:{job['ID']}"], usage[n["ID"]]["allocs"],
                                   n["Name"]))  # fmt: skip
    return candidates[0], None


def _ready(node: dict) -> bool:
    return node.get("Status") == "ready" and node.get("SchedulingEligibility") == "eligible"


def _failure_metric(evaluated: int, available: dict[str, int]) -> dict:
    return {
        "AllocationTime": 0, "ClassExhausted": None, "ClassFiltered": None,
        "CoalescedFailures": 0, "ConstraintFiltered": None, "DimensionExhausted": None,
        "NodesAvailable": available, "NodesEvaluated": evaluated, "NodesExhausted": 0,
        "NodesFiltered": 0, "QuotaExhausted": None, "ScoreMetaData": None, "Scores": None,
    }  # fmt: skip


def _filter_reason(job: dict, group: dict, node: dict, usage: dict[str, Counter]) -> str | None:
    for task in group.get("Tasks") or []:
        driver = (node.get("Drivers") or {}).get(task.get("Driver"))
        if not driver or not driver.get("Detected") or not driver.get("Healthy"):
            return "missing drivers"
    constraints = list(job.get("Constraints") or []) + list(group.get("Constraints") or [])
    for task in group.get("Tasks") or []:
        constraints += list(task.get("Constraints") or [])
    for constraint in constraints:
        operand = constraint.get("Operand") or "="
        if operand == "distinct_hosts":
            if usage[node["ID"]][f"job:{job['ID']}"] > 0:
                return "distinct_hosts"
            continue
        if not constraint_holds(constraint, node):
            return f"{constraint.get('LTarget', '')} {operand} {constraint.get('RTarget', '')}"
    return None


def resolve_target(target: str, node: dict) -> str | None:
    """The value of ``${node.…}``, ``${attr.…}`` or ``${meta.…}`` on ``node``; literals as is."""
    match = _TARGET.match(target or "")
    if not match:
        return target
    scope, key = match.groups()
    if scope == "attr":
        return (node.get("Attributes") or {}).get(key)
    if scope == "meta":
        return (node.get("Meta") or {}).get(key)
    return {
        "unique.id": node.get("ID"),
        "unique.name": node.get("Name"),
        "datacenter": node.get("Datacenter"),
        "class": node.get("NodeClass"),
    }.get(key)


def constraint_holds(constraint: dict, node: dict) -> bool:
    left = resolve_target(constraint.get("LTarget") or "", node)
    right = resolve_target(constraint.get("RTarget") or "", node)
    operand = constraint.get("Operand") or "="
    if operand in ("=", "==", "is"):
        return left is not None and left == right
    if operand in ("!=", "not"):
        return left != right
    if operand == "is_set":
        return left is not None
    if operand == "is_not_set":
        return left is None
    if operand == "regexp":
        return left is not None and re.search(right or "", left) is not None
    if operand in ("set_contains", "set_contains_all"):
        have = {v.strip() for v in (left or "").split(",")}
        return all(v.strip() in have for v in (right or "").split(","))
    if operand == "set_contains_any":
        have = {v.strip() for v in (left or "").split(",")}
        return any(v.strip() in have for v in (right or "").split(","))
    # operands the lab does not evaluate (version, semver, lexical order) do not filter
    return True


def _exhausted_dimension(group: dict, node: dict, used: Counter) -> str | None:
    cpu, mem = _group_demand(group)
    resources = (node.get("NodeResources") or {})
    total_cpu = ((resources.get("Cpu") or {}).get("CpuShares")) or 0
    total_mem = ((resources.get("Memory") or {}).get("MemoryMB")) or 0
    if total_cpu and used["cpu"] + cpu > total_cpu:
        return "cpu"
    if total_mem and used["memory"] + mem > total_mem:
        return "memory"
    return None

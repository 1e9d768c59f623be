"""Who still holds addresses in a subnet, read from Nomad: what decides when a deleted tenant's
quarantined subnet may be handed out again (:mod:`weavenomad.tenancy.model`).

Nomad is the one cluster-wide record of every task, including those of nodes that are down,
and the ``WEAVE_CIDR`` of each Docker task says where Weave's proxy put (or will put) its
address. A *holder* of a subnet is:

* a pending or running allocation (whatever Nomad wants of it: a task being stopped still has
  its address) whose job version asks for an address in the subnet (``net:`` overlapping it,
  or ``ip:`` inside it);
* a lost allocation on a node that is not ready: Nomad gave up on the node, but its containers
  may still run there, and come back with it. Once the node is ready again its client stops
  them; once Nomad garbage-collects the node (``nomad system gc`` after
  ``node_gc_threshold``), its allocations are gone;
* a job that is registered, not stopped, and has no allocation yet or places them later:
  pending (its evaluation blocked, e.g. on missing drivers after a Nomad restart), periodic or
  parameterized (its children). Its current version's ``WEAVE_CIDR`` counts.

:func:`holders` decides from Nomad's answers (pure); :func:`read_holders` does the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network

from weavenomad.tenancy.weavecidr import ENV_NAME, requested_networks

#: client states of an allocation whose containers exist or are being created
LIVE_STATES = ("pending", "running")


@dataclass(frozen=True)
class Holder:
    job_id: str
    #: empty for a job that has not placed the tasks yet
    alloc_id: str = ""
    node: str = ""
    #: the allocation's client status, or the job's status
    status: str = ""


def job_networks(job: Mapping, group: str | None = None) -> tuple[IPv4Network, ...]:
    """The networks the Docker tasks of ``job`` (of one task group, when named) ask Weave for
    addresses in, outside the default subnet."""
    found: list[IPv4Network] = []
    for task_group in job.get("TaskGroups") or ():
        if group is not None and task_group.get("Name") != group:
            continue
        for task in task_group.get("Tasks") or ():
            if task.get("Driver") == "docker":
                found += requested_networks((task.get("Env") or {}).get(ENV_NAME))
    return tuple(found)


def allocation_holds(alloc: Mapping, node_ready: bool) -> bool:
    """Whether the allocation's tasks may hold their Weave addresses now."""
    status = alloc.get("ClientStatus")
    return status in LIVE_STATES or (status == "lost" and not node_ready)


def places_later(stub: Mapping) -> bool:
    """A job (``/v1/jobs`` stub) that may place tasks it has no allocation for yet."""
    if stub.get("Stop"):
        return False
    return stub.get("Status") == "pending" or bool(stub.get("Periodic")) \
        or bool(stub.get("ParameterizedJob"))


def holders(subnets: Iterable[IPv4Network], node_allocations: Iterable[tuple[Mapping, list]],
            waiting_jobs: Iterable[Mapping]) -> dict[IPv4Network, list[Holder]]:
    """Every subnet of ``subnets`` with its holders (an empty list: free). ``node_allocations``
    pairs each node (``/v1/nodes`` entry) with its allocations (``/v1/node/<id>/allocations``,
    each with its job version); ``waiting_jobs`` are the full jobs that may place later."""
    found: dict[IPv4Network, list[Holder]] = {subnet: [] for subnet in subnets}

    def note(networks: tuple[IPv4Network, ...], holder: Holder) -> None:
        for subnet, held in found.items():
            if any(network.overlaps(subnet) for network in networks) and holder not in held:
                held.append(holder)

    for node, allocations in node_allocations:
        ready = node.get("Status") == "ready"
        name = str(node.get("Name") or str(node.get("ID") or "")[:8])
        for alloc in allocations:
            if allocation_holds(alloc, ready):
                note(job_networks(alloc.get("Job") or {}, alloc.get("TaskGroup")),
                     Holder(str(alloc.get("JobID") or ""), str(alloc.get("ID") or ""), name,
                            str(alloc.get("ClientStatus") or "")))
    for job in waiting_jobs:
        note(job_networks(job), Holder(str(job.get("ID") or ""),
                                       status=str(job.get("Status") or "")))
    return found


def read_holders(nomad, subnets: Iterable[IPv4Network]) -> dict[IPv4Network, list[Holder]]:
    """:func:`holders` from Nomad's answers now: its nodes with their allocations, and the
    jobs that may place later. Raises what the Nomad client raises."""
    pairs = [(node, nomad.node_allocations(node["ID"])[1]) for node in nomad.nodes()]
    waiting = [nomad.job(stub["ID"]) for stub in nomad.jobs() if places_later(stub)]
    return holders(subnets, pairs, waiting)


def describe(held: list[Holder]) -> str:
    """What holds a subnet, for messages: "2 allocation(s) of job web still hold addresses in
    it; job cron (pending) will place tasks in it"."""
    placed: dict[str, int] = {}
    later: dict[str, str] = {}
    for holder in held:
        if holder.alloc_id:
            placed[holder.job_id] = placed.get(holder.job_id, 0) + 1
        else:
            later[holder.job_id] = holder.status
    parts = []
    if placed:
        count = sum(placed.values())
        jobs = ", ".join(sorted(placed))
        parts.append(f"{count} allocation(s) of job{'s' if len(placed) > 1 else ''} {jobs} "
                     "still hold addresses in it")
    if later:
        jobs = ", ".join(f"{job} ({status})" for job, status in sorted(later.items()))
        parts.append(f"job{'s' if len(later) > 1 else ''} {jobs} will place tasks in it")
    return "; ".join(parts) or "nothing holds an address in it"

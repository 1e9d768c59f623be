"""``weavenomad status``: per tenant and service, each running allocation with its Weave
address and whether Consul advertises it correctly.

Cluster-wide from any machine: Nomad's node allocations (with their jobs) and the registry's
health view of each service (Consul's, through its
:class:`~weavenomad.reconcile.registrations.ServiceAgent`), which holds both Nomad's instance
and the reconciler's twin with their checks (the twin's address is the Weave address the node's
reconciler found). :func:`rows` is pure; :func:`gather` does the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network, ip_address

from weavenomad.clients.weave_ipam import IpamWait
from weavenomad.errors import WeavenomadError
from weavenomad.reconcile.desired import deleted_tenants_subnet, tenant_subnet, trespassed
from weavenomad.reconcile.model import Allocation, Tenancy, allocation_from_api, tenancy_of
from weavenomad.reconcile.registrations import (
    MASK_PREFIX,
    Instance,
    ServiceAgent,
    nomad_service_id,
    twin_id,
)
from weavenomad.tenancy.weavecidr import requested_networks

OK = "ok"
TWIN_FAILING = "twin failing"
NOT_ADVERTISED = "not advertised"
WRONG_ADDRESS = "wrong address advertised"
NOT_REGISTERED = "not registered"
OUTSIDE_TENANT = "outside tenant subnet"
TENANT_VIOLATION = "tenant violation"
TENANT_DELETED = "tenant deleted"
NO_TWIN = "no twin"

_EXPLAIN = {
    OK: "only the Weave address is returned",
    TWIN_FAILING: "the twin's checks are not passing",
    NOT_ADVERTISED: "masked without a twin (see the reconciler's log: violation or bad input)",
    WRONG_ADDRESS: "Nomad's address is returned: no twin (is the reconciler running?)",
    NOT_REGISTERED: "Nomad has not registered the service (yet)",
    OUTSIDE_TENANT: "the advertised address lies outside the tenant's subnet",
    TENANT_VIOLATION: "its WEAVE_CIDR puts it into a subnet that is not its job's (another "
                      "tenant's, or a quarantined one): not advertised, see the reconciler's log",
    NO_TWIN: "held under a private name and no twin answers for it: nothing is returned (is "
             "the reconciler running?)",
    TENANT_DELETED: "its tenant was deleted: the subnet stays quarantined, out of reach of new "
                    "tenants, until this task stops",
}


@dataclass(frozen=True)
class Row:
    tenant: str
    subnet: str
    service: str
    alloc_id: str
    node: str
    task: str
    weave_address: str
    nomad_address: str
    state: str
    job: str = "-"
    group: str = "-"
    #: what Consul's ?passing (and DNS) answers for this instance: the addresses of its
    #: registrations whose checks all pass
    consul_answers: tuple[str, ...] = ()

    @property
    def correct(self) -> bool:
        return self.state == OK

    def to_json(self) -> dict:
        return {**asdict(self), "consul_answers": list(self.consul_answers),
                "correct": self.correct, "explanation": _EXPLAIN[self.state]}


def _addr(instance: Instance | None) -> str:
    if instance is None:
        return "-"
    return f"{instance.service.address or '?'}:{instance.service.port or 0}"


def _answered(*instances: Instance | None) -> tuple[str, ...]:
    """The addresses Consul hands out: registrations whose checks all pass."""
    return tuple(_addr(i) for i in instances
                 if i is not None and all(check.status == "passing" for check in i.checks))


def _masked(instance: Instance) -> bool:
    return any(check.id.startswith(MASK_PREFIX) for check in instance.checks)


def _state(twin: Instance | None, nomad: Instance | None, subnet: IPv4Network | None,
           held: bool = False) -> str:
    if twin is not None:
        try:
            inside = subnet is None or ip_address(twin.service.address) in subnet
        except ValueError:
            inside = False
        if not inside:
            return OUTSIDE_TENANT
        if any(check.status != "passing" for check in twin.checks):
            return TWIN_FAILING
        return OK if nomad is None or held or _masked(nomad) else WRONG_ADDRESS
    if nomad is None:
        return NOT_REGISTERED
    if held:
        return NO_TWIN
    return NOT_ADVERTISED if _masked(nomad) else WRONG_ADDRESS


def _overlay_networks(alloc: Allocation):
    return [network for task in alloc.tasks if task.driver == "docker" and task.wants_overlay
            for network in requested_networks(task.weave_cidr)]


def tenancy_state(alloc: Allocation, tenancy: Tenancy) -> str | None:
    """What the allocation's tenancy alone says, before any registration: a violation when a
    Docker task's ``WEAVE_CIDR`` asks for a subnet that is not its job's (the reconciler's rule,
    :func:`~weavenomad.reconcile.desired.trespassed`), "tenant deleted" when its tenant's
    subnet is quarantined; None otherwise."""
    if any(trespassed(network, alloc, tenancy) for network in _overlay_networks(alloc)):
        return TENANT_VIOLATION
    if deleted_tenants_subnet(alloc, tenancy) is not None:
        return TENANT_DELETED
    return None


def rows(allocations: Iterable[tuple[Allocation, str]],
         health: Mapping[str, Mapping[str, Instance]], tenancy: Tenancy) -> list[Row]:
    """One row per service of every active allocation; an allocation in violation or of a
    deleted tenant gets a row (service "-") even without services. ``health`` maps a service
    name to its instances in the registry's health view, by service ID. Pure."""
    found = []
    for alloc, node in allocations:
        if not alloc.active:
            continue
        subnet, _ = tenant_subnet(alloc, tenancy)
        verdict = tenancy_state(alloc, tenancy)
        services = [(f"group-{alloc.group}", s) for s in alloc.group_services]
        services += [(t.name, s) for t in alloc.tasks for s in t.services]
        common = dict(tenant=alloc.tenant or "-", subnet=str(subnet) if subnet else "-",
                      alloc_id=alloc.id, node=node, job=alloc.job_id or "-",
                      group=alloc.group or "-")
        if verdict is not None and not services:
            task = next((t.name for t in alloc.tasks if t.wants_overlay), "-")
            found.append(Row(**common, service="-", task=task, weave_address="-",
                             nomad_address="-", state=verdict))
        for task, spec in services:
            # a held service: Nomad's instance under the private name, the twin's under the
            # public one, which answers for it alone
            public = spec.public_name or spec.name
            sid = nomad_service_id(alloc.id, task, spec.name, spec.port_label)
            twin = (health.get(public) or {}).get(twin_id(sid))
            nomad = (health.get(spec.name) or {}).get(sid)
            held = bool(spec.public_name)
            found.append(Row(
                **common, service=public, task=task,
                weave_address=_addr(twin), nomad_address=_addr(nomad),
                state=verdict or _state(twin, nomad, subnet, held),
                consul_answers=_answered(twin) if held else _answered(twin, nomad),
            ))
    found.sort(key=lambda r: (r.tenant, r.job, r.group, r.service, r.node, r.alloc_id, r.task))
    return found


def tenant_filter(tenant: str | None, registry) -> str | None:
    """The allocations' tenant label that ``--tenant`` selects; raises for a tenant the
    registry does not know (an empty result would read as "nothing runs")."""
    if tenant is None:
        return None
    from weavenomad.tenancy.registry import check_spec

    tenants = registry.load()
    check_spec(tenant, tenants)
    if tenant.startswith("net:"):
        owner = next((t for t in tenants.tenants.values() if f"net:{t.subnet}" == tenant), None)
        return owner.name if owner else tenant
    if tenant not in tenants.tenants and any(q.tenant == tenant
                                             for q in tenants.quarantined.values()):
        return tenant  # a deleted tenant whose tasks still run in its quarantined subnet
    return tenants.get(tenant).name


def concerns(alloc: Allocation, label: str, tenancy: Tenancy) -> bool:
    """Whether ``status --tenant`` with ``label`` lists the allocation: the tenant's own, or
    one whose tasks ask for addresses in the tenant's subnet although they are not its."""
    if alloc.tenant == label:
        return True
    subnet = tenancy.subnets.get(label)
    return subnet is not None and any(network.overlaps(subnet)
                                      for network in _overlay_networks(alloc))


def gather(nomad, agent: ServiceAgent, registry=None, tenant: str | None = None) -> list[Row]:
    """Read Nomad, the service agent and the tenant registry, and build the rows (of one
    tenant: a name the registry knows, or the ``net:CIDR`` a job was run with)."""
    label = tenant_filter(tenant, registry) if registry is not None else tenant
    allocations = []
    for node in nomad.nodes():
        _, raw = nomad.node_allocations(node["ID"])
        allocations += [(allocation_from_api(a), node.get("Name") or node["ID"][:8])
                        for a in raw]
    tenancy = Tenancy()
    if registry is not None:
        cluster = registry.cluster()
        tenancy = tenancy_of(registry.load(), cluster.default_subnet if cluster else None)
    if label is not None:
        allocations = [(a, n) for a, n in allocations if concerns(a, label, tenancy)]
    names = {name for a, _ in allocations if a.active
             for s in [*a.group_services, *(s for t in a.tasks for s in t.services)]
             for name in (s.name, s.public_name) if name}
    health = {name: agent.instances(name) for name in sorted(names) if "${" not in name}
    return rows(allocations, health, tenancy)


HEADER = ("TENANT", "JOB", "GROUP", "SERVICE", "ALLOC", "NODE", "WEAVE ADDRESS",
          "CONSUL ANSWERS", "STATE")


def table(found: list[Row], paint=None) -> list[str]:
    """One line per service instance under a header row; STATE is "ok" when Consul answers
    the Weave address only. ``paint(text, style)`` colours the state on a terminal."""
    cells = [HEADER] + [
        (r.tenant, r.job, r.group,
         r.service, r.alloc_id[:8], r.node, r.weave_address,
         " ".join(r.consul_answers) or "-", r.state) for r in found]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER) - 1)]
    lines = []
    for number, row in enumerate(cells):
        state = row[-1]
        if paint is not None and number:
            state = paint(state, "green" if state == OK else "red")
        lines.append("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths,
                                                                           strict=False)),
                                state]))
    return lines


def summary(found: list[Row]) -> str:
    bad = sum(1 for r in found if not r.correct)
    return f"{len(found) - bad} of {len(found)} advertised correctly"


def explanations(found: list[Row]) -> list[str]:
    """What each wrong state means, once per state (hints for stderr)."""
    states = sorted({r.state for r in found if not r.correct})
    return [f"{state}: {_EXPLAIN[state]}" for state in states]


def render(found: list[Row], paint=None) -> str:
    """The table and the summary line, for people."""
    if not found:
        return "no running allocations with services"
    return "\n".join([*table(found, paint), "", summary(found)])


def local_peer_wait(weave) -> IpamWait | None:
    """Whether this machine's Weave waits for peers before its IPAM can allocate (a node set
    up before enough of the peers named at its launch); None when it does not, or when no
    Weave answers here (``status`` runs from any machine)."""
    try:
        return weave.ipam_waits()
    except WeavenomadError:
        return None


def peer_wait_line(waiting: IpamWait) -> str:
    """What ``status`` says of a node whose Weave waits for peers."""
    return (f"this node waits for peers: {waiting.describe()}. Its subnets are not exposed "
            "and its tasks get no Weave address until then; the reconciler exposes the subnets "
            "as soon as Weave's IPAM can allocate (bootstrap the peers named at launch; see "
            "'weavenomad doctor')")

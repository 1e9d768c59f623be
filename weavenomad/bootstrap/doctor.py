"""``weavenomad doctor``: read-only checks of this node and of the cluster, one pass/warn/fail
line each with the fix for each failure. Observation reuses :mod:`.observe`; each check is a
pure function of what was observed (here or in :mod:`.checks`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from weavenomad.bootstrap import checks as ck
from weavenomad.bootstrap import system
from weavenomad.bootstrap.diagnose import check_weave_container, redirect_fixes, weave_in_play
from weavenomad.bootstrap.guards import check_isolation
from weavenomad.bootstrap.observe import NodeFacts, agent_endpoint, docker_driver, probe
from weavenomad.bootstrap.packages import check_docker_packages
from weavenomad.clients.weave_ipam import ipam_wait
from weavenomad.config import WeaveSettings
from weavenomad.reconcile.registrations import twin_id
from weavenomad.runtime import unitcheck
from weavenomad.tenancy.contract import held_public_name
from weavenomad.tenancy.model import overlapping_tenants

NOMAD_SERVICE_PREFIX = "_nomad-task-"
#: the reconciler registers its twins under this prefix
RECONCILER_PREFIX = "weavenomad-"
_ALLOC_ID_LEN = 36


@dataclass(frozen=True)
class ConsulEntry:
    """One passing instance in Consul of a service of a task on this node; or, ``unanswered``,
    Nomad's own instance of a service ``weavenomad run`` held under a private name that no twin
    stands for, so that consumers of ``service`` (the public name) get nothing for its task."""

    service: str
    service_id: str
    address: str
    #: the Weave addresses of the task's container (empty: it is not on the overlay)
    weave_ips: tuple[str, ...]
    unanswered: bool = False


def split_service_id(service_id: str) -> tuple[str, str] | None:
    """``(alloc ID, rest)`` of a Nomad or reconciler service ID, else None."""
    for prefix in (NOMAD_SERVICE_PREFIX, RECONCILER_PREFIX):
        if service_id.startswith(prefix):
            tail = service_id[len(prefix):]
            if len(tail) > _ALLOC_ID_LEN and tail[_ALLOC_ID_LEN] == "-":
                return tail[:_ALLOC_ID_LEN], tail[_ALLOC_ID_LEN + 1:]
    return None


def task_container(alloc_id: str, rest: str, containers: Sequence[Mapping]) -> str | None:
    """The container (``<task>-<alloc>``) of the task a service ID's ``rest`` starts with."""
    candidates = []
    for container in containers:
        for name in container.get("Names") or []:
            name = name.lstrip("/")
            if name.endswith("-" + alloc_id):
                candidates.append((name[:-len(alloc_id) - 1], container["Id"]))
    matching = [c for c in candidates if rest.startswith(c[0] + "-")]
    if matching:
        return max(matching, key=lambda c: len(c[0]))[1]
    return candidates[0][1] if len(candidates) == 1 else None


def consul_entries(clients) -> list[ConsulEntry]:
    """Passing Consul instances of this node's task services, with their containers' Weave
    addresses, under the names consumers ask for (a held service's public name, not its
    private one); and the held services of this node that no twin stands for (I/O; raises
    backend errors)."""
    local = clients.consul.agent_services()
    ours = {sid: s for sid, s in local.items() if split_service_id(sid)}
    public = {sid: held_public_name(str(s.get("Service") or ""), s.get("Meta"))
              for sid, s in ours.items()}
    names = sorted({public[sid] or s.get("Service") for sid, s in ours.items()})
    containers = clients.docker.nomad_containers(all=False)
    owned = clients.weave.owned()

    def weave_ips(service_id: str) -> tuple[str, ...]:
        alloc_id, rest = split_service_id(service_id)
        mine = [c for c in containers if c.get("Id") and any(
            n.endswith(alloc_id) for n in c.get("Names") or [])]
        container = task_container(alloc_id, rest, mine)
        return tuple(str(a.ip) for a in owned.get(container or "", []))

    entries = []
    for name in names:
        _, instances = clients.consul.health_service(name, passing=True)
        for instance in instances:
            service = instance.get("Service") or {}
            if service.get("ID") not in local or split_service_id(service.get("ID", "")) is None:
                continue
            address = service.get("Address") or (instance.get("Node") or {}).get("Address", "")
            entries.append(ConsulEntry(name, service["ID"], address, weave_ips(service["ID"])))
    entries += [ConsulEntry(name, sid, "", weave_ips(sid), unanswered=True)
                for sid, name in sorted(public.items())
                if name and sid.startswith(NOMAD_SERVICE_PREFIX) and twin_id(sid) not in local]
    return entries


def check_consul_addresses(entries: Sequence[ConsulEntry] | None, error: str | None) -> ck.Check:
    name = "consul-addresses"
    if entries is None:
        return ck.Check(name, ck.WARN, f"cannot compare Consul with Weave: {error}")
    run_it = ("run the reconciler (systemctl start weavenomad-reconciler, or 'weavenomad "
              "reconciler run')")
    unanswered = [e for e in entries if e.unanswered]
    on_overlay = [e for e in entries if e.weave_ips and not e.unanswered]
    wrong = [e for e in on_overlay if e.address not in e.weave_ips]
    if wrong:
        shown = ", ".join(f"{e.service} {e.address} (Weave: {' '.join(e.weave_ips)})"
                          for e in wrong[:5])
        return ck.Check(name, ck.FAIL, f"Consul answers addresses that are not the tasks' "
                        f"Weave addresses: {shown}", run_it)
    if unanswered:
        shown = ", ".join(f"{e.service} (Weave: {' '.join(e.weave_ips) or 'none'})"
                          for e in unanswered[:5])
        return ck.Check(name, ck.FAIL, f"Consul answers nothing for {len(unanswered)} task "
                        f"service(s) held under a private name without a twin: {shown}",
                        run_it + "; 'weavenomad status' shows the tasks it refuses")
    return ck.Check(name, ck.PASS, f"{len(on_overlay)} passing instance(s) of overlay tasks "
                    "answer their Weave address" if on_overlay else
                    "no passing instances of overlay tasks on this node")


def check_nomad_endpoint(facts: NodeFacts) -> ck.Check:
    name = "nomad-docker-endpoint"
    if facts.nomad_self is None:
        return ck.Check(name, ck.FAIL, "Nomad does not answer", "start the Nomad agent")
    endpoint = agent_endpoint(facts.nomad_self)
    driver = docker_driver(facts.nomad_node)
    accepted = set(facts.proxy_endpoints)
    if endpoint not in accepted:
        return ck.Check(name, ck.FAIL, f"Nomad's Docker driver uses {endpoint}, not the Weave "
                        "proxy", "weavenomad bootstrap")
    if not driver.get("Healthy"):
        return ck.Check(name, ck.FAIL, f"Nomad's Docker driver on {endpoint} is unhealthy: "
                        f"{driver.get('HealthDescription') or 'not detected'}",
                        "check that Weave runs (weave status) and restart Nomad")
    return ck.Check(name, ck.PASS, f"Nomad's Docker driver is healthy on {endpoint}")


@dataclass(frozen=True)
class ProxiedTask:
    """A running Docker task of this node, which Nomad waits on through Weave's proxy."""

    alloc_id: str
    task: str
    #: restart attempts left in the current interval (None: unlimited, mode delay)
    attempts_left: int | None
    delay_s: float
    interval_s: float


def _restart_policy(alloc: Mapping, task_name: str) -> dict:
    job = alloc.get("Job") or {}
    group = next((g for g in job.get("TaskGroups") or ()
                  if g.get("Name") == alloc.get("TaskGroup")), {})
    task = next((t for t in group.get("Tasks") or () if t.get("Name") == task_name), {})
    return task.get("RestartPolicy") or group.get("RestartPolicy") or {}


def proxied_tasks(allocations: Sequence[Mapping], now_ns: int) -> list[ProxiedTask]:
    """The running Docker tasks of ``allocations`` with what their restart policy has left.
    Restarts are counted against the attempts when the last one is inside the interval (an
    upper bound: Nomad counts only those inside it). Pure."""
    found = []
    for alloc in allocations:
        if alloc.get("DesiredStatus") != "run" or alloc.get("ClientStatus") != "running":
            continue
        tasks = {t.get("Name"): t for g in (alloc.get("Job") or {}).get("TaskGroups") or ()
                 if g.get("Name") == alloc.get("TaskGroup") for t in g.get("Tasks") or ()}
        for name, state in sorted((alloc.get("TaskStates") or {}).items()):
            if state.get("State") != "running" or (tasks.get(name) or {}).get("Driver") != \
                    "docker":
                continue
            policy = _restart_policy(alloc, name)
            interval = int(policy.get("Interval") or 0)
            last = _rfc3339_ns(state.get("LastRestart"))
            recent = int(state.get("Restarts") or 0) if last and (
                not interval or now_ns - last < interval) else 0
            left = (None if policy.get("Mode") == "delay"
                    else max(0, int(policy.get("Attempts") or 0) - recent))
            found.append(ProxiedTask(str(alloc.get("ID")), str(name), left,
                                     int(policy.get("Delay") or 0) / 1e9, interval / 1e9))
    return found


def _rfc3339_ns(text: str | None) -> int | None:
    from weavenomad.reconcile.observe import started_at

    when = started_at({"State": {"StartedAt": text}}) if text else None
    return int(when * 1e9) if when is not None else None


def check_weave_restart(facts: NodeFacts, tasks: Sequence[ProxiedTask] | None,
                        error: str | None) -> ck.Check:
    """What a restart of Weave (``docker restart weave``, an upgrade) would do to this node's
    tasks (day-two/1c): Nomad's waits through the proxy break, each task is "Terminated:
    unexpected EOF", uses a restart attempt and is taken over again after its delay."""
    name = "weave-restart"
    endpoint = agent_endpoint(facts.nomad_self)
    if facts.nomad_self is None or endpoint not in facts.proxy_endpoints:
        return ck.Check(name, ck.PASS, "Nomad does not reach Docker through Weave's proxy: a "
                        "Weave restart leaves its tasks alone")
    if tasks is None:
        return ck.Check(name, ck.WARN, f"cannot tell what a Weave restart would do: {error}")
    if not tasks:
        return ck.Check(name, ck.PASS, "no Docker task runs here: a Weave restart costs none")
    longest = max(t.delay_s for t in tasks) * 1.25  # Nomad adds up to 25 % jitter
    detail = (f"a Weave restart breaks Nomad's waits on {len(tasks)} Docker task(s) here: "
              "each is marked 'Terminated: unexpected EOF', uses a restart attempt, leaves "
              f"Consul and is taken over again after its restart delay (up to {longest:.0f} "
              "s); the reconciler keeps their twins answering meanwhile")
    doomed = [t for t in tasks if t.attempts_left == 0]
    if not doomed:
        return ck.Check(name, ck.PASS, detail)
    shown = ", ".join(f"{t.task} (alloc {t.alloc_id[:8]})" for t in doomed[:5])
    return ck.Check(name, ck.WARN, f"{detail}; but {shown} used every restart attempt of its "
                    "interval: a Weave restart now would fail it (Nomad then reschedules it)",
                    "restart Weave once their restart interval has passed (see the README: "
                    "restarting or upgrading Weave)")


def check_nomad_nodes(nodes: Sequence[Mapping] | None, error: str | None) -> ck.Check:
    name = "nomad-nodes"
    if nodes is None:
        return ck.Check(name, ck.WARN, f"cannot list Nomad's nodes: {error}")
    bad = [f"{n.get('Name')} ({n.get('Status')}, docker "
           f"{'healthy' if docker_driver(n).get('Healthy') else 'unhealthy'})"
           for n in nodes if n.get("Status") != "ready" or not docker_driver(n).get("Healthy")]
    if bad:
        return ck.Check(name, ck.WARN, "not ready for Docker tasks: " + ", ".join(bad),
                        "run 'weavenomad doctor' on those nodes")
    return ck.Check(name, ck.PASS, f"{len(nodes)} node(s) ready with a healthy Docker driver")


def check_registry(facts: NodeFacts) -> ck.Check:
    name = "registry"
    if "registry" in facts.errors:
        return ck.Check(name, ck.FAIL, f"cannot read the tenant registry: "
                        f"{facts.errors['registry']}", "fix the Consul KV entries it names")
    if facts.cluster is None:
        return ck.Check(name, ck.FAIL, "the registry records no Weave range",
                        "weavenomad bootstrap")
    overlaps = overlapping_tenants(facts.registry) if facts.registry is not None else []
    if overlaps:
        return ck.Check(name, ck.FAIL, "overlapping tenant subnets: " + ", ".join(
            f"{a}/{b}" for a, b in overlaps), "delete one of each pair (weavenomad tenant delete)")
    count = len(facts.registry.tenants) if facts.registry is not None else 0
    return ck.Check(name, ck.PASS, f"range {facts.cluster.ipalloc_range}, default "
                    f"{facts.cluster.default_subnet}, {count} tenant(s)")


def check_reconciler(systemd: bool, active: bool | None) -> ck.Check:
    name = "reconciler-service"
    if not systemd or active is None:
        return ck.Check(name, ck.WARN, f"systemd is not running here: cannot check "
                        f"{system.RECONCILER_UNIT}", "run the reconciler under a supervisor")
    if not active:
        return ck.Check(name, ck.FAIL, f"{system.RECONCILER_UNIT} is not active",
                        f"systemctl enable --now {system.RECONCILER_UNIT}")
    return ck.Check(name, ck.PASS, f"{system.RECONCILER_UNIT} is active")


def check_guard_keeper(systemd: bool, active: bool | None) -> ck.Check:
    """A warning at most: the guards themselves are checked as they stand now (tenant-isolation);
    without the keeper they are gone after a reboot until bootstrap runs again."""
    name, unit = "guard-keeper", system.GUARDS_UNIT
    if not systemd or active is None:
        return ck.Check(name, ck.WARN, f"systemd is not running here: cannot check {unit}",
                        "run 'weavenomad guard ensure --every 10' under a supervisor, or "
                        "bootstrap again after each reboot")
    if not active:
        return ck.Check(name, ck.WARN, f"{unit} is not active: a reboot or a Docker or Weave "
                        "restart can drop or shadow the isolation guards",
                        "weavenomad guard install")
    return ck.Check(name, ck.PASS, f"{unit} is active")


def check_unit(name: str, spec: unitcheck.UnitSpec, unit_file: unitcheck.UnitFile,
               state: unitcheck.UnitState | None, logged: str = "") -> ck.Check | None:
    """How an installed unit of ours stands: its file against what install writes, its
    ExecStart program and env files, and systemd's view (failing, restarting, not ready).
    None when the unit is not installed, which the service checks above already say."""
    if unit_file.text is None and (state is None or state.load_state == "not-found"):
        return None
    problems = unitcheck.file_problems(spec, unit_file)
    stopped = state is not None and state.active_state == "inactive" and state.result in (
        "", "success")  # not running, nothing failed: the service checks above say so
    if state is not None and not stopped:
        problem = unitcheck.state_problem(spec, state, logged)
        problems += [problem] if problem is not None else []
    if not problems:
        # drop-ins are the operator's own changes, which install leaves alone: worth naming
        drop_ins = f", with {' '.join(state.drop_ins)}" if state is not None and \
            state.drop_ins else ""
        status = f": {state.status_text}" if state is not None and state.status_text else ""
        return ck.Check(name, ck.PASS, f"{spec.name} as '{spec.install_command}' writes "
                        f"it{drop_ins}{status}")
    first = sorted(problems, key=lambda p: not p.severe)[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ck.Check(name, ck.FAIL if first.severe else ck.WARN, first.message + more, first.fix)


def unit_checks(inspect) -> list[ck.Check]:
    """The reconciler's and the guard keeper's units; ``inspect(spec)`` reads one (I/O)."""
    from weavenomad.bootstrap import keeper
    from weavenomad.reconcile import systemd

    found = [check_unit(name, spec, *inspect(spec))
             for name, spec in (("reconciler-unit", systemd.SPEC), ("guard-unit", keeper.SPEC))]
    return [check for check in found if check is not None]


def node_checks(facts: NodeFacts, weave: WeaveSettings, for_launch: bool = True
                ) -> list[ck.Check]:
    """The preflight items: what bootstrap needs before it changes anything. ``weave``: the
    Weave release the settings choose; ``for_launch``: judge the Weave a launch would run when
    none runs (bootstrap), else the one that runs or crashes here (doctor)."""
    docker_version = facts.docker_version
    versions = facts.weave_versions
    override = weave.docker_api_version
    weave_version = (weave_in_play(facts.weave_report, facts.weave_router, weave.version,
                                   versions, for_launch) if versions or facts.weave_router
                     else None)
    return [
        ck.check_docker(docker_version, facts.errors.get("docker")),
        ck.check_weave_command(versions, facts.errors.get("weave-command"),
                               docker_version is not None),
        ck.check_docker_weave_api(docker_version, weave_version, override,
                                  facts.weave_launched),
        check_docker_packages(facts.apt, docker_version, facts.docker_root, weave_version,
                              override),
        ck.check_agent("nomad-agent", "the Nomad agent", facts.nomad_self,
                       facts.failures.get("nomad"), "start Nomad, or set NOMAD_ADDR"),
        ck.check_agent("consul-agent", "the Consul agent", facts.consul_self,
                       facts.failures.get("consul"), "start Consul, or set CONSUL_HTTP_ADDR"),
        ck.check_ports(facts.listeners, facts.weave_running),
        ck.check_kernel(facts.kernel, facts.iptables_rules, facts.errors.get("iptables"),
                        root=facts.euid == 0),
    ]


def doctor_checks(facts: NodeFacts, clients, weave: WeaveSettings) -> list[ck.Check]:
    checks = [ck.check_privileges(facts.euid, needed=False)]
    preflight = node_checks(facts, weave, for_launch=False)
    checks += preflight
    api = next(c for c in preflight if c.name == "docker-weave-api")
    container = check_weave_container(facts.weave_router, facts.router_last_words,
                                      api.fix if api.status == ck.FAIL else None)
    checks += [container] if container is not None else []
    report = facts.weave_report
    checks += [ck.check_weave_router(report, facts.errors.get("weave-api"), facts.cluster),
               ck.check_peers(report), ck.check_peer_names(report), ck.check_ipam(report)]
    waiting = ipam_wait(report) if report is not None else None
    default = facts.cluster.default_subnet if facts.cluster else ck.weave_settings(
        report or {})[1]
    subnets = ([default] if default else []) + facts.tenant_subnets()
    checks.append(ck.check_exposed(facts.exposed if report is not None else None, subnets,
                                   facts.ipam_exposed or (), facts.foreign_bridge, default,
                                   facts.errors.get("weave-ip"),
                                   waiting.describe() if waiting else None))
    checks.append(check_isolation(facts.iptables_rules, facts.nat_rules, facts.docker_bridge,
                                  facts.ip_forward, facts.bridge_filtering))
    checks.append(check_nomad_endpoint(facts))
    scratch = NodeFacts()
    tasks = None
    if facts.node_id:
        tasks = probe(scratch, "allocations", lambda: proxied_tasks(
            clients.nomad.node_allocations(facts.node_id)[1], time.time_ns()))
    checks.append(check_weave_restart(facts, tasks, scratch.errors.get(
        "allocations", "Nomad does not answer")))
    nodes = probe(scratch, "nodes", clients.nomad.nodes) if facts.nomad_self else None
    checks.append(check_nomad_nodes(nodes, scratch.errors.get("nodes", "Nomad does not answer")))
    checks.append(check_registry(facts))
    checks.append(check_reconciler(facts.systemd, system.unit_active(system.RECONCILER_UNIT)))
    checks.append(check_guard_keeper(facts.systemd, system.unit_active(system.GUARDS_UNIT)))
    if facts.systemd:
        from weavenomad.runtime import units

        checks += unit_checks(units.inspect)
    entries = None
    if facts.nomad_self and facts.consul_self and report is not None:
        entries = probe(scratch, "consul-entries", lambda: consul_entries(clients))
    checks.append(check_consul_addresses(entries, scratch.errors.get(
        "consul-entries", "Nomad, Consul or Weave does not answer")))
    return redirect_fixes(checks, [c.name for c in preflight], facts.weave_bridge)


def summary(checks: Iterable[ck.Check]) -> dict[str, int]:
    counts = {ck.PASS: 0, ck.WARN: 0, ck.FAIL: 0}
    for check in checks:
        counts[check.status] += 1
    return counts

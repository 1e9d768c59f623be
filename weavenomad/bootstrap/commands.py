"""The three node commands end to end: observe, decide, show, then (unless dry-run) apply.

Bad input (ranges, peers, the Nomad config, privileges) is refused before anything is printed
or changed. The preflight and the plan are printed before the first change; a failing step
rolls back what the run changed (:mod:`.apply`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from weavenomad.bootstrap import holds, migrate, render, system
from weavenomad.bootstrap.apply import Executor, apply_plan
from weavenomad.bootstrap.checks import FAIL, check_peer_names
from weavenomad.bootstrap.doctor import doctor_checks, node_checks, summary
from weavenomad.bootstrap.observe import Clients, NodeFacts, observe
from weavenomad.bootstrap.plan import Desired, plan_bootstrap
from weavenomad.bootstrap.reset import plan_reset
from weavenomad.errors import (
    BackendError,
    ExitCode,
    PrivilegeError,
    ValidationError,
    WeavenomadError,
)
from weavenomad.nodeconfig import files as config_files
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.weavecidr import parse_subnet

Say = Callable[[str], None]
#: ``paint(text, style)``: colours for a terminal (the CLI's), or the text as it is
Paint = Callable[[str, str], str]


class PreflightFailed(WeavenomadError):
    """A preflight check failed; nothing was changed."""


class DoctorFailed(WeavenomadError):
    """doctor found failures (the lines are printed already)."""


@dataclass(frozen=True)
class NodeOptions:
    peers: tuple[str, ...] = ()
    ipalloc_range: str = "10.32.0.0/16"
    default_subnet: str = "10.32.0.0/24"
    nomad_config: str | None = None
    restart: bool = True
    dry_run: bool = False
    #: hold the Docker packages too (apt-mark hold), recorded for reset
    hold_docker: bool = False
    #: reset: the reconciler's twins and masks and our units go too
    purge: bool = False


def desired_cluster(options: NodeOptions) -> Cluster:
    return Cluster(parse_subnet(options.ipalloc_range, what="--ipalloc-range"),
                   parse_subnet(options.default_subnet, what="--default-subnet"))


def require_root(facts_euid: int, command: str) -> None:
    if facts_euid != 0:
        raise PrivilegeError(f"weavenomad {command} must run as root (it runs weave and "
                             "iptables and edits the Nomad config)", hint="use sudo")


def read_config(explicit: str | None, agent_files=()) -> tuple[str, list, dict]:
    """Locate, read and parse the agent config: (source, files, backups). Raises on an
    unreadable or invalid file, naming file:line."""
    from weavenomad.nodeconfig.edit import parse_config

    location = config_files.locate(explicit, agent_files)
    files = config_files.read_files(location)
    for file in files:
        parse_config(file)
    return location.source, files, config_files.read_backups(location.paths)


def observe_node(settings, clients: Clients, explicit: str | None) -> NodeFacts:
    """The facts, with the agent config read first when its place is given (a broken config
    is then refused before any backend is asked)."""
    early = read_config(explicit) if explicit else None
    facts = observe(clients)
    if early is None:
        agent_files = ((facts.nomad_self or {}).get("config") or {}).get("Files") or []
        early = read_config(None, agent_files)
    facts.config_source, facts.config_files, facts.backups = early
    return facts


def restart_plan(settings, facts: NodeFacts, restart: bool) -> tuple[tuple[str, ...] | None,
                                                                    str]:
    argv = system.restart_argv(settings.nomad.restart_command, facts.nomad_unit_active)
    hint = (shlex.join(argv) if argv else
            "systemctl restart nomad (or however Nomad is supervised here); set "
            "WEAVENOMAD_NOMAD_RESTART_COMMAND to let bootstrap do it")
    return (argv if restart else None), f"run: {hint}"


def preflight(facts: NodeFacts, weave) -> list:
    """The preflight checks (the doctor items bootstrap needs before it changes anything);
    ``weave``: the settings' Weave release (a :class:`~weavenomad.config.WeaveSettings`).
    A running Weave that shares its peer name with another node is refused too (before a
    launch nothing can tell: the launch's expose step checks it)."""
    checks = node_checks(facts, weave)
    if facts.weave_report is not None:
        names = check_peer_names(facts.weave_report)
        checks += [names] if names.status == FAIL else []
    return checks


def show_checks(title: str, checks: list, say: Say, paint: Paint | None = None) -> None:
    say(title)
    for line in render.check_lines(checks, "  ", *(paint,) if paint else ()):
        say(line)


def refuse_failed(checks: list) -> None:
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        first = failed[0]
        more = f" (+{len(failed) - 1} more above)" if len(failed) > 1 else ""
        raise PreflightFailed(f"preflight failed, nothing changed: {first.name}: "
                              f"{first.detail}{more}", hint=first.fix)


def run_bootstrap(settings, options: NodeOptions, environ: Mapping[str, str], say: Say,
                  clients: Clients | None = None,
                  paint: Paint | None = None) -> tuple[dict, ExitCode]:
    cluster = desired_cluster(options)
    peers = tuple(system.resolve_peer(p) for p in options.peers)
    require_root(system.euid(), "bootstrap")
    clients = clients or Clients.from_settings(settings)
    facts = observe_node(settings, clients, options.nomad_config or settings.nomad.config_path)
    checks = preflight(facts, settings.weave)
    if any(c.status == FAIL for c in checks):
        show_checks("preflight:", checks, say, paint)
        refuse_failed(checks)
    if "registry" in facts.errors:
        raise ValidationError(f"cannot read the tenant registry: {facts.errors['registry']}",
                              hint="fix the Consul KV entry it names")
    if facts.weave_running and "weave-ip" in facts.errors:
        # exposure and leftovers are judged from it: nothing is planned on a guess
        raise BackendError(f"cannot read Weave's IPAM: {facts.errors['weave-ip']}",
                           backend="weave", hint="check Weave's HTTP API (weave status)")
    restart_argv, restart_hint = restart_plan(settings, facts, options.restart)
    # bad input (ranges, a running Weave with other settings) fails here, before any output
    plan = plan_bootstrap(facts, Desired(cluster, peers, restart_argv, restart_hint))
    if options.hold_docker:
        plan = migrate.with_hold(plan, migrate.hold_step(
            facts.apt, facts.docker_version, facts.docker_root, hold_record(settings)))
    show_checks("preflight:", checks, say, paint)
    result = {"preflight": [c.to_json() for c in checks], "plan": plan.to_json(),
              "config": facts.config_source, "dry_run": options.dry_run, "changed": False}
    code = ExitCode.ATTENTION if plan.attention else ExitCode.OK
    if not plan.steps:
        for note in plan.notes:
            say(f"note: {note}")
        say("no changes: this node is bootstrapped already")
        return result, code
    say(f"plan ({len(plan.steps)} step(s), Nomad config from {facts.config_source}):")
    for line in render.plan_lines(plan, settings.weave.command):
        say(line)
    if options.dry_run:
        say("dry run: nothing changed")
        return result, code
    executor = Executor(clients, say)
    applied = apply_plan(plan, executor, say)
    result["changed"] = True
    result["applied"] = [{"title": a.step.title, "note": a.outcome.note} for a in applied]
    say("bootstrap done" + (": Nomad still has to be restarted (see the note above)"
                            if plan.attention else ""))
    return result, code


def hold_record(settings) -> str:
    """Where the holds weavenomad made are recorded (``WEAVENOMAD_STATE_DIR``)."""
    return holds.record_path(settings.bootstrap.state_dir)


def run_reset(settings, options: NodeOptions, say: Say,
              clients: Clients | None = None) -> tuple[dict, ExitCode]:
    require_root(system.euid(), "reset")
    clients = clients or Clients.from_settings(settings)
    facts = observe_node(settings, clients, options.nomad_config or settings.nomad.config_path)
    restart_argv, restart_hint = restart_plan(settings, facts, options.restart)
    plan = plan_reset(facts, restart_argv, restart_hint)
    record = hold_record(settings)
    plan = migrate.with_release(plan, migrate.release_step(holds.read_record(record),
                                                           facts.apt, record))
    if options.purge:
        plan = with_purge(plan, clients)
    result = {"plan": plan.to_json(), "config": facts.config_source,
              "dry_run": options.dry_run, "changed": False}
    code = ExitCode.ATTENTION if plan.attention else ExitCode.OK
    for note in plan.notes:
        say(f"note: {note}")
    if not plan.steps:
        say("no changes: nothing of bootstrap" + (" or the reconciler" if options.purge else "")
            + " is left on this node")
        return result, code
    say(f"plan ({len(plan.steps)} step(s)):")
    for line in render.plan_lines(plan, settings.weave.command):
        say(line)
    if options.dry_run:
        say("dry run: nothing changed")
        return result, code
    applied = apply_plan(plan, Executor(clients, say), say)
    result["changed"] = True
    result["applied"] = [{"title": a.step.title, "note": a.outcome.note} for a in applied]
    say("reset done")
    return result, code


def with_purge(plan, clients: Clients):
    """``reset --purge``: the reconciler's twins and masks and our units go first (read
    before anything changes: a Consul that does not answer stops the reset here)."""
    from weavenomad.bootstrap import keeper, purge
    from weavenomad.reconcile import systemd
    from weavenomad.reconcile.consul import ConsulAgent
    from weavenomad.runtime import units

    facts = purge.observe(ConsulAgent(clients.consul), units.inspect, (systemd.SPEC, keeper.SPEC))
    steps, notes = purge.plan_purge(facts)
    return replace(plan, steps=(*steps, *plan.steps), notes=(*plan.notes, *notes))


def run_doctor(settings, environ: Mapping[str, str], say: Say,
               clients: Clients | None = None, paint: Paint | None = None) -> dict:
    clients = clients or Clients.from_settings(settings)
    facts = observe(clients)
    checks = doctor_checks(facts, clients, settings.weave)
    for line in render.check_lines(checks, "", *(paint,) if paint else ()):
        say(line)
    counts = summary(checks)
    say(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail")
    return {"checks": [c.to_json() for c in checks], "summary": counts}


def doctor_verdict(result: dict) -> None:
    """Raise :class:`DoctorFailed` when a check failed (after the result was shown)."""
    failures = result["summary"]["fail"]
    if failures:
        raise DoctorFailed(f"doctor found {failures} failure(s); each FAIL line says how to "
                           "fix it")

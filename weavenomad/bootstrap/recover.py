"""``weavenomad weave-upgrade`` and ``weavenomad docker-hold`` end to end: observe, plan (pure,
:mod:`.migrate`), show, then (unless dry-run) apply with rollback (:mod:`.apply`).

Bad input (Docker down, Weave never launched, a release that would not run on this Docker
either, apt that cannot hold the Docker that runs, no older Docker to go back to) is one line
before anything is printed or changed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from weavenomad.bootstrap import holds, migrate, render, system
from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap import versions as vs
from weavenomad.bootstrap.apply import Executor, apply_plan
from weavenomad.bootstrap.commands import hold_record, require_root
from weavenomad.bootstrap.observe import Clients, observe
from weavenomad.errors import ExitCode, ValidationError

Say = Callable[[str], None]


@dataclass(frozen=True)
class UpgradeOptions:
    version: str = vs.FORK_VERSION
    #: the images' owner (None: the fork's for a fork release, else weaveworks)
    image_owner: str | None = None
    docker_api_version: str | None = None
    #: the peers to launch with (None: the old router's)
    peers: tuple[str, ...] | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class HoldOptions:
    downgrade: bool = False
    #: the engine package's version to go back to (None: the newest below Docker 25)
    version: str | None = None
    release: bool = False
    dry_run: bool = False


def target_release(options: UpgradeOptions) -> migrate.Release:
    if not vs.version_tuple(options.version):
        raise ValidationError(f"--version {options.version!r} is no Weave release",
                              hint=f"e.g. --version {vs.FORK_VERSION}")
    owner = options.image_owner or (vs.FORK_OWNER if vs.is_fork(options.version)
                                    else vs.WEAVEWORKS)
    return migrate.Release(owner, options.version, options.docker_api_version)


def _show_and_apply(plan: st.Plan, clients, say: Say, dry_run: bool, weave: str,
                    done: str) -> dict:
    result = {"plan": plan.to_json(), "dry_run": dry_run, "changed": False}
    if not plan.steps:
        for note in plan.notes:
            say(f"note: {note}")
        say("no changes")
        return result
    say(f"plan ({len(plan.steps)} step(s)):")
    for line in render.plan_lines(plan, weave):
        say(line)
    if dry_run:
        say("dry run: nothing changed")
        return result
    applied = apply_plan(plan, Executor(clients, say), say)
    result["changed"] = True
    result["applied"] = [{"title": a.step.title, "note": a.outcome.note} for a in applied]
    say(done)
    return result


def run_weave_upgrade(settings, options: UpgradeOptions, say: Say,
                      clients: Clients | None = None) -> tuple[dict, ExitCode]:
    target = target_release(options)
    peers = (tuple(system.resolve_peer(p) for p in options.peers)
             if options.peers is not None else None)
    require_root(system.euid(), "weave-upgrade")
    clients = clients or Clients.from_settings(settings)
    facts = observe(clients)
    present = frozenset(image for image in target.images
                        if facts.docker_version is not None
                        and clients.docker.image_present(image))
    script = shutil.which(settings.weave.command)
    if peers is None and facts.weave_router is None:  # no old router to take them from
        peers = tuple(settings.bootstrap.peers)
    given = migrate.UpgradeInputs(target, script, (facts.weave_versions or {}).get(
        "weave script"), present, peers)
    plan = migrate.plan_weave_upgrade(facts, given)
    result = _show_and_apply(plan, clients, say, options.dry_run, settings.weave.command,
                             f"Weave is {target.describe()} now")
    return result, ExitCode.OK


def run_docker_hold(settings, options: HoldOptions, say: Say,
                    clients: Clients | None = None) -> tuple[dict, ExitCode]:
    if options.version and not options.downgrade:
        raise ValidationError("--version goes with --downgrade", hint="add --downgrade")
    require_root(system.euid(), "docker-hold")
    clients = clients or Clients.from_settings(settings)
    facts = observe(clients)
    if facts.apt is None:  # observe asks apt only while Docker answers
        from weavenomad.bootstrap.observe import read_apt

        facts.apt = read_apt()
    record = hold_record(settings)
    plan = migrate.plan_docker_hold(facts, record, options.downgrade, options.version,
                                    holds.read_record(record), options.release)
    done = ("holds released" if options.release else "Docker is held")
    result = _show_and_apply(plan, clients, say, options.dry_run, settings.weave.command, done)
    return result, ExitCode.OK

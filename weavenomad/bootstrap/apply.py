"""Run a plan's steps in order; when one fails (or Ctrl-C arrives), undo the steps that ran, in
reverse, and say what was rolled back. The I/O of every action lives in :class:`Executor`.

An executed step hands back the undo that fits what really happened (a guard that was already
there needs no removal), so a rollback touches only what this run changed. A step that can
leave things behind when it fails (``weave launch``: its containers, bridge and socket) has its
undo registered before it runs, and that undo runs after its own failure too. A step that
*commits* (reset's check that Nomad runs on Docker's own socket again) is never undone, nor is
anything before it. Restoring the Nomad config after Nomad was (maybe) restarted restarts it
again, so the agent reads the old text.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from weavenomad.bootstrap import holds, leftovers, packages, system
from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.checks import SAME_NAME_FIX, WEAVE_BRIDGE, missing_exposes
from weavenomad.bootstrap.guards import guard_state, parse_rules
from weavenomad.bootstrap.observe import agent_endpoint, bridge_exposure, docker_driver
from weavenomad.clients.weave import EXPOSE_IDENT
from weavenomad.clients.weave_ipam import IpamWait, ipam_wait, same_name_peers
from weavenomad.errors import (
    BackendError,
    BackendNotFound,
    ConflictError,
    ValidationError,
    WeavenomadError,
)
from weavenomad.nodeconfig import files as config_files
from weavenomad.nodeconfig.edit import (
    ConfigFile,
    FileChange,
    check_change,
    docker_setting,
    plan_endpoint,
)
from weavenomad.reconcile.consul import ConsulAgent
from weavenomad.runtime import units

#: how long Nomad may take after a restart to answer and report a healthy Docker driver
VERIFY_TIMEOUT = 90.0
#: seconds a freshly launched Weave gets to connect its peers (real ones connect in well under
#: a second on one LAN), and between looks meanwhile
PEER_SETTLE = 5.0
PEER_POLL = 0.5
VERIFY_EVERY = 1.0
#: the command named when a systemctl call of reset --purge cannot be made
PURGE_COMMAND = "weavenomad reset --purge"

Say = Callable[[str], None]


class StepFailed(WeavenomadError):
    """A step failed; what was rolled back is in the message."""


@dataclass
class Outcome:
    #: the action that undoes what happened (None: nothing to undo)
    undo: st.Action | None
    note: str = ""
    #: whether the action changed anything (an undo that found nothing to undo did not)
    changed: bool = True


@dataclass
class Executor:
    """Performs actions on the node through ``clients`` (see :class:`observe.Clients`)."""

    clients: object
    say: Say = lambda line: None
    stop: threading.Event = field(default_factory=threading.Event)
    verify_timeout: float = VERIFY_TIMEOUT
    #: seconds a freshly launched Weave gets to connect its peers before the expose step
    #: decides that its IPAM waits for peers
    peer_settle: float = PEER_SETTLE
    verify_every: float = VERIFY_EVERY
    #: set once a Nomad restart was tried: restoring the config must restart again
    restart_argv: tuple[str, ...] | None = None
    restart_tried: bool = False
    written_endpoint: str | None = None

    def run(self, action: st.Action) -> Outcome:
        handler = getattr(self, "do_" + st.kind(action))
        return handler(action)

    # -- Weave ---------------------------------------------------------------------------------

    def do_WeaveLaunch(self, action: st.WeaveLaunch) -> Outcome:  # noqa: N802
        self.clients.weave_command.launch(action.ipalloc_range, action.default_subnet,
                                          action.peers)
        return Outcome(st.WeaveReset())

    def do_WeaveReset(self, action: st.WeaveReset) -> Outcome:  # noqa: N802
        """``weave reset``, with ``--force`` when Weave does not run (plain reset refuses
        then), and the stale proxy socket the script leaves; the note says what went."""
        before = self._leftovers()
        force = action.force or not self._weave_answers()
        router = next((c for c in before.containers if c.name == "weave"), None)
        # the router's logs go with its container: keep what a dead one said
        said = (leftovers.last_words(self.clients.docker)
                if router is not None and router.state != "running" else None)
        try:
            self.clients.weave_command.reset(force=force)
        except BackendError as exc:
            if force or "not running" not in exc.message:
                raise
            force = True  # it died since it was looked at
            self.clients.weave_command.reset(force=True)
        for path in before.stale_sockets:
            leftovers.remove_stale_socket(path)
        gone = leftovers.removed(before, self._leftovers())
        note = ("removed " + ", ".join(gone)) if gone else "nothing of Weave was left"
        if force:
            note += " (with --force: Weave was not running)"
        if said:
            note += f"; the router's last log line: {said}"
        return Outcome(None, note, changed=bool(gone))

    def _weave_answers(self) -> bool:
        try:
            self.clients.weave.report()
        except WeavenomadError:
            return False
        return True

    def _leftovers(self) -> leftovers.Leftovers:
        try:
            containers = leftovers.weave_containers(self.clients.docker)
        except WeavenomadError:
            containers = []
        return leftovers.observe(containers, system.link_exists(WEAVE_BRIDGE))

    def do_WeaveExpose(self, action: st.WeaveExpose) -> Outcome:  # noqa: N802
        waiting = self._ipam_waits()
        if waiting is not None:
            # 'weave expose' would block until enough peers are up (multi-node/1): the node is
            # set up all the same, and the reconciler exposes the subnets once Weave can
            return Outcome(None, f"not yet: this node waits for peers ({waiting.describe()}); "
                           "the reconciler exposes the subnets as soon as Weave's IPAM can "
                           "allocate", changed=False)
        try:
            addresses = self.clients.weave_command.expose(action.specs)
        except BackendError:
            # the reconciler may have exposed a subnet between the script's look at the bridge
            # and its 'ip addr add' ("Address already assigned"): what counts is the result
            if not self._exposed_now(action.specs):
                raise
            return Outcome(None, "exposed meanwhile by another (the reconciler): nothing of "
                           "this run to undo")
        return Outcome(st.WeaveHide(action.specs),
                       "host addresses " + " ".join(map(str, addresses)))

    def _ipam_waits(self) -> IpamWait | None:
        """Why Weave's IPAM cannot allocate now, given its peers a few seconds to connect
        after a launch; None when it can (or the report cannot say: expose decides)."""
        deadline = time.monotonic() + self.peer_settle
        while True:
            try:
                report = self.clients.weave.report()
            except WeavenomadError:
                return None
            clones = same_name_peers(report)
            if clones:
                name = (report.get("Router") or {}).get("Name")
                raise ConflictError(f"the node at {', '.join(clones)} has this node's Weave "
                                    f"peer name {name}, so Weave never connects them",
                                    hint=SAME_NAME_FIX)
            waiting = ipam_wait(report)
            if waiting is None or time.monotonic() >= deadline:
                return waiting
            time.sleep(PEER_POLL)

    def _exposed_now(self, specs: tuple[str, ...]) -> bool:
        """Whether every ``net:`` spec's subnet has an address on the bridge that Weave's IPAM
        gave the host."""
        try:
            owned = self.clients.weave.owned()
            default = self.clients.weave.default_subnet()
        except WeavenomadError:
            return False
        bridge = [a for name, a in system.host_addresses() if name == WEAVE_BRIDGE]
        exposed, _ = bridge_exposure(owned.get(EXPOSE_IDENT, []), bridge)
        subnets = [default if spec == "net:default" else IPv4Network(spec[4:])
                   for spec in specs if spec.startswith("net:")]
        return not missing_exposes(exposed, subnets)

    def do_WeaveHide(self, action: st.WeaveHide) -> Outcome:  # noqa: N802
        self.clients.weave_command.hide(action.specs)
        return Outcome(st.WeaveExpose(action.specs))

    def do_AddGuard(self, action: st.AddGuard) -> Outcome:  # noqa: N802
        guard = action.guard
        rules, error = system.iptables_rules(guard.table)
        if rules is None:
            raise BackendError(f"cannot read iptables: {error}", backend="system")
        state = guard_state(parse_rules(rules), guard)
        if state.effective:
            return Outcome(None, "already in place")
        system.add_guard(guard)
        return Outcome(st.RemoveGuard(guard, every=False),
                       f"inserted above '{state.shadowed_by}'" if state.shadowed_by else "")

    def do_RemoveGuard(self, action: st.RemoveGuard) -> Outcome:  # noqa: N802
        removed = system.remove_guard(action.guard, action.every)
        return Outcome(st.AddGuard(action.guard) if removed else None,
                       f"{removed} rule(s) removed")

    # -- reset --purge: the reconciler's registrations and our units ----------------------------

    def do_StopUnit(self, action: st.StopUnit) -> Outcome:  # noqa: N802
        units.disable(action.unit, PURGE_COMMAND)
        return Outcome(st.StartUnit(action.unit))

    def do_StartUnit(self, action: st.StartUnit) -> Outcome:  # noqa: N802
        units.enable(action.unit, PURGE_COMMAND)
        return Outcome(None)

    def do_RemoveMasks(self, action: st.RemoveMasks) -> Outcome:  # noqa: N802
        for mask in action.masks:
            self.clients.consul.check_deregister(mask.id, mask.namespace, mask.partition)
        return Outcome(st.RegisterMasks(action.masks), f"{len(action.masks)} removed")

    def do_RegisterMasks(self, action: st.RegisterMasks) -> Outcome:  # noqa: N802
        agent = ConsulAgent(self.clients.consul)
        back = sum(agent.register_mask(mask) for mask in action.masks)  # False: service gone
        return Outcome(None, f"{back} registered again")

    def do_RemoveTwins(self, action: st.RemoveTwins) -> Outcome:  # noqa: N802
        for twin in action.twins:
            self.clients.consul.service_deregister(twin.id, twin.namespace, twin.partition)
        return Outcome(None, f"{len(action.twins)} removed")

    def do_RemoveUnitFile(self, action: st.RemoveUnitFile) -> Outcome:  # noqa: N802
        Path(action.path).unlink(missing_ok=True)
        if system.systemd_running():
            units.daemon_reload(PURGE_COMMAND)
        return Outcome(st.WriteUnitFile(action.path, action.text))

    def do_WriteUnitFile(self, action: st.WriteUnitFile) -> Outcome:  # noqa: N802
        path = Path(action.path)
        units.write_unit(path.parent, action.text, path.name, PURGE_COMMAND)
        if system.systemd_running():
            units.daemon_reload(PURGE_COMMAND)
        return Outcome(None)

    # -- the Nomad config ----------------------------------------------------------------------

    def do_WriteConfig(self, action: st.WriteConfig) -> Outcome:  # noqa: N802
        change = action.change
        files = list(action.files) or [ConfigFile(change.path, change.old)]
        if action.late_endpoint:
            rebound = self._rebind(action, files)
            if rebound is None:
                return Outcome(None, "the config already points at Weave's proxy")
            change = rebound
        if config_files.read_text(change.path) != change.old:
            raise ValidationError(f"{change.path} changed since the plan was made",
                                  hint="run bootstrap again")
        endpoint = docker_setting([ConfigFile(f.path, change.new if f.path == change.path
                                              else f.text) for f in files]).endpoint
        check_change(files, change, endpoint)
        created = config_files.make_backup(change.path, change.old)
        undo = st.RestoreConfig(change.path, change.old, created)
        try:
            config_files.write_atomic(change.path, change.new)
        except BaseException:
            if created:  # the file is untouched (atomic write); only the backup is ours
                config_files.remove_backup(change.path)
            raise
        self.written_endpoint = endpoint
        try:
            note = config_files.validate_with_nomad([f.path for f in files])
        except BaseException:
            self.do_RestoreConfig(undo)
            raise
        return Outcome(undo, note or "checked with pyhcl (no nomad binary on PATH)")

    def _rebind(self, action: st.WriteConfig, files: list[ConfigFile]) -> FileChange | None:
        """Weave is up now: write the socket it reports when that is not the planned one."""
        reported = self.clients.weave.proxy_addrs()
        if not reported or reported[0] == action.endpoint:
            return action.change
        change = plan_endpoint(files, reported[0], action.accepted)
        if change is None:  # the config names that socket already: what Nomad must report
            self.written_endpoint = reported[0]
        if change is not None and change.new != action.change.new:
            self.say(f"    Weave reports its proxy at {reported[0]}; writing that instead:")
            for line in change.diff().splitlines():
                self.say("      " + line)
        return change

    def do_RestoreConfig(self, action: st.RestoreConfig) -> Outcome:  # noqa: N802
        current = config_files.read_text(action.path)
        config_files.write_atomic(action.path, action.text)
        if action.drop_backup:
            config_files.remove_backup(action.path)
        return Outcome(st.RestoreConfig(action.path, current, False))

    def do_DropBackup(self, action: st.DropBackup) -> Outcome:  # noqa: N802
        config_files.remove_backup(action.path)
        return Outcome(None)

    def do_RestartNomad(self, action: st.RestartNomad) -> Outcome:  # noqa: N802
        self.restart_argv, self.restart_tried = action.argv, True
        self.say(f"    waiting up to {system.RESTART_TIMEOUT:.0f}s for "
                 f"{shlex.join(action.argv)}")
        system.restart_nomad(action.argv)
        return Outcome(None)

    def do_VerifyNomad(self, action: st.VerifyNomad) -> Outcome:  # noqa: N802
        wanted = {action.endpoint, *action.accepted}
        if self.written_endpoint:
            wanted.add(self.written_endpoint)
        deadline = time.monotonic() + self.verify_timeout
        problem, said = "no answer yet", None
        while True:
            problem = self._verify_once(action, wanted)
            if problem is None:
                return Outcome(None, "Docker driver healthy")
            if problem != said:  # what the wait is for, and each change of what Nomad says
                self.say(f"    waiting up to {self.verify_timeout:.0f}s for Nomad's Docker "
                         f"driver on the Weave proxy: {problem}")
                said = problem
            if time.monotonic() >= deadline or self.stop.wait(self.verify_every):
                break
        raise BackendError(f"Nomad did not come up on the Weave proxy within "
                           f"{self.verify_timeout:.0f}s: {problem}", backend="nomad",
                           hint="see the Nomad agent's log")

    def _verify_once(self, action: st.VerifyNomad, wanted: set[str]) -> str | None:
        nomad = self.clients.nomad
        try:
            agent = nomad.agent_self()
            node_id = ((agent.get("stats") or {}).get("client") or {}).get("node_id")
            node = nomad.node(node_id) if node_id else None
        except WeavenomadError as exc:
            return exc.one_line()
        endpoint = agent_endpoint(agent)
        if endpoint not in wanted:
            return f"the agent uses Docker endpoint {endpoint}"
        files = (agent.get("config") or {}).get("Files") or []
        if action.file and files and action.file not in files:
            return f"the agent did not read {action.file} (it reads {', '.join(files)})"
        driver = docker_driver(node)
        if not driver.get("Healthy"):
            return f"Docker driver unhealthy: {driver.get('HealthDescription') or 'unknown'}"
        return None

    def do_ReevaluateBlocked(self, action: st.ReevaluateBlocked) -> Outcome:  # noqa: N802
        nomad = self.clients.nomad
        blocked = sorted({e.get("JobID") for e in nomad.evaluations()
                          if e.get("Status") == "blocked" and e.get("JobID")})
        done = []
        for job_id in blocked:
            try:
                nomad.evaluate_job(job_id)
            except BackendNotFound:
                continue  # purged meanwhile: nothing to place
            done.append(job_id)
        if not done:
            return Outcome(None, "no job waits on a blocked evaluation")
        return Outcome(None, f"re-evaluated {len(done)} job(s) with a blocked evaluation: "
                       + ", ".join(done))

    # -- the Docker packages and the Weave release (issue 22) --------------------------------

    def _holds(self) -> set[str]:
        text, error = system.apt_holds()
        if text is None:
            raise BackendError(f"cannot read apt's holds: {error}", backend="system",
                               hint="run as root on a node with apt")
        return packages.parse_showhold(text)

    def do_HoldPackages(self, action: st.HoldPackages) -> Outcome:  # noqa: N802
        new = [p for p in action.packages if p not in self._holds()]
        if new:
            system.apt_mark("hold", new)
        holds.write_record(action.record, [*holds.read_record(action.record), *new])
        if not new:
            return Outcome(None, "already held", changed=False)
        return Outcome(st.ReleaseHold(tuple(new), action.record), "held " + " ".join(new))

    def do_ReleaseHold(self, action: st.ReleaseHold) -> Outcome:  # noqa: N802
        release = [p for p in action.packages if p in self._holds()]
        if release:
            system.apt_mark("unhold", release)
        holds.write_record(action.record, [p for p in holds.read_record(action.record)
                                           if p not in action.packages])
        if not release:
            return Outcome(None, "not held any more", changed=False)
        return Outcome(st.HoldPackages(tuple(release), action.record),
                       "released " + " ".join(release))

    def do_InstallPackages(self, action: st.InstallPackages) -> Outcome:  # noqa: N802
        names = [pin.partition("=")[0] for pin in action.pins]
        text, error = system.apt_policy(names)
        if text is None:
            raise BackendError(f"cannot ask apt: {error}", backend="system")
        before = packages.parse_policy(text)
        system.apt_install(action.pins)
        previous = tuple(f"{n}={before[n].installed}" for n in names
                         if n in before and before[n].installed)
        return Outcome(st.InstallPackages(previous) if previous else None,
                       "installed " + " ".join(action.pins))

    def do_PullImage(self, action: st.PullImage) -> Outcome:  # noqa: N802
        docker = self.clients.docker
        if docker.image_present(action.image):
            return Outcome(None, "already on this node", changed=False)
        try:
            docker.pull(action.image)
        except BackendError as exc:
            raise BackendError(
                f"the image {action.image} is not on this node and cannot be pulled: "
                f"{exc.one_line()}", backend="docker",
                hint=f"pull it where Docker Hub answers (docker pull {action.image}), or load a "
                     f"saved copy (docker save {action.image} | docker load)") from None
        return Outcome(None, "pulled")

    def do_RemoveRouter(self, action: st.RemoveRouter) -> Outcome:  # noqa: N802
        removed = self.clients.docker.remove_container("weave")
        return Outcome(action.relaunch if removed else None,
                       "removed the router container; weavedb (the IPAM's data) stays"
                       if removed else "there was no router container", changed=removed)

    def do_LaunchRelease(self, action: st.LaunchRelease) -> Outcome:  # noqa: N802
        launch = action.launch
        self.clients.weave_command.with_env(dict(action.env)).launch(
            launch.ipalloc_range, launch.default_subnet, launch.peers)
        try:  # the socket the new router serves is what Nomad must be on
            reported = self.clients.weave.proxy_addrs()
        except WeavenomadError:
            reported = []
        if reported:
            self.written_endpoint = reported[0]
        return Outcome(st.RemoveRouter(), " ".join(f"{k}={v}" for k, v in action.env))

    def do_InstallWeaveScript(self, action: st.InstallWeaveScript) -> Outcome:  # noqa: N802
        data = self.clients.docker.file_from_image(action.image, "/home/weave/weave")
        text = data.decode("utf-8", errors="replace")
        if f'\nSCRIPT_VERSION="{action.version}"\n' not in f"\n{text}":
            found = re.search(r'^SCRIPT_VERSION="([^"]*)"', text, re.M)
            raise BackendError(f"/home/weave/weave in {action.image} is not weave script "
                               f"{action.version} (it says "
                               f"{found.group(1) if found else 'no SCRIPT_VERSION'}): not "
                               "installed", backend="docker",
                               hint="check the image, or install the script by hand")
        config_files.make_backup(action.path, config_files.read_text(action.path))
        config_files.write_atomic(action.path, text)
        return Outcome(st.RestoreWeaveScript(action.path),
                       f"weave script {action.version} at {action.path}")

    def do_RestoreWeaveScript(self, action: st.RestoreWeaveScript) -> Outcome:  # noqa: N802
        backup = config_files.backup_path(action.path)
        config_files.write_atomic(action.path, config_files.read_text(backup))
        config_files.remove_backup(action.path)
        return Outcome(None, f"{action.path} is the one before again")

    def do_ExposeAgain(self, action: st.ExposeAgain) -> Outcome:  # noqa: N802
        done = self.do_WeaveExpose(st.WeaveExpose(action.specs))
        return Outcome(None, done.note)

    def do_WaitForWeave(self, action: st.WaitForWeave) -> Outcome:  # noqa: N802
        deadline = time.monotonic() + action.timeout
        while True:
            try:
                report = self.clients.weave.report()
            except WeavenomadError as exc:
                problem = exc.one_line()
            else:
                return Outcome(None, f"Weave {report.get('Version')} answers")
            if time.monotonic() >= deadline or self.stop.wait(self.verify_every):
                raise BackendError(f"Weave did not answer within {action.timeout:.0f}s: "
                                   f"{problem}", backend="weave",
                                   hint="docker logs weave says why")

    # -- registry ------------------------------------------------------------------------------

    def do_RecordCluster(self, action: st.RecordCluster) -> Outcome:  # noqa: N802
        from weavenomad.tenancy.model import Cluster

        written = self.clients.registry.record_cluster(
            Cluster(action.ipalloc_range, action.default_subnet))
        return Outcome(None, "recorded" if written else "already recorded")


@dataclass
class Applied:
    step: st.Step
    outcome: Outcome


def _reason(exc: BaseException) -> str:
    if isinstance(exc, WeavenomadError):
        return exc.one_line()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return " ".join(str(exc).split()) or type(exc).__name__


def apply_plan(plan: st.Plan, executor: Executor, say: Say) -> list[Applied]:
    """Run every step; on failure roll back and raise :class:`StepFailed` (Ctrl-C: roll back,
    then let the interrupt through)."""
    applied: list[Applied] = []
    #: how many applied steps a commit keeps, whatever fails later
    kept = 0
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, 1):
        say(f"[{number}/{total}] {step.title}")
        try:
            outcome = executor.run(step.action)
        except (WeavenomadError, OSError, KeyboardInterrupt) as exc:
            say(f"    failed: {_reason(exc)}")
            undo_this = []
            interrupted = isinstance(exc, KeyboardInterrupt) and not isinstance(
                step.action, st.WriteConfig)  # the config step cleans up after itself
            if step.undo is not None and (interrupted or step.undo_if_failed):
                # clean up what the step may have started or left
                undo_this = [Applied(step, Outcome(step.undo))]
            summary = rollback(applied[kept:] + undo_this, executor, say)
            if kept:
                summary += "; kept (done before the failure, and safe as it is): " + "; ".join(
                    a.step.title for a in applied[:kept])
            error = StepFailed(f"step {number}/{total} ({step.title}) failed: {_reason(exc)}; "
                               f"{summary}")
            if isinstance(exc, KeyboardInterrupt):
                say(error.one_line())
                raise
            raise error from None
        except BaseException:  # a bug: still leave the node as it was
            rollback(applied[kept:], executor, say)
            raise
        say("    done" + (f": {outcome.note}" if outcome.note else ""))
        applied.append(Applied(step, outcome))
        if step.commits:
            kept = len(applied)
    return applied


def rollback(applied: list[Applied], executor: Executor, say: Say) -> str:
    """Undo ``applied`` in reverse; a one-line summary of what was and was not undone."""
    undone, failed = [], []
    for item in reversed(applied):
        undo = item.outcome.undo
        if undo is None:
            continue
        undos = [undo]
        if isinstance(undo, st.RestoreConfig) and executor.restart_tried:
            # Nomad may have read the new text: it must read the restored one now
            undos.append(st.RestartNomad(executor.restart_argv or ()))
        for action in undos:
            what = st.describe(action)
            say(f"    rolling back: {what}")
            try:
                outcome = executor.run(action)
            except (WeavenomadError, OSError) as exc:
                failed.append(f"{what} ({_reason(exc)})")
                say(f"    could not roll back: {what}: {_reason(exc)}")
                continue
            if outcome.changed:
                undone.append(f"{what} ({outcome.note})" if outcome.note else what)
            elif outcome.note:
                say(f"    {outcome.note}")
    if not undone and not failed:
        return "nothing had been changed"
    summary = "rolled back: " + ("; ".join(undone) if undone else "nothing")
    if failed:
        summary += "; NOT rolled back, fix by hand: " + "; ".join(failed)
    return summary

"""Run a plan's steps in order; when one fails (or Ctrl-C arrives), undo the steps that ran, in
reverse, and say what was rolled back. The I/O of every action lives in :class:`Executor`.

An executed step hands back the undo that fits what really happened (a guard that was already
there needs no removal), so a rollback touches only what this run changed. Restoring the Nomad
config after Nomad was (maybe) restarted restarts it again, so the agent reads the old text.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap import system
from weavenomad.bootstrap.guards import guard_state, parse_rules
from weavenomad.bootstrap.observe import agent_endpoint, docker_driver
from weavenomad.errors import BackendError, ValidationError, WeavenomadError
from weavenomad.nodeconfig import files as config_files
from weavenomad.nodeconfig.edit import (
    ConfigFile,
    FileChange,
    check_change,
    docker_setting,
    plan_endpoint,
)

#: how long Nomad may take after a restart to answer and report a healthy Docker driver
VERIFY_TIMEOUT = 90.0
VERIFY_EVERY = 1.0

Say = Callable[[str], None]


class StepFailed(WeavenomadError):
    """A step failed; what was rolled back is in the message."""


@dataclass
class Outcome:
    #: the action that undoes what happened (None: nothing to undo)
    undo: st.Action | None
    note: str = ""


@dataclass
class Executor:
    """Performs actions on the node through ``clients`` (see :class:`observe.Clients`)."""

    clients: object
    say: Say = lambda line: None
    stop: threading.Event = field(default_factory=threading.Event)
    verify_timeout: float = VERIFY_TIMEOUT
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
        self.clients.weave_command.reset()
        return Outcome(None)

    def do_WeaveExpose(self, action: st.WeaveExpose) -> Outcome:  # noqa: N802
        addresses = self.clients.weave_command.expose(action.specs)
        return Outcome(st.WeaveHide(action.specs),
                       "host addresses " + " ".join(map(str, addresses)))

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
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, 1):
        say(f"[{number}/{total}] {step.title}")
        try:
            outcome = executor.run(step.action)
        except (WeavenomadError, OSError, KeyboardInterrupt) as exc:
            say(f"    failed: {_reason(exc)}")
            undo_this = []
            if isinstance(exc, KeyboardInterrupt) and step.undo is not None and not isinstance(
                    step.action, st.WriteConfig):  # the config step cleans up after itself
                # interrupted halfway: clean up what the step may have started
                undo_this = [Applied(step, Outcome(step.undo))]
            summary = rollback(applied + undo_this, executor, say)
            error = StepFailed(f"step {number}/{total} ({step.title}) failed: {_reason(exc)}; "
                               f"{summary}")
            if isinstance(exc, KeyboardInterrupt):
                say(error.one_line())
                raise
            raise error from None
        except BaseException:  # a bug: still leave the node as it was
            rollback(applied, executor, say)
            raise
        say("    done" + (f": {outcome.note}" if outcome.note else ""))
        applied.append(Applied(step, outcome))
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
                executor.run(action)
                undone.append(what)
            except (WeavenomadError, OSError) as exc:
                failed.append(f"{what} ({_reason(exc)})")
                say(f"    could not roll back: {what}: {_reason(exc)}")
    if not undone and not failed:
        return "nothing had been changed"
    summary = "rolled back: " + ("; ".join(undone) if undone else "nothing")
    if failed:
        summary += "; NOT rolled back, fix by hand: " + "; ".join(failed)
    return summary

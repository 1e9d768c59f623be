"""What can be wrong with an installed unit of ours, told in one line with its fix: for
``weavenomad reconciler install`` / ``guard install`` and for ``weavenomad doctor``. Pure: the
facts come from :mod:`.units` (the unit file, its env files, ``systemctl show``, the journal).

What goes wrong in practice (verified under systemd 252): a unit edited by hand (systemd warns
about a bad line once, in its own log, and ignores it); an ExecStart whose program is gone
(status 203/EXEC, restarted every ``RestartSec``); an optional ``EnvironmentFile=-`` that is a
directory, or holds ``export NAME=value`` lines (both silently ignored: the settings are not
applied); a required env file that is missing (the start fails); a daemon that never says
READY=1 (systemd times the start out and restarts it); a start limit that ends the restarts.
"""

from __future__ import annotations

import json
import shlex
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: what a NAME of an env file's NAME=value line is made of (systemd.exec(5) EnvironmentFile=)
_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class Problem:
    """One thing wrong, and what fixes it; ``severe`` when the unit cannot do its job."""

    message: str
    fix: str
    severe: bool = True

    def one_line(self) -> str:
        return f"{self.message}; fix: {self.fix}"


@dataclass(frozen=True)
class UnitSpec:
    """One of our units: its name, its text for a command prefix, and the command and arguments
    ExecStart runs after that prefix."""

    name: str
    render: Callable[[Sequence[str]], str]
    run_args: tuple[str, ...]
    install_command: str

    @property
    def short(self) -> str:
        return self.name.removesuffix(".service")


@dataclass(frozen=True)
class EnvFile:
    """An ``EnvironmentFile=`` of the unit as found on disk."""

    path: str
    #: ``EnvironmentFile=-PATH``: systemd ignores it when it is missing
    optional: bool
    #: "missing", "file", "unreadable" (exists, cannot be read here) or "not-a-file"
    kind: str
    mode: int = 0
    uid: int = 0
    #: (line number, line) of lines systemd ignores
    ignored_lines: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class UnitFile:
    """The unit file as found on disk (``text`` None: there is none)."""

    path: str
    text: str | None
    #: whether ExecStart's program exists and may be executed (None: no ExecStart)
    exec_runnable: bool | None = None
    env_files: tuple[EnvFile, ...] = ()


@dataclass(frozen=True)
class UnitState:
    """systemd's view of a unit (``systemctl show``)."""

    load_state: str
    active_state: str
    sub_state: str
    result: str = ""
    status_text: str = ""
    restarts: int = 0
    exec_status: int = 0
    load_error: str = ""
    need_reload: bool = False
    drop_ins: tuple[str, ...] = ()
    #: the unit file systemd loaded
    fragment: str = ""

    @property
    def running(self) -> bool:
        return self.active_state == "active" and self.sub_state == "running"


#: the properties :meth:`parse_state` reads
STATE_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "StatusText", "NRestarts",
                    "ExecMainStatus", "LoadError", "NeedDaemonReload", "DropInPaths",
                    "FragmentPath")


def parse_state(text: str) -> UnitState | None:
    """``systemctl show -p …`` output; None when it says nothing of the unit (no systemd)."""
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    if not values.get("LoadState") or not values.get("ActiveState"):
        return None

    def number(key: str) -> int:
        value = values.get(key, "")
        return int(value) if value.isdigit() else 0

    error = values.get("LoadError", "")
    # 'org.freedesktop.systemd1.BadUnitSetting "Unit x.service has a bad unit file setting."'
    error = error.partition(" ")[2].strip().strip('"') if error else ""
    return UnitState(
        load_state=values["LoadState"], active_state=values["ActiveState"],
        sub_state=values.get("SubState", ""), result=values.get("Result", ""),
        status_text=values.get("StatusText", ""), restarts=number("NRestarts"),
        exec_status=number("ExecMainStatus"), load_error=error,
        need_reload=values.get("NeedDaemonReload") == "yes",
        drop_ins=tuple(values.get("DropInPaths", "").split()),
        fragment=values.get("FragmentPath", ""))


def exec_start(text: str) -> list[str]:
    """The words of the unit's (last) ExecStart, its prefix characters (``-@:+!``) dropped."""
    lines = [line.strip() for line in text.splitlines()]
    values = [line.partition("=")[2].strip() for line in lines
              if line.partition("=")[0].strip() == "ExecStart"]
    if not values or not values[-1]:
        return []
    try:
        words = shlex.split(values[-1])
    except ValueError:
        return values[-1].split()
    if words:
        words[0] = words[0].lstrip("-@:+!")
    return words


def environment_files(text: str) -> list[tuple[str, bool]]:
    """``(path, optional)`` of each ``EnvironmentFile=`` line."""
    found = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "EnvironmentFile" and value.strip():
            value = value.strip()
            found.append((value.removeprefix("-"), value.startswith("-")))
    return found


def ignored_env_lines(text: str) -> tuple[tuple[int, str], ...]:
    """Lines of an env file that set nothing: not ``NAME=value`` (``export NAME=value`` is the
    usual one: systemd logs "Ignoring invalid environment assignment" and skips it)."""
    ignored = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, equals, _ = line.partition("=")
        if not equals or not name or not set(name) <= _NAME_CHARS or name[0].isdigit():
            ignored.append((number, line))
    return tuple(ignored)


def command_prefix_of(text: str, run_args: Sequence[str]) -> list[str]:
    """How the unit's ExecStart runs weavenomad: the words before ``run_args`` (just the first
    word when ExecStart runs something else)."""
    words = exec_start(text)
    for start in range(len(words) - len(run_args), 0, -1):
        if tuple(words[start:start + len(run_args)]) == tuple(run_args):
            return words[:start]
    return words[:1]


#: what our units' sandbox hides (ProtectHome=yes, PrivateTmp=yes): a program there cannot run
HIDDEN_FROM_UNITS = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")


def hidden_from_unit(program: str) -> str | None:
    """The hidden directory ``program`` lies under, if any."""
    return next((d.rstrip("/") for d in HIDDEN_FROM_UNITS if program.startswith(d)), None)


def exec_problem(program: str, can_run: bool, install_command: str) -> Problem | None:
    """Why systemd could not run ``program`` for the unit (status 203/EXEC, then a restart
    every RestartSec), if it could not."""
    if not can_run:
        return Problem(f"{program} does not exist or is not executable: systemd could not "
                       "start the unit", f"{install_command} --executable PATH, the weavenomad "
                                         "command installed on this node")
    hidden = hidden_from_unit(program)
    if hidden:
        # a warning, not a refusal: a sandbox of one's own (a drop-in) may allow it
        return Problem(f"{program} lies under {hidden}, which the unit's sandbox hides "
                       "(ProtectHome=, PrivateTmp=): systemd cannot run it there",
                       "install weavenomad outside /home, /root and /tmp (e.g. a venv in "
                       f"/opt/weavenomad), then {install_command} --executable PATH",
                       severe=False)
    return None


def first_difference(actual: str, expected: str) -> tuple[str, str] | None:
    """The first line that differs, as ``(found, written)``: "" for a missing line."""
    found, written = actual.splitlines(), expected.splitlines()
    for index in range(max(len(found), len(written))):
        a = found[index] if index < len(found) else ""
        b = written[index] if index < len(written) else ""
        if a != b:
            return a, b
    return None


def _quote(line: str) -> str:
    return f"'{line}'" if line else "nothing"


def hand_edit(spec: UnitSpec, text: str) -> tuple[str, str] | None:
    """The first line where ``text`` differs from what install writes for its own ExecStart
    program, as ``(found, written)``; None when it does not."""
    return first_difference(text, spec.render(command_prefix_of(text, spec.run_args)))


def edit_message(spec: UnitSpec, path: str, edit: tuple[str, str]) -> str:
    found, written = edit
    return (f"{path} differs from the unit '{spec.install_command}' writes: {_quote(found)} "
            f"where it writes {_quote(written)} (edited by hand, or written by another version)")


def env_problems(spec: UnitSpec, unit_file: UnitFile) -> list[Problem]:
    """What is wrong with the env files the unit names."""
    return [p for env in unit_file.env_files for p in _env_problems(spec, env)]


def file_problems(spec: UnitSpec, unit_file: UnitFile) -> list[Problem]:
    """What is wrong with the unit file and its env files (the severe first)."""
    if unit_file.text is None:
        return [Problem(f"{spec.name} is not installed ({unit_file.path} does not exist)",
                        spec.install_command)]
    problems = []
    words = exec_start(unit_file.text)
    if words and unit_file.exec_runnable is not None:
        problem = exec_problem(words[0], unit_file.exec_runnable, spec.install_command)
        if problem is not None:
            problems.append(Problem(f"ExecStart of {spec.name}: {problem.message}", problem.fix,
                                    problem.severe))
    problems += env_problems(spec, unit_file)
    edit = hand_edit(spec, unit_file.text)
    if edit is not None:
        problems.append(Problem(edit_message(spec, unit_file.path, edit),
                                f"{spec.install_command} to rewrite it; keep local changes in a "
                                f"drop-in (systemctl edit {spec.short})", severe=False))
    return sorted(problems, key=lambda p: not p.severe)


def _env_problems(spec: UnitSpec, env: EnvFile) -> list[Problem]:
    if env.kind == "missing":
        if env.optional:
            return []
        return [Problem(f"{spec.name} needs its EnvironmentFile {env.path}, which does not "
                        "exist: systemd will not start it",
                        f"create it (root-owned, mode 0600), or {spec.install_command} "
                        "(its unit reads the file only when it exists)")]
    if env.kind == "not-a-file":
        return [Problem(f"EnvironmentFile {env.path} of {spec.name} is not a file: systemd "
                        + ("ignores it, so none of its settings apply" if env.optional
                           else "will not start the unit"),
                        f"put the settings in a file at {env.path} instead (root-owned, "
                        "mode 0600)")]
    if env.kind == "unreadable":
        return [Problem(f"cannot read EnvironmentFile {env.path} of {spec.name} here",
                        "run this as root to check it", severe=False)]
    problems = []
    if env.ignored_lines:
        number, line = env.ignored_lines[0]
        more = f" and {len(env.ignored_lines) - 1} more" if len(env.ignored_lines) > 1 else ""
        problems.append(Problem(
            f"line {number} of {env.path} is not NAME=value ({line!r}{more}): systemd ignores "
            "it, so that setting does not apply",
            "write plain NAME=value lines (no 'export')", severe=False))
    if env.mode & (stat.S_IRWXG | stat.S_IRWXO) or env.uid != 0:
        problems.append(Problem(
            f"{env.path} may hold tokens but is mode {env.mode & 0o777:04o}, owner uid "
            f"{env.uid}", f"chown root: {env.path} && chmod 600 {env.path}", severe=False))
    return problems


def telling_line(journal_json: str) -> str:
    """From ``journalctl -o json`` lines (oldest first), the message that says most: the
    daemon's own (not PID 1's) before systemd's, the worst priority first, then the latest;
    one line, "" when there is none."""
    entries = []
    for line in journal_json.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE") if isinstance(entry, dict) else None
        if isinstance(message, str) and message.strip():
            priority = entry.get("PRIORITY", "")
            entries.append((entry.get("_PID") != "1",
                            -int(priority) if str(priority).isdigit() else -6,
                            len(entries), " ".join(message.split())))
    return max(entries)[-1] if entries else ""


#: what a unit's Result= means, in words
_RESULTS = {
    "exit-code": "its process exited with status {status}",
    "signal": "its process was killed by a signal",
    "core-dump": "its process dumped core",
    "timeout": "it did not say READY=1 within TimeoutStartSec (or did not stop in time)",
    "watchdog": "it stopped feeding the watchdog (hung for WatchdogSec)",
    "start-limit-hit": "it failed too often in a row, and systemd stopped restarting it",
    "resources": "systemd could not set up its process (an EnvironmentFile, a directory, a "
                 "namespace)",
    "oom-kill": "the kernel's OOM killer ended it",
}
#: the exit status systemd gives a process whose program it could not run
EXEC_FAILED = 203


def state_problem(spec: UnitSpec, state: UnitState, logged: str = "") -> Problem | None:
    """What systemd's view of the unit says is wrong; None when it runs. ``logged`` is
    what the unit's journal tells of it (:func:`telling_line`)."""
    journal = f"journalctl -u {spec.short} -p warning"
    said = f"; its log says: {logged}" if logged else ""
    if state.load_state == "not-found":
        return Problem(f"systemd does not know {spec.name}", spec.install_command)
    if state.load_state == "masked":
        return Problem(f"{spec.name} is masked", f"systemctl unmask {spec.short}")
    if state.load_state != "loaded":
        return Problem(f"systemd cannot load {spec.name} ({state.load_state}: "
                       f"{state.load_error or 'see its log'})", spec.install_command)
    if state.need_reload:
        return Problem(f"{spec.name} changed on disk since systemd read it",
                       f"systemctl daemon-reload && systemctl restart {spec.short}",
                       severe=False)
    if state.running:
        return None
    if state.active_state == "activating" and state.sub_state == "start":
        return Problem(f"{spec.name} is starting but has not said READY=1 yet{said}",
                       f"wait for TimeoutStartSec, then see {journal}", severe=False)
    if state.active_state in ("inactive", "deactivating") and state.result in ("", "success"):
        return Problem(f"{spec.name} is not running", f"systemctl enable --now {spec.short}")
    why = _RESULTS.get(state.result, f"its result is '{state.result}'").format(
        status=state.exec_status)
    fix = f"see {journal}, mend the cause, then systemctl restart {spec.short}"
    if state.result == "exit-code" and state.exec_status == EXEC_FAILED:
        why = "systemd cannot run its ExecStart program (status 203/EXEC)"
        fix = f"{spec.install_command} --executable PATH (an installed weavenomad)"
    elif state.result == "start-limit-hit":
        fix = (f"see {journal}, mend the cause, then systemctl reset-failed {spec.short} && "
               f"systemctl start {spec.short}")
    again = f", restarted {state.restarts} time(s)" if state.restarts else ""
    return Problem(f"{spec.name} is {state.active_state} ({state.sub_state}{again}): "
                   f"{why}{said}", fix)

"""Our systemd units on this machine, as ``weavenomad reconciler install``, ``weavenomad guard
install`` and ``weavenomad doctor`` see them: how ExecStart runs weavenomad, writing the unit
file, enabling and starting it, and reading back the file, its env files, systemd's view of the
unit and its last warning. Each daemon renders its own unit text; what is wrong with what was
read is :mod:`.unitcheck`'s to say."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from weavenomad.errors import ConfigError, PrivilegeError, WeavenomadError
from weavenomad.runtime import unitcheck as uc

#: ExecStart of the shipped units (scripts/*.service)
DEFAULT_EXEC = "/usr/local/bin/weavenomad"
#: where ``install`` writes units by default
UNIT_DIR = "/etc/systemd/system"
#: seconds each systemctl call may take
SYSTEMCTL_TIMEOUT = 60
#: seconds ``enable --now`` may wait for READY=1: longer than the units' TimeoutStartSec (60),
#: so that a daemon which never says it is ready is failed by systemd, which then says why
START_TIMEOUT = 90
#: seconds a journalctl or systemctl show may take
READ_TIMEOUT = 15
#: how many of the unit's last warnings to choose the telling one from
WARNING_LINES = 20

Run = Callable[..., subprocess.CompletedProcess]


class UnitStartError(WeavenomadError):
    """``systemctl enable --now`` did not start the unit (failed, or did not finish)."""


def command_prefix(executable: str | None = None,
                   which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """How ExecStart runs weavenomad: ``executable``, else the one on PATH, else this Python
    with ``-m weavenomad``."""
    if executable:
        return [os.path.abspath(executable)]
    found = which("weavenomad")
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "weavenomad"]


def runnable(program: str) -> bool:
    """Whether ``program`` (a path, or a name systemd looks up on PATH) exists and may run."""
    path = program if os.path.isabs(program) else shutil.which(program)
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def executable_problem(prefix: list[str], install_command: str) -> uc.Problem | None:
    """What keeps systemd from running ExecStart's program, if anything."""
    return uc.exec_problem(prefix[0], runnable(prefix[0]), install_command)


def write_unit(unit_dir: Path, text: str, unit: str, command: str) -> Path:
    """Write the unit atomically; returns its path. ``command`` is the one to run as root."""
    path = Path(unit_dir) / unit
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except PermissionError:
        raise PrivilegeError(f"cannot write {path}: permission denied",
                             hint=f"run '{command}' as root") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}",
                          hint="--unit-dir DIR") from None
    return path


def enable(unit: str, command: str, *, start: bool = True, run: Run = subprocess.run) -> None:
    """``systemctl daemon-reload`` and ``enable [--now]`` the unit; ``command`` is what to
    start by other means when systemd is absent. A start that fails raises
    :class:`UnitStartError`."""
    daemon_reload(command, run)
    argv = ["systemctl", "enable", *(["--now"] if start else []), unit]
    _systemctl(argv, command, run, START_TIMEOUT if start else SYSTEMCTL_TIMEOUT,
               UnitStartError if start else WeavenomadError)


def disable(unit: str, command: str, run: Run = subprocess.run) -> None:
    """``systemctl disable --now``: the unit stops and no longer starts at boot."""
    _systemctl(["systemctl", "disable", "--now", unit], command, run, START_TIMEOUT)


def daemon_reload(command: str, run: Run = subprocess.run) -> None:
    _systemctl(["systemctl", "daemon-reload"], command, run, SYSTEMCTL_TIMEOUT)


def restart(unit: str, command: str, run: Run = subprocess.run) -> None:
    _systemctl(["systemctl", "restart", unit], command, run, START_TIMEOUT, UnitStartError)


def is_active(unit: str, run: Run = subprocess.run) -> bool:
    try:
        done = run(["systemctl", "is-active", "--quiet", unit], capture_output=True, text=True,
                   timeout=READ_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _systemctl(argv: list[str], command: str, run: Run, timeout: float,
               error: type[WeavenomadError] = WeavenomadError) -> None:
    try:
        done = run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ConfigError("systemctl not found: this node does not run systemd",
                          hint=f"start '{command}' with your service "
                               "manager, or use --no-enable") from None
    except subprocess.TimeoutExpired:
        raise error(f"{shlex.join(argv)} did not finish within {timeout}s") from None
    if done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout or "").split()) or "no output"
        raise error(f"{shlex.join(argv)} failed (exit {done.returncode}): {detail}")


# -- reading back ---------------------------------------------------------------------------


def read_state(unit: str, run: Run = subprocess.run) -> uc.UnitState | None:
    """systemd's view of the unit; None when systemd cannot be asked."""
    try:
        done = run(["systemctl", "show", "-p", ",".join(uc.STATE_PROPERTIES), unit],
                   capture_output=True, text=True, timeout=READ_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return uc.parse_state(done.stdout or "") if done.returncode == 0 else None


def telling_warning(unit: str, since: float | None = None, run: Run = subprocess.run) -> str:
    """Of the unit's last few journal lines at warning or worse, since ``since`` (epoch
    seconds) or this boot, the one that tells most (:func:`unitcheck.telling_line`: the
    daemon's own before systemd's "start operation timed out"); "" when there is none."""
    window = [f"--since=@{int(since)}"] if since is not None else ["--boot"]
    try:
        done = run(["journalctl", "--unit", unit, "--priority", "warning", "--lines",
                    str(WARNING_LINES), "--output", "json", "--no-pager", "--quiet", *window],
                   capture_output=True, text=True, timeout=READ_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return uc.telling_line(done.stdout or "") if done.returncode == 0 else ""


def read_unit_file(path: Path) -> uc.UnitFile:
    """The unit file at ``path`` and the env files it names, as they are on disk."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return uc.UnitFile(str(path), None)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    words = uc.exec_start(text)
    return uc.UnitFile(str(path), text, runnable(words[0]) if words else None,
                       tuple(_env_file(env, optional)
                             for env, optional in uc.environment_files(text)))


def inspect(spec: uc.UnitSpec, unit_dir: str = UNIT_DIR, run: Run = subprocess.run
            ) -> tuple[uc.UnitFile, uc.UnitState | None, str]:
    """The unit as installed: its file (where systemd loaded it from, else in ``unit_dir``),
    systemd's view of it, and, when that view shows a problem, its last warning this boot."""
    state = read_state(spec.name, run)
    fragment = state.fragment if state is not None else ""
    path = Path(fragment) if fragment else Path(unit_dir) / spec.name
    unit_file = read_unit_file(path)
    troubled = state is not None and uc.state_problem(spec, state) is not None
    return unit_file, state, telling_warning(spec.name, run=run) if troubled else ""


def _env_file(path: str, optional: bool) -> uc.EnvFile:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return uc.EnvFile(path, optional, "missing")
    except OSError:
        return uc.EnvFile(path, optional, "unreadable")
    if not stat.S_ISREG(info.st_mode):
        return uc.EnvFile(path, optional, "not-a-file", info.st_mode, info.st_uid)
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return uc.EnvFile(path, optional, "unreadable", info.st_mode, info.st_uid)
    return uc.EnvFile(path, optional, "file", info.st_mode, info.st_uid,
                      uc.ignored_env_lines(text))

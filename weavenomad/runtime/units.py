"""Installing a systemd unit, as ``weavenomad reconciler install`` and ``weavenomad guard
install`` do: how ExecStart runs weavenomad, writing the unit file, enabling and starting it.
Each daemon renders its own unit text."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from weavenomad.errors import ConfigError, PrivilegeError, WeavenomadError

#: ExecStart of the shipped units (scripts/*.service)
DEFAULT_EXEC = "/usr/local/bin/weavenomad"
#: seconds each systemctl call may take
SYSTEMCTL_TIMEOUT = 60


def command_prefix(executable: str | None = None,
                   which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """How ExecStart runs weavenomad: ``executable``, else the one on PATH, else this Python
    with ``-m weavenomad``."""
    if executable:
        return [os.path.abspath(executable)]
    found = which("weavenomad")
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "weavenomad"]


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


def enable(unit: str, command: str, *, start: bool = True,
           run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """``systemctl daemon-reload`` and ``enable [--now]`` the unit; ``command`` is what to
    start by other means when systemd is absent."""
    commands = [["systemctl", "daemon-reload"],
                ["systemctl", "enable", *(["--now"] if start else []), unit]]
    for argv in commands:
        try:
            done = run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
        except FileNotFoundError:
            raise ConfigError("systemctl not found: this node does not run systemd",
                              hint=f"start '{command}' with your service "
                                   "manager, or use --no-enable") from None
        except subprocess.TimeoutExpired:
            raise WeavenomadError(f"{shlex.join(argv)} did not finish within "
                                  f"{SYSTEMCTL_TIMEOUT}s") from None
        if done.returncode != 0:
            detail = " ".join((done.stderr or done.stdout or "").split()) or "no output"
            raise WeavenomadError(f"{shlex.join(argv)} failed (exit {done.returncode}): {detail}")

"""Long-lived lab processes (dockerd, the weave emulator, simulated Consul and Nomad).

Each runs detached in its own session with a pid file and a log file in the lab's state
directory. Stopping checks that the pid still belongs to the process we started (its command
line contains a marker) so a recycled pid is never killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from weavenomad_lab.errors import LabError


@dataclass(frozen=True)
class Daemon:
    """One detached process of the lab."""

    name: str
    argv: tuple[str, ...]
    pid_file: Path
    log_file: Path
    #: a string that must appear in /proc/PID/cmdline for the pid to be ours
    marker: str
    env: tuple[tuple[str, str], ...] = ()

    def pid(self) -> int | None:
        """The pid when the process runs and is ours, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        if self.marker not in cmdline or state == "Z":
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, ready: Callable[[], bool], timeout: float = 30.0) -> int:
        """Start unless already running, then wait until ``ready()`` is true."""
        pid = self.pid()
        if pid is None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            env.update(dict(self.env))
            with open(self.log_file, "ab") as log:
                proc = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    close_fds=True,
                )
            pid = proc.pid
            # dockerd writes its own pid file; for the others, we write it.
            if not self.pid_file.exists() or self.pid_file.read_text().strip() != str(pid):
                self.pid_file.write_text(f"{pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Popen can return before the kernel has set the child's /proc cmdline (vfork),
            # so wait until the process is recognisably ours as well as ready.
            if self.pid() == pid and ready():
                return pid
            if not _alive(pid):
                raise LabError(
                    f"{self.name} exited during start-up; see {self.log_file}: {self.tail()}"
                )
            time.sleep(0.05)
        raise LabError(f"{self.name} did not become ready in {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL. Harmless when it is not running."""
        pid = self.pid()
        if pid is not None:
            _terminate(pid, timeout)
        self.pid_file.unlink(missing_ok=True)

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie does not: it has exited and only waits for its
    parent (often a slow init) to reap it."""
    try:
        # reap our own child if it died, so it does not linger as a zombie
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.05)


def python_module_argv(module: str, *args: str) -> tuple[str, ...]:
    """argv that runs one of our modules with this interpreter."""
    return (sys.executable, "-m", module, *args)


def run(argv: Sequence[str], *, timeout: float = 30.0, check: bool = True) -> str:
    """Run a short command, returning stdout; failures become :class:`LabError`."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        hint = "see the README's install steps"
        raise LabError(f"{argv[0]} is not installed", hint=hint) from None
    except subprocess.TimeoutExpired:
        raise LabError(f"'{' '.join(argv)}' did not finish in {timeout:.0f}s") from None
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise LabError(f"'{' '.join(argv)}' failed: {detail[-1] if detail else done.returncode}")
    return done.stdout

"""systemd integration: ``sd_notify`` readiness and watchdog over ``$NOTIFY_SOCKET`` (the
protocol is one datagram per message; no library needed), and the unit file the reconciler is
installed with.

The unit is hardened by removing what the daemon does not use: it only talks HTTP to Nomad,
Consul and Weave, talks to Docker's socket (root owns it, so no capability is needed), and reads
``/proc/<pid>/net`` of task containers (readable without capabilities), so it runs with no
capabilities at all, a read-only file system, a syscall allow-list without the privileged and
resource groups, only unix and IP sockets, and no other namespaces, devices or kernel knobs
(see tests/unit/test_secrets_systemd_unit.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from weavenomad.errors import ConfigError, PrivilegeError, WeavenomadError

UNIT_NAME = "weavenomad-reconciler.service"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_EXEC = "/usr/local/bin/weavenomad"
ENV_FILE = "/etc/weavenomad/reconciler.env"

UNIT_TEMPLATE = """\
# weavenomad reconciler: one per node; makes Consul answer with each task's Weave address.
# Settings: /etc/weavenomad/config.toml, or NOMAD_ADDR, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
# DOCKER_HOST, WEAVE_HTTP_ADDR ... in {env_file}.
# Tokens go in that file (root:root, mode 0600; systemd reads it before dropping privileges),
# never on ExecStart: a command line is readable by every user.
[Unit]
Description=weavenomad reconciler (Consul answers with Weave addresses)
After=network-online.target docker.service weave.service consul.service nomad.service
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=-{env_file}
ExecStart={exec_start}
Restart=always
RestartSec=2
WatchdogSec=30
TimeoutStartSec=60
TimeoutStopSec=30

# Hardening: everything the daemon does not need is taken away. It talks HTTP to Nomad,
# Consul and Weave, talks to Docker's socket (root's, so no capability is needed), reads
# /proc/<pid>/net of task containers (readable without any capability: tested as root with an
# empty bounding set and no_new_privs), and writes no file at all.
# Runs as root without capabilities rather than as another user: Docker's socket belongs to
# root (its group differs between distributions, and that group is root-equivalent anyway).
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
# the whole file system read-only, home directories and other services' /tmp out of sight
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# ProtectProc= stays at its default: the daemon reads other processes' /proc/<pid>/net;
# the rest of /proc (sysctls, kernel and hardware views) it does not need
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
# unix sockets (Docker, sd_notify) and TCP; no netlink, no packet sockets
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def render_unit(command: Sequence[str] = (DEFAULT_EXEC,), extra_args: Sequence[str] = ()) -> str:
    """The unit file text; ``command`` is how to run weavenomad. Pure."""
    exec_start = shlex.join([*command, "reconciler", "run", *extra_args])
    return UNIT_TEMPLATE.format(exec_start=exec_start, env_file=ENV_FILE)


def command_prefix(executable: str | None = None,
                   which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """How ExecStart runs weavenomad: ``executable``, else the one on PATH, else this Python
    with ``-m weavenomad``."""
    if executable:
        return [os.path.abspath(executable)]
    found = which("weavenomad")
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "weavenomad"]


def write_unit(unit_dir: Path, text: str, unit: str = UNIT_NAME,
               command: str = "weavenomad reconciler install") -> Path:
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


def enable(run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
           start: bool = True, unit: str = UNIT_NAME,
           command: str = "weavenomad reconciler run") -> None:
    """``systemctl daemon-reload`` and ``enable [--now]`` the unit; ``command`` is what to
    start by other means when systemd is absent."""
    commands = [["systemctl", "daemon-reload"],
                ["systemctl", "enable", *(["--now"] if start else []), unit]]
    for argv in commands:
        try:
            done = run(argv, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise ConfigError("systemctl not found: this node does not run systemd",
                              hint=f"start '{command}' with your service "
                                   "manager, or use --no-enable") from None
        except subprocess.TimeoutExpired:
            raise WeavenomadError(f"{shlex.join(argv)} did not finish within 60s") from None
        if done.returncode != 0:
            detail = " ".join((done.stderr or done.stdout or "").split()) or "no output"
            raise WeavenomadError(f"{shlex.join(argv)} failed (exit {done.returncode}): {detail}")


# --------------------------------------------------------------------------------------------
# sd_notify


class Notifier:
    """Tells systemd about readiness, status and liveness; does nothing outside systemd."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """From ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (ignored when ``$WATCHDOG_PID`` names
        another process)."""
        watchdog = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(pid or os.getpid())):
            watchdog = int(usec)
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, *lines: str) -> bool:
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall("\n".join(lines).encode())
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

"""The node's own kernel and init system, read and changed through short commands with timeouts.

Everything reads the network namespace the process runs in: ``/proc/net/*`` and
``/proc/sys/net/*`` follow the reader's namespace, and ``ip``/``iptables`` talk netlink/xtables
in it. So ``weavenomad doctor`` run inside a lab node (``weavenomad lab exec n1 -- …``) sees that
node, and on a real node it sees the host.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface

from weavenomad.bootstrap import guards as gd
from weavenomad.errors import BackendError, BackendUnavailable, ValidationError

COMMAND_TIMEOUT = 30.0
#: apt reads its lists, and may wait for another apt's lock
APT_TIMEOUT = 120.0
#: an install downloads packages and restarts Docker
APT_INSTALL_TIMEOUT = 900.0
#: a Nomad restart may drain and stop the agent first
RESTART_TIMEOUT = 180.0
NOMAD_UNIT = "nomad"
RECONCILER_UNIT = "weavenomad-reconciler.service"
GUARDS_UNIT = "weavenomad-guards.service"
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class Completed:
    code: int
    out: str
    err: str


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> Completed:
    """Run a command; a missing program is code 127, a timeout raises BackendUnavailable."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(f"'{shlex.join(argv)}' did not finish within {timeout:g}s",
                                 backend="system") from None
    return Completed(done.returncode, done.stdout, done.stderr)


def run_checked(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> str:
    done = run(argv, timeout)
    if done.code != 0:
        detail = " ".join((done.err or done.out).split())[:300] or f"exit {done.code}"
        raise BackendError(f"'{shlex.join(argv)}' failed: {detail}", backend="system")
    return done.out


# -- reads -----------------------------------------------------------------------------------


def euid() -> int:
    return os.geteuid()


def kernel_release() -> str:
    return os.uname().release


def iptables_rules(table: str = "filter") -> tuple[list[str] | None, str | None]:
    """``iptables -t TABLE -S`` lines (every chain), or (None, why)."""
    done = run(["iptables", "-w", "-t", table, "-S"])
    if done.code != 0:
        return None, " ".join((done.err or f"exit {done.code}").split())[:200]
    return done.out.splitlines(), None


def bridge_filtering() -> bool | None:
    """Whether bridged IPv4 traffic traverses iptables (br_netfilter loaded and on); None when
    br_netfilter is not loaded."""
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables", encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return None


def ip_forward() -> bool | None:
    try:
        with open("/proc/sys/net/ipv4/ip_forward", encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return None


def _ports(path: str, state: str) -> set[int]:
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return set()
    ports = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == state:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_ports() -> set[tuple[str, int]]:
    """(proto, port) of every TCP listener and bound UDP socket in this namespace."""
    found = set()
    for proto, state in (("tcp", _TCP_LISTEN), ("udp", _UDP_UNCONNECTED)):
        for suffix in ("", "6"):
            found |= {(proto, p) for p in _ports(f"/proc/net/{proto}{suffix}", state)}
    return found


def host_addresses() -> list[tuple[str, IPv4Interface]]:
    """(interface, address) of every IPv4 address in this namespace."""
    done = run(["ip", "-j", "-4", "addr", "show"])
    if done.code != 0:
        return []
    found = []
    for link in json.loads(done.out or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append((link.get("ifname", ""),
                              IPv4Interface(f"{info['local']}/{info['prefixlen']}")))
    return found


def apt_policy(packages: Sequence[str]) -> tuple[str | None, str | None]:
    """``apt-cache policy PACKAGES``'s text, or (None, why apt could not be asked)."""
    done = run(["apt-cache", "policy", *packages], APT_TIMEOUT)
    if done.code == 127:
        return None, ("apt-cache is not installed: this node's package manager is not apt "
                      "(this check knows Debian's and Ubuntu's)")
    if done.code != 0:
        return None, "apt-cache policy failed: " + (_last_line(done) or f"exit {done.code}")
    return done.out, None


def apt_holds() -> tuple[str | None, str | None]:
    """``apt-mark showhold``'s text, or (None, why not)."""
    done = run(["apt-mark", "showhold"], APT_TIMEOUT)
    if done.code != 0:
        return None, "apt-mark showhold failed: " + (_last_line(done) or f"exit {done.code}")
    return done.out, None


def _last_line(done: Completed) -> str:
    lines = (done.err or done.out).strip().splitlines()
    return " ".join(lines[-1].split())[:300] if lines else ""


def apt_mark(action: str, packages: Sequence[str]) -> str:
    """``apt-mark hold|unhold PACKAGES``; BackendError with apt's own line on failure."""
    return run_checked(["apt-mark", action, *packages], APT_TIMEOUT)


def apt_install(pins: Sequence[str]) -> str:
    """``apt-get install -y --allow-downgrades PKG=VERSION…`` (the packages must not be held:
    apt refuses a held one with -y, recorded apt-docker/a10)."""
    return run_checked(["apt-get", "install", "-y", "--allow-downgrades",
                        "-o", "Dpkg::Options::=--force-confold", *pins], APT_INSTALL_TIMEOUT)


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name]).code == 0


def systemd_running() -> bool:
    """Whether systemd is the init system here (its documented test)."""
    return os.path.isdir("/run/systemd/system")


def unit_active(unit: str) -> bool | None:
    """Whether the systemd unit is active; None without systemd."""
    if not systemd_running():
        return None
    return run(["systemctl", "is-active", "--quiet", unit]).code == 0


def resolve_peer(peer: str) -> str:
    """Check that a ``--peer`` (host or IP, optional :port) resolves; ValidationError if not."""
    host, _, port = peer.rpartition(":") if peer.count(":") == 1 else (peer, "", "")
    host = host or peer
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValidationError(f"invalid peer {peer!r}: bad port", hint="--peer HOST[:PORT]")
    try:
        socket.getaddrinfo(host, None, socket.AF_INET)
    except (socket.gaierror, UnicodeError):
        raise ValidationError(f"unknown peer {peer!r}: the name does not resolve",
                              hint="--peer takes an IP address or a resolvable host name") from None
    return peer


# -- changes ---------------------------------------------------------------------------------


def guard_states(docker_bridge: str) -> list[gd.GuardState]:
    """The isolation guards as they stand now; BackendError when iptables cannot be read."""
    found = {}
    for table in ("filter", "nat"):
        lines, error = iptables_rules(table)
        if lines is None:
            raise BackendError(f"cannot read iptables ({table} table): {error}",
                               backend="system", hint="run as root; install iptables")
        found[table] = lines
    return gd.guard_states(found["filter"], found["nat"], docker_bridge)


def add_guard(guard: gd.Guard) -> None:
    run_checked(guard.argv("-I"))


def remove_guard(guard: gd.Guard, every: bool = True) -> int:
    """Delete the guard's rules carrying our comment (the topmost one unless ``every``); how
    many were removed."""
    removed = 0
    while run(guard.argv("-C")).code == 0:
        run_checked(guard.argv("-D"))
        removed += 1
        if not every:
            break
    return removed


def ensure_guards(docker_bridge: str) -> list[gd.Guard]:
    """Put every guard that is missing or shadowed at the top of its chain; the ones added.
    For a long-running service to call after a reboot or a Weave or Docker restart rewrote
    the chains (bootstrap does the same through its plan)."""
    added = []
    for state in guard_states(docker_bridge):
        if not state.effective:
            add_guard(state.guard)
            added.append(state.guard)
    return added


def restart_argv(command: str | None, systemd_nomad: bool | None) -> tuple[str, ...] | None:
    """How to restart Nomad: the configured command, else systemd when it runs Nomad."""
    if command:
        return tuple(shlex.split(command))
    if systemd_nomad:
        return ("systemctl", "restart", NOMAD_UNIT)
    return None


def restart_nomad(argv: Sequence[str]) -> None:
    run_checked(argv, RESTART_TIMEOUT)

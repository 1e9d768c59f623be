"""Network namespaces for the lab: run code or bind sockets inside a node's namespace.

A Linux network namespace is a property of a *thread*, so one Python process can serve every
lab node: a short-lived thread enters the node's namespace (``setns``), creates a socket there
and leaves; the socket keeps belonging to that namespace for its whole life. This is how the
simulated agents listen on ``127.0.0.1:8500`` (Consul), ``:4646`` (Nomad) and ``:6784`` (Weave)
*inside* each node, where a real node has them, and how health checks run from the node.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(name: str | None, func: Callable[[], T]) -> T:
    """Run ``func`` on a fresh thread inside namespace ``name`` (None: the caller's own) and
    return its result. The calling thread never changes namespace."""
    if name is None:
        return func()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            _setns(netns_path(name))
            outcome["value"] = func()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def listen_tcp(host: str, port: int, netns: str | None = None, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on ``host:port`` inside ``netns`` (port 0 picks a free one)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return sock

    return call_in_netns(netns, make)


def connect_tcp(host: str, port: int, netns: str | None, timeout: float) -> socket.socket:
    """A TCP connection made from inside ``netns`` (for health checks run from a node)."""
    return call_in_netns(netns, lambda: socket.create_connection((host, port), timeout=timeout))


class NetnsThread(threading.Thread):
    """A daemon thread that lives inside one namespace, for work that keeps making sockets
    there (a health-check runner for one node, say)."""

    def __init__(self, netns: str | None, target: Callable[[], None], name: str | None = None):
        super().__init__(name=name or f"netns-{netns}", daemon=True)
        self._netns = netns
        self._work = target

    def run(self) -> None:
        if self._netns is not None:
            _setns(netns_path(self._netns))
        self._work()


def nsenter_argv(name: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``name``. ``nsenter`` rather than
    ``ip netns exec``: the latter remounts /sys, which breaks dockerd (docs/design.md)."""
    return ["nsenter", f"--net={netns_path(name)}", "--", *argv]


def run_in_netns(
    name: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nsenter_argv(name, argv), check=check, capture_output=True, text=True, timeout=timeout
    )

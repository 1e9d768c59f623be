"""Keeps a lab node's container removals apart from each other and from starts.

Docker 20.10 (the Debian package the lab runs) has a lock-order deadlock in libnetwork: a
container leaving its network (``getSvcRecords``: network lock, then controller lock) racing
another's endpoint deletion (``processEndpointDelete``: controller lock, then network lock)
freezes the whole daemon (moby/moby#42545, backported to the 20.10 branch after 20.10.24 in
moby/libnetwork#2679). The fault suite's churn (scaling 100 allocations down while others
restart) met it. Real Nomad makes these calls in parallel; the simulated client lets starts
run together but gives each SIGKILL and removal the node's dockerd to itself, which costs the
lab a little speed and nothing else: the reconciler never creates or removes containers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: seconds a SIGKILLed container gets to be reported stopped
STOPPED_WITHIN = 30


class DockerGate:
    """A readers-writer lock: starts share it, stops and removals hold it alone. A waiting
    removal stops new starts from entering, so a stream of starts cannot starve it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._starting = 0
        self._removing = False
        self._removals_waiting = 0

    @contextmanager
    def starting(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._removing and not self._removals_waiting)
            self._starting += 1
        try:
            yield
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()

    @contextmanager
    def removing(self) -> Iterator[None]:
        with self._cond:
            self._removals_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._removing and not self._starting)
            finally:
                self._removals_waiting -= 1
            self._removing = True
        try:
            yield
        finally:
            with self._cond:
                self._removing = False
                self._cond.notify_all()


def stop_container(api: Any, container_id: str, signal: str, grace: float,
                   gate: DockerGate) -> None:
    """Nomad's Docker driver stopping a task: the kill signal, up to the kill timeout to exit,
    then SIGKILL. Only that last kill holds the gate, until the container is gone from its
    network: tasks that ignore the signal (busybox as PID 1 does) would otherwise all die
    at the same instant, which is when the deadlock strikes."""
    try:
        api.kill(container_id, signal=signal or "SIGTERM")
        api.wait(container_id, timeout=grace)
        return
    except Exception as exc:  # noqa: BLE001 - sorted below
        if _not_running(exc):
            return
        if not wait_timed_out(exc):
            raise
    with gate.removing():
        try:
            api.kill(container_id, signal="SIGKILL")
        except Exception as exc:  # noqa: BLE001
            if _not_running(exc):
                return
            raise
        api.wait(container_id, timeout=STOPPED_WITHIN)


def wait_timed_out(exc: BaseException) -> bool:
    """Whether a container wait ended by its own read timeout (requests reports it on a unix
    socket as a ConnectionError around urllib3's ReadTimeoutError)."""
    import requests
    import urllib3

    return isinstance(exc, requests.exceptions.ReadTimeout) or (
        isinstance(exc, requests.exceptions.ConnectionError)
        and any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args))


def _not_running(exc: BaseException) -> bool:
    """Docker's 409 for a signal to a stopped container, or 404 for a removed one."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status in (404, 409)

"""systemd's notify protocol (``sd_notify``): readiness, status and watchdog over
``$NOTIFY_SOCKET``. The protocol is one datagram per message, so no library is needed.

:class:`Notifier` speaks the protocol; :class:`Supervised` is what a daemon says over its life:
``READY=1`` as soon as it serves (waiting for an agent that is down is serving: it will act
when the agent is back), ``STATUS=`` saying what it does or waits for, and ``WATCHDOG=1`` at
half the watchdog timeout, in every wait.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("weavenomad.systemd")


class Notifier:
    """Tells systemd about readiness, status and liveness; does nothing outside systemd."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec
        #: why the last message did not get through (None: it did), logged once per reason
        self.failure: str | None = None

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
        except OSError as exc:
            self._failed(exc.strerror or str(exc))
            return False
        if self.failure is not None:
            log.info("systemd's notify socket %s answers again", self.address)
            self.failure = None
        return True

    def _failed(self, reason: str) -> None:
        """A socket that does not answer must not pass in silence: systemd then sees neither
        readiness nor pings, times the start out and restarts the daemon again and again."""
        if reason == self.failure:
            return
        self.failure = reason
        log.error("cannot tell systemd at NOTIFY_SOCKET=%s: %s; a Type=notify unit times out "
                    "its start and restarts this daemon (outside systemd, unset NOTIFY_SOCKET; "
                    "in a unit, do not restrict AF_UNIX sockets)", self.address, reason)

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")


class Supervised:
    """A daemon's side of systemd's supervision: ready with its first status, the status kept
    current, the watchdog fed while it works and while it waits."""

    def __init__(self, notifier: Notifier | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.notifier = notifier or Notifier()
        self.monotonic = monotonic
        self.ready = False
        self.current: str | None = None
        self._ping_due = 0.0

    def tell(self, status: str) -> None:
        """``READY=1`` with the first status, then ``STATUS=`` whenever it changes."""
        if not self.ready:
            self.ready = True
            self.notifier.ready(status)
        elif status != self.current:
            self.notifier.status(status)
        self.current = status

    def next_ping(self) -> float:
        """When the watchdog wants its next ping (``monotonic`` time; infinity without one)."""
        return self._ping_due if self.notifier.watchdog_interval else float("inf")

    def ping(self, force: bool = False) -> None:
        """``WATCHDOG=1`` when one is due (or ``force``)."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        now = self.monotonic()
        if force or now >= self._ping_due:
            self.notifier.watchdog()
            self._ping_due = now + interval

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop`` is set (then True), feeding the watchdog."""
        end = self.monotonic() + seconds
        while not stop.is_set():
            self.ping()
            now = self.monotonic()
            if now >= end:
                return False
            stop.wait(min(end, self.next_ping()) - now)
        return True

    def stopping(self) -> None:
        self.notifier.stopping()

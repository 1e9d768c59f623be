"""systemd's notify protocol (``sd_notify``): readiness, status and watchdog over
``$NOTIFY_SOCKET``. The protocol is one datagram per message, so no library is needed."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


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

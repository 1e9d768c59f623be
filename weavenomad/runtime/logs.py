"""The daemons' logs (the reconciler's, the guard keeper's): text for people, the journal's own
form under systemd, JSON lines for collectors (``--log-format``).

Under systemd a service's stderr goes to journald, which records the time itself and reads a
line's priority from a ``<N>`` prefix (``SyslogLevelPrefix=``, on by default). A text line there
carries that prefix and no timestamp of its own, so ``journalctl -p warning`` shows the
warnings; journald says which stream is its own in ``$JOURNAL_STREAM`` (``device:inode``).

Fields given through ``extra={"fields": {...}}`` (service ID, reason, backend …) become JSON keys,
or ``key=value`` pairs at the end of a text line, so every format carries the same facts.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: journald stamps each line itself
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"

#: syslog priorities (sd-daemon(3)'s SD_ERR, SD_WARNING …) of the logging levels
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))
DEBUG_PRIORITY = 7


def priority(level: int) -> int:
    """The syslog priority of a logging level: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    return next((p for at_least, p in _PRIORITIES if level >= at_least), DEBUG_PRIORITY)


def with_priority(text: str, level: int) -> str:
    """Every line of ``text`` with journald's ``<N>`` prefix (a traceback keeps its level)."""
    prefix = f"<{priority(level)}>"
    return "\n".join(prefix + line for line in text.split("\n"))


def is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Whether ``stream`` is journald's, as ``$JOURNAL_STREAM`` names it (systemd.exec(5):
    compare device and inode, since a child may have redirected the inherited variable's
    stream)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no file behind it (a test's)
        return False
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def _fields(record: logging.LogRecord) -> dict:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT):
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{k}={json.dumps(v) if ' ' in str(v) else v}"
                         for k, v in _fields(record).items())
        return f"{line} {pairs}" if pairs else line


class JournalFormatter(TextFormatter):
    """The text line without its timestamp, each line prefixed with its priority."""

    def __init__(self):
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return with_priority(super().format(record), record.levelno)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, sort_keys=False)


def formatter(log_format: str, journal: bool) -> logging.Formatter:
    """JSON lines when asked for (unchanged under journald), else the journal's form or text."""
    if log_format == "json":
        return JSONFormatter()
    return JournalFormatter() if journal else TextFormatter()


def configure(log_format: str = "text", debug: bool = False, stream: TextIO | None = None,
              environ: Mapping[str, str] | None = None) -> logging.Handler:
    """Route the root logger to ``stream`` (stderr) in the given format; INFO, or DEBUG.
    ``environ`` tells whether that stream is journald's."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format, is_journal(environ or {}, stream)))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # the HTTP libraries narrate every connection at DEBUG; keep them to warnings
    for noisy in ("urllib3", "docker", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler

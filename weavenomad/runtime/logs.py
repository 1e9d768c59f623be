"""The daemons' logs (the reconciler's, the guard keeper's): text for people, JSON lines for
collectors (``--log-format``).

Fields given through ``extra={"fields": {...}}`` (service ID, reason, backend …) become JSON keys,
or ``key=value`` pairs at the end of a text line, so both formats carry the same facts.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _fields(record: logging.LogRecord) -> dict:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{k}={json.dumps(v) if ' ' in str(v) else v}"
                         for k, v in _fields(record).items())
        return f"{line} {pairs}" if pairs else line


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


def configure(log_format: str = "text", debug: bool = False, stream: TextIO | None = None
              ) -> logging.Handler:
    """Route the root logger to ``stream`` (stderr) in the given format; INFO, or DEBUG."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # the HTTP libraries narrate every connection at DEBUG; keep them to warnings
    for noisy in ("urllib3", "docker", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler

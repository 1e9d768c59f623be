"""Small Go-compatible formats the simulated Nomad must reproduce byte for byte.

Nomad derives IDs from Go's own formatting (a check ID hashes ``time.Duration.String()``), and
its API prints times as RFC 3339 with nanoseconds and UUIDs in Nomad's own layout, so these
live in one place with tests against the recorded answers.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def new_uuid() -> str:
    """A random ID in Nomad's layout (8-4-4-4-12 hex digits, no version bits)."""
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def now_ns() -> int:
    return time.time_ns()


def duration_string(nanos: int) -> str:
    """``time.Duration(nanos).String()`` as Go prints it: 5s, 1m30s, 1h0m0s, 500ms, 0s."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    value = abs(nanos)
    if value < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if value >= size:
                return sign + _trim_fraction(value, size) + unit
    hours, rest = divmod(value, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    seconds = _trim_fraction(rest, SECOND) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim_fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` for the units it knows; ValueError on anything else."""
    text = text.strip()
    if text in ("0", ""):
        if text == "":
            raise ValueError("empty duration")
        return 0
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if position != len(body) or position == 0:
        raise ValueError(f"invalid duration {text!r}")
    return sign * int(round(total))


def rfc3339(nanos: int) -> str:
    """Go's RFC3339Nano rendering of a UTC time: trailing zeros of the fraction dropped."""
    seconds, frac = divmod(nanos, SECOND)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{frac:09d}".rstrip("0").rstrip(".")
    return f"{stamp}{fraction}Z"

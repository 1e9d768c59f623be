"""Go durations (``time.ParseDuration``'s syntax), as Nomad and Consul take them."""

from __future__ import annotations

NANOSECONDS_PER_SECOND = 1_000_000_000
_NANOSECONDS_PER_MILLISECOND = 1_000_000


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration that Nomad and Consul parse, in whole milliseconds (a blocking
    query's ``wait``)."""
    if seconds <= 0:
        raise ValueError(f"a wait must be positive, got {seconds!r}")
    return f"{max(1, round(seconds * 1000))}ms"


def go_duration_ns(nanoseconds: int) -> str:
    """Nanoseconds (Nomad's unit for a check's interval and timeout) as a Go duration: whole
    seconds when exact, else whole milliseconds, at least ``1ms``."""
    if nanoseconds % NANOSECONDS_PER_SECOND == 0:
        return f"{nanoseconds // NANOSECONDS_PER_SECOND}s"
    return f"{max(1, nanoseconds // _NANOSECONDS_PER_MILLISECOND)}ms"

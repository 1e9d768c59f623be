"""Capped exponential backoff: how long to wait before the next attempt. Pure."""

from __future__ import annotations


def backoff_ceiling(attempt: int, base_delay: float, max_delay: float) -> float:
    """``base_delay`` doubled for each attempt after the first (1-based), at most
    ``max_delay``."""
    return min(max_delay, base_delay * (2 ** (attempt - 1)))


def backoff_delay(attempt: int, base_delay: float, max_delay: float, jitter: float) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, with ``jitter`` in
    [0, 1) spreading it over its upper half so that many clients do not retry in step."""
    return backoff_ceiling(attempt, base_delay, max_delay) * (0.5 + jitter / 2)

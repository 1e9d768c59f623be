"""When the daemon runs its next pass. Pure bookkeeping on a monotonic clock.

* every ``resync`` seconds a full resync;
* after a failed pass (a backend down) a retry after a capped backoff (0.25 s doubling to 2 s),
  which keeps convergence within a few seconds of the backend's return;
* after a pass that left services waiting for something that settles by itself (a Weave address
  being assigned) a quick look (0.05 s doubling to 2 s), at most ``waiting_rounds`` times in a
  row unless something new is waited for; then events and the resync take over, so nothing is
  ever polled for long;
* a look when a twin kept for a task Nomad is about to take over again is due (its bound);
* otherwise nothing: the watchers' events wake the daemon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from weavenomad.config import ReconcilerSettings
from weavenomad.runtime.backoff import backoff_ceiling, backoff_delay


@dataclass
class Schedule:
    settings: ReconcilerSettings
    resync_due: float
    retry_at: float | None = None
    failures: int = 0
    waiting_rounds: int = 0
    waited_for: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def starting(cls, settings: ReconcilerSettings, now: float) -> Schedule:
        # the first pass comes with Nomad's first answer, and is a full one anyway
        return cls(settings, resync_due=now + settings.resync)

    def next_deadline(self) -> float:
        return min(self.resync_due, self.retry_at if self.retry_at is not None else math.inf)

    def due(self, now: float) -> tuple[bool, bool]:
        """(a resync is due, a retry is due)."""
        return now >= self.resync_due, self.retry_at is not None and now >= self.retry_at

    def no_data_yet(self, now: float) -> None:
        """A pass was due but Nomad has not answered: its watcher will wake us."""
        self.retry_at = None
        self.resync_due = max(self.resync_due, now + self.settings.retry_cap)

    def after(self, now: float, *, ok: bool, waiting: frozenset[str], resynced: bool,
              jitter: float = 0.5, look_at: float | None = None) -> None:
        """After a pass at ``now``; ``look_at``: a moment (same clock) a pass is due anyway."""
        self._after(now, ok=ok, waiting=waiting, resynced=resynced, jitter=jitter)
        if look_at is not None:
            self.retry_at = look_at if self.retry_at is None else min(self.retry_at, look_at)

    def _after(self, now: float, *, ok: bool, waiting: frozenset[str], resynced: bool,
               jitter: float) -> None:
        if resynced:
            self.resync_due = now + self.settings.resync
        t = self.settings
        if not ok:
            self.failures += 1
            self.retry_at = now + backoff_delay(self.failures, t.retry_base, t.retry_cap, jitter)
            return
        self.failures = 0
        new = not waiting <= self.waited_for
        if waiting and (new or self.waiting_rounds < t.waiting_rounds):
            self.waiting_rounds = 1 if new else self.waiting_rounds + 1
            self.waited_for = waiting
            self.retry_at = now + backoff_ceiling(self.waiting_rounds, t.waiting_base, t.retry_cap)
            return
        if not waiting:
            self.waiting_rounds, self.waited_for = 0, frozenset()
        self.retry_at = None

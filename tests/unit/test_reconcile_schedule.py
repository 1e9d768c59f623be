"""When the daemon looks again: resync, capped retries, bounded quick looks. Pure."""

from __future__ import annotations

from weavenomad.config import ReconcilerSettings
from weavenomad.reconcile.schedule import Schedule

T = ReconcilerSettings(resync=60.0, retry_base=0.25, retry_cap=2.0, waiting_base=0.05,
                       waiting_rounds=4)


def test_idle_means_only_the_resync():
    s = Schedule.starting(T, now=100.0)
    assert s.next_deadline() == 160.0 and s.due(120.0) == (False, False)
    s.after(120.0, ok=True, waiting=frozenset(), resynced=False)
    assert s.next_deadline() == 160.0
    s.after(160.5, ok=True, waiting=frozenset(), resynced=True)
    assert s.next_deadline() == 220.5


def test_failures_back_off_to_the_cap_and_reset_on_success():
    s = Schedule.starting(T, now=0.0)
    delays = []
    for _ in range(6):
        s.after(10.0, ok=False, waiting=frozenset(), resynced=False, jitter=1.0)
        delays.append(round(s.retry_at - 10.0, 3))
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]  # capped: back within 2 s of a return
    s.after(20.0, ok=True, waiting=frozenset(), resynced=False)
    assert s.retry_at is None and s.failures == 0


def test_quick_looks_while_waiting_are_bounded_unless_something_new_waits():
    s = Schedule.starting(T, now=0.0)
    a, ab = frozenset({"a"}), frozenset({"a", "b"})
    gaps = []
    for _ in range(6):
        s.after(1.0, ok=True, waiting=a, resynced=False)
        gaps.append(None if s.retry_at is None else round(s.retry_at - 1.0, 3))
    assert gaps == [0.05, 0.1, 0.2, 0.4, None, None]  # then events and the resync only
    s.after(1.0, ok=True, waiting=ab, resynced=False)
    assert round(s.retry_at - 1.0, 3) == 0.05  # a new service to wait for: look again soon
    s.after(1.0, ok=True, waiting=frozenset(), resynced=False)
    assert s.retry_at is None and s.waiting_rounds == 0


def test_no_data_yet_waits_for_the_nomad_watcher():
    s = Schedule.starting(T, now=0.0)
    s.after(1.0, ok=False, waiting=frozenset(), resynced=False)
    s.no_data_yet(70.0)
    assert s.retry_at is None and s.resync_due == 72.0

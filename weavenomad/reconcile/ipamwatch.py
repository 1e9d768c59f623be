"""Noticing that Weave's IPAM can allocate at last, while an exposure waits for it.

A node set up before enough of its launch peers are up has Weave's IPAM waiting for consensus
(multi-node/1): the reconciler's exposures fail with
:class:`~weavenomad.clients.weave.PeersAwaited`. Nothing the other watchers follow moves when
the peers come up (no container starts, Weave's owned addresses stay the same), so without a
look of its own the daemon would expose the subnets only at its next resync (up to a minute
later; measured 57 s in the multi-node lab). While an exposure waits for peers, this watcher
reads Weave's ``GET /report`` every few seconds and wakes the daemon as soon as the IPAM can
allocate; otherwise it reads nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from weavenomad.reconcile.watch import OnError, Watcher

#: how long an idle watcher sleeps between looks at the stop event
IDLE = 1.0


class IpamWatcher(Watcher):
    """While ``needed`` is set: ``waits()`` (Weave's IPAM wait, None when it can allocate)
    every ``every`` seconds; when it no longer waits, clears ``needed`` and calls ``ready()``
    (a pass that still finds it waiting sets ``needed`` again)."""

    backend = "weave"

    def __init__(self, waits: Callable[[], object], ready: Callable[[], None],
                 needed: threading.Event, stop: threading.Event, on_error: OnError, *,
                 every: float):
        super().__init__(stop, on_error)
        self.name = "weavenomad-watch-weave-ipam"
        self.waits = waits
        self.ready = ready
        self.needed = needed
        self.every = every

    def watch(self) -> None:
        while not self.stop_event.is_set():
            if not self.needed.wait(IDLE):
                continue
            waiting = self.waits()
            self.healthy()
            if waiting is None:
                self.needed.clear()
                self.ready()
            if self.stop_event.wait(self.every):
                return

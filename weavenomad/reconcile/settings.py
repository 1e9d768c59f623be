"""The reconciler daemon's settings: how often it resyncs, retries and looks again, and how
long its watchers wait. The command line fills them (``runner``); tests shorten them."""

from __future__ import annotations

from dataclasses import dataclass

from weavenomad.reconcile import watch
from weavenomad.reconcile.schedule import Timing


@dataclass(frozen=True)
class DaemonSettings:
    node_id: str | None = None
    resync: float = 60.0
    address_grace: float = 10.0
    retry_base: float = 0.25
    retry_cap: float = 2.0
    waiting_base: float = 0.05
    #: quick looks for something that should settle by itself (~10 s in all), then events only
    waiting_rounds: int = 10
    #: blocking query wait of the watchers
    watch_wait: float = watch.BLOCKING_WAIT
    #: the least time between the end of a pass and an event-driven one (bursts gather)
    pass_gap: float = 0.05
    #: seconds between two reads of Weave's IPAM (it has no change feed)
    weave_poll: float = watch.WEAVE_POLL

    @property
    def timing(self) -> Timing:
        return Timing(self.resync, self.retry_base, self.retry_cap, self.waiting_base,
                      self.waiting_rounds)

    @property
    def mirror_ttl(self) -> str:
        # outlives two missed resyncs, so only a dead reconciler lets mirrors expire
        return f"{int(self.resync * 3 + 30)}s"

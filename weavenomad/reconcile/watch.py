"""The daemon's ears: threads that block on Nomad, the service agent and Docker and report
changes.

* Nomad: a blocking query on the node's allocations; each new index publishes a parsed snapshot.
* The service agent (:meth:`~weavenomad.reconcile.registrations.ServiceAgent.watch_services`,
  Consul's node catalog): services registered or dropped, e.g. by Nomad after an agent restart;
  and, only while some twin mirrors a script check, check statuses (``watch_checks``). Consul
  only moves these indexes on real changes, so an idle node costs a request per ``wait``; a
  burst of changes is read once (``QUIET``), because every answer is the whole node.
* Consul KV: a blocking query on the tenant registry, so a new tenant's subnet is exposed on
  this host at once.
* Docker: the event stream of Nomad's task containers (start, die, destroy).
* Weave: it has no change feed (no events, no blocking queries), and a relaunched Weave that
  lost its IPAM re-attaches running containers with new addresses without a Docker event. So
  its ``GET /ip`` (one local request) is read every ``weave_poll`` seconds (the daemon's
  settings) and handed to the daemon, which starts a pass only when the answer contradicts what
  the last pass used, or when Weave answers again after an outage.

Apart from that one cheap local read, none of them polls. On a failure a watcher reports it,
waits a capped backoff (on the stop event) and starts again from a fresh, non-blocking read,
since an index from before a restart of the agent means nothing to the restarted one.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from weavenomad.errors import WeavenomadError
from weavenomad.reconcile.model import NOMAD_ALLOC_LABEL
from weavenomad.runtime.backoff import backoff_delay

log = logging.getLogger(__name__)

#: the least time between two reads of a watch (a burst of changes is read once)
QUIET = 0.05
RETRY_BASE = 0.25
#: the longest pause between attempts; keeps convergence within seconds of a backend's return
RETRY_CAP = 2.0
CONTAINER_EVENTS = ("start", "die", "destroy")

OnError = Callable[[str, WeavenomadError], None]


class Watcher(threading.Thread):
    """A daemon thread that runs :meth:`watch` until the stop event, with capped backoff."""

    backend = "?"

    def __init__(self, stop: threading.Event, on_error: OnError):
        super().__init__(name=f"weavenomad-watch-{self.backend}", daemon=True)
        self.stop_event = stop
        self.on_error = on_error
        self.failures = 0
        #: told the backend's name when a read succeeds after failures
        self.on_healthy: Callable[[str], None] | None = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.watch()
            except WeavenomadError as exc:
                if self.stop_event.is_set():
                    return
                self.failures += 1
                self.on_error(self.backend, exc)
                delay = backoff_delay(self.failures, RETRY_BASE, RETRY_CAP, random.random())
                self.stop_event.wait(delay)
            except Exception:  # noqa: BLE001 - a watcher must outlive surprises; the resync covers
                log.exception("the %s watcher failed unexpectedly; restarting it", self.backend)
                self.stop_event.wait(RETRY_CAP)

    def healthy(self) -> None:
        """Called after each successful read: the next failure starts the backoff afresh."""
        if self.failures and self.on_healthy is not None:
            self.on_healthy(self.backend)
        self.failures = 0

    def watch(self) -> None:  # pragma: no cover - subclasses
        raise NotImplementedError


class BlockingWatcher(Watcher):
    """Repeats ``read(index, wait) -> (index, data)`` and calls ``changed(data)`` on news;
    ``wait`` is how long one blocking query may wait."""

    def __init__(self, backend: str, read: Callable[[int | None, float | None], tuple[int, object]],
                 changed: Callable[[object], None], stop: threading.Event, on_error: OnError,
                 *, wait: float, quiet: float = QUIET, needed: threading.Event | None = None):
        self.backend = backend
        super().__init__(stop, on_error)
        self.wait = wait
        self.read = read
        self.changed = changed
        self.quiet = quiet
        #: when given, the watch only runs while this is set (each read costs the agent)
        self.needed = needed

    def _wait_until_needed(self) -> bool:
        """False when stopping (noticed within one ``wait`` while idle)."""
        while self.needed is not None and not self.needed.is_set():
            if self.stop_event.is_set():
                return False
            self.needed.wait(self.wait)
        return not self.stop_event.is_set()

    def watch(self) -> None:
        index: int | None = None
        while self._wait_until_needed():
            new_index, data = self.read(index, self.wait if index else None)
            self.healthy()
            if self.stop_event.is_set():
                return
            if index is None or new_index != index:
                self.changed(data)
                # let a burst of changes gather into the next answer: each answer is the whole
                # node, so one per change would cost the agent O(n^2) while many tasks start
                if self.stop_event.wait(self.quiet):
                    return
            # an index that went backwards (a restarted agent) or 0 means: start over
            index = new_index if new_index > 0 and (index is None or new_index >= index) else None


def nomad_allocations(nomad, node_id: str) -> Callable[[int | None, float | None], tuple]:
    return lambda index, wait: nomad.node_allocations(node_id, index=index, wait=wait)


def consul_key(consul, key: str) -> Callable:
    return lambda index, wait: consul.kv_get(key, index=index, wait=wait)


class DockerWatcher(Watcher):
    """Follows Nomad's container events; resumes after a break from the last event's time,
    and reports ``reconnected`` so the daemon looks at everything again."""

    backend = "docker"

    def __init__(self, docker, on_event: Callable[[dict], None], reconnected: Callable[[], None],
                 stop: threading.Event, on_error: OnError):
        super().__init__(stop, on_error)
        self.docker = docker
        self.on_event = on_event
        self.reconnected = reconnected
        self.since: int | None = None

    def watch(self) -> None:
        filters = {"type": ["container"], "label": [NOMAD_ALLOC_LABEL],
                   "event": list(CONTAINER_EVENTS)}
        if self.since is not None:
            self.reconnected()
        events = self.docker.events(filters=filters, since=self.since,
                                    stop_event=self.stop_event)
        for event in events:
            self.healthy()
            self.since = int(event.get("time") or self.since or 0) or None
            self.on_event(event)


class WeaveWatcher(Watcher):
    """Reads Weave's owned addresses every ``every`` seconds: ``seen(owned, recovered)``, where
    ``recovered`` says the read before this one failed."""

    backend = "weave"

    def __init__(self, read: Callable[[], dict], seen: Callable[[dict, bool], None],
                 stop: threading.Event, on_error: OnError, *, every: float):
        super().__init__(stop, on_error)
        self.read = read
        self.seen = seen
        self.every = every

    def watch(self) -> None:
        while not self.stop_event.is_set():
            owned = self.read()
            recovered = self.failures > 0
            self.healthy()
            self.seen(owned, recovered)
            if self.stop_event.wait(self.every):
                return

"""The reconciler daemon: passes when something changed, a full resync every ``--resync``.

The main thread runs the passes; watcher threads (:mod:`.watch`) only record *that* something
changed, and where they can *which* allocations it concerns, and wake it, so passes never
overlap and a burst of events costs one or two passes. A pass for events that name their
allocations (Nomad's allocation updates, a service of the node registered or dropped, a task
container starting or ending) plans those allocations only, so its work does not grow with the
services on the node; the resync, retries, looks and every other event plan the whole node.
Such a pass also observes only those allocations (:meth:`.Observer.observe`: their services one
by one, with the IDs the service watch listed for them) and goes at once, without the
``pass_gap`` that gathers bursts concerning the whole node.
Before registering a twin the applier probes its checks once (:mod:`.probe`), so a twin whose
task already answers is healthy the moment it is registered.
:mod:`.schedule` decides when else to look (resync, retries after a failure, quick looks while
an address is being assigned). The loop also wakes for the systemd watchdog.
``request_stop()`` (SIGTERM/SIGINT) lets the current pass finish, then ``run`` returns.

Under systemd the daemon is ready as soon as it serves, and waiting for an agent that is down
is serving (after a reboot Nomad often comes up after it): ``READY=1`` follows the first look
for this node's Nomad client whatever its outcome, ``STATUS=`` says what it waits for
("waiting for Nomad at http://127.0.0.1:4646: connection refused"), and every wait feeds the
watchdog.

Problems (bad input, tenant violations, refused writes) are logged once per service and reason,
and again only after they went away and came back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from weavenomad.clients.weave import PeersAwaited
from weavenomad.config import ReconcilerSettings
from weavenomad.errors import BackendError, WeavenomadError
from weavenomad.reconcile import apply as applier
from weavenomad.reconcile import watch
from weavenomad.reconcile.consul import ConsulAgent
from weavenomad.reconcile.desired import TENANT_VIOLATION
from weavenomad.reconcile.ipamwatch import IpamWatcher
from weavenomad.reconcile.metrics import Metrics
from weavenomad.reconcile.model import NOMAD_ALLOC_LABEL, Allocation
from weavenomad.reconcile.observe import (
    SCOPED_READS_MAX,
    AllocationCache,
    Observer,
    node_id_of,
)
from weavenomad.reconcile.plan import (
    BRIDGE_SUBJECT,
    EXPOSE_SUBNET,
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    REMOVE_TWIN,
    plan,
)
from weavenomad.reconcile.probe import Prober
from weavenomad.reconcile.registrations import ServiceAgent, alloc_behind
from weavenomad.reconcile.schedule import Schedule
from weavenomad.runtime.backoff import backoff_delay
from weavenomad.runtime.notify import Notifier, Supervised

log = logging.getLogger("weavenomad.reconciler")

_REGISTERED = {REGISTER_TWIN: "twin", REGISTER_MASK: "mask", EXPOSE_SUBNET: "exposure"}
_REMOVED = {REMOVE_TWIN: "twin", REMOVE_MASK: "mask"}


@dataclass(frozen=True)
class PassOutcome:
    ok: bool
    converged: bool = False
    #: services whose answer may change by itself soon
    waiting: frozenset[str] = frozenset()
    changes: int = 0
    #: when (monotonic) a kept twin's bound is due: look again then
    look_at: float | None = None


def _backend(exc: BaseException) -> str:
    return exc.backend if isinstance(exc, BackendError) else "reconciler"


def _fields(**fields) -> dict:
    return {"fields": {k: v for k, v in fields.items() if v is not None}}


#: how the clients begin the message of an agent that gives no answer at all
_NO_ANSWER = "cannot reach "


def waiting_for(exc: WeavenomadError) -> str:
    """What the daemon waits for, as its status says it: "waiting for Nomad at
    http://127.0.0.1:4646: connection refused". Pure."""
    if exc.message.startswith(_NO_ANSWER):
        return "waiting for " + exc.message[len(_NO_ANSWER):]
    return f"waiting for {_backend(exc).title()}: {exc.message}"


class Reconciler:
    """``consul`` is the Consul adapter: the tenant registry's KV, and the service agent unless
    ``agent`` is another."""

    def __init__(self, *, nomad, consul, docker, weave, registry=None,
                 agent: ServiceAgent | None = None, settings: ReconcilerSettings | None = None,
                 metrics: Metrics | None = None, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 bridge: Callable[[], tuple] | None = None):
        self.nomad, self.consul, self.docker, self.weave = nomad, consul, docker, weave
        self.registry = registry
        self.agent = agent or ConsulAgent(consul)
        self.settings = settings = settings or ReconcilerSettings()
        self.metrics = metrics or Metrics()
        self.notifier = notifier or Notifier()
        self.supervised = Supervised(self.notifier, monotonic)
        self.clock, self.monotonic = clock, monotonic
        self.observer = Observer(agent=self.agent, docker=docker, weave=weave,
                                 registry=registry, clock=clock, bridge=bridge)
        self.node_id: str | None = settings.node_id
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._triggers: set[str] = set()
        #: the allocations the pending events concern; None: look at the whole node
        self._touched: set[str] | None = set()
        #: the node's services as the service watcher last saw them
        self._watched: dict[str, object] | None = None
        #: their IDs by the allocation behind them (Nomad's, twins), for scoped observations
        self._ids_by_alloc: dict[str, set[str]] = {}
        self._allocations: Mapping[str, Allocation] | None = None
        self._cache = AllocationCache()
        self._reported: dict[tuple[str, str], str] = {}
        #: watcher threads report too, while the main thread resolves
        self._reported_lock = threading.Lock()
        self._advertised: set[str] = set()
        #: what the daemon waits for, by what found it (the node lookup, a watcher, a pass)
        self._waiting: dict[str, str] = {}
        self._twins = self._masks = 0
        #: twins kept without their Nomad service (a Weave restart), since when (epoch s)
        self._orphans: dict[str, float] = {}
        #: check statuses are watched only while some twin mirrors a Nomad check
        self._mirrors_wanted = threading.Event()
        #: Weave's IPAM is looked at only while an exposure waits for peers
        self._peers_awaited = threading.Event()
        self.prober = Prober(cap=settings.probe_cap, budget=settings.probe_budget)

    # -- control -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def trigger(self, why: str, allocations: set[str] | None = None) -> None:
        """Wake the loop for ``why``; ``allocations``: the ones it concerns (None: any)."""
        with self._lock:
            self._triggers.add(why)
            if self._touched is not None and allocations is not None:
                self._touched |= allocations
            else:
                self._touched = None
        self._wake.set()

    def _take_triggers(self) -> tuple[set[str], set[str] | None]:
        """(the triggers, the allocations they concern or None for the whole node)."""
        with self._lock:
            self._wake.clear()
            taken, self._triggers = self._triggers, set()
            touched, self._touched = self._touched, set()
        return taken, touched

    # -- what the watchers report --------------------------------------------------------------

    def _allocations_changed(self, raw) -> None:
        with self._lock:
            first = self._allocations is None
        parsed, changed = self._cache.parse_changes(list(raw or []))
        with self._lock:
            self._allocations = parsed
        self.trigger("nomad", None if first else changed)

    def _services_changed(self, answer) -> None:
        """The service watcher's news: which allocations' services came, went or changed."""
        now = dict(self.agent.watched_services(answer))
        before, self._watched = self._watched, now
        changed = set(now) if before is None else \
            {sid for sid in before.keys() | now.keys() if before.get(sid) != now.get(sid)}
        allocations = set()
        with self._lock:
            for sid in changed:
                alloc_id = alloc_behind(sid)
                if alloc_id is None:
                    continue  # a service not of a Nomad task, nor ours: none of our business
                allocations.add(alloc_id)
                ids = self._ids_by_alloc.setdefault(alloc_id, set())
                if sid in now:
                    ids.add(sid)
                else:
                    ids.discard(sid)
                    if not ids:
                        del self._ids_by_alloc[alloc_id]
        if before is None:
            self.trigger(self.agent.backend)
        elif allocations:
            self.trigger(self.agent.backend, allocations)

    def _service_ids(self, scope: frozenset[str]) -> set[str]:
        """The IDs the service watch last listed for the allocations in ``scope``."""
        with self._lock:
            return {sid for alloc_id in scope for sid in self._ids_by_alloc.get(alloc_id, ())}

    def _container_event(self, event: dict) -> None:
        action = event.get("Action") or event.get("status") or ""
        actor = event.get("Actor") or {}
        container_id = actor.get("ID") or event.get("id") or ""
        alloc_id = (actor.get("Attributes") or {}).get(NOMAD_ALLOC_LABEL)
        if action == "start" and container_id:
            when = event.get("timeNano")
            self.observer.note_started(container_id, when / 1e9 if when else self.clock())
        elif action == "destroy" and container_id:
            self.observer.forget(container_id)
        self.trigger("docker", {alloc_id} if alloc_id else None)

    def _weave_seen(self, owned, recovered: bool) -> None:
        if recovered or self.observer.moved(owned):
            self.trigger("weave")

    def _watch_error(self, backend: str, exc: WeavenomadError) -> None:
        self.metrics.errors.labels(backend).inc()
        self._wait_for(f"watch {backend}", exc)
        self._report_once(("watch", backend), exc.one_line(), logging.WARNING,
                          f"watching {backend}: %s; retrying", backend=backend)

    def _start_watchers(self) -> list[threading.Thread]:
        wait, agent = self.settings.watch_wait, self.agent.backend
        threads = [
            watch.BlockingWatcher("nomad", watch.nomad_allocations(self.nomad, self.node_id),
                                  self._allocations_changed, self._stop, self._watch_error,
                                  wait=wait),
            watch.BlockingWatcher(agent, self.agent.watch_services, self._services_changed,
                                  self._stop, self._watch_error, wait=wait),
            watch.BlockingWatcher(agent, self.agent.watch_checks,
                                  lambda _: self.trigger(f"{agent}-checks"), self._stop,
                                  self._watch_error, wait=wait, needed=self._mirrors_wanted),
            *([watch.BlockingWatcher("consul", watch.consul_key(
                self.consul, self.registry.tenants_key), lambda _: self.trigger("tenants"),
                self._stop, self._watch_error, wait=wait)] if self.registry is not None else []),
            watch.DockerWatcher(self.docker, self._container_event,
                                lambda: self.trigger("docker-reconnected"), self._stop,
                                self._watch_error),
            watch.WeaveWatcher(self.weave.owned, self._weave_seen, self._stop, self._watch_error,
                               every=self.settings.weave_poll),
            IpamWatcher(self.weave.ipam_waits, lambda: self.trigger("weave-ipam"),
                        self._peers_awaited, self._stop, self._watch_error,
                        every=self.settings.weave_poll),
        ]
        for thread in threads:
            thread.on_healthy = self._watch_ok
            thread.start()
        return threads

    # -- logging once --------------------------------------------------------------------------

    def _report_once(self, key: tuple[str, str], detail: str, level: int, message: str,
                     **fields) -> bool:
        with self._reported_lock:
            if self._reported.get(key) == detail:
                return False
            self._reported[key] = detail
        log.log(level, message, detail, extra=_fields(**fields))
        return True

    def _resolve(self, keep: Callable[[tuple[str, str]], bool], current: set) -> None:
        with self._reported_lock:
            gone = [(k, self._reported.pop(k)) for k in list(self._reported)
                    if keep(k) and k not in current]
        for key, detail in gone:
            if key[0] != "watch":
                log.info("resolved: %s", detail, extra=_fields(subject=key[0], reason=key[1]))

    def _watch_ok(self, backend: str) -> None:
        """A watcher reads again: its next failure is news worth a log line."""
        self._wait_for(f"watch {backend}", None)
        self._resolve(lambda k: k == ("watch", backend), set())

    def _wait_for(self, source: str, exc: WeavenomadError | None) -> None:
        """Record (or, with None, forget) what ``source`` found the daemon waiting for."""
        with self._lock:
            if exc is None:
                self._waiting.pop(source, None)
            else:
                self._waiting[source] = waiting_for(exc)

    def _waits(self) -> list[str]:
        with self._lock:
            return sorted(set(self._waiting.values()))

    # -- one pass ------------------------------------------------------------------------------

    def reconcile(self, allocations: Mapping[str, Allocation], *, trigger: str,
                  resync: bool = False, scope: frozenset[str] | None = None) -> PassOutcome:
        """One observe -> plan -> apply pass; ``scope``: the allocations to plan (None: the
        whole node)."""
        started = self.monotonic()
        if resync:
            self.observer.forget_addresses()
        try:
            observation = self.observer.observe(
                allocations, scope, self._service_ids(scope) if scope is not None else ())
        except WeavenomadError as exc:
            backend = _backend(exc)
            self._wait_for("pass", exc)
            self.metrics.errors.labels(backend).inc()
            self.metrics.passes.labels(trigger, "failed").inc()
            self._report_once(("pass", backend), exc.one_line(), logging.WARNING,
                              "pass failed: %s; retrying", backend=backend)
            return PassOutcome(ok=False)
        self._resolve(lambda k: k[0] == "pass", set())
        self._soft_errors()
        now = self.clock()
        wanted = plan(observation, self.settings, now=now, refresh_mirrors=resync,
                      orphans=self._orphans, scope=scope)
        self._note_kept(wanted.kept)
        self._problems(wanted.problems, scope)
        for action in wanted.actions:
            if action.is_drift:
                self.metrics.drift.labels(action.kind).inc()
        result = applier.apply(self.agent, wanted, progress=self.supervised.ping,
                               weave=self.weave, prober=self.prober)
        self._record(result, observation, scope)
        if scope is None:  # exposures are a full pass's
            self._await_peers(result)
        self._twins, self._masks = wanted.twins, wanted.masks
        if wanted.mirrors:
            self._mirrors_wanted.set()
        elif scope is None:  # a scoped plan does not see the mirrors of other allocations
            self._mirrors_wanted.clear()
        self.metrics.twins.set(wanted.twins)
        self.metrics.masks.set(wanted.masks)
        ok = result.aborted is None
        self._wait_for("pass", result.aborted)
        converged = wanted.converged
        self.metrics.converged.set(1 if converged and ok else 0)
        self.metrics.passes.labels(trigger, "ok" if ok else "failed").inc()
        self.metrics.pass_seconds.observe(self.monotonic() - started)
        if ok:
            self.metrics.last_success.set(self.clock())
        if wanted.actions:
            log.info("pass (%s): %d change(s), %d done, %d failed, %d skipped", trigger,
                     len(wanted.actions), len(result.done), len(result.failed),
                     len(result.skipped))
        look_at = (None if wanted.next_look is None
                   else self.monotonic() + max(0.0, wanted.next_look - now))
        return PassOutcome(ok=ok, converged=converged, waiting=frozenset(wanted.waiting),
                           changes=len(wanted.actions), look_at=look_at)

    def _await_peers(self, result: applier.ApplyResult) -> None:
        """An exposure that waits for Weave's peers is retried as soon as the IPAM watcher
        sees them (not at the next resync), and the daemon's status says what it waits for."""
        awaited = next((exc for _, exc in result.failed if isinstance(exc, PeersAwaited)), None)
        self._wait_for("weave-ipam", awaited)
        if awaited is None:
            self._peers_awaited.clear()
        else:
            self._peers_awaited.set()

    def _note_kept(self, kept: Mapping[str, float]) -> None:
        for twin_id in sorted(set(kept) - set(self._orphans)):
            log.info("keeping twin %s: Nomad dropped its service, but the task's container runs "
                     "on at the same address (a Weave restart broke Nomad's wait on it; Nomad "
                     "takes it over again after its restart delay)", twin_id,
                     extra=_fields(service_id=twin_id))
        self._orphans = dict(kept)

    def _soft_errors(self) -> None:
        seen = set()
        for exc in self.observer.soft_errors:
            backend = _backend(exc)
            seen.add(("soft", backend))
            self.metrics.errors.labels(backend).inc()
            self._report_once(("soft", backend), exc.one_line(), logging.WARNING,
                              "%s (carrying on without it)", backend=backend)
        self._resolve(lambda k: k[0] == "soft", seen)

    def _problems(self, problems, scope: frozenset[str] | None = None) -> None:
        """Report new problems; resolve those gone, among what the pass looked at (a scoped
        pass saw neither other allocations' services nor the weave bridge)."""
        current = set()
        for problem in problems:
            key = (problem.service_id, problem.reason)
            current.add(key)
            if self._report_once(key, problem.detail, logging.WARNING, "%s",
                                 service_id=problem.service_id, reason=problem.reason,
                                 tenant=problem.tenant):
                self.metrics.problems.labels(problem.reason).inc()
                if problem.reason == TENANT_VIOLATION:
                    self.metrics.violations.labels(problem.tenant or "").inc()
        if scope is None:
            self._resolve(lambda k: k[0].startswith("_nomad-") or k[0] == BRIDGE_SUBJECT,
                          current)
        else:
            self._resolve(lambda k: k[0].startswith("_nomad-") and alloc_behind(k[0]) in scope,
                          current)

    def _record(self, result: applier.ApplyResult, observation,
                scope: frozenset[str] | None = None) -> None:
        now = self.clock()
        for action in result.done:
            if action.kind in _REGISTERED:
                self.metrics.registrations.labels(_REGISTERED[action.kind]).inc()
            if action.kind in _REMOVED:
                self.metrics.removals.labels(_REMOVED[action.kind]).inc()
            if action.kind == EXPOSE_SUBNET:
                log.info("exposed this host on %s", action.id, extra=_fields(subnet=action.id))
            container = action.container_id
            if action.kind == REGISTER_TWIN and container and container not in self._advertised:
                self._advertised.add(container)
                start = next((c.started_at for c in observation.containers.values()
                              if c.id == container), None)
                if start is not None and now >= start:
                    self.metrics.latency.observe(now - start)
        if scope is None:
            self._advertised &= {c.id for c in observation.containers.values() if c.running}
        else:  # a scoped pass saw only its allocations' containers
            self._advertised -= {c.id for c in observation.containers.values() if not c.running}
        failed = set()
        for action, exc in result.failed:
            key = (action.id, f"{action.kind}-failed")
            failed.add(key)
            self.metrics.errors.labels(_backend(exc)).inc()
            self._report_once(key, exc.one_line(), logging.WARNING, "%s",
                              service_id=action.id, reason=f"{action.kind} failed")
        self._resolve(lambda k: k[1].endswith("-failed") and (
            scope is None or alloc_behind(k[0]) in scope), failed)
        if result.aborted is not None:
            backend = _backend(result.aborted)
            self.metrics.errors.labels(backend).inc()
            self._report_once(("pass", backend), result.aborted.one_line(), logging.WARNING,
                              "pass interrupted: %s; retrying", backend=backend)

    # -- the daemon ----------------------------------------------------------------------------

    def _resolve_node(self) -> bool:
        """Find the node to serve; False while Nomad cannot say. Even a permanent answer (no
        client on that agent, a token without agent:read) is waited out rather than ended on:
        under ``Restart=always`` an exit would only start the same failure again, and once the
        operator mends the agent the daemon carries on by itself."""
        if self.node_id is not None:
            return True
        try:
            self.node_id = node_id_of(self.nomad, None)
        except WeavenomadError as exc:
            self.metrics.errors.labels(_backend(exc)).inc()
            self._wait_for("node", exc)
            self._report_once(("pass", "node"), exc.one_line(),
                              logging.WARNING if exc.temporary else logging.ERROR,
                              "cannot find this node's Nomad client: %s; retrying")
            return False
        self._wait_for("node", None)
        log.info("serving Nomad node %s", self.node_id, extra=_fields(node_id=self.node_id))
        return True

    def run(self) -> None:
        """Serve until :meth:`request_stop`."""
        supervised = self.supervised
        supervised.ping(force=True)
        attempt = 0
        while not self._resolve_node():
            attempt += 1
            supervised.tell(self._status_line(None))
            if supervised.wait(self._stop, backoff_delay(attempt, self.settings.retry_base,
                                                         self.settings.retry_cap, 0.5)):
                supervised.stopping()
                return
        self._start_watchers()
        schedule = Schedule.starting(self.settings, self.monotonic())
        last_pass = -float("inf")
        while not self._stop.is_set():
            deadline = min(schedule.next_deadline(), supervised.next_ping())
            timeout = deadline - self.monotonic()
            if timeout > 0:
                self._wake.wait(timeout)
            if self._stop.is_set():
                break
            supervised.ping()
            triggers, touched = self._take_triggers()
            now = self.monotonic()
            resync, retry = schedule.due(now)
            if not (triggers or resync or retry):
                continue  # woken for the watchdog only
            gap = last_pass + self.settings.pass_gap - now
            # a burst of events that concern the whole node gathers into one pass; a pass for
            # a few allocations costs little and goes at once (a start waits for it)
            few = touched is not None and len(touched) <= SCOPED_READS_MAX
            if triggers and gap > 0 and not few:
                if self._stop.wait(gap):
                    break
                more, also = self._take_triggers()
                triggers |= more
                touched = None if touched is None or also is None else touched | also
            with self._lock:
                allocations = self._allocations
            if allocations is None:
                schedule.no_data_yet(now)
                supervised.tell(self._status_line(None))
                continue
            trigger = "resync" if resync else ("event" if triggers else "retry")
            log.debug("pass: %s", ", ".join(sorted(triggers)) or trigger)
            # a pending look (an address being assigned, a kept twin's bound) covers the whole
            # node, and so does a pass right after a failure: only quiet times are scoped
            scoped = (trigger == "event" and touched is not None and schedule.retry_at is None
                      and not self._orphans)
            outcome = self.reconcile(allocations, trigger=trigger, resync=resync,
                                     scope=frozenset(touched) if scoped else None)
            last_pass = self.monotonic()
            schedule.after(last_pass, ok=outcome.ok, waiting=outcome.waiting,
                           resynced=resync, look_at=outcome.look_at)
            supervised.tell(self._status_line(outcome))
        supervised.stopping()

    def _status_line(self, outcome: PassOutcome | None) -> str:
        """STATUS=: the last pass's result, else what the daemon waits for."""
        waits = self._waits()
        if outcome is None:
            return "; ".join(waits) or f"serving Nomad node {self.node_id}: reading its " \
                                       "allocations"
        if not outcome.ok:
            return "; ".join(waits or ["a backend is not answering"]) + "; retrying"
        state = "converged" if outcome.converged else "converging"
        return "; ".join([f"{self._twins} twin(s), {self._masks} mask(s); {state}", *waits])

    def run_once(self, passes: int = 5) -> bool:
        """``--once``: passes until one finds nothing to do; True if it got there. Temporary
        backend failures are retried a few times, then count as not converged."""
        for attempt in range(1, passes + 1):
            try:
                self.node_id = node_id_of(self.nomad, self.node_id)
                _, raw = self.nomad.node_allocations(self.node_id)
            except WeavenomadError as exc:
                if not exc.temporary:
                    raise
                log.warning("%s", exc.one_line())
                self._stop.wait(backoff_delay(attempt, self.settings.retry_base,
                                              self.settings.retry_cap, 0.5))
                continue
            outcome = self.reconcile(self._cache.parse(raw), trigger="once", resync=attempt == 1)
            if outcome.ok and outcome.converged and not outcome.waiting:
                return True
            if outcome.changes == 0 or not outcome.ok or outcome.waiting:
                self._stop.wait(backoff_delay(attempt, self.settings.waiting_base * 4,
                                              self.settings.retry_cap, 0.5))
        return False

"""Keeping Weave connected to the cluster's recorded peers (:mod:`weavenomad.tenancy.peers`).

Observe (Weave's ``GET /report``: this peer's name, its targets, the peer name behind each
established connection; the registry's records) -> :func:`plan_links` (pure) -> apply
(``POST /connect``, ``POST /forget`` on Weave's HTTP API, what ``weave connect``/``forget``
do). A node added later is therefore connected from every node without anyone naming it, and a
node that left (its record deleted by ``node leave``) is forgotten, so Weave stops dialling it.

Only addresses that were recorded and are no longer are forgotten: a launch peer given with
``--peer`` that has not bootstrapped yet (set up in any order) stays a target. A record whose
address answers with another peer name (the address now belongs to another machine, or the
record is stale) is not connected to: one line says so, once per record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from weavenomad.clients.weave_ipam import host_of
from weavenomad.reconcile.watch import OnError, Watcher
from weavenomad.tenancy.peers import PeerRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkPlan:
    connect: tuple[str, ...] = ()
    forget: tuple[str, ...] = ()
    #: one line per record whose address answers with another peer name
    mismatched: tuple[str, ...] = ()


def targets_of(report: Mapping) -> dict[str, list[str]]:
    """The router's targets by host address, each as Weave lists it: ``weave forget`` must
    name a target exactly as it was given (with or without its port)."""
    router = report.get("Router") or {}
    found: dict[str, list[str]] = {}
    for target in router.get("Targets") or []:
        found.setdefault(host_of(target), []).append(target)
    return found


def names_by_address(report: Mapping) -> dict[str, str]:
    """The peer name behind each established connection of this peer, by host address."""
    router = report.get("Router") or {}
    me = router.get("Name")
    for peer in router.get("Peers") or []:
        if peer.get("Name") == me:
            return {host_of(c.get("Address", "")): c.get("Name", "")
                    for c in peer.get("Connections") or [] if c.get("Name")}
    return {}


def plan_links(report: Mapping, records: Iterable[PeerRecord],
               gone: Iterable[str] = ()) -> LinkPlan:
    """What to connect and forget so that Weave dials every recorded peer but itself.
    ``gone``: addresses recorded before and no longer (only those are forgotten). Pure."""
    router = report.get("Router") or {}
    me = router.get("Name")
    targets, seen = targets_of(report), names_by_address(report)
    connect, mismatched = [], []
    wanted = set()
    for record in records:
        if record.name == me:
            continue
        wanted.add(record.address)
        answering = seen.get(record.address)
        if answering is not None and answering != record.name:
            mismatched.append(
                f"the registry records peer {record.describe()}, but {record.address} answers "
                f"as peer {answering}: not connecting (the address belongs to another machine "
                f"now; run 'weavenomad node leave' on the old node or delete its record)")
            continue
        if record.address not in targets:
            connect.append(record.address)
    forget = sorted(t for a in set(gone) - wanted for t in targets.get(a, ()))
    return LinkPlan(tuple(sorted(connect)), tuple(forget), tuple(mismatched))


class PeerLinks:
    """The daemon's side: remembers the recorded addresses between looks (to know which went)
    and the mismatches it reported (one line each), and applies a plan through ``weave`` (a
    :class:`~weavenomad.clients.weave.WeaveAPI`)."""

    def __init__(self, weave):
        self.weave = weave
        self._recorded: set[str] = set()
        self._reported: set[str] = set()

    def sync(self, records: list[PeerRecord], problems: Iterable[str] = ()) -> LinkPlan:
        addresses = {r.address for r in records}
        plan = plan_links(self.weave.report(), records, self._recorded - addresses)
        for line in [*problems, *plan.mismatched]:
            if line not in self._reported:
                log.warning("%s", line)
        self._reported = {*problems, *plan.mismatched}
        if plan.connect:
            self.weave.connect(plan.connect)
            log.info("connected Weave to the recorded peer(s) %s", ", ".join(plan.connect))
        if plan.forget:
            self.weave.forget(plan.forget)
            log.info("Weave forgot the peer(s) %s, no longer recorded", ", ".join(plan.forget))
        self._recorded = addresses
        return plan


class PeerLinkWatcher(Watcher):
    """Blocks on the registry's peer keys and syncs Weave's peers on each answer: at once when a
    record comes or goes, else every ``wait`` seconds (a relaunched Weave has lost the peers
    connected after its launch)."""

    backend = "consul"

    def __init__(self, read: Callable, links: PeerLinks, stop: threading.Event,
                 on_error: OnError, *, wait: float):
        super().__init__(stop, on_error)
        self.name = "weavenomad-watch-weave-peers"
        self.read = read
        self.links = links
        self.wait = wait

    def watch(self) -> None:
        index: int | None = None
        while not self.stop_event.is_set():
            found, records, problems = self.read(index, self.wait if index else None)
            self.healthy()
            if self.stop_event.is_set():
                return
            self.links.sync(records, problems)
            index = found if found > 0 and (index is None or found >= index) else None

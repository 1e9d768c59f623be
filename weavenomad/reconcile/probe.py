"""The reconciler's own first run of a new twin's checks, so the twin need not wait for Consul's.

Consul runs a newly registered check first at a random point within its interval (measured on
real Consul 1.4: 2.9 s median after registration, for a 5 s interval), and until then the check
is critical, so the twin is not among the healthy answers while Nomad's instance is already
masked. Consul's check registration takes a ``Status``, the check's status until its first run:
the reconciler probes each re-aimed TCP or HTTP check itself, once, just before registering the
twin, and registers the check with that verdict. It probes from the host, as Consul's agent on
the same host does, with Consul's rules: a TCP connect that succeeds passes; an HTTP answer 2xx
passes, 429 warns, anything else (or no answer) is critical.

The probes never hold a pass up for long, however many twins start at once: each waits at most
the check's own timeout capped at ``probe_cap``, they run side by side, and whatever has not
answered within ``probe_budget`` of the first counts as critical (Consul's own starting status;
its first run corrects it). A gRPC check is not probed (that needs a gRPC client): its twin
starts as Consul would start it. Nothing here reads or writes the registry.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace

import requests

from weavenomad.reconcile.registrations import CRITICAL, Twin, TwinCheck

PASSING = "passing"
WARNING = "warning"
#: check kinds the reconciler can run itself
PROBED = ("tcp", "http")
#: Consul's HTTP check sends this User-Agent; some health endpoints tell callers apart by it
USER_AGENT = "Consul Health Check"
#: probes in flight at once
WORKERS = 32
#: Consul's default timeout of a TCP or HTTP check, when the job gives none
CONSUL_DEFAULT_TIMEOUT = 10.0


# --------------------------------------------------------------------------------------------
# Decisions (pure)


def probed(checks: Iterable[TwinCheck]) -> list[TwinCheck]:
    """The checks the reconciler runs itself before registering them."""
    return [check for check in checks if check.kind in PROBED]


def probe_timeout(check: TwinCheck, cap: float) -> float:
    """The check's own timeout (Consul's default without one), never above ``cap``."""
    own = check.timeout_ns / 1e9 if check.timeout_ns > 0 else CONSUL_DEFAULT_TIMEOUT
    return min(own, cap)


def http_status(code: int) -> str:
    """Consul's verdict on an HTTP check's answer."""
    if 200 <= code < 300:
        return PASSING
    return WARNING if code == 429 else CRITICAL


def with_statuses(twin: Twin, statuses: Mapping[str, str]) -> Twin:
    """The twin whose probed checks start in their probe's verdict (critical when the probe
    had none in time). The twin's digest stays as planned: it describes the definition, and a
    starting status is no part of it once Consul runs the check."""
    if not any(check.kind in PROBED for check in twin.checks):
        return twin
    return replace(twin, checks=tuple(
        replace(check, status=statuses.get(check.id, CRITICAL)) if check.kind in PROBED
        else check for check in twin.checks))


# --------------------------------------------------------------------------------------------
# Probing (I/O)


def probe_tcp(target: str, timeout: float) -> str:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return PASSING
    except (OSError, ValueError):
        return CRITICAL


def probe_http(check: TwinCheck, timeout: float) -> str:
    headers = {"User-Agent": USER_AGENT, "Accept": "text/plain, text/*, */*"}
    headers.update({name: values[-1] for name, values in check.header if values})
    with requests.Session() as session:
        session.trust_env = False  # Consul's probe goes straight to the task, not via a proxy
        try:
            with session.request(check.method or "GET", check.target, headers=headers,
                                 timeout=timeout, verify=not check.tls_skip_verify,
                                 stream=True) as answer:
                return http_status(answer.status_code)
        except (requests.RequestException, ValueError):
            return CRITICAL


def probe(check: TwinCheck, timeout: float) -> str:
    if check.kind == "tcp":
        return probe_tcp(check.target, timeout)
    return probe_http(check, timeout)


class Prober:
    """Runs the first probe of many checks at once, within a bounded time."""

    def __init__(self, *, cap: float = 0.5, budget: float = 1.0, workers: int = WORKERS,
                 run: Callable[[TwinCheck, float], str] = probe):
        self.cap, self.budget, self.workers, self.run = cap, budget, workers, run

    def statuses(self, checks: Iterable[TwinCheck]) -> dict[str, str]:
        """Check ID -> verdict, for those that answered within the budget."""
        wanted = probed(checks)
        if not wanted:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(wanted)),
                                  thread_name_prefix="probe")
        futures = {pool.submit(self.run, check, probe_timeout(check, self.cap)): check.id
                   for check in wanted}
        done, _ = wait(futures, timeout=self.budget)
        # the late ones end by their own timeout; nobody waits for them
        pool.shutdown(wait=False, cancel_futures=True)
        return {futures[future]: future.result() for future in done
                if future.exception() is None}

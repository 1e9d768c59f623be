"""Health checks the simulated Consul runs itself, from the node each check belongs to.

A TCP or HTTP check registered on node n2 connects from n2's network namespace, as the real
agent on n2 would, so "passing" means the address is reachable from that node. Each node has a
small pool of worker threads that live in its namespace
(:class:`weavenomad_lab.netns.NetnsThread`); one scheduler thread keeps a heap of due times
for probes, TTL deadlines and the reaper of services critical for longer than their
``DeregisterCriticalServiceAfter``.

Outputs and statuses follow Consul 1.4's ``agent/checks``: ``TCP connect ADDR: Success`` or
Go's dial error; ``HTTP GET URL: 200 OK Output: BODY`` (last 4 KiB of the body), 2xx passing,
429 warning, anything else critical. The interval is at least 1 s; the TCP timeout defaults to
10 s; the HTTP timeout is the check's Timeout when shorter than the interval, else the
interval capped at 10 s. One deliberate difference: the first run comes within
``first_run_within`` (1 s) of registration instead of a random point of the whole interval, so
lab scenarios need not wait a full interval.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import random
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from weavenomad_lab import netns as netns_mod
from weavenomad_lab.consul.records import CRITICAL, PASSING, WARNING, CheckDefinition
from weavenomad_lab.consul.state import ConsulState

log = logging.getLogger(__name__)

Probe = Callable[[CheckDefinition], tuple[str, str]]

MIN_INTERVAL = 1.0
DEFAULT_TIMEOUT = 10.0
REAP_INTERVAL = 30.0
_BODY_READ_LIMIT = 1 << 20
_USER_AGENT = "Consul Health Check"
_ACCEPT = "text/plain, text/*, */*"


# -- probes (run on a thread inside the node's namespace) -----------------------------------


def _os_error_text(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def _split_host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not host:
        raise ValueError(f"dial tcp: address {target}: missing port in address")
    if not port.isdigit():
        raise ValueError(f"dial tcp: lookup tcp/{port}: unknown port")
    return host.strip("[]"), int(port)


def probe_tcp(target: str, timeout: float) -> tuple[str, str]:
    try:
        host, port = _split_host_port(target)
    except ValueError as exc:
        return CRITICAL, str(exc)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        return CRITICAL, f"dial tcp: lookup {host}: no such host"
    except TimeoutError:
        return CRITICAL, f"dial tcp {target}: i/o timeout"
    except OSError as exc:
        return CRITICAL, f"dial tcp {target}: connect: {_os_error_text(exc)}"
    return PASSING, f"TCP connect {target}: Success"


def http_timeout(definition: CheckDefinition) -> float:
    interval = max(definition.interval, MIN_INTERVAL)
    if 0 < definition.timeout < interval:
        return definition.timeout
    return min(interval, DEFAULT_TIMEOUT)


def _http_request(definition: CheckDefinition) -> urllib.request.Request:
    headers = {name: ", ".join(values) for name, values in definition.header}
    lowered = {name.lower() for name in headers}
    if "user-agent" not in lowered:
        headers["User-Agent"] = _USER_AGENT
    if "accept" not in lowered:
        headers["Accept"] = _ACCEPT
    return urllib.request.Request(definition.http, method=definition.method or "GET",
                                  headers=headers)


def _http_dial_error(url: str, reason: object) -> str:
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    where = f"{parsed.hostname}:{port}"
    if isinstance(reason, socket.gaierror):
        return f"dial tcp: lookup {parsed.hostname}: no such host"
    if isinstance(reason, TimeoutError):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    if isinstance(reason, OSError):
        return f"dial tcp {where}: connect: {_os_error_text(reason)}"
    return str(reason)


def probe_http(definition: CheckDefinition) -> tuple[str, str]:
    method = definition.method or "GET"
    url = definition.http
    op = method[:1].upper() + method[1:].lower()
    context = ssl.create_default_context()
    if definition.tls_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # no proxies: the agent's check client ignores HTTP_PROXY, and the lab has none
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        request = _http_request(definition)
        try:
            response = opener.open(request, timeout=http_timeout(definition))
        except urllib.error.HTTPError as exc:
            response = exc
        with response:
            code, reason = response.status, response.reason
            body = response.read(_BODY_READ_LIMIT)
    except urllib.error.URLError as exc:
        return CRITICAL, f'{op} "{url}": {_http_dial_error(url, exc.reason)}'
    except TimeoutError:
        return CRITICAL, f'{op} "{url}": context deadline exceeded (Client.Timeout exceeded ' \
                         "while reading body)"
    except (OSError, ValueError) as exc:
        return CRITICAL, f'{op} "{url}": {exc}'
    text = body[-4096:].decode("utf-8", errors="replace")
    output = f"HTTP {method} {url}: {code} {reason} Output: {text}"
    if 200 <= code <= 299:
        return PASSING, output
    return (WARNING if code == 429 else CRITICAL), output


def probe_check(definition: CheckDefinition) -> tuple[str, str]:
    """Run one check now, in the calling thread's namespace."""
    if definition.kind == "tcp":
        timeout = definition.timeout if definition.timeout > 0 else DEFAULT_TIMEOUT
        return probe_tcp(definition.tcp, timeout)
    if definition.kind == "http":
        return probe_http(definition)
    return CRITICAL, definition.unsupported_output()


# -- worker pools ---------------------------------------------------------------------------


class _NodePool:
    """Worker threads inside one namespace; grows while work waits, up to ``limit``."""

    def __init__(self, netns: str | None, limit: int):
        self._netns = netns
        self._limit = limit
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._pending = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            if self._pending > self._idle and self._workers < self._limit:
                self._workers += 1
                netns_mod.NetnsThread(self._netns, self._work,
                                      name=f"consul-checks-{self._netns}").start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._pending -= 1
            if job is None:
                return
            try:
                job()
            except Exception:  # a broken probe must not kill the worker
                log.exception("health check crashed")

    def stop(self) -> None:
        with self._lock:
            workers = self._workers
        for _ in range(workers):
            self._jobs.put(None)


# -- scheduler ------------------------------------------------------------------------------


class CheckRunner:
    """Runs every check of a :class:`ConsulState` at its interval (the state's scheduler)."""

    def __init__(self, state: ConsulState, *, probe: Probe = probe_check,
                 netns_of: Callable[[str], str | None] = lambda node: None,
                 min_interval: float = MIN_INTERVAL, first_run_within: float = 1.0,
                 reap_interval: float = REAP_INTERVAL, workers_per_node: int = 16):
        self._state = state
        self._probe = probe
        self._netns_of = netns_of
        self._min_interval = min_interval
        self._first_run_within = first_run_within
        self._reap_interval = reap_interval
        self._workers_per_node = workers_per_node
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str, str, str, int]] = []
        self._seq = itertools.count()
        self._probes: dict[tuple[str, str], tuple[int, CheckDefinition]] = {}
        self._ttls: dict[tuple[str, str], tuple[int, float]] = {}
        self._pools: dict[str, _NodePool] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="consul-check-scheduler",
                                        daemon=True)

    def start(self) -> None:
        with self._cond:
            self._push(time.monotonic() + self._reap_interval, "reap", "", "", 0)
        self._thread.start()
        self._state.attach_scheduler(self)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for pool in self._pools.values():
            pool.stop()

    def _push(self, due: float, action: str, node: str, check_id: str, generation: int) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), action, node, check_id, generation))
        self._cond.notify_all()

    # the CheckScheduler protocol (called with the state's lock held)

    def schedule(self, node: str, check_id: str, generation: int,
                 definition: CheckDefinition) -> None:
        interval = max(definition.interval, self._min_interval)
        with self._cond:
            self._probes[(node, check_id)] = (generation, definition)
            first = random.uniform(0, min(interval, self._first_run_within))
            self._push(time.monotonic() + first, "probe", node, check_id, generation)

    def cancel(self, node: str, check_id: str) -> None:
        with self._cond:
            self._probes.pop((node, check_id), None)
            self._ttls.pop((node, check_id), None)

    def ttl_reset(self, node: str, check_id: str, generation: int, ttl: float) -> None:
        deadline = time.monotonic() + ttl
        with self._cond:
            self._ttls[(node, check_id)] = (generation, deadline)
            self._push(deadline, "ttl", node, check_id, generation)

    # the scheduler thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._heap or self._heap[0][0] > time.monotonic()
                ):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _due, _seq, action, node, check_id, generation = heapq.heappop(self._heap)
                if action == "probe":
                    current = self._probes.get((node, check_id))
                    if current is None or current[0] != generation:
                        continue
                    definition = current[1]
                elif action == "ttl":
                    ttl = self._ttls.get((node, check_id))
                    if ttl is None or ttl[0] != generation or ttl[1] > time.monotonic():
                        continue
                    del self._ttls[(node, check_id)]
                else:
                    self._push(time.monotonic() + self._reap_interval, "reap", "", "", 0)
            try:
                if action == "probe":
                    self._dispatch(node, check_id, generation, definition)
                elif action == "ttl":
                    self._state.expire_ttl(node, check_id, generation)
                else:
                    self._state.reap_critical_services()
            except Exception:  # keep scheduling the other checks
                log.exception("check scheduler action %s failed", action)

    def _dispatch(self, node: str, check_id: str, generation: int,
                  definition: CheckDefinition) -> None:
        netns = self._netns_of(node)
        started = time.monotonic()

        def run() -> None:
            status, output = self._probe(definition)
            self._finish(node, check_id, generation, definition, started, status, output)

        if netns is not None and not netns_mod.exists(netns):
            self._finish(node, check_id, generation, definition, started, CRITICAL,
                         f"weavenomad lab: network namespace {netns} of node {node} is gone")
            return
        pool = self._pools.get(node)
        if pool is None:
            pool = self._pools[node] = _NodePool(netns, self._workers_per_node)
        pool.submit(run)

    def _finish(self, node: str, check_id: str, generation: int, definition: CheckDefinition,
                started: float, status: str, output: str) -> None:
        self._state.record_check_result(node, check_id, generation, status, output)
        interval = max(definition.interval, self._min_interval)
        with self._cond:
            current = self._probes.get((node, check_id))
            if current is not None and current[0] == generation and not self._stopping:
                due = max(started + interval, time.monotonic())
                self._push(due, "probe", node, check_id, generation)

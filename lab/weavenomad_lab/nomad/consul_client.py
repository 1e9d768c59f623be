"""A Nomad client's link to its node's Consul agent: the agent HTTP calls Nomad makes, and the
sync loop of ``ServiceClient.Run`` (register/deregister on demand, full reconciliation every
``interval``, 30 s by default, with Nomad's retry back-off of 1 s per failure up to 30 s).

Connections are made from inside the node's network namespace, so ``127.0.0.1:8500`` in the
node's agent config reaches *that node's* Consul agent, exactly as on a real node. The agent
config's ``consul`` block also gives the token (sent as ``X-Consul-Token``) and TLS (``ssl``,
``verify_ssl``, ``ca_file``, ``cert_file``, ``key_file``), as Nomad's Consul client uses them.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from weavenomad_lab.netns import connect_tcp
from weavenomad_lab.nomad import consul_sync
from weavenomad_lab.nomad.versions import NomadSemantics

log = logging.getLogger(__name__)

DEFAULT_SYNC_INTERVAL = 30.0
#: how old the agent's check list may be when the allocations' health watchers read it
CHECKS_MAX_AGE = 0.5
DEFAULT_PROBATION = 60.0
REQUEST_TIMEOUT = 5.0


class ConsulUnavailable(Exception):
    """The Consul agent did not answer, or answered an error."""


def split_address(address: str) -> tuple[str, int]:
    """``127.0.0.1:8500`` or ``http://127.0.0.1:8500`` -> (host, port)."""
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    return parts.hostname or "127.0.0.1", parts.port or 8500


class _NetnsConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, netns: str | None, timeout: float,
                 tls: ssl.SSLContext | None = None):
        super().__init__(host, port, timeout=timeout)
        self._netns = netns
        self._tls = tls

    def connect(self) -> None:
        sock = connect_tcp(self.host, self.port, self._netns, self.timeout)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


def tls_context(ssl_on: bool, verify: bool = True, ca_file: str | None = None,
                cert_file: str | None = None, key_file: str | None = None
                ) -> ssl.SSLContext | None:
    """The client TLS of Nomad's ``consul`` block; None for plain HTTP. Raises OSError (and
    ssl.SSLError) when a file cannot be read, which stops a real agent too."""
    if not ssl_on:
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class ConsulAgentAPI:
    """The agent endpoints Nomad's service client uses, over HTTP(S) with a timeout."""

    def __init__(self, address: str, netns: str | None = None, timeout: float = REQUEST_TIMEOUT,
                 *, token: str | None = None, tls: ssl.SSLContext | None = None):
        if address.startswith("https://"):
            tls = tls or ssl.create_default_context()
        self.host, self.port = split_address(address)
        self.netns = netns
        self.timeout = timeout
        self.token = token
        self.tls = tls

    def _call(self, method: str, path: str, body: dict | None = None) -> object:
        conn = _NetnsConnection(self.host, self.port, self.netns, self.timeout, self.tls)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            if self.token:
                headers["X-Consul-Token"] = self.token
            conn.request(method, path, body=payload, headers=headers)
            answer = conn.getresponse()
            text = answer.read()
        except OSError as exc:
            raise ConsulUnavailable(f"{method} {path}: {exc}") from None
        finally:
            conn.close()
        if answer.status != 200:
            message = text.decode(errors="replace").strip()
            raise ConsulUnavailable(f"{method} {path}: {answer.status} {message}")
        return json.loads(text) if text.strip() else None

    def services(self) -> dict[str, dict]:
        return self._call("GET", "/v1/agent/services") or {}

    def checks(self) -> dict[str, dict]:
        return self._call("GET", "/v1/agent/checks") or {}

    def register_service(self, body: dict, replace_existing_checks: bool = False) -> None:
        query = "?replace-existing-checks=true" if replace_existing_checks else ""
        self._call("PUT", f"/v1/agent/service/register{query}", body)

    def deregister_service(self, service_id: str) -> None:
        self._call("PUT", f"/v1/agent/service/deregister/{quote(service_id, safe='')}")

    def register_check(self, body: dict) -> None:
        self._call("PUT", "/v1/agent/check/register", body)

    def deregister_check(self, check_id: str) -> None:
        self._call("PUT", f"/v1/agent/check/deregister/{quote(check_id, safe='')}")


class ServiceSyncer:
    """Nomad's ServiceClient: what Nomad wants registered, and the loop that makes it so."""

    def __init__(self, api: ConsulAgentAPI, interval: float = DEFAULT_SYNC_INTERVAL,
                 probation: float = DEFAULT_PROBATION,
                 clock: Callable[[], float] = time.monotonic,
                 semantics: NomadSemantics | None = None):  # fmt: skip
        self.api = api
        #: 1.0 or 1.7+ registrations (:mod:`weavenomad_lab.nomad.versions`)
        self.semantics = semantics or NomadSemantics()
        self.interval = interval
        self.probation = probation
        self.probation_until = clock() + probation
        self._clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, dict] = {}
        self._checks: dict[str, dict] = {}
        #: workload (alloc ID, task) -> its service and check IDs
        self._workloads: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
        self._removed_services: set[str] = set()
        self._removed_checks: set[str] = set()
        self._wake = threading.Event()
        self._next_periodic = clock()
        self.last_sync_error: str | None = None
        self.syncs = 0
        self._checks_lock = threading.Lock()
        self._checks_read: tuple[float, dict[str, dict]] | None = None

    # -- what Nomad wants --------------------------------------------------------------------

    def set_workload(self, alloc_id: str, task: str, services: dict[str, dict],
                     checks: dict[str, dict]) -> None:  # fmt: skip
        with self._lock:
            self._drop(alloc_id, task)
            self._services.update(services)
            self._checks.update(checks)
            self._workloads[(alloc_id, task)] = (set(services), set(checks))
        self._wake.set()

    def remove_workload(self, alloc_id: str, task: str) -> None:
        with self._lock:
            self._drop(alloc_id, task)
        self._wake.set()

    def _drop(self, alloc_id: str, task: str) -> None:
        service_ids, check_ids = self._workloads.pop((alloc_id, task), (set(), set()))
        for sid in service_ids:
            self._services.pop(sid, None)
            self._removed_services.add(sid)
        for cid in check_ids:
            self._checks.pop(cid, None)
            self._removed_checks.add(cid)

    def check_statuses(self) -> dict[str, dict]:
        """The agent's checks, read at most every ``CHECKS_MAX_AGE`` seconds for all the
        node's health watchers together: one read per allocation and half second made the
        simulated Consul render thousands of checks a hundred times a second on a full node.
        Raises ConsulUnavailable."""
        with self._checks_lock:
            now = self._clock()
            if self._checks_read is None or now - self._checks_read[0] >= CHECKS_MAX_AGE:
                self._checks_read = (now, self.api.checks())
            return self._checks_read[1]

    def workload_checks(self, alloc_id: str) -> set[str]:
        with self._lock:
            return {c for (a, _), (_, checks) in self._workloads.items() if a == alloc_id
                    for c in checks}  # fmt: skip

    def set_timing(self, interval: float | None = None, probation: float | None = None) -> None:
        if interval is not None:
            self.interval = interval
            self._next_periodic = min(self._next_periodic, self._clock() + interval)
        if probation is not None:
            self.probation = probation
            self.probation_until = self._clock() + probation
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------

    def sync(self, periodic: bool) -> consul_sync.SyncPlan:
        with self._lock:
            wanted_services = dict(self._services)
            wanted_checks = dict(self._checks)
            removed_services = set(self._removed_services)
            removed_checks = set(self._removed_checks)
        in_probation = self._clock() < self.probation_until
        in_consul = self.api.services()
        plan = consul_sync.plan_services(wanted_services, in_consul, periodic=periodic,
                                         in_probation=in_probation,
                                         explicitly_removed=removed_services)  # fmt: skip
        for sid in plan.deregister_services:
            self.api.deregister_service(sid)
        modern = self.semantics.modern
        for body in plan.register_services:
            if modern:
                body = consul_sync.with_checks(body, wanted_checks)
            self.api.register_service(body, replace_existing_checks=modern
                                      and body["ID"] in in_consul)
        consul_sync.plan_checks(wanted_checks, self.api.checks(), plan, in_probation=in_probation,
                                explicitly_removed=removed_checks)  # fmt: skip
        for cid in plan.deregister_checks:
            self.api.deregister_check(cid)
        for body in plan.register_checks:
            self.api.register_check(body)
        with self._lock:
            self._removed_services -= removed_services
            self._removed_checks -= removed_checks
        self.syncs += 1
        if not plan.empty():
            log.info("consul sync: %d/%d services and %d/%d checks registered/removed",
                     len(plan.register_services), len(plan.deregister_services),
                     len(plan.register_checks), len(plan.deregister_checks))  # fmt: skip
        return plan

    #: set when the agent dies with its node: no last sync, as a killed process does none
    killed = False

    def wake(self) -> None:
        """Run a sync now (and let ``run`` notice its stop flag)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            periodic = self._clock() >= self._next_periodic
            self._wake.clear()
            try:
                self.sync(periodic)
                failures = 0
                self.last_sync_error = None
                delay = self.interval
            except (ConsulUnavailable, ValueError) as exc:
                failures += 1
                self.last_sync_error = str(exc)
                if failures == 1 or failures % 10 == 0:
                    log.warning("failed to update services in Consul: %s", exc)
                delay = min(1.0 * failures, 30.0)
            if periodic or failures:
                self._next_periodic = self._clock() + delay
            self._wake.wait(max(0.0, self._next_periodic - self._clock()))
        if not self.killed:
            self._final_sync()

    def _final_sync(self) -> None:
        try:
            self.sync(periodic=False)
        except (ConsulUnavailable, ValueError) as exc:
            log.warning("last Consul sync before stopping failed: %s", exc)

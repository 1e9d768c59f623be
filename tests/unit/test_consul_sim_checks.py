"""Health checks the simulated Consul runs: real TCP/HTTP probes with Consul's outputs, TTL
expiry, script checks kept critical, and the reaper of long-critical services."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_consul_sim_support import running_sim
from weavenomad_lab.consul.checks import http_timeout, probe_check, probe_http, probe_tcp
from weavenomad_lab.consul.records import CheckDefinition

FAST = {"probe": probe_check, "min_interval": 0.05, "first_run_within": 0.05}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


class _Answer(BaseHTTPRequestHandler):
    status = 200
    seen: dict = {}

    def do_GET(self):
        type(self).seen = dict(self.headers)
        body = f"status {self.status}".encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_tcp_probe_outputs_are_consuls(listener):
    port = listener.getsockname()[1]
    passing = ("passing", f"TCP connect 127.0.0.1:{port}: Success")
    assert probe_tcp(f"127.0.0.1:{port}", 2) == passing
    gone = closed_port()
    assert probe_tcp(f"127.0.0.1:{gone}", 2) == (
        "critical", f"dial tcp 127.0.0.1:{gone}: connect: connection refused")
    assert probe_tcp("127.0.0.1", 2) == (
        "critical", "dial tcp: address 127.0.0.1: missing port in address")


@pytest.mark.parametrize(("status", "health"), [(200, "passing"), (204, "passing"),
                                                (429, "warning"), (503, "critical")])
def test_http_probe_status_mapping_and_output(web, status, health):
    _Answer.status = status
    url = f"http://127.0.0.1:{web.server_port}/health"
    definition = CheckDefinition("http", http=url, interval=10, header=(("X-Lab", ("1",)),))
    result, output = probe_http(definition)
    assert result == health
    reason = {200: "OK", 204: "No Content", 429: "Too Many Requests",
              503: "Service Unavailable"}[status]
    body = "" if status == 204 else f"status {status}"
    assert output == f"HTTP GET {url}: {status} {reason} Output: {body}"
    assert _Answer.seen["User-Agent"] == "Consul Health Check"
    assert _Answer.seen["X-Lab"] == "1"


def test_http_probe_refused_and_timeouts():
    url = f"http://127.0.0.1:{closed_port()}/"
    status, output = probe_http(CheckDefinition("http", http=url, interval=10))
    assert status == "critical"
    assert output.startswith(f'Get "{url}": dial tcp 127.0.0.1:')
    assert output.endswith("connect: connection refused")
    assert http_timeout(CheckDefinition("http", interval=30, timeout=2)) == 2
    assert http_timeout(CheckDefinition("http", interval=5)) == 5
    assert http_timeout(CheckDefinition("http", interval=60)) == 10


def _check(sim, check_id: str) -> dict:
    return sim["u1"].get("/v1/agent/checks").json()[check_id]


def _eventually(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_new_check_is_critical_until_its_first_run(listener):
    port = listener.getsockname()[1]
    with running_sim(**dict(FAST, first_run_within=3600.0)) as sim:
        sim["u1"].ok("PUT", "/v1/agent/service/register", {
            "Name": "db", "Port": port,
            "Check": {"TCP": f"127.0.0.1:{port}", "Interval": "1h", "Timeout": "1s"}})
        assert _check(sim, "service:db")["Status"] == "critical"


def test_a_check_registered_with_a_status_keeps_it_until_its_first_run():
    """Consul's ``Status`` ("the initial status of the health check"), in a service's
    ``Checks`` and on a check of its own, TTL included: the reconciler registers a twin's
    re-aimed check with the result of its own probe, so the twin need not wait for the first
    run (issue 16)."""
    gone = closed_port()
    with running_sim(**dict(FAST, first_run_within=3600.0)) as sim:
        sim["u1"].ok("PUT", "/v1/agent/service/register", {
            "ID": "db", "Name": "db", "Port": gone, "Checks": [
                {"CheckID": "db-tcp", "Name": "tcp", "TCP": f"127.0.0.1:{gone}",
                 "Interval": "1h", "Timeout": "1s", "Status": "passing"},
                {"CheckID": "db-http", "Name": "http", "HTTP": f"http://127.0.0.1:{gone}/",
                 "Interval": "1h", "Timeout": "1s", "Status": "warning"}]})
        sim["u1"].ok("PUT", "/v1/agent/check/register", {
            "ID": "beat", "Name": "beat", "TTL": "1h", "Status": "passing"})
        assert [_check(sim, c)["Status"] for c in ("db-tcp", "db-http", "beat")] == [
            "passing", "warning", "passing"]
        health = sim["u1"].get("/v1/health/service/db?passing").json()
        assert [entry["Service"]["ID"] for entry in health] == []  # a warning is not passing


def test_a_tcp_check_follows_its_target(listener):
    port = listener.getsockname()[1]
    with running_sim(**FAST) as sim:
        sim["u1"].ok("PUT", "/v1/agent/service/register", {
            "Name": "db", "Port": port,
            "Check": {"TCP": f"127.0.0.1:{port}", "Interval": "50ms", "Timeout": "1s"}})
        _eventually(lambda: _check(sim, "service:db")["Status"] == "passing")
        listener.close()
        _eventually(lambda: _check(sim, "service:db")["Status"] == "critical")
        assert "connection refused" in _check(sim, "service:db")["Output"]


def test_ttl_checks_pass_and_expire_with_the_last_output():
    with running_sim(**FAST) as sim:
        u1 = sim["u1"]
        u1.ok("PUT", "/v1/agent/check/register", {"Name": "beat", "TTL": "300ms"})
        u1.ok("PUT", "/v1/agent/check/pass/beat?note=alive")
        check = _check(sim, "beat")
        assert (check["Status"], check["Output"]) == ("passing", "alive")
        _eventually(lambda: _check(sim, "beat")["Status"] == "critical")
        assert _check(sim, "beat")["Output"] == (
            "TTL expired (last output before timeout follows): alive")


def test_an_output_only_update_keeps_the_index():
    with running_sim() as sim:
        u1 = sim["u1"]
        u1.ok("PUT", "/v1/agent/service/register", {"Name": "web", "Check": {"TTL": "10m"}})
        u1.ok("PUT", "/v1/agent/check/update/service:web", {"Status": "passing", "Output": "a"})
        index = u1.get("/v1/health/service/web").headers["X-Consul-Index"]
        u1.ok("PUT", "/v1/agent/check/update/service:web", {"Status": "passing", "Output": "b"})
        answer = u1.get("/v1/health/service/web")
        assert answer.headers["X-Consul-Index"] == index
        assert answer.json()[0]["Checks"][1]["Output"] == "b"


def test_script_checks_are_accepted_and_stay_critical():
    with running_sim(**FAST) as sim:
        sim["u1"].ok("PUT", "/v1/agent/check/register",
                     {"Name": "script", "Args": ["/bin/true"], "Interval": "50ms"})
        time.sleep(0.2)
        check = _check(sim, "script")
        assert check["Status"] == "critical"
        assert "script and docker checks are not run" in check["Output"]


def test_a_service_critical_longer_than_deregister_after_is_reaped():
    gone = closed_port()
    with running_sim(**FAST, reap_interval=0.05, deregister_min=0.2) as sim:
        u1 = sim["u1"]
        u1.ok("PUT", "/v1/agent/service/register", {"Name": "flaky", "Check": {
            "TCP": f"127.0.0.1:{gone}", "Interval": "50ms",
            "DeregisterCriticalServiceAfter": "100ms"}})
        u1.ok("PUT", "/v1/agent/service/register", {"Name": "steady"})
        _eventually(lambda: "flaky" not in u1.get("/v1/agent/services").json())
        assert list(u1.get("/v1/agent/services").json()) == ["steady"]
        assert u1.get("/v1/agent/checks").json() == {}

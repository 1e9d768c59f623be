"""The reconciler's own first probe of a new twin's checks (issue 16, "Fast"): which checks it
runs, Consul's verdicts, the bound on a pass, and the order that keeps Nomad's Docker-bridge
instance off every read path: the mask before its twin, the twin with its probed status."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_reconcile_apply import Agent

from weavenomad.errors import BackendServerError
from weavenomad.reconcile.apply import apply as apply_to
from weavenomad.reconcile.consul import ConsulAgent
from weavenomad.reconcile.plan import (
    MISSING,
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    Action,
    Plan,
)
from weavenomad.reconcile.probe import (
    CRITICAL,
    PASSING,
    WARNING,
    Prober,
    http_status,
    probe,
    probe_timeout,
    probed,
    with_statuses,
)
from weavenomad.reconcile.registrations import MIRROR, Mask, Twin, TwinCheck

SECOND = 10**9


def tcp(check_id: str, target: str = "10.32.1.1:80", timeout_ns: int = 0) -> TwinCheck:
    return TwinCheck(check_id, check_id, "tcp", target, 5 * SECOND, timeout_ns)


def a_twin(ident: str, *checks: TwinCheck) -> Twin:
    return Twin(ident, "_nomad-task-" + ident, "web", "10.32.1.1", 8080,
                meta={"weavenomad-digest": "d"}, checks=checks)


# -- decisions -----------------------------------------------------------------------------------


def test_only_tcp_and_http_checks_are_probed():
    checks = [tcp("t"), TwinCheck("h", "h", "http", "http://10.32.1.1/"),
              TwinCheck("g", "g", "grpc", "10.32.1.1:9090"),
              TwinCheck("m", "m", MIRROR, status=PASSING)]
    assert [c.id for c in probed(checks)] == ["t", "h"]


def test_a_probe_waits_the_checks_timeout_never_more_than_the_cap():
    assert probe_timeout(tcp("t", timeout_ns=SECOND // 5), cap=0.5) == 0.2
    assert probe_timeout(tcp("t", timeout_ns=3 * SECOND), cap=0.5) == 0.5
    assert probe_timeout(tcp("t"), cap=0.5) == 0.5  # Consul's default (10 s), capped


@pytest.mark.parametrize(("code", "verdict"), [(200, PASSING), (204, PASSING), (299, PASSING),
                                               (301, CRITICAL), (429, WARNING),
                                               (404, CRITICAL), (503, CRITICAL)])
def test_http_answers_get_consuls_verdicts(code, verdict):
    assert http_status(code) == verdict


def test_probed_checks_start_in_their_verdict_or_critical_and_the_digest_stays():
    mirror = TwinCheck("m", "m", MIRROR, status=WARNING)
    grpc = TwinCheck("g", "g", "grpc", "10.32.1.1:9090", status="")
    twin = a_twin("t1", tcp("c0"), tcp("c1"), grpc, mirror)
    started = with_statuses(twin, {"c0": PASSING})
    assert [c.status for c in started.checks] == [PASSING, CRITICAL, "", WARNING]
    assert started.digest == twin.digest
    bare = a_twin("t2", mirror)
    assert with_statuses(bare, {}) is bare


# -- probing -------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_tcp_probe_passes_on_a_listener_and_fails_on_a_closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        assert probe(tcp("c", f"127.0.0.1:{port}"), 1.0) == PASSING
    assert probe(tcp("c", f"127.0.0.1:{closed_port()}"), 1.0) == CRITICAL
    assert probe(tcp("c", "127.0.0.1"), 1.0) == CRITICAL  # no port: never a traceback


class _Health(BaseHTTPRequestHandler):
    seen: dict = {}

    def do_GET(self):
        type(self).seen = dict(self.headers)
        code = int(self.path.rsplit("/", 1)[1])
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_http_probe_sends_the_checks_headers_and_maps_the_answer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        check = TwinCheck("h", "h", "http", f"{base}/200", header=(("X-Probe", ("1",)),))
        assert probe(check, 1.0) == PASSING
        assert _Health.seen["User-Agent"] == "Consul Health Check"
        assert _Health.seen["X-Probe"] == "1"
        assert probe(TwinCheck("h", "h", "http", f"{base}/429"), 1.0) == WARNING
        assert probe(TwinCheck("h", "h", "http", f"{base}/500"), 1.0) == CRITICAL
    finally:
        server.shutdown()
        server.server_close()
    refused = f"http://127.0.0.1:{closed_port()}/"
    assert probe(TwinCheck("h", "h", "http", refused), 1.0) == CRITICAL


def test_many_probes_run_side_by_side_and_a_pass_never_waits_past_the_budget():
    release = threading.Event()

    def run(check: TwinCheck, timeout: float) -> str:
        if check.id.startswith("slow"):
            release.wait(5)  # a target that never answers
        return PASSING

    prober = Prober(cap=0.5, budget=0.3, workers=64, run=run)
    checks = [tcp(f"fast{i}") for i in range(50)] + [tcp(f"slow{i}") for i in range(10)]
    started = time.monotonic()
    statuses = prober.statuses(checks)
    took = time.monotonic() - started
    release.set()
    assert took < 1.0
    assert set(statuses) == {f"fast{i}" for i in range(50)}  # the slow ones start critical
    assert prober.statuses([TwinCheck("m", "m", MIRROR)]) == {}


# -- the order on the agent ----------------------------------------------------------------------


class BodyAgent(Agent):
    """Also keeps the register bodies; ``gone`` names Nomad services that went away."""

    def __init__(self, gone: set[str] = frozenset(), **kwargs):
        super().__init__(**kwargs)
        self.bodies: dict[str, dict] = {}
        self.gone = gone

    def service_register(self, body, replace_existing_checks=False):
        self.bodies[body["ID"]] = body
        super().service_register(body, replace_existing_checks)

    def check_register(self, body):
        if body["ServiceID"] in self.gone:
            raise BackendServerError("Consul failed", backend="consul", status=500,
                                     body=f'ServiceID "{body["ServiceID"]}" does not exist')
        super().check_register(body)


def new_pair(ident: str, *checks: TwinCheck, why: str = MISSING) -> tuple[Action, Action]:
    mask = Action(REGISTER_MASK, f"mask-{ident}", why,
                  mask=Mask(f"mask-{ident}", "_nomad-task-" + ident, "masked"))
    return mask, Action(REGISTER_TWIN, ident, MISSING, twin=a_twin(ident, *checks),
                        requires=mask.id)


def apply(agent: Agent, *actions: Action, **kwargs):
    return apply_to(ConsulAgent(agent), Plan(actions=actions), **kwargs)


def test_the_mask_goes_in_first_and_the_twin_starts_in_its_probed_status():
    masks, twins = zip(new_pair("t1", tcp("t1-check-0", "10.32.1.1:80")),
                       new_pair("t2", tcp("t2-check-0", "10.32.1.2:80")), strict=True)
    agent = BodyAgent()
    prober = Prober(run=lambda check, timeout: PASSING if "10.32.1.1" in check.target
                    else CRITICAL)
    result = apply(agent, *masks, *twins, prober=prober)
    assert result.complete
    assert [kind for kind, _ in agent.calls] == [REGISTER_MASK] * 2 + [REGISTER_TWIN] * 2
    assert agent.bodies["t1"]["Checks"][0]["Status"] == PASSING
    assert agent.bodies["t2"]["Checks"][0]["Status"] == CRITICAL


def test_a_twin_whose_mask_was_refused_is_not_registered():
    refused = BackendServerError("Consul failed", backend="consul", status=403, body="denied")
    mask, twin = new_pair("t1")
    result = apply(BodyAgent(fail={"mask-t1": refused}), mask, twin)
    assert [a.id for a in result.skipped] == ["t1"] and not result.done


def test_a_twin_whose_nomad_service_went_away_has_nothing_to_stand_in_for():
    mask, twin = new_pair("t1")
    agent = BodyAgent(gone={"_nomad-task-t1"})
    result = apply(agent, mask, twin)
    assert [a.id for a in result.vanished] == ["mask-t1", "t1"] and not result.failed
    assert "t1" not in agent.bodies


def test_a_refused_twin_takes_its_new_mask_off_again_but_not_an_older_one():
    refused = BackendServerError("Consul failed", backend="consul", status=400, body="bad")
    new_mask, new_twin = new_pair("t1")
    old_mask, moved_twin = new_pair("t2", why="notes changed")
    agent = BodyAgent(fail={"t1": refused, "t2": refused})
    result = apply(agent, new_mask, old_mask, new_twin, moved_twin)
    assert [a.id for a in result.undone] == ["mask-t1"]
    assert agent.calls[-1] == (REMOVE_MASK, "mask-t1")
    assert (REMOVE_MASK, "mask-t2") not in agent.calls

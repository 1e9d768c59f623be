"""The reconciler daemon against the simulated Consul (real HTTP, real agent semantics) with
in-memory Nomad, Docker and Weave: convergence, events, outages, bad input, systemd."""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Interface, IPv4Network

import pytest
from reconcile_fakes import (
    NODE_ID,
    FakeDocker,
    FakeNomad,
    FakeWeave,
    GuardedConsul,
    nomad_registration,
    web_allocation,
)
from test_consul_sim_support import running_sim
from test_reconcile_ethwe import FIB_TRIE, ROUTE

from weavenomad.clients.consul import ConsulAPI
from weavenomad.clients.weave_ipam import IpamWait
from weavenomad.config import ReconcilerSettings
from weavenomad.reconcile.daemon import PassOutcome, Reconciler
from weavenomad.runtime.notify import Notifier
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.registry import TenantRegistry

A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"
C = "cccccccc-0000-0000-0000-000000000003"
#: the twins' Weave addresses are not reachable from the test: their probes fail fast
FAST = ReconcilerSettings(resync=30.0, watch_wait=0.5, retry_cap=0.5, probe_cap=0.05,
                          probe_budget=0.1)


def wait_until(what: str, probe, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


class World:
    def __init__(self, sim):
        self.sim = sim
        self.agent = sim["u1"]  # what Nomad and the test use
        host, port = sim.sim.listen("u1")
        self.consul = GuardedConsul(ConsulAPI(f"http://{host}:{port}", timeout=5))
        self.nomad, self.docker, self.weave = FakeNomad(), FakeDocker(), FakeWeave()
        self.reconcilers: list[tuple[Reconciler, threading.Thread | None]] = []

    def run_allocation(self, alloc_id: str, address: str | None = "10.32.1.1/24",
                       name: str = "web", port: str = "8080", pid: int = 0) -> str:
        """Nomad places the allocation, starts its container and registers its service."""
        self.nomad.set_allocations([*self.nomad.allocations, web_allocation(alloc_id, name, port)])
        container = self.docker.start(alloc_id, "web", pid)
        if address:
            self.weave.addresses[container] = [IPv4Interface(address)]
        self.agent.ok("PUT", "/v1/agent/service/register", nomad_registration(alloc_id, name, port))
        return container

    def reconciler(self, settings: ReconcilerSettings = FAST, notifier=None) -> Reconciler:
        r = Reconciler(nomad=self.nomad, consul=self.consul, docker=self.docker,
                       weave=self.weave, registry=TenantRegistry(self.consul, "test-reconcile/"),
                       settings=settings, notifier=notifier, bridge=self.weave.bridge_addresses)
        self.reconcilers.append((r, None))
        return r

    def start(self, settings: ReconcilerSettings = FAST, notifier=None) -> Reconciler:
        r = self.reconciler(settings, notifier)
        thread = threading.Thread(target=r.run, daemon=True)
        thread.start()
        self.reconcilers[-1] = (r, thread)
        return r

    def passing(self, name: str = "web") -> list[tuple[str, str, int]]:
        answer = self.agent.get(f"/v1/health/service/{name}?passing").json()
        return sorted((e["Service"]["ID"], e["Service"]["Address"], e["Service"]["Port"])
                      for e in answer)

    def services(self) -> dict:
        return self.agent.get("/v1/agent/services").json()

    def checks(self) -> dict:
        return self.agent.get("/v1/agent/checks").json()

    def stop_all(self) -> None:
        for r, thread in self.reconcilers:
            r.request_stop()
            if thread is not None:
                thread.join(timeout=5)


@pytest.fixture
def world():
    with running_sim() as sim:
        w = World(sim)
        try:
            yield w
        finally:
            w.stop_all()


def twin(alloc_id: str, name: str = "web", port: str = "8080") -> str:
    return f"weavenomad-{alloc_id}-web-{name}-{port}"


def test_once_converges_and_consul_answers_only_weave_addresses(world):
    world.run_allocation(A, "10.32.1.1/24")
    world.run_allocation(B, "10.32.1.2/24")
    assert world.reconciler().run_once() is True
    wait_until("the twins' checks to pass", lambda: len(world.passing()) == 2)
    assert world.passing() == [(twin(A), "10.32.1.1", 8080), (twin(B), "10.32.1.2", 8080)]
    masks = {k: v for k, v in world.checks().items() if k.startswith("weavenomad-mask-")}
    assert {m["ServiceID"] for m in masks.values()} == {
        f"_nomad-task-{A}-web-web-8080", f"_nomad-task-{B}-web-web-8080"}
    # Nomad's own objects are untouched
    assert world.services()[f"_nomad-task-{A}-web-web-8080"]["Address"] == "172.17.0.5"


def test_a_twin_whose_task_answers_is_healthy_without_waiting_for_consuls_first_run():
    """Consul's first run of the twin's check never comes here: the twin is healthy from the
    reconciler's own probe, and one whose task does not answer starts critical."""
    with socket.socket() as listener, running_sim(first_run_within=3600.0) as sim:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = str(listener.getsockname()[1])
        w = World(sim)
        w.run_allocation(A, "127.0.0.1/8", port=port)
        w.run_allocation(B, "127.0.0.2/8", port="1")  # nothing listens on port 1
        assert w.reconciler().run_once() is True
        assert w.passing() == [(twin(A, port=port), "127.0.0.1", int(port))]
        checks = w.checks()
        assert checks[f"{twin(B, port='1')}-check-0"]["Status"] == "critical"
        assert {k for k in checks if k.startswith("weavenomad-mask-")} == {
            f"weavenomad-mask-{A}-web-web-{port}", f"weavenomad-mask-{B}-web-web-1"}


def test_once_reports_not_converged_while_consul_is_down(world):
    world.run_allocation(A)
    world.consul.down = True
    r = world.reconciler(ReconcilerSettings(retry_cap=0.05, waiting_base=0.01))
    assert r.run_once(passes=3) is False
    world.consul.down = False
    assert r.run_once() is True


def test_orphans_go_at_start_and_nothing_foreign_is_touched(world):
    world.run_allocation(A)
    orphan = {"ID": twin(C), "Name": "web", "Address": "10.32.1.9", "Port": 8080,
              "Meta": {"weavenomad-managed": "true"}}
    world.agent.ok("PUT", "/v1/agent/service/register", orphan)
    world.agent.ok("PUT", "/v1/agent/service/register", {"ID": "redis", "Name": "redis"})
    world.agent.ok("PUT", "/v1/agent/check/register", {
        "ID": "weavenomad-mask-left-over", "Name": "weave address mask", "TTL": "1h",
        "ServiceID": f"_nomad-task-{A}-web-web-8080", "Status": "critical"})
    assert world.reconciler().run_once() is True
    services, checks = world.services(), world.checks()
    assert twin(C) not in services and "weavenomad-mask-left-over" not in checks
    assert "redis" in services and twin(A) in services


def test_the_daemon_follows_events_and_stops_on_request(world):
    world.run_allocation(A)
    r = world.start()
    wait_until("the first twin", lambda: twin(A) in world.services())
    started = time.monotonic()
    world.run_allocation(B, "10.32.1.2/24")
    wait_until("the new twin", lambda: twin(B) in world.services(), timeout=2)
    assert time.monotonic() - started < 1.0
    # the allocation stops: everything of ours for it goes within a pass
    world.nomad.set_allocations([web_allocation(A), web_allocation(B, desired_status="stop")])
    wait_until("the twin to go", lambda: twin(B) not in world.services(), timeout=2)
    assert f"weavenomad-mask-{B}-web-web-8080" not in world.checks()
    assert r.metrics.latency._sum.get() > 0  # noqa: SLF001 - start-to-advertised was measured
    r.request_stop()
    thread = world.reconcilers[-1][1]
    thread.join(timeout=3)
    assert not thread.is_alive()


def test_a_new_tenant_is_exposed_on_this_host_within_a_pass(world):
    registry = TenantRegistry(world.consul, "test-reconcile/")
    registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    world.run_allocation(A)
    world.start()
    wait_until("the first twin", lambda: twin(A) in world.services())
    assert world.weave.exposed_calls == []  # the default subnet was exposed by bootstrap
    registry.create("acme", cidr=IPv4Network("10.32.1.0/24"))
    wait_until("the exposure", lambda: world.weave.exposed_calls, timeout=2)
    assert world.weave.exposed_calls == [IPv4Network("10.32.1.0/24")]
    registry.create("globex", cidr=IPv4Network("10.32.2.0/24"))
    wait_until("the second exposure", lambda: len(world.weave.exposed_calls) == 2, timeout=2)
    time.sleep(0.3)
    assert world.weave.exposed_calls[1:] == [IPv4Network("10.32.2.0/24")]  # once each


def test_a_subnet_waiting_for_weaves_peers_is_exposed_as_soon_as_they_are_up(world):
    """A node set up before its peers: Weave's IPAM waits for consensus and the exposure is
    refused. Nothing else moves when the peers come up, so the daemon must notice by itself,
    within a Weave poll, not at its next resync (30 s here)."""
    registry = TenantRegistry(world.consul, "test-reconcile/")
    registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    registry.create("acme", cidr=IPv4Network("10.32.5.0/24"))
    world.weave.waiting = IpamWait("Weave's IPAM awaits consensus", ("192.168.57.12",))
    world.run_allocation(A)
    r = world.start(dataclasses.replace(FAST, weave_poll=0.1))
    wait_until("the first twin", lambda: twin(A) in world.services())
    wait_until("the daemon to say whom it waits for",
               lambda: "192.168.57.12" in r._status_line(PassOutcome(ok=True)))  # noqa: SLF001
    time.sleep(0.3)
    assert world.weave.exposed_calls == []
    up = time.monotonic()
    world.weave.waiting = None  # the peers are up: consensus
    wait_until("the exposure", lambda: world.weave.exposed_calls, timeout=2)
    assert time.monotonic() - up < 1
    assert world.weave.exposed_calls == [IPv4Network("10.32.5.0/24")]
    wait_until("the wait to be forgotten",
               lambda: "peers" not in r._status_line(PassOutcome(ok=True)))  # noqa: SLF001


def test_a_consul_outage_is_retried_and_converges_soon_after_its_return(world, caplog):
    world.run_allocation(A)
    r = world.start()
    wait_until("the first twin", lambda: twin(A) in world.services())
    caplog.set_level(logging.WARNING, logger="weavenomad.reconciler")
    world.consul.down = True
    world.run_allocation(B, "10.32.1.2/24")  # Nomad registers while we cannot see Consul
    time.sleep(1.5)
    assert twin(B) not in world.services()
    back = time.monotonic()
    world.consul.down = False
    wait_until("the twin after Consul's return", lambda: twin(B) in world.services(), timeout=5)
    assert time.monotonic() - back < 5
    assert r.metrics.errors.labels("consul")._value.get() >= 2  # noqa: SLF001
    failures = [rec.getMessage() for rec in caplog.records
                if "connection refused" in rec.getMessage()]
    # logged once by the pass and at most once by the watchers, however long it lasted
    assert "pass failed: cannot reach consul: connection refused; retrying" in failures
    assert len(failures) == len(set(failures)) <= 2, failures


def test_without_weave_the_address_comes_from_ethwe(world, tmp_path):
    net = tmp_path / "4242" / "net"
    net.mkdir(parents=True)
    (net / "route").write_text(ROUTE)
    (net / "fib_trie").write_text(FIB_TRIE)
    world.run_allocation(A, address=None, pid=4242)
    world.weave.down = True
    r = world.reconciler()
    r.observer.proc = tmp_path
    assert r.run_once() is True
    assert world.services()[twin(A)]["Address"] == "10.32.1.1"  # lowest ethwe address


def test_a_denied_registration_is_logged_once_counted_and_leaves_nomads_instance(world, caplog):
    world.run_allocation(A, name="web")
    world.run_allocation(B, "10.32.1.2/24", name="db", port="5432")
    world.consul.denied = {"db"}
    r = world.reconciler()
    caplog.set_level(logging.WARNING, logger="weavenomad.reconciler")
    for _ in range(3):
        _, raw = world.nomad.node_allocations(NODE_ID)
        r.reconcile(r._cache.parse(raw), trigger="test")  # noqa: SLF001
    services, checks = world.services(), world.checks()
    assert twin(A) in services and twin(B, "db", "5432") not in services
    # no mask without a twin: Nomad's (wrong) address stays rather than nothing at all
    assert f"weavenomad-mask-{B}-web-db-5432" not in checks
    assert f"weavenomad-mask-{A}-web-web-8080" in checks
    denied = [rec for rec in caplog.records if "Permission denied" in rec.getMessage()]
    assert len(denied) == 1 and denied[0].fields["service_id"] == twin(B, "db", "5432")
    assert r.metrics.errors.labels("consul")._value.get() == 3  # noqa: SLF001


def test_bad_input_is_logged_once_per_service_and_reason(world, caplog):
    world.nomad.set_allocations([web_allocation(A, port="http")])  # no such port label
    world.docker.start(A, "web")
    world.weave.addresses[next(iter(world.docker.summaries))] = [IPv4Interface("10.32.1.1/24")]
    registration = nomad_registration(A, port="8080")
    registration["ID"] = f"_nomad-task-{A}-web-web-http"
    world.agent.ok("PUT", "/v1/agent/service/register", registration)
    r = world.reconciler()
    caplog.set_level(logging.WARNING, logger="weavenomad.reconciler")
    assert r.run_once() is True  # nothing can be done, and nothing more will change
    r.run_once()
    problems = [rec for rec in caplog.records if getattr(rec, "fields", {}).get("reason")]
    assert [(p.fields["service_id"], p.fields["reason"]) for p in problems] == [
        (registration["ID"], "port-unresolved")]
    assert r.metrics.problems.labels("port-unresolved")._value.get() == 1  # noqa: SLF001
    assert not [k for k in world.services() if k.startswith("weavenomad-")]


def test_systemd_hears_ready_status_and_watchdog(world, tmp_path):
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(0.1)
    world.run_allocation(A)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    world.start(notifier=notifier)
    messages: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            messages.append(listener.recv(4096).decode())
        except TimeoutError:
            continue
        if sum("WATCHDOG=1" in m for m in messages) >= 5 and any("READY=1" in m for m in messages):
            break
    listener.close()
    assert any(m.startswith("READY=1") for m in messages), messages
    assert sum("WATCHDOG=1" in m for m in messages) >= 5, messages
    assert any("STATUS=1 twin(s)" in m for m in messages), messages


def test_a_mask_for_a_service_that_just_went_away_is_no_failure(world):
    from weavenomad.reconcile import apply as applier
    from weavenomad.reconcile.consul import ConsulAgent
    from weavenomad.reconcile.plan import REGISTER_MASK, Action, Plan
    from weavenomad.reconcile.registrations import Mask

    mask = Mask("weavenomad-mask-gone", f"_nomad-task-{C}-web-web-8080", "x")
    result = applier.apply(ConsulAgent(world.consul),
                           Plan(actions=(Action(REGISTER_MASK, mask.id, mask=mask),)))
    assert result.vanished and not result.failed and result.aborted is None


def test_a_mirror_follows_nomads_script_check(world):
    from reconcile_support import job_allocation

    script = {"Name": "alive", "Type": "script", "Command": "/bin/true",
              "Interval": 10_000_000_000}
    world.nomad.set_allocations([job_allocation(A, tasks=[{
        "Name": "web", "Driver": "docker", "Env": {"WEAVE_CIDR": "net:10.32.1.0/24"},
        "Services": [{"Name": "web", "PortLabel": "8080", "Checks": [script]}]}])])
    container = world.docker.start(A, "web")
    world.weave.addresses[container] = [IPv4Interface("10.32.1.1/24")]
    registration = nomad_registration(A)
    registration["Checks"] = [{"CheckID": "_nomad-check-script", "Name": "alive", "TTL": "41s"}]
    world.agent.ok("PUT", "/v1/agent/service/register", registration)
    world.start()
    mirror = twin(A) + "-check-0"
    wait_until("the mirror", lambda: mirror in world.checks())
    assert world.checks()[mirror]["Status"] == "critical"
    time.sleep(0.5)  # the daemon is idle again: only the check's change can wake it
    world.agent.ok("PUT", "/v1/agent/check/pass/_nomad-check-script")
    wait_until("the mirror to pass", lambda: world.checks()[mirror]["Status"] == "passing",
               timeout=3)
    assert world.passing() == [(twin(A), "10.32.1.1", 8080)]


def test_the_daemons_entry_point_loads_no_job_parsing_code():
    code = ("import sys, weavenomad.reconcile.runner\n"
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('hcl2', 'lark')\n"
            "               or m.startswith('weavenomad.jobs')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == ""


def test_ready_at_once_while_nomad_is_down_then_it_serves_when_nomad_is_back(world, tmp_path):
    """Issue 21: waiting for an agent is serving. READY=1 follows the first look for the node,
    the status says what the daemon waits for, the watchdog is fed while it waits, and once
    Nomad answers the same process serves its node."""
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(0.1)
    world.nomad.down = True
    world.run_allocation(A)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    world.start(notifier=notifier)
    messages: list[str] = []

    def heard(until, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                messages.append(listener.recv(4096).decode())
            except TimeoutError:
                continue
            if until():
                return True
        return False

    assert heard(lambda: sum(m == "WATCHDOG=1" for m in messages) >= 5, 3), messages
    assert messages[1] == "READY=1\nSTATUS=waiting for nomad: connection refused", messages
    assert all(m in ("WATCHDOG=1", messages[1]) for m in messages[1:]), messages
    world.nomad.down = False
    assert heard(lambda: any(m.startswith("STATUS=1 twin(s)") for m in messages), 5), messages
    listener.close()
    wait_until("the twin", lambda: world.passing() == [(twin(A), "10.32.1.1", 8080)])


def test_the_status_names_the_agent_and_why_as_the_clients_say_it():
    from weavenomad.clients import nomad_client
    from weavenomad.config import load_settings
    from weavenomad.errors import BackendAuthError
    from weavenomad.reconcile.daemon import waiting_for

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nomad = nomad_client(load_settings({}, {"NOMAD_ADDR": f"http://127.0.0.1:{port}"}))
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the client's own error
        nomad.agent_self()
    assert waiting_for(refused.value) == (
        f"waiting for Nomad at http://127.0.0.1:{port}: connection refused")
    denied = BackendAuthError("Nomad refused the token: Permission denied", backend="nomad")
    assert waiting_for(denied) == "waiting for Nomad: Nomad refused the token: Permission denied"

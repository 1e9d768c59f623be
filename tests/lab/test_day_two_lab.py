"""Issue 15 on a lab of its own (one node, bootstrapped as an operator does): the day-two
behaviours recorded on real components (tests/fixtures/recorded/day-two/1*), each reproduced by
the lab and survived by the product.

* a Weave restart of about 2 s breaks Nomad's waits through the proxy ("Terminated: unexpected
  EOF", the same container taken over after the restart delay, 1c): no gap in ``?passing``
  over 1 s;
* a foreign address on the weave bridge: one clear line from bootstrap, a FAIL from doctor, a
  logged problem from the reconciler;
* a reboot (new empty bridge while the IPAM still owns the addresses, 1a): doctor fails and
  bootstrap plans the expose step while it is broken, and the reconciler heals it by itself;
* a job registered while Nomad's Docker driver is unhealthy stays blocked (1b) until bootstrap
  evaluates it again;
* ``weavenomad reset`` with Weave stopped (``weave reset`` refuses, 1b) completes;
* a failed ``weave launch`` leaves nothing of Weave behind (1d) and says what it removed;
* a job whose ID needs percent-encoding breaks neither ``tenant show`` nor ``tenant delete``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import lab_name, lab_state_dir, running_lab
from labtools import (
    NOMAD_ALLOC_LABEL,
    consul,
    docker_client,
    driver,
    in_node_command,
    longest_wrong_stretch,
    nomad,
    on_node,
    wait_for,
    weavenomad_on,
)
from weavenomad_lab.reboot import reboot

pytestmark = pytest.mark.lab

JOBS = Path(__file__).resolve().parents[2] / "jobs"
SERVICE, PORT = "httpbackend", 8081
RANGE, DEFAULT = "10.32.0.0/16", "10.32.0.0/24"
#: the goals of the issue, asserted with room for two loaded cores (the fault suite prints
#: the measured figures)
GAP_LIMIT = 1.0
SAMPLE_EVERY = 0.1
HEAL_LIMIT = 30.0


class World:
    def __init__(self, lab, log: Path):
        self.lab, self.log = lab, log
        self.n1 = lab.nodes[0]
        self.reconciler: subprocess.Popen | None = None
        self.original_config: dict[str, bytes] = {}

    def weavenomad(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return weavenomad_on(self.lab, self.n1, *args, env=env)

    def sh(self, *argv: str) -> subprocess.CompletedProcess:
        return on_node(self.lab, self.n1, *argv)

    def start_reconciler(self) -> float:
        """``weavenomad reconciler run`` on the node, as systemd starts it; when it started."""
        argv, env = in_node_command(self.lab, self.n1, sys.executable, "-m", "weavenomad",
                                    "reconciler", "run", "--log-format", "json")
        with open(self.log, "a") as log:
            self.reconciler = subprocess.Popen(argv, env=env, stdout=log,
                                               stderr=subprocess.STDOUT)
        return time.monotonic()

    def stop_reconciler(self) -> None:
        if self.reconciler is not None and self.reconciler.poll() is None:
            self.reconciler.send_signal(signal.SIGTERM)
            self.reconciler.wait(timeout=30)
        self.reconciler = None

    def passing(self) -> set[tuple[str, int]]:
        entries = consul(self.n1, "GET", f"/v1/health/service/{SERVICE}?passing")
        return {(e["Service"]["Address"], e["Service"]["Port"]) for e in entries}

    def weave_addresses(self) -> set[tuple[str, int]]:
        """The Weave address of every running task container, with the container port."""
        owned = {e["containerid"]: e["addrs"] for e in requests.get(
            self.n1.url("weave_api") + "/ip", timeout=10).json()["owned"]}
        found = set()
        for container in docker_client(self.n1).containers.list(
                sparse=True, filters={"label": NOMAD_ALLOC_LABEL}):
            found |= {(a.split("/")[0], PORT) for a in owned.get(container.id) or []}
        return found

    def correct(self, expected: int = 2) -> set | None:
        try:
            truth = self.weave_addresses()
        except (requests.RequestException, ValueError):
            return None
        answer = self.passing()
        return answer if len(truth) == expected and answer == truth else None

    def task_containers(self) -> dict[str, str]:
        return {c.attrs["Labels"][NOMAD_ALLOC_LABEL]: c.id for c in docker_client(
            self.n1).containers.list(sparse=True, filters={"label": NOMAD_ALLOC_LABEL})}

    def allocations(self, job: str = SERVICE) -> list[dict]:
        return [nomad(self.n1, "GET", f"/v1/allocation/{a['ID']}")
                for a in nomad(self.n1, "GET", f"/v1/job/{job}/allocations")
                if a["DesiredStatus"] == "run"]

    def config(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.n1.nomad_config_dir.iterdir())}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with running_lab(lab_state_dir("-day2"), lab_name("d"), 1, "the day-two lab") as lab:
        w = World(lab, tmp_path_factory.mktemp("day2") / "reconciler.log")
        try:
            w.original_config = w.config()
            created = w.weavenomad("tenant", "create", "acme", "--ipalloc-range", RANGE,
                                   "--default-subnet", DEFAULT)
            assert created.returncode == 0, created.stderr
            done = w.weavenomad("bootstrap")
            assert done.returncode == 0, done.stdout + done.stderr
            ran = w.weavenomad("run", str(JOBS / "httpbackend.nomad"), "--tenant", "acme",
                               "--detach")
            assert ran.returncode == 0, ran.stdout + ran.stderr
            w.start_reconciler()
            wait_for("Consul answering the two Weave addresses", w.correct, timeout=90)
            yield w
        finally:
            w.stop_reconciler()


def test_a_job_id_that_needs_percent_encoding_breaks_no_tenant_command(world):
    """A job named Ünïcødé-作业 (recorded: Nomad reads it back percent-encoded) used to make
    ``tenant show`` and ``tenant delete`` fail for every tenant."""
    job = nomad(world.n1, "POST", "/v1/jobs/parse", json={
        "JobHCL": (JOBS / "httpbackend.nomad").read_text().replace(
            'job "httpbackend"', 'job "Ünïcødé-作业"'), "Canonicalize": True})
    job["TaskGroups"][0]["Count"] = 0
    nomad(world.n1, "POST", "/v1/jobs", json={"Job": job})
    try:
        shown = world.weavenomad("tenant", "show", "acme")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        made = world.weavenomad("tenant", "create", "scratch")
        assert made.returncode == 0, made.stderr
        gone = world.weavenomad("tenant", "delete", "scratch")
        assert gone.returncode == 0, gone.stdout + gone.stderr
    finally:
        requests.delete(world.n1.url("nomad") + "/v1/job/%C3%9Cn%C3%AFc%C3%B8d%C3%A9-"
                        "%E4%BD%9C%E4%B8%9A?purge=true", timeout=30)


def sample_passing(world, expected: set, stop: threading.Event,
                   samples: list[tuple[float, bool]]) -> None:
    while not stop.is_set():
        try:
            ok = world.passing() == expected
        except requests.RequestException:
            ok = False
        samples.append((time.monotonic(), ok))
        stop.wait(SAMPLE_EVERY)


def test_a_weave_restart_of_two_seconds_costs_no_answer(world):
    """Recorded (day-two/1c): every task 'Terminated: unexpected EOF', its services dropped,
    the same container taken over after ~16 s, one restart used; ?passing was empty 20 s."""
    expected = world.correct()
    assert expected
    containers = world.task_containers()
    restarts = {a["ID"]: a["TaskStates"][SERVICE]["Restarts"] for a in world.allocations()}
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=sample_passing, args=(world, expected, stop, samples))
    sampler.start()
    try:
        time.sleep(1.0)
        assert world.sh("docker", "stop", "weave").returncode == 0
        time.sleep(2.0)
        assert world.sh("docker", "start", "weave").returncode == 0

        def taken_over():
            allocs = world.allocations()
            return all(a["ClientStatus"] == "running" and a["TaskStates"][SERVICE][
                "Restarts"] == restarts[a["ID"]] + 1 for a in allocs) and allocs

        allocs = wait_for("Nomad taking the tasks over again", taken_over, timeout=60)
        wait_for("the answer after Nomad's re-registration", world.correct, timeout=30)
        time.sleep(2.0)
    finally:
        stop.set()
        sampler.join()
    # the lab did what the real components do
    for alloc in allocs:
        events = [(e["Type"], e["DisplayMessage"]) for e in
                  alloc["TaskStates"][SERVICE]["Events"][-3:]]
        assert events[0] == ("Terminated", 'Exit Code: 0, Exit Message: "unexpected EOF"')
        assert events[1][0] == "Restarting" and events[2][0] == "Started"
    assert world.task_containers() == containers  # taken over, not restarted
    gap = longest_wrong_stretch(samples, SAMPLE_EVERY)
    assert all(ok for _, ok in samples[-10:])
    assert gap < GAP_LIMIT, f"?passing lacked a task for {gap:.1f} s during a Weave restart"


def test_a_foreign_address_on_the_bridge_is_one_clear_line_and_a_counted_problem(world):
    stray = "10.32.1.77/24"
    assert world.sh("ip", "addr", "add", stray, "dev", "weave").returncode == 0
    try:
        before = world.config()
        refused = world.weavenomad("bootstrap")
        assert refused.returncode != 0
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert stray in refused.stderr and "ip addr del" in refused.stderr
        assert "Traceback" not in refused.stderr and world.config() == before
        doctor = json.loads(world.weavenomad("doctor", "--json").stdout)
        exposed = {c["name"]: c for c in doctor["checks"]}["weave-exposed"]
        assert exposed["status"] == "fail" and stray in exposed["detail"]

        def logged():
            text = world.log.read_text()
            return "foreign-bridge-address" in text and stray in text

        wait_for("the reconciler's problem line", logged, timeout=30)
    finally:
        world.sh("ip", "addr", "del", stray, "dev", "weave")


def test_a_reboot_heals_by_itself_once_the_reconciler_runs(world):
    """Recorded (day-two/1a): after a reboot the new bridge has no address while Weave's IPAM
    still owns them; doctor said PASS, bootstrap planned nothing, and nothing was answered
    until 'weave expose' by hand."""
    world.stop_reconciler()
    reboot(world.lab, world.n1.name)
    assert world.sh("ip", "-4", "addr", "show", "dev", "weave").stdout.strip() == ""

    def weave_owned():  # the router comes back by its restart policy, a moment after dockerd
        try:
            return requests.get(world.n1.url("weave_api") + "/ip", timeout=10).json()["owned"]
        except requests.RequestException:
            return None

    owned = wait_for("Weave's API after the reboot", weave_owned, timeout=60)
    assert any(e["containerid"] == "weave:expose" and e["addrs"] for e in owned)
    doctor = json.loads(world.weavenomad("doctor", "--json").stdout)
    exposed = {c["name"]: c for c in doctor["checks"]}["weave-exposed"]
    assert exposed["status"] == "fail" and "as after a reboot" in exposed["detail"], exposed
    planned = world.weavenomad("bootstrap", "--dry-run")
    assert "weave expose net:default net:10.32.1.0/24" in planned.stdout, planned.stdout
    started = world.start_reconciler()
    wait_for("correct answers after the reboot", world.correct, timeout=HEAL_LIMIT)
    took = time.monotonic() - started
    print(f"reboot: correct answers {took:.1f} s after the reconciler's start")
    again = world.weavenomad("bootstrap")  # the guards went with the reboot's iptables
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_job_blocked_while_the_driver_was_unhealthy_is_placed_after_bootstrap(world):
    """Recorded (day-two/1b): a job registered while Nomad's Docker driver (on the proxy
    socket) is unhealthy stays blocked on "missing drivers" after the driver is healthy."""
    assert world.sh("docker", "stop", "weave").returncode == 0
    wait_for("the Docker driver unhealthy", lambda: not driver(world.n1)["Healthy"],
             timeout=60)
    job = nomad(world.n1, "POST", "/v1/jobs/parse", json={
        "JobHCL": (JOBS / "httpbackend.nomad").read_text().replace(
            'job "httpbackend"', 'job "blocked"'), "Canonicalize": True})
    job["TaskGroups"][0]["Count"] = 1
    del job["TaskGroups"][0]["Tasks"][0]["Config"]["network_mode"]  # the seed's "weave" net
    nomad(world.n1, "POST", "/v1/jobs", json={"Job": job})
    try:
        evaluations = nomad(world.n1, "GET", "/v1/job/blocked/evaluations")
        assert any(e["Status"] == "blocked" for e in evaluations)
        done = world.weavenomad("bootstrap")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "re-evaluated 1 job(s) with a blocked evaluation: blocked" in done.stdout
        wait_for("the blocked job placed", lambda: [
            a for a in nomad(world.n1, "GET", "/v1/job/blocked/allocations")
            if a["ClientStatus"] == "running"], timeout=60)
        assert not [e for e in nomad(world.n1, "GET", "/v1/job/blocked/evaluations")
                    if e["Status"] == "blocked"]
    finally:
        nomad(world.n1, "DELETE", "/v1/job/blocked?purge=true")


def weave_containers(world) -> list[str]:
    return sorted(c.name for c in docker_client(world.n1).containers.list(
        all=True, sparse=True, filters={"name": "weave"}))


def test_reset_completes_with_weave_stopped(world):
    """Recorded (day-two/1b-04): 'weave reset' refuses while the router container is stopped;
    reset used to roll back, pointing Nomad at the dead proxy socket."""
    nomad(world.n1, "DELETE", f"/v1/job/{SERVICE}?purge=true")
    wait_for("the tasks gone", lambda: not world.task_containers(), timeout=60)
    assert world.sh("docker", "stop", "weave").returncode == 0
    refused = world.sh("weave", "reset")
    assert (refused.returncode, refused.stderr) == (1, (
        "ERROR: weave is not running; unable to remove from cluster.\n"
        "Re-launch weave before reset or use --force to override.\n"))
    done = world.weavenomad("reset")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "weave reset --force" in done.stdout and "Weave was not running" in done.stdout
    assert weave_containers(world) == []
    assert world.sh("ip", "link", "show", "weave").returncode != 0
    assert world.config() == world.original_config
    wait_for("Nomad's driver healthy on Docker's socket", lambda: driver(world.n1)["Healthy"])


def test_a_failed_launch_leaves_nothing_of_weave_and_says_what_it_removed(world):
    """Recorded (day-two/1d): a router that dies at launch leaves weavedb, weavevolumes, an
    exited restart=always weave container, the bridge and a stale weave.sock."""
    failed = world.weavenomad("bootstrap", env={
        "WEAVENOMAD_LAB_WEAVE_FATAL": "Could not start proxy: injected by the test"})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    message = failed.stderr
    assert "The weave container has died" in message
    for part in ("container weave (exited (1))", "container weavedb (created)",
                 "container weavevolumes-2.8.1 (created)", "the weave bridge",
                 f"the stale socket {world.n1.weave_sock}",
                 "the router's last log line: FATA: ", "injected by the test"):
        assert part in message, message
    assert weave_containers(world) == []
    assert world.sh("ip", "link", "show", "weave").returncode != 0
    assert not world.n1.weave_sock.exists()
    assert world.config() == world.original_config

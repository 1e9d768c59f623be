"""Issue 15, "tenants end safely", on a 2-node lab of its own with a reconciler per node:

* a job submitted around ``weavenomad run`` (no tenant meta) whose ``WEAVE_CIDR`` puts a task
  into a tenant's subnet is a violation: masked, no twin, logged, counted and shown by
  ``status`` (before, only jobs carrying the tenant meta were audited, and it was advertised);
* ``tenant delete --force`` quarantines the subnet while the deleted tenant's tasks run: the
  next ``tenant create`` gets another subnet, ``--cidr`` asking for it is refused in one line,
  ``tenant list`` and ``status`` show it, and once the tasks are gone the subnet is free again
  (before, the next tenant got the same subnet next to the old tenant's running tasks);
* ``run`` and ``plan`` refuse to move a registered job to another tenant without
  ``--move-tenant``; with it, every task of the job ends in the new tenant's subnet and no twin
  advertises an old-tenant address (before, the job moved without a word).
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import lab_name, lab_state_dir, running_lab
from labtools import (
    consul,
    ethwe_address,
    node_cli_env,
    nomad,
    task_containers,
    wait_for,
    weave_overlay,
)

pytestmark = pytest.mark.lab

JOBS = Path(__file__).resolve().parents[2] / "jobs"
KV_PREFIX = "test-endings"
SYNC = 2.0
SERVICE = "httpbackend"
RANGE = ("--ipalloc-range", "10.32.0.0/16", "--default-subnet", "10.32.0.0/24")


def weavenomad(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weavenomad", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemons:
    """``weavenomad reconciler run`` on every node, each serving its metrics."""

    def __init__(self, lab, log_dir: Path):
        self.lab, self.log_dir = lab, log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.metrics_ports = {node.name: free_port() for node in lab.nodes}

    def start_all(self) -> None:
        for node in self.lab.nodes:
            env = node_cli_env(self.lab, node, WEAVENOMAD_KV_PREFIX=KV_PREFIX)
            with open(self.log_dir / f"reconciler-{node.name}.log", "a") as log:
                self.procs[node.name] = subprocess.Popen(
                    [sys.executable, "-m", "weavenomad", "reconciler", "run", "--resync", "20",
                     "--log-format", "json", "--metrics-addr",
                     f"127.0.0.1:{self.metrics_ports[node.name]}"],
                    env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        self.procs.clear()

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for path in sorted(self.log_dir.glob("reconciler-*.log"))
                for line in path.read_text().splitlines() if line.startswith("{")]

    def metric(self, name: str) -> float:
        """The sum over the nodes of every sample of metric ``name``."""
        total = 0.0
        for port in self.metrics_ports.values():
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if re.match(rf"{name}(\{{| )", line))
        return total


@pytest.fixture(scope="module")
def own_lab():
    state_dir = lab_state_dir("-end")
    with running_lab(state_dir, lab_name("e"), 2, "the tenant endings' lab") as layout:
        yield layout


class World:
    def __init__(self, lab, env: dict, daemons: Daemons):
        self.lab, self.env, self.daemons = lab, env, daemons
        self.n1 = lab.nodes[0]
        self.subnets: dict[str, ipaddress.IPv4Network] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return weavenomad(self.env, *args)

    def create_tenant(self, name: str, *extra: str) -> ipaddress.IPv4Network:
        created = self.cli("tenant", "create", name, *RANGE, *extra, "--json")
        assert created.returncode == 0, created.stderr
        self.subnets[name] = ipaddress.ip_network(json.loads(created.stdout)["subnet"])
        return self.subnets[name]

    def plain_job(self, job_id: str, env: dict, meta: dict | None = None,
                  count: int = 1) -> dict:
        """The example job as ``nomad job run`` would submit it, around ``weavenomad run``."""
        job = nomad(self.n1, "POST", "/v1/jobs/parse", json={
            "JobHCL": (JOBS / "httpbackend-another-subnet.nomad").read_text().replace(
                'job "httpbackend"', f'job "{job_id}"'), "Canonicalize": True})
        group = job["TaskGroups"][0]
        group.update(Count=count, Update=None)
        group["Tasks"][0]["Env"] = env
        group["Tasks"][0]["Resources"].update(CPU=20, MemoryMB=16)
        job["Meta"] = meta
        return job

    def job_file(self, directory: Path, job_id: str, count: int = 2) -> Path:
        path = directory / f"{job_id}.nomad"
        path.write_text((JOBS / "httpbackend.nomad").read_text()
                        .replace('job "httpbackend"', f'job "{job_id}"')
                        .replace("count = 2", f"count = {count}"))
        return path

    def running(self, job_id: str) -> set[str]:
        return {a["ID"] for a in nomad(self.n1, "GET", f"/v1/job/{job_id}/allocations")
                if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"}

    def addresses(self, job_id: str) -> list[ipaddress.IPv4Interface]:
        return [ethwe_address(c) for c in task_containers(self.lab, job_id)
                if c.status == "running"]

    def twins(self) -> dict[str, dict]:
        return {sid: s for node in self.lab.nodes
                for sid, s in consul(node, "GET", "/v1/agent/services").items()
                if sid.startswith("weavenomad-")}

    def purge(self, *job_ids: str) -> None:
        for job_id in job_ids:
            requests.delete(f"{self.n1.url('nomad')}/v1/job/{job_id}?purge=true", timeout=30)
        wait_for("the jobs' containers to go", lambda: not any(
            task_containers(self.lab, job_id) for job_id in job_ids), timeout=90)


@pytest.fixture(scope="module")
def world(own_lab, tmp_path_factory):
    lab = own_lab
    weave_overlay(lab, sync=SYNC)
    env = node_cli_env(lab, lab.nodes[0], WEAVENOMAD_KV_PREFIX=KV_PREFIX)
    daemons = Daemons(lab, tmp_path_factory.mktemp("reconcilers"))
    found = World(lab, env, daemons)
    for tenant in ("acme", "globex"):
        found.create_tenant(tenant)
    daemons.start_all()
    try:
        yield found
    finally:
        daemons.stop_all()


def status_rows(world: World) -> tuple[int, list[dict]]:
    shown = world.cli("status", "--json")
    assert shown.returncode in (0, 2), shown.stderr
    return shown.returncode, json.loads(shown.stdout)


def test_a_job_around_run_with_an_address_in_a_tenants_subnet_is_a_violation(world):
    globex, acme = world.subnets["globex"], world.subnets["acme"]
    # no tenant meta at all, WEAVE_CIDR in globex's subnet: nomad job run, as the README's
    # "bypass" describes it; and a job of acme's that also asks for an address of globex's
    nomad(world.n1, "POST", "/v1/jobs", json={"Job": world.plain_job(
        "bypass", {"WEAVE_CIDR": f"net:{globex}"})})
    nomad(world.n1, "POST", "/v1/jobs", json={"Job": world.plain_job(
        "straddle", {"WEAVE_CIDR": f"net:{acme} net:{globex}"},
        meta={"weavenomad.tenant": "acme", "weavenomad.subnet": str(acme)})})
    try:
        allocs = {job: wait_for(f"{job} running", lambda job=job: world.running(job))
                  for job in ("bypass", "straddle")}
        sids = {job: f"_nomad-task-{next(iter(ids))}-httpbackend-httpbackend-8081"
                for job, ids in allocs.items()}

        def masked():
            checks = {cid: c for node in world.lab.nodes
                      for cid, c in consul(node, "GET", "/v1/agent/checks").items()}
            found = {job: checks.get("weavenomad-mask-" + sid.removeprefix("_nomad-task-"))
                     for job, sid in sids.items()}
            return found if all(found.values()) else None

        masks = wait_for("both masks", masked, timeout=20)
        for job, mask in masks.items():
            assert mask["ServiceID"] == sids[job] and "tenant violation" in mask["Notes"], mask
        assert f"tenant globex's subnet {globex}" in masks["bypass"]["Notes"]
        time.sleep(2 * SYNC)  # passes enough to have registered a twin, had one been wanted
        twins = world.twins()
        for sid in sids.values():
            assert "weavenomad-" + sid.removeprefix("_nomad-task-") not in twins, twins
        passing = consul(world.n1, "GET", f"/v1/health/service/{SERVICE}?passing")
        assert not [e for e in passing if any(a in e["Service"]["ID"] for ids in allocs.values()
                                                for a in ids)], passing

        # logged once each, counted, and shown by status
        logged = {line["service_id"]: line for line in world.daemons.log_lines()
                  if line.get("reason") == "tenant-violation"}
        assert set(logged) == set(sids.values()), logged
        assert "tenant globex's subnet" in logged[sids["bypass"]]["message"]
        assert world.daemons.metric("weavenomad_reconciler_tenant_violations_total") == 2
        code, rows = status_rows(world)
        states = {row["job"]: row["state"] for row in rows}
        assert states == {"bypass": "tenant violation", "straddle": "tenant violation"}, rows
        assert code == 2
    finally:
        world.purge("bypass", "straddle")


def test_a_force_deleted_tenants_subnet_is_quarantined_while_its_tasks_run(world, tmp_path):
    old = world.create_tenant("initech")
    started = world.cli("run", str(world.job_file(tmp_path, "old")), "--tenant", "initech")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert all(a.ip in old for a in wait_for(
            "old's two tasks", lambda: len(world.addresses("old")) == 2 and world.addresses(
                "old")))
        refused = world.cli("tenant", "delete", "initech")
        assert refused.returncode == 1 and "--force" in refused.stderr, refused.stderr

        forced = world.cli("tenant", "delete", "initech", "--force")
        assert forced.returncode == 0, forced.stderr
        # the next tenant gets another subnet: never one that the deleted tenant's tasks hold
        fresh = world.create_tenant("hooli")
        assert not fresh.overlaps(old), (fresh, old)
        assert forced.stdout.startswith(f"deleted tenant initech ({old}); {old} stays "
                                        "quarantined: 2 allocation(s) of job old still hold "
                                        "addresses in it"), forced.stdout
        asked = world.cli("tenant", "create", "hooli-two", "--cidr", str(old))
        assert asked.returncode == 1, asked.stdout + asked.stderr
        (line,) = asked.stderr.splitlines()
        assert line.startswith(f"weavenomad: error: subnet {old} is quarantined"), line
        assert "tenant 'initech'" in line and "job old" in line, line
        listed = world.cli("tenant", "list")
        assert f"{old}  quarantined: tenant initech, deleted" in listed.stdout, listed.stdout
        assert [t["name"] for t in json.loads(world.cli("tenant", "list", "--json").stdout)] \
            == ["acme", "globex", "hooli"]
        code, rows = status_rows(world)
        old_rows = [row for row in rows if row["job"] == "old"]
        assert len(old_rows) == 2 and {r["state"] for r in old_rows} == {"tenant deleted"}
        assert {r["subnet"] for r in old_rows} == {str(old)} and code == 2

        # the new tenant's tasks run in their own subnet; nobody shares the old one
        fresh_run = world.cli("run", str(world.job_file(tmp_path, "fresh")), "--tenant", "hooli")
        assert fresh_run.returncode == 0, fresh_run.stdout + fresh_run.stderr
        wait_for("fresh's two tasks", lambda: len(world.addresses("fresh")) == 2)
        assert all(a.ip in fresh for a in world.addresses("fresh"))

        # once the old tasks are gone, the subnet is free again
        world.purge("old")
        again = world.cli("tenant", "create", "hooli-two", "--cidr", str(old), "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["subnet"] == str(old)
        assert "quarantined" not in world.cli("tenant", "list").stdout
    finally:
        world.purge("old", "fresh")


def test_run_moves_a_job_to_another_tenant_only_when_asked(world, tmp_path):
    acme, globex = world.subnets["acme"], world.subnets["globex"]
    path = world.job_file(tmp_path, "mover")
    first = world.cli("run", str(path), "--tenant", "acme")
    assert first.returncode == 0, first.stdout + first.stderr
    try:
        before = world.addresses("mover")
        assert len(before) == 2 and all(a.ip in acme for a in before)
        index = nomad(world.n1, "GET", "/v1/job/mover")["JobModifyIndex"]

        refused = world.cli("run", str(path), "--tenant", "globex")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        (line,) = refused.stderr.splitlines()
        assert line.startswith("weavenomad: error: job 'mover' is registered in tenant acme "
                               f"({acme}), not globex ({globex})"), line
        assert "--move-tenant" in line
        planned = world.cli("plan", str(path), "--tenant", "globex")
        assert planned.returncode == 255 and planned.stderr.splitlines() == [line], \
            planned.stdout + planned.stderr
        job = nomad(world.n1, "GET", "/v1/job/mover")
        assert job["JobModifyIndex"] == index and job["Meta"]["weavenomad.tenant"] == "acme"

        shown = world.cli("plan", str(path), "--tenant", "globex", "--move-tenant")
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert ('+/- Task Group: "httpbackend" (2 create/destroy update)'
                in shown.stdout.splitlines()), shown.stdout
        moved = world.cli("run", str(path), "--tenant", "globex", "--move-tenant")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "moved job mover from tenant acme" in moved.stdout, moved.stdout
        wait_for("mover's tasks in globex", lambda: (lambda found: len(found) == 2 and all(
            a.ip in globex for a in found))(world.addresses("mover")), timeout=60)

        def advertised_in_globex():
            answer = consul(world.n1, "GET", f"/v1/health/service/{SERVICE}?passing")
            found = [ipaddress.ip_address(e["Service"]["Address"]) for e in answer]
            return len(found) == 2 and all(a in globex for a in found)

        wait_for("Consul to answer globex's addresses only", advertised_in_globex, timeout=30)
        assert not [s for s in world.twins().values()
                    if ipaddress.ip_address(s["Address"]) in acme]
    finally:
        world.purge("mover")

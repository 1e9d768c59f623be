"""Issue 8, part 1: the reconciler under faults, on a lab of the suite's own (2 nodes).

One ``weavenomad reconciler run`` per node, whose Consul and Nomad are reached through fault
proxies (``faultproxy``). Faults, in order: SIGKILL of the reconcilers at random points
(seeded; ``WEAVENOMAD_FAULT_SEED`` replays a run) while 100 allocations churn; restarts of the
Consul agents (losing their state), the Nomad agents (API away meanwhile), a node's dockerd,
the Weave emulator, and ``weave reset``/``launch`` on a node (new addresses); a Consul that
answers slowly, then with 500s, for a while. The job changes during most faults, so the
reconcilers have work waiting at the recovery.

After each: converged (``faultlab.problems``) within ``BOUND`` of the recovery, no write by a
reconciler to anything it does not own, and Nomad's own services and checks as Nomad left
them. What the lab does on the restarts is what Nomad 1.0 and Docker 20.10 do: dockerd stops
its containers (no live-restore), and Nomad, whose waits on its containers go through Docker
(or Weave's proxy, its endpoint here), restarts the tasks by its restart policy (1 s here).
The times are printed as a table at the end of the session (``conftest``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from labtools import (
    WEAVE_PROXY_CONFIG,
    consul,
    driver,
    launch_weave,
    node_cli_env,
    nomad,
    set_endpoint,
    wait_for,
    weave,
)
from weavenomad_lab import dockerd
from weavenomad_lab.consul.component import COMPONENT as CONSUL
from weavenomad_lab.nomad import control
from weavenomad_lab.weave.daemon import COMPONENT as WEAVE

from .faultlab import (
    FIGURES,
    JOB,
    JOBS,
    KV_PREFIX,
    NOTES,
    SYNC,
    TENANT,
    Figure,
    Reconcilers,
    changed_nomad_objects,
    converge,
    nomad_objects,
    running_allocs,
    task_containers,
)
from .faultproxy import DOWN, ERROR, PASS, SLOW

#: allocations while the restarts happen (the simulated Nomad keeps each node's container
#: removals apart: many at once can deadlock Docker 20.10, see lab/weavenomad_lab/nomad/dockergate)
BASE = 10
CHURN = (100, 30, 50, BASE)
SEED = int(os.environ.get("WEAVENOMAD_FAULT_SEED") or time.time_ns() % 1_000_000)


class World:
    def __init__(self, lab, daemons: Reconcilers, subnet: ipaddress.IPv4Network):
        self.lab, self.daemons, self.subnet = lab, daemons, subnet
        self.n1 = lab.nodes[0]
        self.count = 0

    def job(self, count: int) -> dict:
        job = nomad(self.n1, "POST", "/v1/jobs/parse", json={
            "JobHCL": (JOBS / "httpbackend-another-subnet.nomad").read_text().replace(
                'job "httpbackend"', f'job "{JOB}"'), "Canonicalize": True})
        job["Meta"] = {"weavenomad.tenant": TENANT, "weavenomad.subnet": str(self.subnet)}
        group = job["TaskGroups"][0]
        group.update(Count=count, Update=None)
        task = group["Tasks"][0]
        # an operator's choice for quick recovery: restart a task 1 s after it died (the
        # canonical job carries the group's policy in each task too)
        group["RestartPolicy"] = task["RestartPolicy"] = {
            "Attempts": 30, "Interval": 300 * 10**9, "Delay": 10**9, "Mode": "delay"}
        task["Resources"].update(CPU=20, MemoryMB=16)
        task["Env"] = {"WEAVE_CIDR": f"net:{self.subnet}"}
        return job

    def scale(self, count: int) -> None:
        nomad(self.n1, "POST", "/v1/jobs", json={"Job": self.job(count)})
        self.count = count

    def settled(self) -> bool:
        return (len(running_allocs(self.lab)) == self.count
                and task_containers(self.lab) == self.count)

    def wait_settled(self, timeout: float = 180) -> float:
        wait_for(f"{self.count} running allocations and containers", self.settled,
                 timeout=timeout, every=0.25)
        return time.monotonic()

    def measure(self, kind: str, injected: int, recovered: float, before: dict | None = None,
                ignore: tuple[str, ...] = ()) -> float:
        try:
            result = converge(self.lab, recovered, self.count)
        except BaseException:
            FIGURES.append(Figure(kind, injected, None))
            print(self.daemons.log_tail())
            raise
        FIGURES.append(Figure(kind, injected, result.seconds, result.after_nomad))
        assert self.daemons.writes_seen(), "the proxies saw no write: the audit is blind"
        assert not self.daemons.foreign_writes(), self.daemons.foreign_writes()[:5]
        if before is not None:
            changed = changed_nomad_objects(before, nomad_objects(self.lab), ignore)
            assert not changed, changed[:3]
        return result.seconds


@pytest.fixture(scope="module")
def world(fault_lab, tmp_path_factory):
    lab = fault_lab
    launch_weave(lab)
    for node in lab.nodes:
        set_endpoint(lab, node, WEAVE_PROXY_CONFIG)
        wait_for(f"{node.name}'s docker driver", lambda node=node: driver(node)["Healthy"])
    control.set_sync_timing(lab, interval=SYNC, probation=0)
    env = node_cli_env(lab, lab.nodes[0], WEAVENOMAD_KV_PREFIX=KV_PREFIX)
    created = subprocess.run(
        [sys.executable, "-m", "weavenomad", "tenant", "create", TENANT, "--ipalloc-range",
         "10.32.0.0/16", "--default-subnet", "10.32.0.0/24", "--json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    subnet = ipaddress.ip_network(json.loads(created.stdout)["subnet"])
    daemons = Reconcilers(lab, tmp_path_factory.mktemp("reconcilers"))
    daemons.start_all()
    try:
        yield World(lab, daemons, subnet)
    finally:
        daemons.close()
        try:
            nomad(lab.nodes[0], "DELETE", f"/v1/job/{JOB}?purge=true")
        except Exception:  # noqa: BLE001 - the lab goes anyway
            pass


def test_sigkill_at_random_points_while_100_allocations_churn(world):
    rng = random.Random(SEED)
    NOTES.append(f"SIGKILL points seeded with {SEED} (WEAVENOMAD_FAULT_SEED={SEED} "
                 "replays them)")
    names = [n.name for n in world.lab.nodes]
    for phase, count in enumerate(CHURN):
        start = task_containers(world.lab)
        before = nomad_objects(world.lab)
        # Some phases run with reconcilers dead from before the change to its end: their
        # restart meets a changed world (orphans to remove, twins to add) and the time from
        # the restart is measured. In the others they are killed at random points of the
        # change and restarted 0-2 s later; the change outlasts them.
        dead_through = phase == 1 or (phase > 1 and rng.random() < 0.5)
        injected, back = 0, time.monotonic()
        if dead_through:
            victims = rng.choice((names[:1], names[1:], names))
            world.daemons.kill(victims, signal.SIGKILL)
            injected += len(victims)
        world.scale(count)
        points = [] if dead_through else sorted(rng.uniform(0.05, 0.95)
                                                for _ in range(rng.choice((1, 2))))
        for point in points:
            target = start + (count - start) * point

            def reached(target=target, rising=count > start):
                now = task_containers(world.lab)
                return now >= target if rising else now <= target

            wait_for(f"{point:.0%} of the change to {count}", reached, timeout=180, every=0.1)
            victims = rng.choice((names[:1], names[1:], names))
            world.daemons.kill(victims, signal.SIGKILL)
            injected += len(victims)
            threading.Event().wait(rng.uniform(0.0, 2.0))
            for name in victims:
                world.daemons.start(name)
            back = time.monotonic()
        settled = world.wait_settled()
        if dead_through:
            for name in victims:
                world.daemons.start(name)
            back = time.monotonic()
        kind = "SIGKILL, dead to the end" if dead_through else "SIGKILL during churn"
        world.measure(kind, injected, max(back, settled), before)


def test_consul_agents_restart_losing_their_state(world):
    n1 = world.n1
    registry = consul(n1, "GET", f"/v1/kv/{KV_PREFIX}?recurse")
    before = nomad_objects(world.lab)
    CONSUL.down(world.lab)
    world.scale(BASE + 4)  # Nomad places and starts tasks while Consul is away
    world.wait_settled()
    CONSUL.up(world.lab)
    recovered = time.monotonic()
    for entry in registry:  # the servers keep the KV store; the simulator forgets it
        consul(n1, "PUT", f"/v1/kv/{entry['Key']}", data=base64.b64decode(entry["Value"] or ""))
    world.measure("Consul restart", 1, recovered, before)


def test_nomad_agents_restart(world):
    before = nomad_objects(world.lab)
    for node in world.lab.nodes:  # the agent's API is away while it restarts
        world.daemons.nomad[node.name].set_mode(DOWN)
        control.restart_agent(world.lab, node.name)
    world.scale(BASE)  # the servers carry on meanwhile: allocations stop
    world.wait_settled()
    for node in world.lab.nodes:
        world.daemons.nomad[node.name].set_mode(PASS)
    recovered = time.monotonic()
    world.measure("Nomad restart", len(world.lab.nodes), recovered, before)


def test_a_nodes_dockerd_restarts(world):
    node = world.lab.nodes[1]
    before = nomad_objects(world.lab)
    dockerd.stop_dockerd(dockerd.daemon(world.lab, node))
    dockerd.start_node(world.lab, node)
    recovered = time.monotonic()
    # the containers stopped with their dockerd; Nomad restarts its tasks in new ones, which
    # Weave attaches; Nomad's own services now carry the new containers' bridge addresses
    world.measure("dockerd restart", 1, recovered, before, ignore=("Address",))


def test_the_weave_emulator_restarts(world):
    before = nomad_objects(world.lab)
    WEAVE.daemon(world.lab).stop()
    WEAVE.up(world.lab)  # relaunches every node from its saved state and IPAM
    recovered = time.monotonic()
    # Nomad's waits on its containers went through Weave's proxy: it restarts its tasks
    world.measure("Weave restart", 1, recovered, before, ignore=("Address",))


def test_weave_reset_and_launch_moves_the_containers(world):
    lab, node = world.lab, world.lab.nodes[0]
    before = nomad_objects(lab)
    weave(lab, node, "reset")  # the node's IPAM goes: re-attached containers get new addresses
    peers = [n.host_ip for n in lab.nodes if n is not node]
    weave(lab, node, "launch", "--no-dns", "--ipalloc-range", "10.32.0.0/16",
          "--ipalloc-default-subnet", "10.32.0.0/24", "--no-default-ipalloc", *peers)
    recovered = time.monotonic()
    world.measure("weave reset+launch", 1, recovered, before, ignore=("Address",))


@pytest.mark.parametrize("mode,kind,count", [(SLOW, "Consul slow (2 s)", BASE + 4),
                                             (ERROR, "Consul 500s", BASE)])
def test_consul_misbehaves_for_a_while(world, mode, kind, count):
    before = nomad_objects(world.lab)
    for proxy in world.daemons.consul.values():
        proxy.set_mode(mode, delay=2.0)
    world.scale(count)  # allocations stop or start meanwhile
    world.wait_settled()
    threading.Event().wait(3.0)
    for proxy in world.daemons.consul.values():
        proxy.set_mode(PASS)
    recovered = time.monotonic()
    world.measure(kind, 1, recovered, before)

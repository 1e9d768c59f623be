"""Issue 5's Done-when on the lab: two tenants run the httpbackend job (count 2 each) and Consul
answers exactly their four Weave addresses with the container port, through Nomad's syncs;
stopping the jobs leaves nothing of the reconciler's; a reconciler killed with SIGKILL while 50
allocations churn, and a Consul agent restarted mid-way, still end converged with no duplicate
and no orphan. The reconcilers run as ``weavenomad reconciler run`` processes, one per node."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import lab_name, lab_state_dir, running_lab
from labtools import (
    NOMAD_ALLOC_LABEL,
    WEAVE_PROXY_CONFIG,
    consul,
    docker_client,
    driver,
    ethwe_address,
    in_node_command,
    launch_weave,
    node_cli_env,
    nomad,
    set_endpoint,
    task_containers,
    wait_for,
    weavenomad_on,
)
from weavenomad_lab.consul.component import COMPONENT as CONSUL
from weavenomad_lab.nomad import control

pytestmark = pytest.mark.lab

JOBS = Path(__file__).resolve().parents[2] / "jobs"
KV_PREFIX = "test-reconciler"
SYNC = 2.0
#: the meta key of a held service's public name (weavenomad.tenancy.contract.META_SERVICE)
HELD = "weavenomad-service"
SERVICE = "httpbackend"
PORT = 8081


def weavenomad(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weavenomad", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


class Reconcilers:
    """One ``weavenomad reconciler run`` process per lab node, inside the node (as on a real
    host, it sees the node's own weave bridge)."""

    def __init__(self, lab, log_dir: Path):
        self.lab = lab
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, node) -> None:
        argv, env = in_node_command(self.lab, node, sys.executable, "-m", "weavenomad",
                                    "reconciler", "run", "--resync", "20", "--log-format",
                                    "json", env={"WEAVENOMAD_KV_PREFIX": KV_PREFIX})
        log = open(self.log_dir / f"reconciler-{node.name}.log", "a")  # noqa: SIM115
        self.procs[node.name] = subprocess.Popen(argv, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for node in self.lab.nodes:
            self.start(node)

    def kill(self, sig: int = signal.SIGKILL) -> dict[str, int]:
        codes = {}
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.send_signal(sig)
            codes[name] = proc.wait(timeout=15)
            del self.procs[name]
        return codes

    def log_lines(self) -> list[dict]:
        lines = []
        for path in self.log_dir.glob("reconciler-*.log"):
            for line in path.read_text().splitlines():
                if line.startswith("{"):
                    lines.append(json.loads(line))
        return lines


@pytest.fixture(scope="module")
def own_lab():
    """A lab of this module's own: the tests restart its Consul and churn its dockerds."""
    state_dir = lab_state_dir("-rec")
    with running_lab(state_dir, lab_name("r"), 2, "the reconciler's lab") as layout:
        yield layout


@pytest.fixture(scope="module")
def overlay(own_lab, tmp_path_factory):
    """Weave on every node, Nomad through its proxy with a short Consul sync, two tenants, and
    reconcilers (which expose every node on the tenants' subnets, so Consul's checks reach the
    containers)."""
    lab = own_lab
    launch_weave(lab)
    for node in lab.nodes:
        set_endpoint(lab, node, WEAVE_PROXY_CONFIG)
        wait_for(f"{node.name}'s docker driver", lambda node=node: driver(node)["Healthy"])
    control.set_sync_timing(lab, interval=SYNC, probation=0)
    env = node_cli_env(lab, lab.nodes[0], WEAVENOMAD_KV_PREFIX=KV_PREFIX)
    subnets = {}
    for tenant in ("acme", "globex"):
        created = weavenomad(env, "tenant", "create", tenant, "--ipalloc-range", "10.32.0.0/16",
                             "--default-subnet", "10.32.0.0/24", "--json")
        assert created.returncode == 0, created.stderr
        subnets[tenant] = ipaddress.ip_network(json.loads(created.stdout)["subnet"])
    daemons = Reconcilers(lab, tmp_path_factory.mktemp("reconcilers"))
    daemons.start_all()
    try:
        yield lab, env, subnets, daemons
    finally:
        daemons.kill(signal.SIGTERM)


def containers_left(lab) -> int:
    """Nomad's task containers on all nodes (a sparse list: no race with their removal)."""
    return sum(len(docker_client(node).containers.list(
        all=True, sparse=True, filters={"label": NOMAD_ALLOC_LABEL})) for node in lab.nodes)


def weave_addresses(lab) -> dict[str, set[str]]:
    """Each allocation's Weave addresses, from the node's Docker and Weave's own ``GET /ip``."""
    found: dict[str, set[str]] = {}
    for node in lab.nodes:
        owned = {e["containerid"]: e["addrs"] for e in requests.get(
            node.url("weave_api") + "/ip", timeout=10).json()["owned"]}
        for container in docker_client(node).containers.list(
                sparse=True, filters={"label": NOMAD_ALLOC_LABEL}):
            alloc_id = container.attrs["Labels"][NOMAD_ALLOC_LABEL]
            found[alloc_id] = {a.split("/")[0] for a in owned.get(container.id) or []}
    return found


def passing(node) -> list[tuple[str, str, int]]:
    entries = consul(node, "GET", f"/v1/health/service/{SERVICE}?passing")
    return sorted((e["Service"]["ID"], e["Service"]["Address"], e["Service"]["Port"])
                  for e in entries)


def node_state(node) -> dict:
    return {"services": consul(node, "GET", "/v1/agent/services"),
            "checks": consul(node, "GET", "/v1/agent/checks")}


def problems(lab, running_alloc_ids: set[str]) -> list[str]:
    """Everything that keeps the nodes from being converged: Nomad registered every running
    allocation's service, each has exactly its twin (with its container's Weave address) and
    mask, nothing of ours is left over, and no two twins share an address."""
    found, addresses, registered = [], {}, 0
    truth = weave_addresses(lab)
    for node in lab.nodes:
        state = node_state(node)
        nomads = {sid for sid, s in state["services"].items()
                  if sid.startswith("_nomad-task-")
                  and SERVICE in (s["Service"], (s["Meta"] or {}).get(HELD))
                  and sid[12:48] in running_alloc_ids}
        # a service weavenomad run held under a private name has no mask: nobody asks for it
        masked = {sid for sid in nomads if not (state["services"][sid]["Meta"] or {}).get(HELD)}
        registered += len(nomads)
        wanted = {"weavenomad-" + sid[12:] for sid in nomads}
        twins = {sid: s for sid, s in state["services"].items() if sid.startswith("weavenomad-")}
        masks = {cid: c for cid, c in state["checks"].items()
                 if cid.startswith("weavenomad-mask-")}
        if set(twins) != wanted:
            missing, extra = sorted(wanted - set(twins)), sorted(set(twins) - wanted)
            found.append(f"{node.name}: twins {len(twins)}, wanted {len(wanted)}: missing "
                         f"{missing[:2]} extra {extra[:2]}")
        if {c["ServiceID"] for c in masks.values()} != masked or len(masks) != len(masked):
            found.append(f"{node.name}: {len(masks)} masks for {len(masked)} masked Nomad "
                         "services")
        for sid, service in twins.items():
            if service["Port"] != PORT:
                found.append(f"{sid}: port {service['Port']}")
            if service["Address"] not in truth.get(sid[11:47], ()):
                found.append(f"{sid}: {service['Address']} is not its container's Weave address")
            if service["Address"] in addresses:
                found.append(f"{sid}: duplicate address {service['Address']}")
            addresses[service["Address"]] = sid
    if registered != len(running_alloc_ids):  # e.g. Nomad has not re-registered after a restart
        found.append(f"Nomad registered {registered} of {len(running_alloc_ids)} services")
    return found


def running_allocs(node, job_id: str) -> set[str]:
    return {a["ID"] for a in nomad(node, "GET", f"/v1/job/{job_id}/allocations")
            if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"}


def test_done_when_consul_answers_the_weave_addresses(overlay, tmp_path):
    lab, env, subnets, daemons = overlay
    n1 = lab.nodes[0]
    seed = (JOBS / "httpbackend.nomad").read_text()
    globex_job = tmp_path / "httpbackend-globex.nomad"
    globex_job.write_text(seed.replace('job "httpbackend"', 'job "httpbackend-globex"'))
    runs = [subprocess.Popen([sys.executable, "-m", "weavenomad", "run", str(path), "--tenant",
                              tenant], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
            for path, tenant in ((JOBS / "httpbackend.nomad", "acme"), (globex_job, "globex"))]
    for run in runs:
        output, _ = run.communicate(timeout=180)
        assert run.returncode == 0 and "successful" in output.splitlines()[-1], output
    containers = task_containers(lab)
    assert len(containers) == 4
    expected = sorted((str(ethwe_address(c).ip), PORT) for c in containers)
    for address, _ in expected:
        assert any(ipaddress.ip_address(address) in s for s in subnets.values())

    def weave_answer():
        answer = passing(n1)
        return answer if sorted((a, p) for _, a, p in answer) == expected else None

    # (the 2 s of the Done-when is measured by benchmarks/reconciler.py; here it only has to
    # happen, with room for a loaded CI machine)
    answer = wait_for("exactly the four Weave addresses", weave_answer, timeout=10, every=0.05)
    assert all(sid.startswith("weavenomad-") for sid, _, _ in answer)
    # Nomad's periodic sync does not undo it
    time.sleep(3 * SYNC + 0.5)
    assert sorted((a, p) for _, a, p in passing(n1)) == expected
    # the catalog lists the twins alone under the public name: weavenomad run held Nomad's own
    # instances under the private name, which nobody asks for
    catalog = consul(n1, "GET", f"/v1/catalog/service/{SERVICE}")
    assert sorted((e["ServiceAddress"], e["ServicePort"]) for e in catalog) == expected
    assert all(e["ServiceID"].startswith("weavenomad-") for e in catalog), catalog
    held = consul(n1, "GET", f"/v1/catalog/service/weavenomad-hidden-{SERVICE}")
    assert len(held) == 4 and all(e["ServiceID"].startswith("_nomad-task-") for e in held)
    shown = weavenomad(env, "status")
    assert shown.returncode == 0 and "4 of 4 advertised correctly" in shown.stdout, shown.stdout
    # next to the daemon, on the node: nothing to do
    once = weavenomad_on(lab, n1, "reconciler", "run", "--once",
                         env={"WEAVENOMAD_KV_PREFIX": KV_PREFIX})
    assert once.returncode == 0, once.stderr

    for job in ("httpbackend", "httpbackend-globex"):
        nomad(n1, "DELETE", f"/v1/job/{job}")

    def nothing_of_ours():
        for node in lab.nodes:
            state = node_state(node)
            if any(k.startswith("weavenomad-") for k in [*state["services"], *state["checks"]]):
                return False
        return True

    wait_for("nothing of the reconciler's in Consul", nothing_of_ours, timeout=10, every=0.05)
    wait_for("the task containers to go", lambda: not containers_left(lab), timeout=60)


def test_a_task_outside_its_tenants_subnet_is_not_advertised(overlay):
    lab, env, subnets, daemons = overlay
    n1 = lab.nodes[0]
    job = nomad(n1, "POST", "/v1/jobs/parse", json={
        "JobHCL": (JOBS / "httpbackend-another-subnet.nomad").read_text().replace(
            'job "httpbackend"', 'job "intruder"'), "Canonicalize": True})
    group = job["TaskGroups"][0]
    group["Count"] = 1
    # claims to be acme's, but its WEAVE_CIDR puts it into globex's subnet
    group["Tasks"][0]["Env"] = {"WEAVE_CIDR": f"net:{subnets['globex']}"}
    job["Meta"] = {"weavenomad.tenant": "acme", "weavenomad.subnet": str(subnets["acme"])}
    nomad(n1, "POST", "/v1/jobs", json={"Job": job})
    (alloc_id,) = wait_for("the intruder", lambda: running_allocs(n1, "intruder"))
    nomad_sid = f"_nomad-task-{alloc_id}-httpbackend-httpbackend-8081"
    mask = f"weavenomad-mask-{alloc_id}-httpbackend-httpbackend-8081"

    def masked():
        for node in lab.nodes:
            checks = consul(node, "GET", "/v1/agent/checks")
            if mask in checks:
                return checks[mask]
        return None

    check = wait_for("the intruder's mask", masked, timeout=15)
    assert check["ServiceID"] == nomad_sid and "tenant violation" in check["Notes"]
    assert not [e for e in passing(n1) if alloc_id in e[0]]  # neither address is advertised
    time.sleep(1)
    assert not any(e["ServiceID"].startswith("weavenomad-") for e in consul(
        n1, "GET", f"/v1/catalog/service/{SERVICE}"))
    violations = [line for line in daemons.log_lines() if line.get("reason") == "tenant-violation"]
    assert len(violations) == 1 and violations[0]["service_id"] == nomad_sid
    assert violations[0]["tenant"] == "acme"
    nomad(n1, "DELETE", "/v1/job/intruder?purge=true")
    wait_for("the intruder to go", lambda: not containers_left(lab))


def churn_job(n1, count: int) -> dict:
    job = nomad(n1, "POST", "/v1/jobs/parse", json={
        "JobHCL": (JOBS / "httpbackend-another-subnet.nomad").read_text().replace(
            'job "httpbackend"', 'job "churn"'), "Canonicalize": True})
    group = job["TaskGroups"][0]
    group["Count"] = count
    group["Update"] = None
    task = group["Tasks"][0]
    task["Resources"].update(CPU=20, MemoryMB=16)
    # acme's job, as 'weavenomad run --tenant acme' marks it: its WEAVE_CIDR is acme's subnet
    # (issue 15: a job without tenant meta in a tenant's subnet is a violation, not advertised)
    job["Meta"] = {"weavenomad.tenant": "acme", "weavenomad.subnet": "10.32.1.0/24"}
    return job


def converged(lab, n1, timeout: float = 60.0) -> None:
    def check():
        alloc_ids = running_allocs(n1, "churn")
        found = problems(lab, alloc_ids)
        return (alloc_ids, found) if not found else None

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None:
            # and it stays so
            time.sleep(1.0)
            again = check()
            if again is not None and again[0] == last[0]:
                return
        time.sleep(0.25)
    pytest.fail(f"not converged after {timeout:.0f}s: "
                f"{problems(lab, running_allocs(n1, 'churn'))}")


def test_sigkill_during_churn_and_a_consul_restart_still_converge(overlay):
    lab, env, subnets, daemons = overlay
    n1 = lab.nodes[0]
    # Starts and removals are kept apart: Docker 20.10's libnetwork can deadlock when many
    # containers start while others are removed (moby/moby#42545, not in Debian's 20.10.24).
    nomad(n1, "POST", "/v1/jobs", json={"Job": churn_job(n1, 50)})
    wait_for("allocations starting", lambda: len(running_allocs(n1, "churn")) >= 10, timeout=60)
    codes = daemons.kill(signal.SIGKILL)
    assert all(code == -signal.SIGKILL for code in codes.values())
    wait_for("all 50 allocations", lambda: len(running_allocs(n1, "churn")) == 50, timeout=120)
    # churn while no reconciler runs: half the allocations go, the twins they had stay behind
    nomad(n1, "POST", "/v1/jobs", json={"Job": churn_job(n1, 25)})
    wait_for("the scale-down", lambda: len(running_allocs(n1, "churn")) == 25, timeout=90)
    wait_for("the removals", lambda: containers_left(lab) == 25, timeout=90)
    daemons.start_all()
    converged(lab, n1)

    # churn again, and restart Consul's agents in the middle of it
    nomad(n1, "POST", "/v1/jobs", json={"Job": churn_job(n1, 50)})
    wait_for("more allocations", lambda: len(running_allocs(n1, "churn")) >= 30, timeout=60)
    CONSUL.down(lab)
    time.sleep(1.0)
    CONSUL.up(lab)
    wait_for("all 50 allocations", lambda: len(running_allocs(n1, "churn")) == 50, timeout=120)
    converged(lab, n1, timeout=60)
    # Nomad's instances are all masked. (Not every twin need pass yet: the emulated Weave does
    # not announce a reused address, so the node's stale neighbour entry can delay a check.)
    answer = passing(n1)
    assert answer and all(sid.startswith("weavenomad-") for sid, _, _ in answer)

    nomad(n1, "DELETE", "/v1/job/churn?purge=true")
    wait_for("the churn to go", lambda: not containers_left(lab), timeout=120)
    wait_for("nothing of ours", lambda: not any(
        k.startswith("weavenomad-") for node in lab.nodes
        for k in consul(node, "GET", "/v1/agent/services")), timeout=10)
    codes = daemons.kill(signal.SIGTERM)
    assert all(code == 0 for code in codes.values()), codes  # the pass ends, then a clean exit

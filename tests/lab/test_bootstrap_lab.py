"""Issue 6's Done-when on a fresh 3-node lab of its own: ``weavenomad bootstrap`` on each node
(run inside the node, as an operator would), a second run that changes nothing, ``doctor``
passing (and failing where it should), a tenant job landing in its subnet on every node, a
bootstrap failing at the restart step that leaves the config byte-identical and Weave stopped,
``reset --purge`` taking the reconciler's twins away and leaving Nomad's registrations, and
``reset`` returning every node to its state before bootstrap."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import running_lab
from weavenomad_lab.layout import LabLayout, NodeLayout

pytestmark = pytest.mark.lab

JOBS = Path(__file__).resolve().parents[2] / "jobs"
STATE_DIR = Path(f"/tmp/wnboot-{os.getpid()}")
LAB_NAME = f"b{os.getpid() % 100000}"
RANGE, DEFAULT = "10.32.0.0/16", "10.32.0.0/24"
WEAVE_GUARD = ["FORWARD", "-i", "docker0", "-o", "weave", "-j", "DROP"]
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def lab3():
    with running_lab(STATE_DIR, LAB_NAME, 3, "the 3-node lab") as layout:
        yield layout


def on_node(node: NodeLayout, *argv: str, env: dict | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the node, with the agents at their in-node addresses; ``env`` is
    set inside (``lab exec`` sets the node's own tooling variables over the caller's)."""
    settings = [f"{key}={value}" for key, value in (env or {}).items()]
    command = [sys.executable, "-m", "weavenomad", "lab", "exec", "--state-dir",
               str(STATE_DIR), node.name, "--", *(["env", *settings] if settings else []),
               *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def weavenomad(node: NodeLayout, *args: str, env: dict | None = None):
    return on_node(node, sys.executable, "-m", "weavenomad", *args, env=env)


def bootstrap(lab: LabLayout, node: NodeLayout, *extra: str, env: dict | None = None):
    peers = [arg for other in lab.nodes if other != node for arg in ("--peer", other.host_ip)]
    return weavenomad(node, "bootstrap", *peers, *extra, env=env)


def doctor(node: NodeLayout) -> tuple[int, dict[str, dict]]:
    done = weavenomad(node, "doctor", "--json")
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def config_bytes(node: NodeLayout) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(node.nomad_config_dir.iterdir())}


def weave_running(node: NodeLayout) -> bool:
    return on_node(node, "weave", "status").returncode == 0


def bridge_exists(node: NodeLayout) -> bool:
    return on_node(node, "ip", "link", "show", "dev", "weave").returncode == 0


def forward_rules(node: NodeLayout) -> list[str]:
    done = on_node(node, "iptables", "-w", "-S", "FORWARD")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def wait_for(what: str, probe, timeout: float = TIMEOUT):
    stop = threading.Event()
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        stop.wait(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {value!r})")


def agent_ids(node: NodeLayout, kind: str, prefix: str) -> set[str]:
    """The IDs of the node's Consul agent's services (or checks) that start with ``prefix``."""
    answer = requests.get(f"{node.url('consul')}/v1/agent/{kind}", timeout=10)
    answer.raise_for_status()
    return {key for key in answer.json() if key.startswith(prefix)}


def task_containers(node: NodeLayout) -> list:
    import docker

    client = docker.DockerClient(base_url=node.docker_host, timeout=30)
    try:
        return client.containers.list(
            ignore_removed=True, filters={"label": "com.hashicorp.nomad.alloc_id"})
    finally:
        client.close()


def task_addresses(node: NodeLayout) -> list[ipaddress.IPv4Interface]:
    """The ethwe address of every running Nomad task container on the node."""
    found = []
    for container in task_containers(node):
        code, output = container.exec_run(["ip", "-4", "-o", "addr", "show", "ethwe"])
        assert code == 0, output
        found.append(ipaddress.ip_interface(re.search(rb"inet (\S+)", output).group(1).decode()))
    return found


def test_bootstrap_run_doctor_failure_and_reset_on_three_nodes(lab3: LabLayout, tmp_path):
    lab = lab3
    n1, n2, n3 = lab.nodes
    originals = {node.name: config_bytes(node) for node in lab.nodes}

    # a tenant exists before the nodes are bootstrapped: bootstrap exposes it right away
    created = weavenomad(n1, "tenant", "create", "acme", "--ipalloc-range", RANGE,
                         "--default-subnet", DEFAULT, "--json")
    assert created.returncode == 0, created.stderr
    acme = ipaddress.ip_network(json.loads(created.stdout)["subnet"])

    # --dry-run prints the plan (commands and diff) and changes nothing
    dry = bootstrap(lab, n1, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "weave launch --no-dns --no-default-ipalloc" in dry.stdout
    assert f"weave expose net:default net:{acme}" in dry.stdout
    assert "+    endpoint = " in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert not weave_running(n1) and config_bytes(n1) == originals["n1"]

    # together, as Weave's IPAM needs a majority of the peers before it allocates (nodes set up
    # one after the other: tests/lab/test_multi_node_lab.py)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(lab.nodes)) as pool:
        runs = list(pool.map(lambda node: bootstrap(lab, node), lab.nodes))
    for done in runs:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "bootstrap done" in done.stdout
    bootstrapped = {node.name: config_bytes(node) for node in lab.nodes}
    for node in lab.nodes:
        assert bootstrapped[node.name]["agent.hcl"] != originals[node.name]["agent.hcl"]
        assert "agent.hcl.weavenomad.bak" in bootstrapped[node.name]
        assert f"unix://{node.weave_sock}".encode() in bootstrapped[node.name]["agent.hcl"]

    # a second run changes nothing and says so
    for node in lab.nodes:
        again = bootstrap(lab, node)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "no changes" in again.stdout and "[1/" not in again.stdout
        assert config_bytes(node) == bootstrapped[node.name]

    # doctor, run inside each node, passes (systemd is absent in the lab: a warning)
    for node in lab.nodes:
        code, checks = doctor(node)
        failing = {k: v for k, v in checks.items() if v["status"] == "fail"}
        assert code == 0 and not failing, failing
        assert checks["weave-peers"]["status"] == "pass"
        assert checks["tenant-isolation"]["status"] == "pass"

    # Weave's guard flushed on n2: doctor fails, bootstrap puts a guard back, doctor passes
    assert on_node(n2, "iptables", "-w", "-D", *WEAVE_GUARD).returncode == 0
    code, checks = doctor(n2)
    assert code == 1 and checks["tenant-isolation"]["status"] == "fail"
    fixed = bootstrap(lab, n2)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "iptables -w -I FORWARD -i docker0 -o weave -m comment" in fixed.stdout
    assert doctor(n2)[1]["tenant-isolation"]["status"] == "pass"

    # a dockerd restart puts its ACCEPT above the guards: 'guard ensure' puts them back on top
    docker_accept = ["FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"]
    assert on_node(n2, "iptables", "-w", "-I", *docker_accept).returncode == 0
    assert doctor(n2)[1]["tenant-isolation"]["status"] == "fail"
    kept = weavenomad(n2, "--json", "guard", "ensure")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "docker-to-weave" in json.loads(kept.stdout)["added"]
    assert doctor(n2)[1]["tenant-isolation"]["status"] == "pass"
    assert on_node(n2, "iptables", "-w", "-D", *docker_accept).returncode == 0

    # the seed's job, one task per node, run for the tenant lands in its subnet everywhere
    job = tmp_path / "httpbackend.nomad"
    job.write_text((JOBS / "httpbackend.nomad").read_text().replace("count = 2", "count = 3"))
    ran = weavenomad(n1, "run", str(job), "--tenant", "acme")
    try:
        assert ran.returncode == 0, ran.stdout + ran.stderr
        for node in lab.nodes:
            addresses = wait_for(f"a task on {node.name}", lambda node=node: task_addresses(node))
            assert all(a.ip in acme for a in addresses), (node.name, addresses)
        # without the reconciler nothing answers for httpbackend (run held Nomad's
        # Docker-bridge instances under a private name): doctor must say so
        code, checks = doctor(n1)
        assert code == 1 and checks["consul-addresses"]["status"] == "fail"
        detail = checks["consul-addresses"]["detail"]
        assert detail.startswith("Consul answers nothing for ") and \
            "held under a private name without a twin: httpbackend (Weave: 10.32." in detail, \
            detail
        assert "reconciler" in checks["consul-addresses"]["fix"]
        # once the reconciler has run, the private name's Docker-bridge instance is no failure:
        # nobody asks for it
        once = weavenomad(n1, "reconciler", "run", "--once")
        assert once.returncode == 0, once.stdout + once.stderr
        assert doctor(n1)[1]["consul-addresses"]["status"] == "pass"

        # reset --purge takes the reconciler's twins away too (--dry-run first: the plan, no
        # change); Nomad's own registrations stay, under the private name 'run' gave them
        twins = agent_ids(n1, "services", "weavenomad-")
        nomads = agent_ids(n1, "services", "_nomad-task-")
        assert twins and nomads
        dry = weavenomad(n1, "reset", "--purge", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert f"remove the reconciler's {len(twins)} twin(s)" in dry.stdout
        assert "nothing answers for httpbackend once their twins are gone" in dry.stdout
        assert "dry run: nothing changed" in dry.stdout
        assert agent_ids(n1, "services", "weavenomad-") == twins
        purged = weavenomad(n1, "reset", "--purge")
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert agent_ids(n1, "services", "weavenomad-") == set()
        assert agent_ids(n1, "checks", "weavenomad-mask-") == set()
        wait_for("Nomad's registrations, after its restart", lambda: agent_ids(
            n1, "services", "_nomad-task-") == nomads)
        assert config_bytes(n1) == originals["n1"] and not weave_running(n1)
        again = weavenomad(n1, "reset", "--purge")
        assert again.returncode == 0 and "nothing of bootstrap or the reconciler is left" in \
            again.stdout, again.stdout + again.stderr
    finally:
        requests.delete(f"{n1.url('nomad')}/v1/job/httpbackend?purge=true", timeout=30)
    wait_for("task containers to go", lambda: not any(task_containers(n) for n in lab.nodes))

    # n1 is reset (purged above); a bootstrap that fails at the restart step rolls back
    failed = bootstrap(lab, n1, env={"WEAVENOMAD_NOMAD_RESTART_COMMAND": "false"})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "failed" in failed.stderr and "rolled back" in failed.stderr
    assert "restore" in failed.stderr and "weave reset" in failed.stderr
    assert config_bytes(n1) == originals["n1"]
    assert not weave_running(n1) and not bridge_exists(n1)
    idle = weavenomad(n1, "--json", "guard", "ensure")  # a reset node has nothing to guard
    assert json.loads(idle.stdout) == {"weave": False, "added": []}, idle.stdout + idle.stderr

    # reset returns every node to its state before bootstrap
    for node in (n2, n3):
        done = weavenomad(node, "reset")
        assert done.returncode == 0, done.stdout + done.stderr
    for node in lab.nodes:
        assert config_bytes(node) == originals[node.name]
        assert not weave_running(node) and not bridge_exists(node)
        assert not [r for r in forward_rules(node) if "weave" in r], forward_rules(node)
        again = weavenomad(node, "reset")
        assert again.returncode == 0 and "no changes" in again.stdout

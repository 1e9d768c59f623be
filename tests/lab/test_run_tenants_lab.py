"""Issue 4's Done-when on the lab: two tenants, the seed job run in each with
``weavenomad run``, every container in its tenant's subnet, and no traffic between tenants."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import requests
from labtools import (
    WEAVE_PROXY_CONFIG,
    driver,
    ethwe_address,
    launch_weave,
    node_cli_env,
    restore_endpoint,
    set_endpoint,
    task_containers,
    wait_for,
    weave,
)

pytestmark = pytest.mark.lab

JOBS = Path(__file__).resolve().parents[2] / "jobs"
KV_PREFIX = "test-run-tenants"


def weavenomad(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weavenomad", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def http_probe(container, address) -> str:
    """What an HTTP GET from ``container`` to ``address``:8081 answers ('' when unreachable).
    Nomad drops NET_RAW from task containers (see the recorded inspect), so no ping."""
    command = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address.ip} 8081"
    return container.exec_run(["sh", "-c", command]).output.decode(errors="replace")


@pytest.fixture(scope="module")
def overlay_lab(lab):
    """The session lab with Weave launched on every node and Nomad using the Weave proxy."""
    launch_weave(lab)
    for node in lab.nodes:
        set_endpoint(lab, node, WEAVE_PROXY_CONFIG)
        wait_for(f"{node.name}'s docker driver", lambda node=node: driver(node)["Healthy"])
    try:
        yield lab
    finally:
        for node in lab.nodes:
            restore_endpoint(lab, node)
            weave(lab, node, "reset")


def test_two_tenants_run_the_seed_job_in_their_own_subnets(overlay_lab, tmp_path):
    lab = overlay_lab
    env = node_cli_env(lab, lab.nodes[0], WEAVENOMAD_KV_PREFIX=KV_PREFIX)
    subnets = {}
    for tenant in ("acme", "globex"):
        created = weavenomad(env, "tenant", "create", tenant, "--ipalloc-range", "10.32.0.0/16",
                             "--default-subnet", "10.32.0.0/24", "--json")
        assert created.returncode == 0, created.stderr
        subnets[tenant] = IPv4Network(json.loads(created.stdout)["subnet"])
    assert subnets["acme"] != subnets["globex"]

    # the seed's default-subnet job, as is for acme and renamed for globex
    seed = (JOBS / "httpbackend.nomad").read_text()
    globex_job = tmp_path / "httpbackend-globex.nomad"
    globex_job.write_text(seed.replace('job "httpbackend"', 'job "httpbackend-globex"'))
    runs = {"acme": (JOBS / "httpbackend.nomad", "httpbackend"),
            "globex": (globex_job, "httpbackend-globex")}
    try:
        for tenant, (path, _) in runs.items():
            done = weavenomad(env, "run", str(path), "--tenant", tenant)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "network_mode" in done.stdout  # the warning about the removed named network
            assert "successful" in done.stdout.splitlines()[-1]

        addresses = {}
        for tenant, (_, job_id) in runs.items():
            containers = task_containers(lab, job_id)
            assert len(containers) == 2
            addresses[tenant] = [(c, ethwe_address(c)) for c in containers]
            for _, address in addresses[tenant]:
                assert address.ip in subnets[tenant], (tenant, address)

        (acme_a, _), (_, acme_b_ip) = addresses["acme"]
        _, globex_ip = addresses["globex"][0]
        assert "HTTP/1" in http_probe(acme_a, acme_b_ip), "acme could not reach acme"
        assert "HTTP/1" not in http_probe(acme_a, globex_ip), "acme reached globex"
    finally:
        for _, job_id in runs.values():
            requests.delete(f"{env['NOMAD_ADDR']}/v1/job/{job_id}?purge=true", timeout=30)
        wait_for("task containers to go", lambda: not task_containers(lab))

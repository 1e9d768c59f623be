"""Tenants through the real CLI against the lab's Consul: distinct subnets, even when 20
``weavenomad tenant create`` processes race."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network

import pytest

pytestmark = pytest.mark.lab


def cli(lab, *args: str, prefix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CONSUL_HTTP_ADDR=lab.nodes[0].url("consul"),
               WEAVENOMAD_KV_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "weavenomad", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_tenants_get_distinct_subnets(lab):
    prefix = "test-tenants-basic"
    first = cli(lab, "tenant", "create", "acme", "--ipalloc-range", "10.32.0.0/16",
                "--default-subnet", "10.32.0.0/24", "--json", prefix=prefix)
    assert first.returncode == 0, first.stderr
    second = cli(lab, "tenant", "create", "globex", "--json", prefix=prefix)
    assert second.returncode == 0, second.stderr
    acme, globex = json.loads(first.stdout), json.loads(second.stdout)
    assert acme["subnet"] == "10.32.1.0/24" and globex["subnet"] == "10.32.2.0/24"
    listed = json.loads(cli(lab, "tenant", "list", "--json", prefix=prefix).stdout)
    assert [t["name"] for t in listed] == ["acme", "globex"]
    again = cli(lab, "tenant", "create", "acme", prefix=prefix)
    assert again.returncode == 1
    assert again.stderr.strip() == ("weavenomad: error: tenant 'acme' exists already "
                                    "(10.32.1.0/24)")


def test_twenty_concurrent_creators_get_distinct_subnets(lab):
    prefix = "test-tenants-race"
    setup = cli(lab, "tenant", "create", "seed", "--ipalloc-range", "10.32.0.0/16",
                "--default-subnet", "10.32.0.0/24", prefix=prefix)
    assert setup.returncode == 0, setup.stderr
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(
            lambda i: cli(lab, "tenant", "create", f"t{i}", "--json", prefix=prefix), range(20)))
    failures = [r.stderr for r in results if r.returncode != 0]
    assert failures == []
    subnets = [IPv4Network(json.loads(r.stdout)["subnet"]) for r in results]
    assert len(set(subnets)) == 20
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])

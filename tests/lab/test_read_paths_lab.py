"""Issue 16, every read path: while a job run with ``weavenomad run`` starts, rolls out a canary
that is promoted and takes an in-place update, a sampler reads every way consumers find the
service (Consul DNS A and SRV, ``/v1/health/service?passing``, consul-template's ``service``,
the catalog, and Fabio's read of ``/v1/health/state/any`` with its default
``checksRequired = one``) and counts every answer that is not a Weave address with the
container port: none, under Nomad 1.0 and 1.7+ semantics (Consul 1.16, which honours
``replace-existing-checks``). A job submitted around ``run`` keeps the mask: catalog readers and
Fabio see Nomad's instance (by design, documented), and after Nomad 1.7's in-place update drops
the mask, health readers see it until the reconciler registers the mask again. The figures are
printed (``-s``)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from conftest import lab_name, lab_state_dir, running_lab
from labtools import (
    WEAVE_PROXY_CONFIG,
    consul,
    driver,
    in_node_command,
    launch_weave,
    node_cli_env,
    nomad,
    set_endpoint,
    wait_for,
)
from weavenomad_lab.consul import versions as consul_versions
from weavenomad_lab.consul.component import COMPONENT as CONSUL
from weavenomad_lab.consul.component import dns_port
from weavenomad_lab.nomad import control

pytestmark = pytest.mark.lab

KV_PREFIX = "test-read-paths"
PORT = 8081
SAMPLE_EVERY = 0.05
JOB = """job "{job}" {{
  datacenters = ["dc1"]
  group "web" {{
    count = 1
    update {{
      canary = {canary}
      min_healthy_time = "1s"
    }}
    network {{
      mode = "host"
    }}
    task "web" {{
      driver = "docker"
      config {{
        image = "bb:local"
        command = "/bin/httpd"
        args = ["-f", "-p", "8081", "-h", "/"]
      }}
      env {{
        VERSION = "{version}"
      }}
      service {{
        name = "{service}"
        port = 8081
        address_mode = "driver"
        tags = ["urlprefix-/{service}", "{tag}"]
        canary_tags = ["canary"]
        check {{
          type = "tcp"
          interval = "1s"
          timeout = "1s"
          address_mode = "driver"
          port = 8081
        }}
      }}
    }}
  }}
}}
"""


def job_text(job: str, service: str, version: str = "1", tag: str = "v1",
             canary: int = 1) -> str:
    return JOB.format(job=job, service=service, version=version, tag=tag, canary=canary)


# -- the read paths --------------------------------------------------------------------------


def _dns(lab, node, name: str, kind: str) -> list[tuple[str, int]]:
    query = dns.message.make_query(f"{name}.service.consul", kind)
    answer = dns.query.udp(query, "127.0.0.1", port=dns_port(lab, node.name), timeout=2)
    glue = {r.name.to_text(): item.address for r in answer.additional
            if r.rdtype == dns.rdatatype.A for item in r}
    found = []
    for rrset in answer.answer:
        for item in rrset:
            if rrset.rdtype == dns.rdatatype.A:
                found.append((item.address, PORT))  # A has no port: only the address counts
            elif rrset.rdtype == dns.rdatatype.SRV:
                found.append((glue.get(item.target.to_text(), item.target.to_text()),
                              item.port))
    return found


def _fabio(node, name: str) -> list[tuple[str, int]]:
    """What Fabio routes to for ``urlprefix-`` tags, as its Consul registry reads it: every
    check of ``/v1/health/state/any``; with ``checksRequired = one`` an instance counts when
    any one of its checks passes (``serfHealth`` aside) and it is not in maintenance
    (fabiolb/fabio ``registry/consul/passing.go``); then the catalog of those services."""
    checks = consul(node, "GET", "/v1/health/state/any")
    passing, maintenance = set(), set()
    for check in checks:
        if check["CheckID"].startswith("_service_maintenance:"):
            maintenance.add(check["ServiceID"])
        elif check["CheckID"] != "serfHealth" and check["Status"] == "passing":
            passing.add(check["ServiceID"])
    entries = consul(node, "GET", f"/v1/catalog/service/{name}")
    return [(e["ServiceAddress"], e["ServicePort"]) for e in entries
            if e["ServiceID"] in passing - maintenance
            and any(t.startswith("urlprefix-") for t in e["ServiceTags"] or ())]


def read_paths(lab, node, name: str) -> dict[str, list[tuple[str, int]]]:
    health = consul(node, "GET", f"/v1/health/service/{name}?passing")
    catalog = consul(node, "GET", f"/v1/catalog/service/{name}")
    return {
        "dns-a": _dns(lab, node, name, "A"),
        "dns-srv": _dns(lab, node, name, "SRV"),
        "health-passing": [(e["Service"]["Address"], e["Service"]["Port"]) for e in health],
        # consul-template's {{ service "name" }} reads the same endpoint, healthy only
        "consul-template": [(e["Service"]["Address"], e["Service"]["Port"]) for e in health],
        "catalog": [(e["ServiceAddress"], e["ServicePort"]) for e in catalog],
        "fabio": _fabio(node, name),
    }


class Sampler:
    """Reads every path every ``SAMPLE_EVERY`` s in a thread; a wrong answer is any address
    outside ``subnet`` or any port but the container's, and its time is counted per path."""

    def __init__(self, lab, node, name: str, subnet):
        self.lab, self.node, self.name, self.subnet = lab, node, name, subnet
        self.wrong: dict[str, float] = {}
        self.seen: dict[str, set] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        last = time.monotonic()
        while not self._stop.is_set():
            answers = read_paths(self.lab, self.node, self.name)
            now = time.monotonic()
            self.samples += 1
            for path, found in answers.items():
                self.seen.setdefault(path, set()).update(found)
                if any(ipaddress.ip_address(a) not in self.subnet or p != PORT
                       for a, p in found):
                    self.wrong[path] = self.wrong.get(path, 0.0) + (now - last)
            last = now
            self._stop.wait(SAMPLE_EVERY)

    def report(self, label: str) -> str:
        figures = ", ".join(f"{path} {self.wrong.get(path, 0.0):.2f}s"
                            for path in sorted(self.seen))
        return f"{label}: {self.samples} samples; wrong answer visible: {figures}"


# -- the lab ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab():
    """One node; Consul playing 1.16.2 (it honours replace-existing-checks), Weave, Nomad
    through the proxy with a 1 s Consul sync, tenant acme, the reconciler in the node."""
    state_dir = lab_state_dir("-rp")
    with running_lab(state_dir, lab_name("p"), 1, "the read paths' lab") as layout:
        reconciler = None
        try:
            consul_versions.write_settings(layout.component_dir("consul"), "1.16.2")
            CONSUL.restart(layout)
            launch_weave(layout)
            node = layout.nodes[0]
            set_endpoint(layout, node, WEAVE_PROXY_CONFIG)
            wait_for("the docker driver", lambda: driver(node)["Healthy"])
            control.set_sync_timing(layout, interval=1.0, probation=0)
            env = node_cli_env(layout, node, WEAVENOMAD_KV_PREFIX=KV_PREFIX)
            created = run_cli(env, "tenant", "create", "acme", "--ipalloc-range", "10.32.0.0/16",
                              "--default-subnet", "10.32.0.0/24", "--json")
            assert created.returncode == 0, created.stderr
            subnet = ipaddress.ip_network(json.loads(created.stdout)["subnet"])
            argv, renv = in_node_command(layout, node, sys.executable, "-m", "weavenomad",
                                         "reconciler", "run", "--resync", "20",
                                         env={"WEAVENOMAD_KV_PREFIX": KV_PREFIX})
            log = open(state_dir.parent / f"{state_dir.name}-reconciler.log", "a")  # noqa: SIM115
            reconciler = subprocess.Popen(argv, env=renv, stdout=log, stderr=subprocess.STDOUT)
            yield layout, env, subnet
        finally:
            if reconciler is not None:
                reconciler.terminate()
                reconciler.wait(timeout=15)


def run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weavenomad", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def submit(env: dict, path: Path) -> None:
    done = run_cli(env, "run", str(path), "--tenant", "acme", "--detach")
    assert done.returncode == 0, done.stdout + done.stderr


def answering(lab, node, name: str, count: int, tag: str | None = None):
    """The twins once ``?passing`` answers ``count`` Weave instances (with ``tag``)."""
    def probe():
        entries = consul(node, "GET", f"/v1/health/service/{name}?passing")
        ours = [e for e in entries if e["Service"]["ID"].startswith("weavenomad-")]
        if len(ours) == count and all(tag is None or tag in e["Service"]["Tags"]
                                      for e in ours):
            return ours
        return None
    return wait_for(f"{count} passing twins of {name}" + (f" tagged {tag}" if tag else ""),
                    probe, timeout=40)


def running(node, job: str, count: int):
    def probe():
        allocs = [a for a in nomad(node, "GET", f"/v1/job/{job}/allocations")
                  if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"]
        return allocs if len(allocs) == count else None
    return wait_for(f"{count} running allocations of {job}", probe, timeout=40)


def test_every_read_path_answers_weave_addresses_only(lab, tmp_path):
    layout, env, subnet = lab
    node = layout.nodes[0]
    path = tmp_path / "shop.nomad"
    figures = []

    # Nomad 1.7+: start, a canary promoted, an in-place update (tags only)
    control.set_version(layout, "1.7.7")
    with Sampler(layout, node, "shop", subnet) as sampled:
        path.write_text(job_text("shop", "shop"))
        submit(env, path)
        answering(layout, node, "shop", 1)
        path.write_text(job_text("shop", "shop", version="2"))
        submit(env, path)
        running(node, "shop", 2)  # the old allocation and its canary
        answering(layout, node, "shop", 2)
        deployment = nomad(node, "GET", "/v1/job/shop/deployment")
        nomad(node, "POST", f"/v1/deployment/promote/{deployment['ID']}",
              json={"DeploymentID": deployment["ID"], "All": True})
        running(node, "shop", 1)
        answering(layout, node, "shop", 1, tag="v1")
        path.write_text(job_text("shop", "shop", version="2", tag="v2"))
        submit(env, path)
        answering(layout, node, "shop", 1, tag="v2")
        time.sleep(2.5)  # two of Nomad's syncs after the update
    figures.append(sampled.report("nomad 1.7.7, run (held): start, canary, promotion, "
                                  "in-place update"))
    assert sampled.wrong == {}, figures[-1]
    assert all(sampled.seen[p] for p in sampled.seen), sampled.seen  # every path answered

    # Nomad 1.0: a new job's start (Nomad registers the service before its checks)
    control.set_version(layout, "1.0.18")
    with Sampler(layout, node, "cart", subnet) as sampled:
        path.write_text(job_text("cart", "cart", canary=0))
        submit(env, path)
        answering(layout, node, "cart", 1)
        time.sleep(2.5)
    figures.append(sampled.report("nomad 1.0.18, run (held): start"))
    assert sampled.wrong == {}, figures[-1]

    # a job submitted around run (tenant env and meta by hand, Nomad's own service name):
    # masked; Nomad 1.7's in-place update drops the mask, the reconciler puts it back
    control.set_version(layout, "1.7.7")

    def around_run(tag: str) -> dict:
        text = job_text("legacy", "legacy", canary=0, tag=tag)
        job = nomad(node, "POST", "/v1/jobs/parse", json={"JobHCL": text, "Canonicalize": True})
        job["Meta"] = {"weavenomad.tenant": "acme", "weavenomad.subnet": str(subnet)}
        job["TaskGroups"][0]["Tasks"][0]["Env"]["WEAVE_CIDR"] = f"net:{subnet}"
        return nomad(node, "POST", "/v1/jobs", json={"Job": job})

    around_run("v1")
    answering(layout, node, "legacy", 1)
    wait_for("the mask", lambda: any(c.startswith("weavenomad-mask-") for c in
                                     consul(node, "GET", "/v1/agent/checks")), timeout=20)
    with Sampler(layout, node, "legacy", subnet) as sampled:
        around_run("v2")
        wait_for("Nomad's re-registration with tag v2", lambda: any(
            "v2" in (s["Tags"] or ()) for s in consul(node, "GET", "/v1/agent/services")
            .values() if s["Service"] == "legacy" and s["ID"].startswith("_nomad-")),
            timeout=20)
        wait_for("the mask back", lambda: any(c.startswith("weavenomad-mask-") for c in
                                              consul(node, "GET", "/v1/agent/checks")),
                 timeout=20)
        time.sleep(1.5)
    figures.append(sampled.report("nomad 1.7.7, around run (masked): in-place update"))
    print("\n" + "\n".join(figures))
    # by design: catalog readers and Fabio (checksRequired = one) see Nomad's instance
    assert sampled.wrong.get("catalog", 0) > 0 and sampled.wrong.get("fabio", 0) > 0
    # health readers see it only until the reconciler registers the mask again: at most one
    # reaction (a pass after Consul's change), far below Nomad's sync period
    for health_path in ("health-passing", "dns-a", "dns-srv", "consul-template"):
        assert sampled.wrong.get(health_path, 0.0) < 1.0, figures[-1]

"""The simulated Nomad in a real lab: real containers on the nodes' dockerds (directly or
through the emulated Weave proxy), services in the simulated Consul, the periodic sync."""

from __future__ import annotations

import importlib
import ipaddress
import re
import time
from pathlib import Path

import pytest
from labtools import consul, docker_client, driver, nomad, set_endpoint, wait_for, weave
from weavenomad_lab import core
from weavenomad_lab.layout import LabLayout, NodeLayout
from weavenomad_lab.nomad import control

pytestmark = pytest.mark.lab

#: the parts this test needs on top of the session lab, in start order
NEEDED = ["weavenomad_lab.weave.daemon:COMPONENT", "weavenomad_lab.consul.component:COMPONENT",
          "weavenomad_lab.nomad.component:COMPONENT"]
SYNC_INTERVAL = 2.0
JOBS = Path(__file__).resolve().parents[2] / "jobs"
TIMEOUT = 60.0


def _component(spec: str):
    module, attribute = spec.split(":")
    return getattr(importlib.import_module(module), attribute)


@pytest.fixture(scope="module")
def nomad_lab(lab: LabLayout):
    """The session lab plus Weave, Consul and Nomad (those ``lab up`` does not start yet)."""
    added = [_component(s) for s in NEEDED if s not in core.COMPONENTS]
    for component in added:
        component.up(lab)
    control.set_sync_timing(lab, interval=SYNC_INTERVAL, probation=0)
    try:
        yield lab
    finally:
        for component in reversed(added):
            component.down(lab)














def running_allocs(node: NodeLayout, job_id: str, count: int):
    allocs = [a for a in nomad(node, "GET", f"/v1/job/{job_id}/allocations")
              if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"]
    return allocs if len(allocs) == count else None


def task_containers(lab: LabLayout) -> list:
    found = []
    for node in lab.nodes:
        found += docker_client(node).containers.list(
            all=True, ignore_removed=True, filters={"label": "com.hashicorp.nomad.alloc_id"})
    return found


def stop_job(lab: LabLayout, job_id: str) -> None:
    nomad(lab.nodes[0], "DELETE", f"/v1/job/{job_id}?purge=true")
    wait_for("task containers to go", lambda: not task_containers(lab))


def small_job(job_id: str, count: int) -> dict:
    job = nomad_parse(job_id)
    job["TaskGroups"][0]["Count"] = count
    return job


def nomad_parse(job_id: str, node: NodeLayout | None = None, text: str | None = None) -> dict:
    text = text or (JOBS / "httpbackend-another-subnet.nomad").read_text()
    text = text.replace('job "httpbackend"', f'job "{job_id}"')
    return nomad(node or _LAB[0].nodes[0], "POST", "/v1/jobs/parse",
                 json={"JobHCL": text, "Canonicalize": True})


_LAB: list[LabLayout] = []


@pytest.fixture(autouse=True)
def _remember(nomad_lab):
    _LAB[:] = [nomad_lab]


def test_a_job_runs_real_containers_and_registers_bridge_addresses(nomad_lab):
    lab = nomad_lab
    n1 = lab.nodes[0]
    assert all(driver(node)["Healthy"] for node in lab.nodes)
    answer = nomad(n1, "POST", "/v1/jobs", json={"Job": small_job("direct", 2)})
    assert answer["EvalID"]
    allocs = wait_for("2 running allocations", lambda: running_allocs(n1, "direct", 2))
    assert len({a["NodeID"] for a in allocs}) == 2
    for node in lab.nodes:
        services = wait_for(f"the service in {node.name}'s Consul", lambda node=node: {
            k: v for k, v in consul(node, "GET", "/v1/agent/services").items()
            if k.startswith("_nomad-task-")})
        (service,) = services.values()
        # the job file's service keeps its name whatever the job is called
        assert service["Service"] == "httpbackend" and service["Port"] == 8081
        assert ipaddress.ip_address(service["Address"]) in ipaddress.ip_network("172.17.0.0/16")
    healthy = wait_for("both instances passing", lambda: (
        lambda entries: entries if len(entries) == 2 else None)(
        consul(n1, "GET", "/v1/health/service/httpbackend?passing")))
    assert {e["Service"]["Address"] for e in healthy} <= {
        str(a) for a in ipaddress.ip_network("172.17.0.0/16").hosts()}
    container = docker_client(n1).containers.list(
        ignore_removed=True, filters={"label": "com.hashicorp.nomad.alloc_id"})[0]
    alloc_id = container.labels["com.hashicorp.nomad.alloc_id"]
    assert container.name == f"httpbackend-{alloc_id}"  # <task>-<alloc>
    assert "NOMAD_JOB_ID=direct" in container.attrs["Config"]["Env"]
    stop_job(lab, "direct")
    for node in lab.nodes:
        wait_for("services deregistered", lambda node=node: not [
            k for k in consul(node, "GET", "/v1/agent/services") if k.startswith("_nomad-task-")])


def test_restart_reads_both_config_forms_and_keeps_allocations(nomad_lab):
    lab = nomad_lab
    n1 = lab.nodes[0]
    nomad(n1, "POST", "/v1/jobs", json={"Job": small_job("kept", 1)})
    (alloc,) = wait_for("the allocation", lambda: running_allocs(n1, "kept", 1))
    owner = next(n for n in lab.nodes if nomad(n, "GET", "/v1/agent/self")["stats"]["client"][
        "node_id"] == alloc["NodeID"])
    legacy = ('client {\n  enabled = true\n  options {\n'
              '    "docker.endpoint" = "unix:///var/run/docker.sock"\n  }\n}\n')
    try:
        set_endpoint(lab, owner, legacy)
        me = nomad(owner, "GET", "/v1/agent/self")
        assert me["config"]["Client"]["Options"] == {
            "docker.endpoint": "unix:///var/run/docker.sock"}
        assert me["config"]["Plugins"] == []
        assert driver(owner)["Healthy"]  # the node's own dockerd stands for /var/run/docker.sock
        outside = ('plugin "docker" {\n  config {\n'
                   '    endpoint = "unix:///srv/elsewhere.sock"\n  }\n}\n')
        set_endpoint(lab, owner, outside)
        assert not driver(owner)["Healthy"]
        assert nomad(n1, "GET", f"/v1/allocation/{alloc['ID']}")["ClientStatus"] == "running"
    finally:
        from weavenomad_lab.nomad.agentconfig import default_text

        set_endpoint(lab, owner, default_text(owner))
    assert driver(owner)["Healthy"]
    stop_job(lab, "kept")




def test_done_when_seed_job_through_the_weave_proxy(nomad_lab):
    """The issue's Done-when: the seed job through the Weave proxy gets ethwe addresses in its
    WEAVE_CIDR subnet, Consul lists Docker-bridge addresses with passing checks, and an
    Address edited through the agent API snaps back within one sync interval."""
    lab = nomad_lab
    n1 = lab.nodes[0]
    peers = [n.host_ip for n in lab.nodes]
    weave_config = ('client {\n  enabled = true\n}\n'
                    'plugin "docker" {\n  config {\n'
                    '    endpoint = "unix:///var/run/weave/weave.sock"\n  }\n}\n')
    from weavenomad_lab.nomad.agentconfig import default_text

    try:
        for node in lab.nodes:
            weave(lab, node, "launch", "--no-dns", "--ipalloc-range", "10.32.0.0/16",
                  "--ipalloc-default-subnet", "10.32.0.0/24",
                  *[p for p in peers if p != node.host_ip])
            set_endpoint(lab, node, weave_config)
            assert driver(node)["Healthy"], driver(node)
        job = nomad_parse("httpbackend")
        nomad(n1, "POST", "/v1/jobs", json={"Job": job})
        allocs = wait_for("2 running allocations", lambda: running_allocs(n1, "httpbackend", 2))
        subnet = ipaddress.ip_network("10.32.1.0/24")
        for node in lab.nodes:
            for container in docker_client(node).containers.list(
                    ignore_removed=True, filters={"label": "com.hashicorp.nomad.alloc_id"}):
                code, output = container.exec_run(["ip", "-4", "-o", "addr", "show", "ethwe"])
                assert code == 0, output
                address = re.search(rb"inet (\S+)", output).group(1).decode()
                assert ipaddress.ip_interface(address).ip in subnet
        passing = wait_for("two passing instances", lambda: (
            lambda entries: entries if len(entries) == 2 else None)(
            consul(n1, "GET", "/v1/health/service/httpbackend?passing")))
        bridge = ipaddress.ip_network("172.17.0.0/16")
        assert all(ipaddress.ip_address(e["Service"]["Address"]) in bridge for e in passing)
        assert len(allocs) == 2
        # an external edit of Nomad's own service is reverted by the next periodic sync
        node = lab.nodes[0]
        services = consul(node, "GET", "/v1/agent/services")
        sid, service = next((k, v) for k, v in services.items() if k.startswith("_nomad-task-"))
        edited = {"ID": sid, "Name": service["Service"], "Address": "10.32.1.250",
                  "Port": service["Port"], "Meta": service["Meta"]}
        consul(node, "PUT", "/v1/agent/service/register", json=edited)
        edited_at = time.monotonic()
        wait_for("the Address to snap back", lambda: consul(
            node, "GET", "/v1/agent/services")[sid]["Address"] == service["Address"],
            timeout=SYNC_INTERVAL * 3, every=0.05)
        assert time.monotonic() - edited_at <= SYNC_INTERVAL + 1.0
        stop_job(lab, "httpbackend")
    finally:
        for node in lab.nodes:
            set_endpoint(lab, node, default_text(node))
            weave(lab, node, "reset")


def test_an_exiting_task_is_restarted_per_policy_then_fails(nomad_lab):
    lab = nomad_lab
    n1 = lab.nodes[0]
    job = small_job("crashy", 1)
    group = job["TaskGroups"][0]
    policy = {"Attempts": 1, "Delay": 1_000_000_000, "Interval": 600_000_000_000, "Mode": "fail"}
    group["RestartPolicy"] = group["Tasks"][0]["RestartPolicy"] = policy
    group["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
    task = group["Tasks"][0]
    task["Config"].update(command="/bin/sh", args=["-c", "exit 3"])
    task["Services"] = None
    nomad(n1, "POST", "/v1/jobs", json={"Job": job})

    def failed():
        allocs = nomad(n1, "GET", "/v1/job/crashy/allocations")
        return allocs if allocs and allocs[0]["ClientStatus"] == "failed" else None

    (alloc,) = wait_for("the allocation to fail", failed, timeout=30)
    state = alloc["TaskStates"]["httpbackend"]
    kinds = [e["Type"] for e in state["Events"]]
    assert kinds.count("Started") == 2 and kinds[-1] == "Not Restarting", kinds
    assert state["Restarts"] == 1 and state["Failed"] is True and state["State"] == "dead"
    terminated = [e for e in state["Events"] if e["Type"] == "Terminated"]
    assert terminated[0]["ExitCode"] == 3 and terminated[0]["DisplayMessage"] == "Exit Code: 3"
    assert nomad(n1, "GET", "/v1/job/crashy")["Status"] == "dead"
    stop_job(lab, "crashy")

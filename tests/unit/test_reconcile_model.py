"""Parsing the recorded answers of real Nomad, Consul and Docker into the reconciler's data."""

from __future__ import annotations

from datetime import datetime, timezone

from reconcile_support import ALLOC_A, SID_A, raw_allocations, recorded

from weavenomad.reconcile.consul import check_from_agent, service_from_agent
from weavenomad.reconcile.model import allocation_from_api, container_from_summary
from weavenomad.reconcile.observe import AllocationCache, started_at
from weavenomad.reconcile.registrations import alloc_of, mask_id, twin_id


def test_a_recorded_allocation_keeps_what_the_plan_needs():
    alloc = allocation_from_api(raw_allocations()[0])
    assert (alloc.id, alloc.job_id, alloc.group) == (ALLOC_A, "httpbackend", "httpbackend")
    assert alloc.active and alloc.tenant is None
    (task,) = alloc.tasks
    assert task.name == "httpbackend" and task.weave_cidr == "net:10.32.1.0/24"
    assert task.wants_overlay
    (service,) = task.services
    assert (service.name, service.port_label, service.address_mode) == (
        "httpbackend", "8081", "driver")
    (check,) = service.checks
    assert (check.kind, check.interval_ns, check.timeout_ns) == ("tcp", 5 * 10**9, 2 * 10**9)


def test_tenant_meta_and_stopping_allocations():
    raw = raw_allocations()[0]
    raw["Job"]["Meta"] = {"weavenomad.tenant": "acme", "weavenomad.subnet": "10.32.1.0/24"}
    raw["DesiredStatus"] = "stop"
    alloc = allocation_from_api(raw)
    assert (alloc.tenant, alloc.tenant_subnet) == ("acme", "10.32.1.0/24")
    assert not alloc.active


def test_allocations_are_parsed_once_per_modify_index():
    cache = AllocationCache()
    raws = raw_allocations()
    first = cache.parse(raws)
    assert cache.parse(raws)[ALLOC_A] is first[ALLOC_A]
    raws[0]["ModifyIndex"] += 1
    raws[0]["ClientStatus"] = "complete"
    changed = cache.parse(raws)
    assert changed[ALLOC_A] is not first[ALLOC_A] and not changed[ALLOC_A].active
    assert list(cache.parse(raws[1:])) == [raws[1]["ID"]]


def test_consul_agent_answers():
    services = recorded("consul-agent-services.json")
    nomads = service_from_agent(services[SID_A])
    assert nomads.nomad_task and not nomads.ours
    assert (nomads.address, nomads.port, nomads.name) == ("172.17.0.2", 8081, "httpbackend")
    assert nomads.meta == {"external-source": "nomad"} and nomads.tags == ()
    mask = check_from_agent(recorded("consul-agent-checks.json")["weavenomad-mask-test"])
    assert (mask.service_id, mask.status, mask.notes) == (SID_A, "critical", "superseded")


def test_names_map_one_to_one_onto_nomads_ids():
    assert twin_id(SID_A) == f"weavenomad-{ALLOC_A}-httpbackend-httpbackend-8081"
    assert mask_id(SID_A) == f"weavenomad-mask-{ALLOC_A}-httpbackend-httpbackend-8081"
    assert alloc_of(SID_A) == ALLOC_A
    assert alloc_of("_nomad-server-k5zjlaqx5qv3sz7oksmrxafcd6wv45fp") is None
    assert alloc_of("_nomad-task-short") is None


def test_a_recorded_task_container_and_its_start_time():
    inspect = recorded("docker-container-inspect-nomad-task-via-weave-proxy.json")
    summary = {"Id": inspect["Id"], "Names": [inspect["Name"]],
               "Labels": inspect["Config"]["Labels"], "State": "running"}
    container = container_from_summary(summary)
    alloc_id = inspect["Config"]["Labels"]["com.hashicorp.nomad.alloc_id"]
    assert (container.alloc_id, container.task, container.running) == (
        alloc_id, "httpbackend", True)
    assert container_from_summary({**summary, "Labels": {}}) is None
    expected = datetime(2026, 11, 22, 2, 53, 44, 319085, timezone.utc).timestamp()
    assert inspect["State"]["StartedAt"] == "2026-11-22T02:53:44.319085891Z"
    assert started_at(inspect) == expected
    assert started_at({"State": {"StartedAt": "0001-01-01T00:00:00Z"}}) is None


def test_a_restart_nomad_announced_is_read_from_the_task_state():
    """Recorded (day-two/1c-nomad-event-stream.ndjson, index 548): after a Weave restart each
    task is pending, its last event 'Restarting' with StartDelay 16.06 s."""
    import json
    from pathlib import Path

    from weavenomad.reconcile.model import restarting_until

    path = Path(__file__).resolve().parents[1] / "fixtures/recorded/day-two" / \
        "1c-nomad-event-stream.ndjson"
    states = {}
    for line in path.read_text().splitlines():
        frame = json.loads(line) if line.strip() not in ("", "{}") else {}
        if frame.get("Index") == 548:
            states = {e["Payload"]["Allocation"]["ID"][:8]:
                      e["Payload"]["Allocation"]["TaskStates"]["httpbackend"]
                      for e in frame["Events"]}
    assert restarting_until(states["83f67a40"]) == (1796528271581312681 + 16061778088) / 1e9
    assert restarting_until(states["acb51f1d"]) == (1796528271584433412 + 17662988541) / 1e9
    running = dict(states["83f67a40"], State="running")
    assert restarting_until(running) is None and restarting_until(None) is None

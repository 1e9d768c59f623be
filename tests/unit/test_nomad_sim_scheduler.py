"""The simulated Nomad's scheduler and job handling as pure decisions on plain data."""

from __future__ import annotations

import copy

from test_nomad_sim_support import Cluster, fake_node, recorded
from weavenomad_lab.nomad import jobs, scheduler


def seed_job(count: int = 2, **changes) -> dict:
    job = jobs.canonicalize(recorded("nomad-jobs-parse.json")["body"])
    job["TaskGroups"][0]["Count"] = count
    job.update(changes, Version=0)
    return job


def alloc_for(job: dict, index: int, node: dict, alloc_id: str) -> dict:
    return {"ID": alloc_id, "Name": f"{job['ID']}.httpbackend[{index}]", "JobID": job["ID"],
            "TaskGroup": "httpbackend", "NodeID": node["ID"], "DesiredStatus": "run",
            "ClientStatus": "running", "CreateIndex": index, "Job": copy.deepcopy(job)}


NODES = [fake_node("n1", "192.168.56.3"), fake_node("n2", "192.168.56.4")]


def test_places_count_allocations_spread_over_nodes():
    plan = scheduler.schedule(seed_job(count=4), [], NODES)
    assert sorted(p.index for p in plan.place) == [0, 1, 2, 3]
    per_node = [sum(p.node_id == n["ID"] for p in plan.place) for n in NODES]
    assert per_node == [2, 2]
    assert not plan.failed


def test_scale_down_stops_the_highest_indexes_and_keeps_the_rest():
    job = seed_job(count=3)
    allocs = [alloc_for(job, i, NODES[i % 2], f"a{i}") for i in range(3)]
    plan = scheduler.schedule(seed_job(count=1), allocs, NODES)
    assert sorted(a for a, _ in plan.stop) == ["a1", "a2"]
    assert plan.place == [] and plan.in_place == []


def test_a_changed_task_replaces_allocations_a_count_change_does_not():
    job = seed_job(count=1)
    allocs = [alloc_for(job, 0, NODES[0], "a0")]
    changed = seed_job(count=1, Version=1)
    changed["TaskGroups"][0]["Tasks"][0]["Env"]["WEAVE_CIDR"] = "net:10.32.2.0/24"
    plan = scheduler.schedule(changed, allocs, NODES)
    assert plan.stop == [("a0", scheduler.ALLOC_UPDATING)]
    assert [p.index for p in plan.place] == [0]
    bigger = seed_job(count=2)
    bigger["Version"] = 1
    plan = scheduler.schedule(bigger, allocs, NODES)
    assert plan.stop == [] and plan.in_place == ["a0"] and [p.index for p in plan.place] == [1]


def test_a_stopped_job_stops_everything():
    job = seed_job(count=2)
    allocs = [alloc_for(job, i, NODES[i], f"a{i}") for i in range(2)]
    plan = scheduler.schedule(dict(job, Stop=True), allocs, NODES)
    assert sorted(plan.stop) == [("a0", scheduler.ALLOC_NOT_NEEDED),
                                 ("a1", scheduler.ALLOC_NOT_NEEDED)]


def test_unknown_datacenter_fails_placement_with_nomads_metrics():
    plan = scheduler.schedule(seed_job(count=2, Datacenters=["dc9"]), [], NODES)
    assert plan.place == []
    metric = plan.failed["httpbackend"]
    assert metric["NodesEvaluated"] == 0 and metric["NodesAvailable"] == {"dc9": 0}
    assert metric["CoalescedFailures"] == 1 and plan.queued == {"httpbackend": 2}


def test_nodes_without_a_healthy_docker_driver_are_filtered():
    sick = [fake_node("n1", "192.168.56.3", healthy=False)]
    plan = scheduler.schedule(seed_job(count=1), [], sick)
    assert plan.failed["httpbackend"]["ConstraintFiltered"] == {"missing drivers": 1}


def test_constraints_on_node_name_and_distinct_hosts():
    job = seed_job(count=1)
    job["Constraints"] = [{"LTarget": "${node.unique.name}", "RTarget": "n2", "Operand": "="}]
    plan = scheduler.schedule(job, [], NODES)
    assert [p.node_id for p in plan.place] == [NODES[1]["ID"]]
    job = seed_job(count=3)
    job["Constraints"] = [{"LTarget": "", "RTarget": "", "Operand": "distinct_hosts"}]
    plan = scheduler.schedule(job, [], NODES)
    assert len(plan.place) == 2 and plan.queued == {"httpbackend": 1}


def test_failed_placement_leaves_a_blocked_eval_that_only_a_job_eval_unblocks():
    """As recorded (day-two/1b-after-relaunch-nomad-job-httpbackend-evaluations.json): a job
    registered while the node's Docker driver is unhealthy stays blocked on "missing drivers"
    after the driver turns healthy, until ``nomad job eval``."""
    cluster = Cluster(nodes=0)
    sick = fake_node("n1", "192.168.56.3", healthy=False)
    cluster.state.upsert_node(sick)
    answer = cluster.register_seed_job()
    _, _, evaluation = cluster.call("GET", f"/v1/evaluation/{answer['EvalID']}")
    assert evaluation["Status"] == "complete" and "httpbackend" in evaluation["FailedTGAllocs"]
    assert evaluation["FailedTGAllocs"]["httpbackend"]["ConstraintFiltered"] == {
        "missing drivers": 1}
    _, _, blocked = cluster.call("GET", f"/v1/evaluation/{evaluation['BlockedEval']}")
    assert blocked["Status"] == "blocked"
    assert blocked["ClassEligibility"] == {sick["ComputedClass"]: False}
    _, _, job = cluster.call("GET", "/v1/job/httpbackend")
    assert job["Status"] == "pending"
    cluster.state.upsert_node(fake_node("n1", "192.168.56.3", healthy=True))
    _, _, allocs = cluster.call("GET", "/v1/job/httpbackend/allocations")
    assert allocs == []
    status, _, again = cluster.call("POST", "/v1/job/httpbackend/evaluate", {})
    assert status == 200 and again["EvalID"]
    _, _, allocs = cluster.call("GET", "/v1/job/httpbackend/allocations")
    assert len(allocs) == 2
    _, _, blocked = cluster.call("GET", f"/v1/evaluation/{blocked['ID']}")
    assert blocked["Status"] == "canceled"
    assert blocked["StatusDescription"] == f'evaluation "{blocked["ID"]}" successful'


def test_a_blocked_eval_short_of_resources_is_unblocked_by_a_node_change():
    cluster = Cluster(nodes=1)
    job = seed_job(count=1)
    job["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = 10**7
    status, _, answer = cluster.call("POST", "/v1/jobs", {"Job": job})
    assert status == 200
    _, _, evaluation = cluster.call("GET", f"/v1/evaluation/{answer['EvalID']}")
    _, _, blocked = cluster.call("GET", f"/v1/evaluation/{evaluation['BlockedEval']}")
    assert list(blocked["ClassEligibility"].values()) == [True]
    cluster.state.upsert_node(fake_node("n1", "192.168.56.3"))
    _, _, blocked = cluster.call("GET", f"/v1/evaluation/{blocked['ID']}")
    assert blocked["Status"] != "blocked"  # looked at again (and blocked anew: still too big)


def test_job_ids_are_percent_decoded_in_paths():
    """Recorded (plan-dns-catalog-checks): a job named Ünïcødé-作业 is read back with its ID
    percent-encoded in the path, upper- or lower-case hex."""
    from urllib.parse import quote

    cluster = Cluster(nodes=1)
    job = seed_job(count=1, ID="Ünïcødé-作业", Name="Ünïcødé-作业")
    status, _, _ = cluster.call("POST", "/v1/jobs", {"Job": job})
    assert status == 200
    encoded = quote("Ünïcødé-作业", safe="")
    for form in (encoded, encoded.lower()):
        status, _, body = cluster.call("GET", f"/v1/job/{form}")
        assert status == 200 and body["ID"] == "Ünïcødé-作业"
        status, _, allocs = cluster.call("GET", f"/v1/job/{form}/allocations")
        assert status == 200 and len(allocs) == 1
    status, _, stubs = cluster.call("GET", f"/v1/jobs?prefix={quote('Ün')}")
    assert [s["ID"] for s in stubs] == ["Ünïcødé-作业"]
    assert cluster.call("DELETE", f"/v1/job/{encoded}?purge=true")[0] == 200
    assert cluster.call("GET", f"/v1/job/{encoded}")[:3:2] == (404, "job not found")


def test_enforce_index_and_versions():
    cluster = Cluster()
    job = recorded("nomad-jobs-parse.json")["body"]
    status, _, body = cluster.call("POST", "/v1/jobs", {"Job": job, "EnforceIndex": True,
                                                        "JobModifyIndex": 7})
    assert status == 500 and body.startswith("Enforcing job modify index 7")
    first = cluster.register_seed_job()
    changed = copy.deepcopy(job)
    changed["TaskGroups"][0]["Count"] = 3
    body = {"Job": changed, "EnforceIndex": True, "JobModifyIndex": first["JobModifyIndex"]}
    status, _, second = cluster.call("POST", "/v1/jobs", body)
    assert status == 200 and second["JobModifyIndex"] > first["JobModifyIndex"]
    _, _, versions = cluster.call("GET", "/v1/job/httpbackend/versions")
    assert [v["Version"] for v in versions["Versions"]] == [1, 0]


def test_deregister_stops_allocations_and_purge_forgets_the_job():
    cluster = Cluster()
    cluster.register_seed_job()
    status, _, answer = cluster.call("DELETE", "/v1/job/httpbackend")
    assert status == 200 and answer["EvalID"]
    _, _, allocs = cluster.call("GET", "/v1/job/httpbackend/allocations")
    assert {a["DesiredStatus"] for a in allocs} == {"stop"}
    _, _, job = cluster.call("GET", "/v1/job/httpbackend")
    assert job["Stop"] is True
    assert cluster.call("DELETE", "/v1/job/httpbackend?purge=true")[0] == 200
    assert cluster.call("GET", "/v1/job/httpbackend")[0] == 404
    assert cluster.call("DELETE", "/v1/job/nope")[2] == "job not found"


def test_a_failed_allocation_is_replaced_after_the_reschedule_delay():
    import threading

    cluster = Cluster(nodes=1)
    job = recorded("nomad-jobs-parse.json")["body"]
    job["TaskGroups"][0]["Count"] = 1
    job["TaskGroups"][0]["ReschedulePolicy"]["Delay"] = 100_000_000  # 0.1 s
    cluster.call("POST", "/v1/jobs", {"Job": job})
    (first,) = cluster.state.allocs
    cluster.state.update_alloc(first, ClientStatus="failed", ClientDescription="Failed tasks")
    followup = cluster.state.allocs[first]["FollowupEvalID"]
    assert cluster.state.evals[followup]["TriggeredBy"] == "alloc-failure"
    pause = threading.Event()
    for _ in range(100):
        if len(cluster.state.allocs) == 2:
            break
        pause.wait(0.02)
    replacement = [a for a in cluster.state.allocs.values() if a["ID"] != first]
    assert replacement and replacement[0]["Name"] == "httpbackend.httpbackend[0]"
    assert cluster.state.evals[followup]["Status"] == "complete"


def test_reschedule_delay_grows_exponentially_up_to_the_cap():
    policy = jobs.canonicalize(seed_job())["TaskGroups"][0]["ReschedulePolicy"]
    delays = [scheduler.reschedule_delay(policy, n) for n in (1, 2, 3, 20)]
    assert delays == [30 * 10**9, 60 * 10**9, 120 * 10**9, 3600 * 10**9]
    limited = {"Attempts": 1, "Delay": 5, "DelayFunction": "constant", "Unlimited": False}
    assert scheduler.reschedule_delay(limited, 1) == 5
    assert scheduler.reschedule_delay(limited, 2) is None

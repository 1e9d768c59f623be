"""The simulated Nomad's plan endpoint answers as real Nomad 1.0.18 did
(``tests/fixtures/recorded/plan-dns-catalog-checks/a1``-``a3``): the same Diff, the same
DesiredTGUpdates, FailedTGAllocs, JobModifyIndex and Warnings."""

from __future__ import annotations

import copy

import pytest
from test_nomad_sim_support import Cluster, recorded
from weavenomad_lab.nomad import jobdiff, plan

FOLDER = "plan-dns-catalog-checks"
KEYS = ["Annotations", "CreatedEvals", "Diff", "FailedTGAllocs", "Index", "JobModifyIndex",
        "NextPeriodicLaunch", "Warnings"]


def request_job(name: str) -> dict:
    return recorded(f"{FOLDER}/{name}.request.json")["Job"]


def answer(name: str) -> dict:
    return recorded(f"{FOLDER}/{name}.json")


@pytest.fixture
def cluster() -> Cluster:
    """The recorded situation: httpbackend (count 2) registered for acme, both placed."""
    cluster = Cluster(nodes=1)
    job = recorded(f"{FOLDER}/a0-get-job-httpbackend.json")
    status, _, registered = cluster.call("POST", "/v1/jobs", {"Job": job})
    assert status == 200, registered
    assert len(cluster.state.allocs) == 2
    return cluster


def plan_of(cluster: Cluster, job: dict) -> tuple[int, dict, dict]:
    status, headers, body = cluster.call("POST", f"/v1/job/{job['ID']}/plan",
                                         {"Job": job, "Diff": True})
    return status, headers, body


def registered_index(cluster: Cluster) -> int:
    return cluster.state.jobs[("default", "httpbackend")]["JobModifyIndex"]


def test_an_unregistered_job_is_added_with_every_field(cluster):
    status, _, body = plan_of(cluster, request_job("a1-plan-api-unregistered"))
    real = answer("a1-plan-api-unregistered")
    assert status == 200 and sorted(body) == KEYS
    assert body["Diff"] == real["Diff"]
    assert body["Annotations"] == real["Annotations"]
    assert body["JobModifyIndex"] == body["Index"] == 0
    for key in ("FailedTGAllocs", "CreatedEvals", "NextPeriodicLaunch", "Warnings"):
        assert body[key] == real[key], key


@pytest.mark.parametrize("name", ["a2-plan-api-unchanged-from-get",
                                  "a2c-plan-api-unchanged-from-parse"])
def test_the_registered_job_unchanged_plans_no_changes(cluster, name):
    status, headers, body = plan_of(cluster, request_job(name))
    real = answer(name)
    assert status == 200
    assert body["Diff"] == real["Diff"]
    assert body["Annotations"] == real["Annotations"]
    assert body["JobModifyIndex"] == body["Index"] == registered_index(cluster)
    assert headers["X-Nomad-Index"] == str(registered_index(cluster))
    assert body["Warnings"] == real["Warnings"] and body["FailedTGAllocs"] is None


def test_a_raised_count_creates_one_and_updates_two_in_place(cluster):
    status, _, body = plan_of(cluster, request_job("a3-plan-api-count3"))
    real = answer("a3-plan-api-count3")
    assert status == 200
    assert body["Diff"] == real["Diff"]
    assert body["Annotations"] == real["Annotations"]
    assert len(cluster.state.allocs) == 2  # a plan places nothing
    assert cluster.state.jobs[("default", "httpbackend")]["TaskGroups"][0]["Count"] == 2


def test_a_changed_task_is_a_destructive_update(cluster):
    job = copy.deepcopy(request_job("a3-plan-api-count3"))
    job["TaskGroups"][0]["Count"] = 2
    job["TaskGroups"][0]["Tasks"][0]["Env"]["WEAVE_CIDR"] = "net:10.32.2.0/24"
    _, _, body = plan_of(cluster, job)
    group = body["Diff"]["TaskGroups"][0]
    task = group["Tasks"][0]
    assert body["Diff"]["Type"] == group["Type"] == task["Type"] == "Edited"
    assert task["Fields"] == [{"Type": "Edited", "Name": "Env[WEAVE_CIDR]",
                               "Old": "net:10.32.1.0/24", "New": "net:10.32.2.0/24",
                               "Annotations": None}]
    assert task["Annotations"] == [plan.FORCES_DESTRUCTIVE]
    assert group["Updates"] == {"create/destroy update": 2}
    updates = body["Annotations"]["DesiredTGUpdates"]["httpbackend"]
    assert updates["DestructiveUpdate"] == 2 and updates["Place"] == updates["Ignore"] == 0


def test_a_lower_count_destroys(cluster):
    job = copy.deepcopy(request_job("a3-plan-api-count3"))
    job["TaskGroups"][0]["Count"] = 1
    _, _, body = plan_of(cluster, job)
    count = body["Diff"]["TaskGroups"][0]["Fields"][0]
    assert count["Annotations"] == [plan.FORCES_DESTROY]
    assert body["Diff"]["TaskGroups"][0]["Updates"] == {"destroy": 1, "in-place update": 1}


def test_a_placement_that_cannot_fit_reports_failed_allocations(cluster):
    job = copy.deepcopy(request_job("a1-plan-api-unregistered"))
    job["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = 10_000_000
    _, _, body = plan_of(cluster, job)
    failed = body["FailedTGAllocs"]["httpbackend"]
    assert failed["DimensionExhausted"] == {"memory": 1} and failed["NodesExhausted"] == 1
    assert failed["CoalescedFailures"] == 1
    assert body["CreatedEvals"][0]["Status"] == "blocked"


def test_a_job_without_task_networks_has_no_warnings(cluster):
    job = copy.deepcopy(request_job("a1-plan-api-unregistered"))
    job["TaskGroups"][0]["Tasks"][0]["Resources"]["Networks"] = None
    assert plan_of(cluster, job)[2]["Warnings"] == ""


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"Diff": True}, 400, "Job must be specified"),
    ({"Job": {"Name": "x"}}, 400, "Job must have a valid ID"),
    ({"Job": {"ID": "other"}}, 400, "Job ID does not match"),
    ({"Job": {"ID": "httpbackend"}}, 500, "Missing job datacenters"),
])
def test_bad_plan_requests_are_refused_as_nomad_does(cluster, body, status, text):
    got, _, answer_text = cluster.call("POST", "/v1/job/httpbackend/plan", body)
    assert got == status and text in answer_text


def test_go_formats_config_numbers_as_nomad_prints_them():
    assert jobdiff.deep_flat({"port_map": [{"http": 8081.0}], "n": 1e6, "x": None}) == {
        "port_map[0][http]": "8081", "n": "1e+06", "x": "nil"}


def test_register_warns_in_the_words_of_the_recorded_answers(cluster):
    job = copy.deepcopy(request_job("a1-plan-api-unregistered"))
    status, _, registered = cluster.call("POST", "/v1/jobs", {"Job": job})
    assert status == 200
    assert registered["Warnings"] == answer("a1-plan-api-unregistered")["Warnings"]

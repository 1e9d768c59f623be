"""Contract tests: for the recorded requests the simulated Nomad answers with the same keys,
JSON types, status codes, headers and error texts as real Nomad 1.0.18."""

from __future__ import annotations

import pytest
from test_nomad_sim_support import Cluster, recorded, shape_differences
from weavenomad_lab.nomad import shapes


@pytest.fixture
def cluster() -> Cluster:
    cluster = Cluster(nodes=1)
    cluster.register_seed_job()
    return cluster


def _run_tasks(cluster: Cluster) -> None:
    """What the node's client reports once the task runs."""
    for alloc_id in list(cluster.state.allocs):
        events = [shapes.task_event("Received", 1),
                  shapes.task_event("Task Setup", 2, Message="Building Task Directory",
                                    Details={"message": "Building Task Directory"}),
                  shapes.task_event("Started", 3)]
        state = dict(shapes.task_state(), State="running", Events=events,
                     StartedAt="2026-11-22T02:43:04.03078744Z")
        cluster.state.update_alloc(alloc_id, ClientStatus="running",
                                   ClientDescription="Tasks are running",
                                   TaskStates={"httpbackend": state})
        cluster.state.update_alloc(alloc_id, DeploymentHealthy=True)


def test_parse_answers_the_recorded_canonical_job():
    request = recorded("nomad-jobs-parse.json")
    status, headers, body = Cluster(nodes=1).call("POST", "/v1/jobs/parse",
                                                  request["request"]["body"])
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == request["body"]


def test_job_read_has_the_recorded_shape_and_headers(cluster):
    _run_tasks(cluster)
    record = recorded("nomad-job.json")
    status, headers, body = cluster.call("GET", "/v1/job/httpbackend")
    assert status == 200
    assert shape_differences(body, record["body"]) == []
    assert set(headers) == set(record["headers"])
    assert int(headers["X-Nomad-Index"]) == body["ModifyIndex"]
    assert body["Status"] == "running" and body["Stable"] is True
    check = body["TaskGroups"][0]["Tasks"][0]["Services"][0]["Checks"][0]
    assert check["Name"] == 'service: "httpbackend" check'


@pytest.mark.parametrize("path, fixture", [
    ("/v1/job/httpbackend/allocations", "nomad-job-allocations.json"),
    ("/v1/job/httpbackend/evaluations", "nomad-job-evaluations.json"),
    ("/v1/job/httpbackend/deployments", "nomad-job-deployments.json"),
    ("/v1/nodes", "nomad-nodes.json"),
])
def test_lists_have_the_recorded_shape(cluster, path, fixture):
    _run_tasks(cluster)
    record = recorded(fixture)
    for node in record["body"] if fixture == "nomad-nodes.json" else []:
        node["Drivers"].pop("mock_driver")  # a development-only driver of the recording host
    status, headers, body = cluster.call("GET", path)
    assert status == 200 and isinstance(body, list) and body
    assert shape_differences(body, record["body"]) == [], path
    assert set(headers) == set(record["headers"])


def test_two_allocations_spread_and_a_successful_deployment():
    cluster = Cluster(nodes=2)
    cluster.register_seed_job()
    _run_tasks(cluster)
    _, _, allocs = cluster.call("GET", "/v1/job/httpbackend/allocations")
    assert sorted(a["Name"] for a in allocs) == ["httpbackend.httpbackend[0]",
                                                 "httpbackend.httpbackend[1]"]
    assert len({a["NodeID"] for a in allocs}) == 2
    _, _, deployments = cluster.call("GET", "/v1/job/httpbackend/deployments")
    assert deployments[0]["Status"] == "successful"
    assert deployments[0]["TaskGroups"]["httpbackend"]["HealthyAllocs"] == 2


def test_allocation_and_node_allocations_have_the_recorded_shape(cluster):
    _run_tasks(cluster)
    alloc_id = next(iter(cluster.state.allocs))
    status, headers, body = cluster.call("GET", f"/v1/allocation/{alloc_id}")
    record = recorded("nomad-allocation.json")
    assert status == 200
    assert shape_differences(body, record["body"]) == []
    assert int(headers["X-Nomad-Index"]) == body["ModifyIndex"]
    node_id = body["NodeID"]
    status, _, listed = cluster.call("GET", f"/v1/node/{node_id}/allocations")
    assert status == 200
    assert shape_differences(listed, recorded("nomad-node-allocations.json")["body"]) == []


def test_agent_self_has_the_recorded_shape():
    status, _, body = Cluster(nodes=1).call("GET", "/v1/agent/self")
    assert status == 200
    assert shape_differences(body, recorded("nomad-agent-self.json")["body"]) == []
    assert body["config"]["Plugins"] == [{"Args": None, "Config": {"endpoint": "unix:///d.sock"},
                                          "Name": "docker"}]


def test_register_answer_fields(cluster):
    answer = cluster.register_seed_job()  # unchanged job: same JobModifyIndex, new eval
    assert set(answer) == {"EvalCreateIndex", "EvalID", "Index", "JobModifyIndex",
                           "KnownLeader", "LastContact", "Warnings"}
    assert "deprecated" in answer["Warnings"]
    _, _, job = cluster.call("GET", "/v1/job/httpbackend")
    assert job["Version"] == 0 and answer["JobModifyIndex"] == job["JobModifyIndex"]


# -- error shapes -------------------------------------------------------------------------------


def test_bad_json_is_400_unexpected_eof():
    record = recorded("error-nomad-bad-json.json")
    response = Cluster().raw("POST", "/v1/jobs", record["request"]["raw_body"].encode())
    assert response.status == record["status"] == 400
    assert response.body.decode() == record["body"]
    assert response.headers["Content-Type"] == record["headers"]["Content-Type"]


def test_job_not_found_is_404_with_index_headers():
    record = recorded("error-nomad-job-not-found.json")
    status, headers, body = Cluster().call("GET", "/v1/job/does-not-exist")
    assert (status, body) == (404, record["body"])
    assert set(headers) == set(record["headers"])


def test_unknown_endpoint_is_404_with_empty_body():
    record = recorded("error-nomad-unknown-endpoint.json")
    response = Cluster().raw("GET", record["request"]["path"])
    assert (response.status, response.body) == (404, b"")


def test_invalid_job_is_500_with_nomads_validation_text():
    record = recorded("error-nomad-register-invalid.json")
    status, headers, body = Cluster().call("POST", "/v1/jobs", record["request"]["body"])
    assert (status, body) == (500, record["body"])
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_parse_syntax_error_is_400_located_in_input_hcl():
    record = recorded("error-nomad-parse-syntax.json")
    status, _, body = Cluster().call("POST", "/v1/jobs/parse", record["request"]["body"])
    assert status == 400
    assert body.startswith("input.hcl:4,")


@pytest.mark.parametrize("method, path", [("DELETE", "/v1/jobs"), ("POST", "/v1/nodes"),
                                          ("GET", "/v1/jobs/parse"), ("PUT", "/v1/agent/self")])
def test_wrong_method_is_405_invalid_method(method, path):
    status, _, body = Cluster().call(method, path, {})
    assert (status, body) == (405, "Invalid method")


def test_bad_wait_and_index_are_400():
    cluster = Cluster()
    assert cluster.call("GET", "/v1/jobs?wait=soon")[2] == "Invalid wait time"
    assert cluster.call("GET", "/v1/jobs?index=x")[0] == 400


def test_job_id_mismatch_and_missing_job():
    cluster = Cluster()
    assert cluster.call("PUT", "/v1/job/a", {"Job": {"ID": "b"}})[2] == "Job ID does not match name"
    assert cluster.call("PUT", "/v1/jobs", {"NoJob": 1}) == (400, {"Content-Type":
                                                              "text/plain; charset=utf-8"},
                                                              "Job must be specified")


def test_oversized_body_is_413():
    response = Cluster().raw("POST", "/v1/jobs", b" " * (64 * 1024 * 1024 + 1))
    assert response.status == 413

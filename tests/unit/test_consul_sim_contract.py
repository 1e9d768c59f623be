"""Contract: for the requests recorded against a real Consul 1.4.0, the simulated Consul answers
with the same status, the same headers and a body of the same structure (field names and JSON
types, not values)."""

from __future__ import annotations

import time

import pytest
from test_consul_sim_support import RECORDED, recorded, running_sim
from weavenomad_lab.consul.records import PASSING

#: objects whose keys are data (ids, names, meta keys), not field names
KEYED = {"Meta", "ServiceMeta", "NodeMeta"}
#: answers that are a map of id -> object
KEYED_BODIES = {"consul-agent-services.json", "consul-agent-services-weave-proxy.json",
                "consul-agent-checks.json"}

NOMAD_SERVICES = [
    ("_nomad-client-s6pxrvnmilluqd6pbwhivrfgoxn6y2bp", "nomad-client", 4646, ["http"],
     {"HTTP": "http://127.0.0.1:4646/v1/agent/health?type=client", "Interval": "10s"}),
    ("_nomad-server-5fpzvxurt4wharun5dh5alxqmbukh32r", "nomad", 4648, ["serf"],
     {"TCP": "127.0.0.1:4648", "Interval": "10s"}),
]
TASKS = [("496e93a7-1a21-2d3d-58e6-14355eed58dc", "172.17.0.2"),
         ("86515af2-82d1-7e20-89f3-2ece4126b38a", "172.17.0.3")]


def kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", type(None): "null", list: "array", dict: "object"}[type(value)]


def assert_same_shape(actual, expected, where: str = "body", keyed: bool = False) -> None:
    assert kind(actual) == kind(expected), f"{where}: {kind(actual)}, recorded {kind(expected)}"
    if isinstance(expected, dict) and keyed:
        if expected:
            sample = next(iter(expected.values()))
            for key, value in actual.items():
                assert_same_shape(value, sample, f"{where}[{key!r}]")
    elif isinstance(expected, dict):
        missing, extra = set(expected) - set(actual), set(actual) - set(expected)
        assert not missing and not extra, f"{where}: missing {missing}, extra {extra}"
        for key, value in expected.items():
            assert_same_shape(actual[key], value, f"{where}.{key}", keyed=key in KEYED)
    elif isinstance(expected, list) and expected:
        # an empty list of strings (no tags) is as good as any; objects must be there to compare
        assert actual or kind(expected[0]) != "object", f"{where}: empty, recorded with items"
        for i, item in enumerate(actual):
            assert_same_shape(item, expected[0], f"{where}[{i}]")


def recorded_cluster(sim) -> None:
    """What the recording saw: Nomad's services on u1, the httpbackend job's two tasks, a
    critical mask check on the first task, and one KV key."""
    u1 = sim["u1"]
    for service_id, name, port, tags, check in NOMAD_SERVICES:
        u1.ok("PUT", "/v1/agent/service/register", {
            "ID": service_id, "Name": name, "Tags": tags, "Port": port, "Address": "127.0.0.1",
            "Meta": {"external-source": "nomad"},
            "Check": {"Name": f"Nomad {name} check", **check}})
    for alloc, address in TASKS:
        u1.ok("PUT", "/v1/agent/service/register", {
            "ID": f"_nomad-task-{alloc}-httpbackend-httpbackend-8081", "Name": "httpbackend",
            "Tags": [], "Port": 8081, "Address": address, "Meta": {"external-source": "nomad"},
            "Checks": [{"CheckID": f"_nomad-check-{alloc}", "TCP": f"{address}:8081",
                        "Interval": "10s", "Name": 'service: "httpbackend" check'}]})
    u1.ok("PUT", "/v1/agent/check/register", {
        "ID": "weavenomad-mask-test", "Name": "weave address mask", "Notes": "superseded",
        "ServiceID": f"_nomad-task-{TASKS[0][0]}-httpbackend-httpbackend-8081", "TTL": "87600h"})
    u1.ok("PUT", "/v1/kv/weavenomad/test", "x")
    deadline = time.monotonic() + 5
    while any(c["Status"] != PASSING for c in u1.get("/v1/agent/checks").json().values()
              if c["CheckID"].startswith("_nomad-check")):
        assert time.monotonic() < deadline, "the checks did not pass"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster():
    with running_sim() as sim:
        recorded_cluster(sim)
        yield sim


RECORDINGS = sorted(p.name for p in RECORDED.glob("consul-*.json")) + sorted(
    p.name for p in RECORDED.glob("error-consul-*.json"))


def test_every_recorded_consul_answer_is_covered():
    assert len(RECORDINGS) >= 13


@pytest.mark.parametrize("name", RECORDINGS)
def test_same_status_headers_and_structure(cluster, name):
    record = recorded(name)
    request = record["request"]
    response = cluster["u1"].request(request["method"], request["path"],
                                     data=request.get("raw_body"))
    assert response.status_code == record["status"], response.text
    for header, value in record["headers"].items():
        assert header in response.headers, f"{header} missing: {dict(response.headers)}"
        if header == "X-Consul-Index":
            assert int(response.headers[header]) > 0
        else:
            assert response.headers[header] == value
    if "Content-Type" not in record["headers"]:
        assert "Content-Type" not in response.headers
    if isinstance(record["body"], str):
        assert response.text == record["body"]
    else:
        assert_same_shape(response.json(), record["body"], keyed=name in KEYED_BODIES)


def test_shape_check_catches_a_missing_field():
    good = recorded("consul-catalog-service.json")["body"]
    broken = [dict(good[0])]
    del broken[0]["ServiceWeights"]
    with pytest.raises(AssertionError, match="ServiceWeights"):
        assert_same_shape(broken, good)
    retyped = [dict(good[0], ServicePort="8081")]
    with pytest.raises(AssertionError, match="ServicePort"):
        assert_same_shape(retyped, good)


def test_agent_self_names_the_node_it_was_asked_on(cluster):
    for node in ("u1", "u2"):
        body = cluster[node].get("/v1/agent/self").json()
        assert body["Config"]["NodeName"] == body["Member"]["Name"] == node
    assert cluster["u1"].get("/v1/agent/self").json()["Config"]["Server"] is True
    assert cluster["u2"].get("/v1/agent/self").json()["Member"]["Tags"]["role"] == "node"


def test_status_leader_is_the_server_rpc_address(cluster):
    for node in ("u1", "u2"):
        assert cluster[node].get("/v1/status/leader").json() == "127.0.0.1:8300"

"""The simulated Consul's ``/v1/agent/health/service/id/<id>``, as Consul's
``AgentHealthServiceByID``: the local service with its checks and their aggregated status, the
HTTP status saying it, 404 for an unknown ID; and the product's reads of it."""

from __future__ import annotations

import pytest
from test_consul_sim_support import nomad_service, running_sim

from weavenomad.clients.consul import ConsulAPI
from weavenomad.reconcile.consul import ConsulAgent

ALLOC = "5a2ac1a4-0b0b-4c3c-9d9d-000000000001"
SERVICE = f"_nomad-task-{ALLOC}-httpbackend-httpbackend-8081"


@pytest.fixture
def sim():
    with running_sim(first_run_within=3600.0) as running:
        yield running


def test_one_service_with_its_checks_and_the_aggregated_status(sim):
    agent = sim["u1"]
    agent.ok("PUT", "/v1/agent/service/register", nomad_service(ALLOC))
    agent.ok("PUT", "/v1/agent/service/register", {"ID": "other", "Name": "other",
                                                     "Check": {"TTL": "30s", "Status": "passing"}})
    answer = agent.get(f"/v1/agent/health/service/id/{SERVICE}")
    assert answer.status_code == 503  # Nomad's check has not run yet: critical
    body = answer.json()
    assert body["AggregatedStatus"] == "critical"
    assert body["Service"]["ID"] == SERVICE and body["Service"]["Port"] == 8081
    assert [c["CheckID"] for c in body["Checks"]] == [f"_nomad-check-{ALLOC}"]
    assert body["Checks"][0]["ServiceID"] == SERVICE
    assert agent.get(f"/v1/agent/health/service/id/{SERVICE}?format=text").text == "critical"


@pytest.mark.parametrize(("status", "code"), [("passing", 200), ("warning", 429),
                                              ("critical", 503)])
def test_the_http_status_follows_the_worst_check(sim, status, code):
    agent = sim["u1"]
    agent.ok("PUT", "/v1/agent/service/register", {"ID": "s1", "Name": "s", "Checks": [
        {"CheckID": "a", "TTL": "30s", "Status": "passing"},
        {"CheckID": "b", "TTL": "30s", "Status": status}]})
    answer = agent.get("/v1/agent/health/service/id/s1")
    assert (answer.status_code, answer.json()["AggregatedStatus"]) == (code, status)


def test_a_service_without_checks_passes_and_an_unknown_one_is_404(sim):
    agent = sim["u1"]
    agent.ok("PUT", "/v1/agent/service/register", {"ID": "bare", "Name": "bare"})
    assert agent.get("/v1/agent/health/service/id/bare").status_code == 200
    missing = agent.get("/v1/agent/health/service/id/nope")
    assert missing.status_code == 404
    assert missing.json() == {"AggregatedStatus": "critical", "Service": None, "Checks": None}
    text = agent.get("/v1/agent/health/service/id/nope", headers={"Accept": "text/plain"})
    assert (text.status_code, text.text) == (404, "ServiceId nope not found")


def test_only_the_agent_of_the_services_node_knows_it(sim):
    sim["u1"].ok("PUT", "/v1/agent/service/register", nomad_service(ALLOC))
    assert sim["u2"].get(f"/v1/agent/health/service/id/{SERVICE}").status_code == 404


def test_the_product_reads_one_service_with_its_checks_whatever_its_health(sim):
    agent = sim["u1"]
    agent.ok("PUT", "/v1/agent/service/register", nomad_service(ALLOC))
    api = ConsulAPI(agent.base, timeout=5)
    raw = api.agent_service_health(SERVICE)
    assert raw is not None and raw["Service"]["ID"] == SERVICE  # a 503 is an answer
    assert api.agent_service_health("nope") is None
    service, checks = ConsulAgent(api).local_service(SERVICE)
    assert service is not None and service.port == 8081 and service.nomad_task
    assert list(checks) == [f"_nomad-check-{ALLOC}"]
    assert checks[f"_nomad-check-{ALLOC}"].service_id == SERVICE
    assert ConsulAgent(api).local_service("nope") == (None, {})

import threading
import time

import pytest
from test_clients_support import FakeAdapter, StreamServer, fake_session, recorded, tls_files

from weavenomad.clients.nomad import NomadAPI, hcl_variables
from weavenomad.config import build_settings
from weavenomad.errors import (
    BackendAuthError,
    BackendNotFound,
    BackendRequestError,
    BackendUnavailable,
    CasConflict,
    ValidationError,
)

TOKEN = "4f1c0b9e-token-secret"


def api(env=None, **flags):
    adapter = FakeAdapter()
    settings = build_settings(flags, {"NOMAD_TOKEN": TOKEN, **(env or {})})
    return NomadAPI.from_settings(settings, session=fake_session(adapter)), adapter


def test_reads_send_token_timeout_and_verify_tls_by_default():
    nomad, fake = api()
    fake.add_recorded("nomad-agent-self.json")
    fake.add_recorded("nomad-nodes.json")
    assert nomad.agent_self()["config"]["Region"] == "global"
    assert [n["Name"] for n in nomad.nodes()] == ["u1"]
    for sent in fake.sent:
        assert sent.headers["X-Nomad-Token"] == TOKEN
        assert TOKEN not in sent.url
        assert sent.timeout == 10.0
        assert sent.verify is True


def test_ca_client_cert_region_and_namespace_come_from_settings():
    nomad, fake = api({"NOMAD_CACERT": "/etc/nomad/ca.pem", "NOMAD_CLIENT_CERT": "/c.pem",
                       "NOMAD_CLIENT_KEY": "/k.pem", "NOMAD_REGION": "eu",
                       "NOMAD_NAMESPACE": "team-a", "NOMAD_ADDR": "https://nomad:4646"})
    fake.add_recorded("nomad-job.json")
    nomad.job("httpbackend")
    sent = fake.sent[0]
    assert sent.url.startswith("https://nomad:4646/v1/job/httpbackend?")
    assert sent.verify == "/etc/nomad/ca.pem" and sent.cert == ("/c.pem", "/k.pem")
    assert sent.query == {"namespace": ["team-a"], "region": ["eu"]}


def test_blocking_query_returns_index_and_waits_less_than_the_timeout():
    nomad, fake = api()
    fake.add_recorded("nomad-job-allocations.json")
    index, allocs = nomad.job_allocations("httpbackend", index=20, wait=5)
    assert index == 21 and len(allocs) == 2
    sent = fake.sent[0]
    assert sent.query == {"index": ["20"], "wait": ["5000ms"]}
    assert sent.timeout > 5 + 5 / 16


def test_blocking_query_without_index_returns_at_once_with_the_index():
    nomad, fake = api()
    fake.add_recorded("nomad-node-allocations.json")
    index, allocs = nomad.node_allocations("c4b849f2-a39d-ab9b-c9c0-f09d87bb99ed")
    assert index == 19 and allocs
    assert fake.sent[0].query == {} and fake.sent[0].timeout == 10.0


@pytest.mark.parametrize("method, name", [("job_evaluations", "nomad-job-evaluations.json"),
                                          ("job_deployments", "nomad-job-deployments.json")])
def test_job_history_reads_are_blocking(method, name):
    nomad, fake = api()
    fake.add_recorded(name)
    index, items = getattr(nomad, method)("httpbackend", index=1)
    assert index == int(recorded(name)["headers"]["X-Nomad-Index"]) and items
    assert fake.sent[0].query["wait"] == ["30000ms"]


def test_missing_job_is_not_found_with_nomads_words():
    nomad, fake = api()
    fake.add_recorded("error-nomad-job-not-found.json")
    with pytest.raises(BackendNotFound) as caught:
        nomad.job("does-not-exist")
    assert caught.value.one_line() == (
        "Nomad at http://127.0.0.1:4646 has no /v1/job/does-not-exist: job not found"
    )


def test_unknown_endpoint_is_not_found():
    nomad, fake = api()
    fake.add("GET", "/v1/node/x", status=404, body=recorded(
        "error-nomad-unknown-endpoint.json")["body"])
    with pytest.raises(BackendNotFound):
        nomad.node("x")


def test_denied_request_hints_at_the_token_and_never_shows_it():
    nomad, fake = api()
    fake.add("GET", "/v1/jobs", status=403, body=f"Permission denied for {TOKEN}")
    with pytest.raises(BackendAuthError) as caught:
        nomad.jobs()
    line = caught.value.one_line()
    assert TOKEN not in line and TOKEN not in caught.value.body
    assert "lacks this permission" in line


def test_parse_sends_the_hcl_and_returns_the_canonical_job():
    nomad, fake = api()
    record = recorded("nomad-jobs-parse.json")
    fake.add_recorded("nomad-jobs-parse.json")
    job = nomad.parse_job(record["request"]["body"]["JobHCL"])
    assert job["ID"] == "httpbackend"
    assert fake.sent[0].json() == record["request"]["body"]


def test_parse_syntax_error_names_the_users_file():
    nomad, fake = api()
    fake.add_recorded("error-nomad-parse-syntax.json")
    with pytest.raises(BackendRequestError) as caught:
        nomad.parse_job("job {", filename="jobs/web.hcl")
    line = caught.value.one_line()
    assert line.startswith("Nomad cannot parse jobs/web.hcl: jobs/web.hcl:4,16-5,1: Invalid")
    assert "input.hcl" not in line


def test_parse_variables_become_an_hcl_variable_file():
    nomad, fake = api()
    fake.add_recorded("nomad-jobs-parse.json")
    nomad.parse_job("job", variables={"image": "bb:${x}", "count": 2, "dcs": ["dc1"]})
    assert fake.sent[0].json()["Variables"] == (
        'image = "bb:$${x}"\ncount = 2\ndcs = ["dc1"]\n'
    )
    with pytest.raises(ValidationError):
        hcl_variables({"bad name": 1})


def test_invalid_job_is_a_permanent_request_error_not_a_server_error():
    nomad, fake = api()
    fake.add_recorded("error-nomad-register-invalid.json")
    with pytest.raises(BackendRequestError) as caught:
        nomad.register_job(recorded("error-nomad-register-invalid.json")["request"]["body"]["Job"])
    assert caught.value.temporary is False
    assert "Missing task driver" in caught.value.one_line()


def test_register_with_check_index_enforces_it_and_maps_a_lost_race():
    nomad, fake = api()
    fake.add("POST", "/v1/jobs", status=500, body=(
        "Enforcing job modify index 5: job exists with conflicting job modify index: 7"))
    with pytest.raises(CasConflict) as caught:
        nomad.register_job({"ID": "web"}, check_index=5)
    assert fake.sent[0].json() == {"Job": {"ID": "web"}, "EnforceIndex": True,
                                   "JobModifyIndex": 5}
    assert caught.value.temporary


def test_ids_are_quoted_into_one_path_segment():
    nomad, fake = api()
    fake.add("GET", "/v1/job/a%2Fb", body={"ID": "a/b"})
    assert nomad.job("a/b")["ID"] == "a/b"


def test_a_silent_server_times_out_as_unavailable():
    released = threading.Event()
    server = StreamServer(lambda handler: released.wait(5))
    try:
        nomad = NomadAPI(server.url, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="did not answer GET /v1/agent/self"):
            nomad.agent_self()
        assert time.monotonic() - started < 3
    finally:
        released.set()
        server.close()


def answer_json(handler):
    body = b'{"config": {}}'
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_tls_is_verified_by_default_and_the_ca_setting_makes_it_pass(tmp_path):
    cert, key = tls_files(tmp_path)
    server = StreamServer(answer_json, tls=(cert, key))
    try:
        unverified = NomadAPI.from_settings(build_settings({}, {"NOMAD_ADDR": server.url}))
        with pytest.raises(BackendUnavailable) as caught:
            unverified.agent_self()
        assert caught.value.temporary is False
        assert caught.value.one_line() == (
            f"TLS with Nomad at {server.url} failed: certificate verify failed: "
            "self-signed certificate (set NOMAD_CACERT to the CA that signed Nomad's certificate)"
        )
        trusted = NomadAPI.from_settings(
            build_settings({}, {"NOMAD_ADDR": server.url, "NOMAD_CACERT": cert}))
        assert trusted.agent_self() == {"config": {}}
    finally:
        server.close()


def test_evaluations_and_job_eval_with_a_percent_encoded_job_id():
    import json as json_module

    nomad, fake = api()
    fake.add("GET", "/v1/evaluations", body=[{"ID": "e1", "JobID": "web", "Status": "blocked"}])
    fake.add("POST", "/v1/job/%C3%9Cn%C3%AFc%C3%B8d%C3%A9-%E4%BD%9C%E4%B8%9A/evaluate",
             body={"EvalID": "e2", "EvalCreateIndex": 9, "JobModifyIndex": 3})
    assert nomad.evaluations() == [{"ID": "e1", "JobID": "web", "Status": "blocked"}]
    assert nomad.evaluate_job("Ünïcødé-作业")["EvalID"] == "e2"
    assert json_module.loads(fake.sent[-1].body) == {
        "JobID": "Ünïcødé-作业", "EvalOptions": {"ForceReschedule": False}}

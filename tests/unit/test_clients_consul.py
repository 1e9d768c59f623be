import json

import pytest
from test_clients_support import FakeAdapter, fake_session, free_port, recorded

from weavenomad.clients.consul import ConsulAPI, parse_consul_addr
from weavenomad.config import build_settings
from weavenomad.errors import (
    BackendAuthError,
    BackendNotFound,
    BackendRequestError,
    BackendServerError,
    BackendUnavailable,
    ConfigError,
)

TOKEN = "b7d2c1a0-consul-secret"


def api(env=None, token=TOKEN):
    adapter = FakeAdapter()
    environ = {"CONSUL_HTTP_TOKEN": token} if token else {}
    settings = build_settings({}, {**environ, **(env or {})})
    return ConsulAPI.from_settings(settings, session=fake_session(adapter)), adapter


def test_every_call_carries_token_timeout_and_tls_verification():
    consul, fake = api()
    fake.add_recorded("consul-agent-self.json")
    fake.add_recorded("consul-agent-services.json")
    fake.add_recorded("consul-agent-checks.json")
    consul.agent_self()  # py-consul itself sends no token here
    services = consul.agent_services()
    checks = consul.agent_checks()
    assert any(s["Service"] == "httpbackend" for s in services.values())
    assert checks
    for sent in fake.sent:
        assert sent.headers["X-Consul-Token"] == TOKEN
        assert TOKEN not in sent.url
        assert sent.timeout == 10.0 and sent.verify is True


def test_settings_token_wins_over_the_process_environment(monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-process-env")
    consul, fake = api(token=None)
    fake.add_recorded("consul-agent-services.json")
    consul.agent_services()
    assert "X-Consul-Token" not in fake.sent[0].headers


def test_https_ca_and_client_cert_are_passed():
    consul, fake = api({"CONSUL_HTTP_ADDR": "consul.example:8501", "CONSUL_HTTP_SSL": "true",
                        "CONSUL_CACERT": "/ca.pem", "CONSUL_CLIENT_CERT": "/c.pem",
                        "CONSUL_CLIENT_KEY": "/k.pem"})
    fake.add_recorded("consul-agent-services.json")
    consul.agent_services()
    sent = fake.sent[0]
    assert sent.url == "https://consul.example:8501/v1/agent/services"
    assert sent.verify == "/ca.pem" and sent.cert == ("/c.pem", "/k.pem")


def test_addresses():
    assert parse_consul_addr("http://127.0.0.1:8500") == ("http", "127.0.0.1", 8500)
    assert parse_consul_addr("10.0.0.5:8500") == ("http", "10.0.0.5", 8500)
    assert parse_consul_addr("https://consul") == ("https", "consul", 443)
    assert parse_consul_addr("http://[::1]:8500") == ("http", "[::1]", 8500)
    for bad in ("unix:///var/run/consul.sock", "http://consul:8500/prefix", "http://c:99999"):
        with pytest.raises(ConfigError):
            parse_consul_addr(bad)


def test_health_passing_returns_index_and_instances():
    consul, fake = api()
    fake.add_recorded("consul-health-service-passing.json")
    index, instances = consul.health_service("httpbackend", passing=True)
    assert index == 35
    assert instances == recorded("consul-health-service-passing.json")["body"]
    assert fake.sent[0].query == {"passing": ["1"]}


def test_blocking_health_query_waits_less_than_the_timeout():
    consul, fake = api()
    fake.add_recorded("consul-health-service.json")
    index, _ = consul.health_service("httpbackend", index=30, wait=5)
    assert index == 35
    assert fake.sent[0].query == {"index": ["30"], "wait": ["5000ms"]}
    assert fake.sent[0].timeout > 5 + 5 / 16


def test_kv_get_decodes_the_value_and_keeps_the_modify_index():
    consul, fake = api()
    fake.add_recorded("consul-kv-get.json")
    fake.add_recorded("consul-kv-get-missing.json")
    index, entry = consul.kv_get("weavenomad/test")
    assert index == 98 and entry["Value"] == b"x" and entry["ModifyIndex"] == 98
    assert consul.kv_get("weavenomad/missing") == (98, None)


def test_kv_put_with_cas_reports_a_lost_race_as_false():
    consul, fake = api()
    fake.add_recorded("consul-kv-put-cas-conflict.json")
    assert consul.kv_put("weavenomad/test", "v", cas=1) is False
    assert fake.sent[0].query == {"cas": ["1"]} and fake.sent[0].body == b"v"


def test_kv_put_succeeds():
    consul, fake = api()
    fake.add("PUT", "/v1/kv/weavenomad/a", body="true", query={"cas": "0"})
    assert consul.kv_put("weavenomad/a", b"{}", cas=0) is True


def test_service_register_sends_the_definition_verbatim():
    consul, fake = api()
    fake.add("PUT", "/v1/agent/service/register")
    definition = {"ID": "weavenomad-a-web-http-8081", "Name": "web", "Address": "10.32.1.1",
                  "Port": 8081, "Meta": {"weavenomad": "twin"},
                  "Checks": [{"TCP": "10.32.1.1:8081", "Interval": "5s"}]}
    consul.service_register(definition)
    assert json.loads(fake.sent[0].body) == definition


def test_service_register_bad_definition_is_a_request_error():
    consul, fake = api()
    fake.add_recorded("error-consul-register-bad-json.json")
    with pytest.raises(BackendRequestError, match="Request decode failed"):
        consul.service_register({"Name": None})


def test_deregistering_an_unknown_service_is_quiet():
    consul, fake = api()
    fake.add_recorded("error-consul-deregister-unknown.json")
    fake.add("PUT", "/v1/agent/service/deregister/gone", status=404, body="Unknown service ID")
    assert consul.service_deregister("nope") is True  # Consul 1.4
    assert consul.service_deregister("gone") is False  # newer Consul


def test_ttl_of_an_unknown_check_is_not_found_not_a_server_error():
    consul, fake = api()
    fake.add_recorded("error-consul-check-pass-unknown.json")
    with pytest.raises(BackendNotFound) as caught:
        consul.check_ttl("nope", "passing")
    assert not caught.value.temporary


def test_ttl_states():
    consul, fake = api()
    fake.add("PUT", "/v1/agent/check/fail/mask")
    consul.check_ttl("mask", "critical")
    with pytest.raises(ValueError):
        consul.check_ttl("mask", "maybe")


def test_check_register_and_deregister():
    consul, fake = api()
    fake.add("PUT", "/v1/agent/check/register")
    fake.add("PUT", "/v1/agent/check/deregister/mask")
    consul.check_register({"ID": "mask", "Name": "mask", "TTL": "87600h"})
    assert json.loads(fake.sent[0].body)["TTL"] == "87600h"
    assert consul.check_deregister("mask") is True


def test_denied_names_the_request_and_the_variable():
    consul, fake = api(token=None)
    fake.add("GET", "/v1/kv/weavenomad/test", status=403, body="ACL not found")
    with pytest.raises(BackendAuthError) as caught:
        consul.kv_get("weavenomad/test")
    assert caught.value.one_line() == (
        "Consul denied GET /v1/kv/weavenomad/test: ACL not found "
        "(set CONSUL_HTTP_TOKEN or --consul-token)"
    )


def test_server_errors_are_temporary():
    consul, fake = api()
    fake.add("GET", "/v1/health/service/web", status=500, body="No cluster leader")
    with pytest.raises(BackendServerError) as caught:
        consul.health_service("web")
    assert caught.value.temporary


def test_unreachable_consul():
    consul = ConsulAPI(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(BackendUnavailable, match="cannot reach Consul at .*connection refused"):
        consul.agent_services()

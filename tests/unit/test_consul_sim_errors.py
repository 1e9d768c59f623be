"""Bad input gets the status codes and texts Consul 1.4 gives (400/404/405/413/500), never a
traceback."""

from __future__ import annotations

import json

import pytest
import requests
from test_consul_sim_support import running_sim
from weavenomad_lab.consul.decode import parse_go_duration
from weavenomad_lab.consul.http import ConsulAPI, Request
from weavenomad_lab.consul.state import ConsulState

TEXT = "text/plain; charset=utf-8"


@pytest.fixture(scope="module")
def u1():
    with running_sim() as sim:
        yield sim["u1"]


def assert_text(response: requests.Response, status: int, text: str) -> None:
    assert (response.status_code, response.text) == (status, text)
    assert response.headers.get("Content-Type") == (TEXT if text else None)


@pytest.mark.parametrize(("body", "message"), [
    ('{"Name": ', "unexpected EOF"),
    ("", "EOF"),
    ('{"Name": x}', "invalid character 'x' looking for beginning of value"),
    ('{"Name" "web"}', "invalid character '\"' after object key"),
    ('{"Name": "web" "Port": 1}', "invalid character '\"' after object key:value pair"),
    ('{"Tags": ["a" "b"]}', "invalid character '\"' after array element"),
    ("{'Name': 'web'}", "invalid character '\\'' looking for beginning of object key string"),
    ("[1, 2]", "'' expected a map, got 'slice'"),
    ('{"Name": "web", "Port": "80"}',
     "1 error(s) decoding:\n\n* 'Port' expected type 'int', got unconvertible type 'string'"),
    ('{"Name": "web", "Check": {"TCP": "a:1", "Interval": "10x"}}',
     'time: unknown unit "x" in duration "10x"'),
    ('{"Name": "web", "Check": {"TTL": "10"}}', 'time: missing unit in duration "10"'),
])
def test_a_body_that_does_not_decode_is_400_request_decode_failed(u1, body, message):
    assert_text(u1.put("/v1/agent/service/register", body), 400,
                f"Request decode failed: {message}")


@pytest.mark.parametrize(("body", "text"), [
    ({"Port": 80}, "Missing service name"),
    ({"Name": "web", "Address": "0.0.0.0"}, "Invalid service address"),
    ({"Name": "web", "Meta": {"consul-x": "1"}},
     "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): Key prefix "
     "'consul-' is reserved for internal use"),
    ({"Name": "web", "Weights": {"Passing": 0, "Warning": 1}},
     "Invalid Weights: Passing must be greater than 0"),
    ({"Name": "web", "Check": {"TCP": "a:1"}},
     "Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks"),
    ({"Name": "web", "Check": {"TTL": "1s", "Interval": "1s", "HTTP": "http://a"}},
     "Invalid check: Interval and TTL cannot both be specified"),
    ({"Name": "web", "Checks": [{"Name": "c"}]}, "Invalid check: TTL must be > 0 for TTL checks"),
    ({"Name": "web", "Check": {"TTL": "1s", "Status": "ok"}},
     "Status for checks must 'passing', 'warning', 'critical'"),
])
def test_service_registration_is_validated_like_consul(u1, body, text):
    assert_text(u1.put("/v1/agent/service/register", body), 400, text)


def test_trailing_bytes_after_the_json_value_are_ignored_as_go_does(u1):
    assert u1.put("/v1/agent/service/register", '{"Name": "tail"} garbage').status_code == 200
    assert "tail" in u1.get("/v1/agent/services").json()


def test_check_registration_and_updates(u1):
    assert_text(u1.put("/v1/agent/check/register", {"TTL": "1s"}), 400, "Missing check name")
    assert_text(u1.put("/v1/agent/check/register", {"Name": "c", "TTL": "1s", "Status": "up"}),
                400, "Bad check status")
    assert_text(u1.put("/v1/agent/check/register",
                       {"Name": "c", "TTL": "1s", "ServiceID": "nope"}),
                500, 'ServiceID "nope" does not exist')
    u1.ok("PUT", "/v1/agent/check/register", {"Name": "ttl-check", "TTL": "10m"})
    assert_text(u1.put("/v1/agent/check/update/ttl-check", {"Status": "ok"}), 400,
                "Invalid check status: 'ok'")
    assert_text(u1.put("/v1/agent/check/deregister/"), 500, "CheckID missing")
    assert_text(u1.put("/v1/agent/service/deregister/"), 500, "ServiceID missing")


@pytest.mark.parametrize("path", ["/", "/v1/nope", "/v1/agent/servicesx", "/v1/agent/services/"])
def test_an_unknown_path_is_404_with_an_empty_body(u1, path):
    assert_text(u1.get(path), 404, "")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/agent/service/register", "OPTIONS,PUT"),
    ("PUT", "/v1/agent/services", "OPTIONS,GET"),
    ("DELETE", "/v1/catalog/services", "OPTIONS,GET"),
    ("POST", "/v1/kv/x", "OPTIONS,GET,PUT,DELETE"),
    ("PUT", "/v1/health/service/web", "OPTIONS,GET"),
])
def test_a_wrong_method_is_405_with_allow(u1, method, path, allow):
    response = u1.request(method, path)
    assert_text(response, 405, f"method {method} not allowed")
    assert response.headers["Allow"] == allow


def test_kv_values_above_512_kib_are_413_and_the_server_stays_usable(u1):
    limit = 512 * 1024
    assert u1.put("/v1/kv/big", b"v" * limit).json() is True
    assert_text(u1.put("/v1/kv/big", b"v" * (limit + 1)), 413,
                "Value exceeds 524288 byte limit")
    chunked = u1.request("PUT", "/v1/kv/big", data=iter([b"v" * limit, b"v"]))  # chunked
    assert chunked.status_code == 413
    assert len(u1.get("/v1/kv/big?raw").content) == limit


@pytest.mark.parametrize(("method", "path", "status", "text"), [
    ("GET", "/v1/catalog/services?index=x", 400, "Invalid index"),
    ("GET", "/v1/catalog/services?index=1&wait=10", 400, "Invalid wait time"),
    ("GET", "/v1/catalog/services?stale&consistent", 400,
     "Cannot specify ?stale with ?consistent, conflicting semantics."),
    ("GET", "/v1/catalog/service/", 400, "Missing service name"),
    ("GET", "/v1/health/service/web?passing=maybe", 400, "Invalid value for ?passing"),
    ("GET", "/v1/catalog/services?dc=dc2", 500, "No path to datacenter"),
    ("GET", "/v1/kv/", 400, "Missing key name"),
    ("PUT", "/v1/kv/", 400, "Missing key name"),
    ("PUT", "/v1/kv/a?cas=1&acquire=s", 400, "Conflicting flags: acquire=s&cas=1"),
    ("DELETE", "/v1/kv/a?recurse&cas=1", 400, "Conflicting flags: cas=1&recurse="),
    ("PUT", "/v1/kv/a?flags=x", 500, 'strconv.ParseUint: parsing "x": invalid syntax'),
    ("PUT", "/v1/kv/a?acquire=s1", 500, 'invalid session "s1"'),
    ("PUT", "/v1/agent/check/pass/nope", 500, 'CheckID "nope" does not have associated TTL'),
])
def test_bad_parameters(u1, method, path, status, text):
    assert_text(u1.request(method, path), status, text)


def test_the_kv_root_lists_no_keys_as_an_empty_list_and_a_missing_prefix_as_404(u1):
    assert u1.get("/v1/kv/nothing/?keys").status_code == 404
    assert isinstance(u1.get("/v1/kv/?keys").json(), list)


def test_a_failing_handler_answers_500_text_not_a_traceback():
    state = ConsulState()
    state.add_node("u1", "127.0.0.1", server=True)

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    state.agent_services = explode
    api = ConsulAPI(state)
    response = api.handle(Request("GET", "/v1/agent/services", {}, {}, "u1"))
    assert response.status == 500
    assert b"boom" in response.body and b"Traceback" not in response.body


def test_options_lists_the_allowed_methods(u1):
    response = u1.request("OPTIONS", "/v1/kv/a")
    assert response.status_code == 200
    assert response.headers["Allow"] == "OPTIONS,GET,PUT,DELETE"


def test_pretty_output(u1):
    text = u1.get("/v1/catalog/datacenters?pretty").text
    assert text == json.dumps(["dc1"], indent=4) + "\n"


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("90s", 90.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("300ms", 0.3),
    ("-1s", -1.0), ("2us", 2e-6), ("87600h", 87600 * 3600.0),
])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'),
    ("10", 'time: missing unit in duration "10"'),
    ("10x", 'time: unknown unit "x" in duration "10x"'),
    ("s", 'time: invalid duration "s"'),
])
def test_bad_go_durations(text, message):
    with pytest.raises(ValueError, match=message):
        parse_go_duration(text)

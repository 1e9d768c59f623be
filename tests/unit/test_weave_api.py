"""The emulated Weave HTTP API against the recorded answers of real Weave 2.8.1: same status
codes, content types, fields and types, and the same texts."""

import asyncio
import json
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from weavenomad_lab.weave import api, status
from weavenomad_lab.weave.ipam import EXPOSE_IDENT, Ipam

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
C1 = "e6542df8b707b9d42fdd440e1f4b2eca1b928f64bcb1bd4314fe1b8694036f09"
C2 = "e77733f8c83fd4ef7636913895b7cd926efe76853d458ba961775d96a7a902cf"
ME = status.PeerInfo(node="n1", index=1, name="0e:1d:12:1a:1a:88", nickname="u1",
                     host_ip="192.168.56.3", uid=8530274039646942737, short_id=2254)


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


@pytest.fixture
def exposed() -> list:
    return []


@pytest.fixture
def ctx(exposed) -> api.ApiContext:
    """The recorded node: range /16, default subnet 10.32.0.0/24, both subnets exposed, the
    two httpbackend containers in 10.32.1.0/24."""
    ipam = Ipam(universe=IPv4Network("10.32.0.0/16"))
    ipam.form_ring([(ME.name, ME.nickname)])  # a lone peer: its consensus is itself
    ipam.claim("n1", C1, IPv4Interface("10.32.1.1/24"))
    ipam.claim("n1", C2, IPv4Interface("10.32.1.2/24"))
    ipam.claim("n1", EXPOSE_IDENT, IPv4Interface("10.32.1.3/24"))
    ipam.claim("n1", EXPOSE_IDENT, IPv4Interface("10.32.0.2/24"))

    async def expose(address):
        exposed.append(address)

    return api.ApiContext(
        me=ME, peers=[ME], ipam=ipam, default_subnet=IPv4Network("10.32.0.0/24"),
        proxy_addresses=["unix:///var/run/weave/weave.sock"] * 2, expose=expose,
    )


def call(ctx, method: str, path: str, headers=()) -> api.Response:
    return asyncio.run(api.handle(api.Request(method, path, tuple(headers)), ctx))


def replay(ctx, name: str) -> tuple[dict, api.Response]:
    fixture = recorded(name)
    request = fixture["request"]
    response = call(ctx, request["method"], request["path"],
                    tuple(request.get("headers", {}).items()))
    assert response.status == fixture["status"], response.body
    if "headers" in fixture:
        assert response.content_type == fixture["headers"]["Content-Type"]
    return fixture, response


def shape_differences(expected, actual, path="") -> list[str]:
    """Keys missing or added, and values of another JSON type (null matches anything)."""
    if expected is None or actual is None:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {type(actual).__name__} instead of an object"]
        problems = [f"{path}.{k}: missing" for k in expected if k not in actual]
        problems += [f"{path}.{k}: unexpected" for k in actual if k not in expected]
        for key in expected.keys() & actual.keys():
            problems += shape_differences(expected[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: {type(actual).__name__} instead of a list"]
        if expected and actual:
            return shape_differences(expected[0], actual[0], f"{path}[0]")
        return []
    if isinstance(expected, bool) != isinstance(actual, bool) or (
        type(expected) is not type(actual) and not isinstance(actual, type(expected))
    ):
        return [f"{path}: {type(actual).__name__} instead of {type(expected).__name__}"]
    return []


def test_ip_lists_owned_addresses_like_the_recording(ctx):
    fixture, response = replay(ctx, "weave-ip-all.json")
    body = json.loads(response.body)
    assert shape_differences(fixture["body"], body) == []
    expected = {e["containerid"]: set(e["addrs"]) for e in fixture["body"]["owned"]}
    assert {e["containerid"]: set(e["addrs"]) for e in body["owned"]} == expected
    assert body["owned"][0]["containerid"] == EXPOSE_IDENT


def test_ip_of_a_container_looks_in_the_default_subnet_only(ctx):
    fixture, response = replay(ctx, "weave-ip-container-default-subnet.json")
    assert response.body.decode() == fixture["body"] == ""
    assert response.content_type is None  # Go sets none for an empty body


def test_ip_of_a_container_in_a_subnet(ctx):
    fixture, response = replay(ctx, "weave-ip-container-in-subnet.json")
    assert response.body.decode() == fixture["body"]
    assert response.content_type == "text/plain; charset=utf-8"


def test_default_subnet_and_proxy_addresses(ctx):
    for name in ("weave-ipinfo-defaultsubnet.json", "weave-proxyaddrs.json"):
        fixture, response = replay(ctx, name)
        assert response.body.decode() == fixture["body"]


def test_report_has_the_recorded_shape(ctx):
    fixture, response = replay(ctx, "weave-report.json")
    report = json.loads(response.body)
    assert shape_differences(fixture["body"], report) == []
    assert report["IPAM"]["ActiveIPs"] == fixture["body"]["IPAM"]["ActiveIPs"] == 4
    for key in ("Range", "RangeNumIPs", "DefaultSubnet"):
        assert report["IPAM"][key] == fixture["body"]["IPAM"][key]
    assert report["Router"]["Name"] == fixture["body"]["Router"]["Name"]
    assert report["Proxy"] == fixture["body"]["Proxy"]
    assert b'\n    "IPAM"' in response.body  # indented with four spaces, as Weave's


def test_report_without_accept_json_is_a_400(ctx):
    response = call(ctx, "GET", "/report")
    assert response.status == 400
    assert response.body == b"error: must supply one format parameter\n"
    ok = call(ctx, "GET", "/report?format=%7B%7B.IPAM.DefaultSubnet%7D%7D")
    assert (ok.status, ok.body) == (200, b"10.32.0.0/24")
    refused = call(ctx, "GET", "/report?format=%7B%7Brange%20.X%7D%7D")
    assert refused.status == 400


@pytest.mark.parametrize("name", ["weave-status.json", "weave-status-ipam.json",
                                  "weave-status-peers.json"])
def test_status_texts_match_the_recording(ctx, name):
    fixture, response = replay(ctx, name)
    expected = fixture["body"].replace("2.8.1+head-labpatch", status.VERSION)
    assert response.body.decode() == expected


def test_allocate_claim_and_free(ctx):
    allocated = call(ctx, "POST", "/ip/c3/10.32.1.0/24")
    assert (allocated.status, allocated.body) == (200, b"10.32.1.4/24")
    in_default = call(ctx, "POST", "/ip/c3")
    assert in_default.body == b"10.32.0.1/24"
    assert call(ctx, "GET", "/ip/c3").body == b"10.32.0.1/24"
    assert call(ctx, "PUT", "/ip/c4/10.32.1.9/24").status == 204
    taken = call(ctx, "PUT", "/ip/c5/10.32.1.9/24")
    assert taken.status == 400 and taken.body.startswith(b"Unable to claim: address 10.32.1.9")
    assert call(ctx, "DELETE", "/ip/c4/10.32.1.9").status == 204
    assert call(ctx, "DELETE", "/ip/c3").status == 204
    assert call(ctx, "GET", "/ip/c3").body == b""
    assert call(ctx, "DELETE", "/ip/c3").status == 400


def test_bad_subnets_and_unknown_paths(ctx):
    bad = call(ctx, "GET", "/ip/c1/10.32.1.5/24")
    assert bad.status == 400
    assert bad.content_type == "text/plain; charset=utf-8"
    assert b"did you mean 10.32.1.0/24" in bad.body and bad.body.endswith(b"\n")
    full = call(ctx, "POST", "/ip/c9/10.32.9.0/30")
    assert full.status == 200
    call(ctx, "POST", "/ip/c10/10.32.9.0/30")
    exhausted = call(ctx, "POST", "/ip/c11/10.32.9.0/30")
    assert exhausted.status == 400 and b"no free address in 10.32.9.0/30" in exhausted.body
    assert call(ctx, "GET", "/nothing/here").status == 404
    assert call(ctx, "PATCH", "/ip/c1").status == 405


def test_expose_puts_the_address_on_the_bridge(ctx, exposed):
    assert call(ctx, "POST", "/expose/10.32.2.1/24").status == 204
    assert exposed == [IPv4Interface("10.32.2.1/24")]
    bad = call(ctx, "POST", "/expose/10.32.2.1/99")
    assert bad.status == 400 and bad.body.startswith(b"unable to parse ip addr: ")

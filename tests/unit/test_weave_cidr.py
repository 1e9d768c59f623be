"""The emulated Weave reads addresses as Weave 2.8.1 does (its proxy, script and HTTP API), in
its words, and on its own: where Weave is more lenient than the product (which refuses
``net:10.32.1.5/24``, for one), the lab follows Weave."""

import asyncio
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import SimpleNamespace

import pytest
from weavenomad_lab.weave import cidr, plumbing, proxy, runtime
from weavenomad_lab.weave.ipam import EXPOSE_IDENT, Ipam

from weavenomad.errors import ConflictError, ValidationError

DEFAULT = IPv4Network("10.32.0.0/24")


def refusal(token: str) -> str:
    with pytest.raises(ValidationError) as caught:
        cidr.proxy_request(token)
    return caught.value.one_line()


# -- Weave's parsers ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("10.32.1.7/24", "10.32.1.7/24"),
    ("10.32.1.0/024", "10.32.1.0/24"),  # Go's dtoi reads leading zeros of the prefix
    ("0.0.0.0/0", "0.0.0.0/0"),
])
def test_parse_cidr_takes_what_go_takes(text, expected):
    assert cidr.parse_cidr(text) == IPv4Interface(expected)


@pytest.mark.parametrize(("text", "message"), [
    ("10.32.1.0/33", "invalid CIDR address: 10.32.1.0/33"),
    ("10.32.1.0", "invalid CIDR address: 10.32.1.0"),
    ("10.32.1.0/255.255.255.0", "invalid CIDR address: 10.32.1.0/255.255.255.0"),
    ("10.32.1.256/24", "invalid CIDR address: 10.32.1.256/24"),
    ("10.32.1.0/+24", "invalid CIDR address: 10.32.1.0/+24"),
    ("default", "invalid CIDR address: default"),
    ("fd00::1/64", "invalid Non-IPv4 address not supported: fd00::1/64"),
])
def test_parse_cidr_refuses_in_weaves_words(text, message):
    with pytest.raises(ValidationError) as caught:
        cidr.parse_cidr(text)
    assert caught.value.message == message


def test_parse_subnet_is_parse_cidr_subnet():
    assert cidr.parse_subnet("10.32.1.0/24") == IPv4Network("10.32.1.0/24")
    assert cidr.parse_subnet("10.32.9.0/30") == IPv4Network("10.32.9.0/30")  # 4 addresses
    with pytest.raises(ValidationError) as caught:
        cidr.parse_subnet("10.32.1.5/24")
    assert caught.value.message == (
        "invalid subnet - bits after network prefix are not all zero: 10.32.1.5/24")
    assert caught.value.hint == "did you mean 10.32.1.0/24?"
    # the size error is the one reported when both apply, as Weave's ParseCIDRSubnet does
    with pytest.raises(ValidationError, match="^invalid subnet - smaller than minimum size 4: "
                                              "10.32.1.5/31$"):
        cidr.parse_subnet("10.32.1.5/31")


def test_parse_ip():
    assert cidr.parse_ip("10.32.1.9") == IPv4Address("10.32.1.9")
    with pytest.raises(ValidationError, match="^invalid IP Address: 10.32.1$"):
        cidr.parse_ip("10.32.1")


# -- the proxy: WEAVE_CIDR ------------------------------------------------------------------


def test_first_weave_cidr_entry_wins_and_only_exactly_none_means_none():
    env = ["A=1", "WEAVE_CIDR=net:10.32.1.0/24", "WEAVE_CIDR=none"]
    assert cidr.weave_cidr_value(env) == "net:10.32.1.0/24"
    assert cidr.weave_cidr_value(["A=1"]) is None
    assert proxy.weave_cidrs("", ["WEAVE_CIDR="], True) == []  # empty: the default subnet
    assert proxy.weave_cidrs("", ["WEAVE_CIDR= none"], False) == ["none"]
    assert refusal("none") == 'for "none": invalid CIDR address: none'


def test_proxy_tokens():
    assert cidr.proxy_request("net:default") == cidr.AddressRequest("net:default")
    assert cidr.proxy_request("net:10.32.1.0/24").subnet == IPv4Network("10.32.1.0/24")
    assert cidr.proxy_request("ip:10.32.1.7/24").address == IPv4Interface("10.32.1.7/24")
    assert cidr.proxy_request("10.32.1.7/24").address == IPv4Interface("10.32.1.7/24")


def test_net_with_host_bits_allocates_in_its_network():
    """The proxy reads net: with Go's ParseCIDR, which drops host bits, and sends the IPAM the
    network; only the script's net: (sent as written) meets the host-bits refusal."""
    assert cidr.proxy_request("net:10.32.1.5/24").subnet == IPv4Network("10.32.1.0/24")


@pytest.mark.parametrize(("token", "message"), [
    ("net:10.32.1.0/33", 'for "net:10.32.1.0/33": invalid CIDR address: 10.32.1.0/33'),
    ("ip:default", 'for "ip:default": invalid CIDR address: default'),
    ("garbage", 'for "garbage": invalid CIDR address: garbage'),
    ("net:10.32.1.5/31",
     'for "net:10.32.1.5/31": 400 Bad Request: invalid subnet - smaller than minimum size 4: '
     "10.32.1.4/31"),
    ("net:fd00::1/64",
     'for "net:fd00::1/64": 400 Bad Request: invalid Non-IPv4 address not supported: fd00::/64'),
    ('ip:"x', 'for "ip:\\"x": invalid CIDR address: "x'),
])
def test_proxy_refusals_name_the_token_go_quoted(token, message):
    assert refusal(token) == message


def test_ipam_refusals_read_as_the_api_answered_the_proxy():
    taken = cidr.ipam_refusal(cidr.proxy_request("ip:10.32.1.9/24"),
                              ConflictError("address 10.32.1.9 is already owned"))
    assert isinstance(taken, ConflictError)
    assert taken.message == ('for "ip:10.32.1.9/24": 400 Bad Request: Unable to claim: '
                             "address 10.32.1.9 is already owned")
    full = cidr.ipam_refusal(cidr.proxy_request("net:10.32.9.0/30"),
                             ConflictError("no free address in 10.32.9.0/30"))
    assert full.message == ('for "net:10.32.9.0/30": 400 Bad Request: '
                            "no free address in 10.32.9.0/30")


# -- the script: expose / hide arguments ----------------------------------------------------


def test_collect_cidr_args_as_the_script():
    args = ["net:default", "ip:10.32.1.7/24", "10.32.2.7/24", "net:10.32.3.0/24", "-h", "x"]
    assert cidr.collect_cidr_args(args) == (
        ["net:default", "10.32.1.7/24", "10.32.2.7/24", "net:10.32.3.0/24"], ["-h", "x"])
    # the script's pattern is loose: the IPAM's parse refuses what it lets through
    assert cidr.collect_cidr_args(["net:10.32.1.0/33"]) == (["net:10.32.1.0/33"], [])
    assert cidr.collect_cidr_args(["ip:default", "net:default"]) == ([], ["ip:default",
                                                                          "net:default"])
    assert cidr.collect_cidr_args(["net:fd00::/64"]) == ([], ["net:fd00::/64"])


def test_script_requests_meet_the_ipams_strict_parse():
    assert cidr.script_request("net:default") == cidr.AddressRequest("net:default")
    assert cidr.script_request("net:10.32.1.0/24").subnet == IPv4Network("10.32.1.0/24")
    assert cidr.script_request("10.32.1.7/24").address == IPv4Interface("10.32.1.7/24")
    with pytest.raises(ValidationError, match="bits after network prefix are not all zero"):
        cidr.script_request("net:10.32.1.5/24")  # the script sends it as written
    with pytest.raises(ValidationError, match="^invalid CIDR address: 10.32.1.300/24$"):
        cidr.script_request("10.32.1.300/24")


# -- the node runtime: attach, expose, hide -------------------------------------------------


@pytest.fixture
def node(monkeypatch):
    """A NodeRuntime with its IPAM and recorded plumbing, without a daemon or a kernel."""
    done: list[tuple[str, object]] = []

    async def record(kind, _net, *args):
        done.append((kind, args))

    for kind in ("attach", "expose", "hide"):
        monkeypatch.setattr(plumbing, kind, lambda net, *a, kind=kind: record(kind, net, *a))
    rt = runtime.NodeRuntime.__new__(runtime.NodeRuntime)
    async def await_space(*_):  # a lone peer: its IPAM may allocate at once
        pass

    rt.daemon = SimpleNamespace(ipam=Ipam(universe=IPv4Network("10.32.0.0/16")),
                                save_ipam=lambda: None, await_space=await_space)
    rt.node, rt.net = SimpleNamespace(name="n1"), None
    rt.default_subnet, rt.options = DEFAULT, runtime.LaunchOptions()
    rt.done = done
    return rt


def container(weave_cidr: str) -> dict:
    return {"Id": "c1", "State": {"Running": True, "Pid": 42},
            "Config": {"Entrypoint": ["/w/w", "sh"], "Env": [f"WEAVE_CIDR={weave_cidr}"]}}


def test_attach_takes_the_tokens_in_turn(node):
    asyncio.run(node._attach(container("net:10.32.1.5/24 ip:10.32.7.7/24")))
    assert node.done == [("attach", (42, [IPv4Interface("10.32.1.1/24"),
                                          IPv4Interface("10.32.7.7/24")]))]


def test_a_bad_token_fails_the_attach_and_frees_what_came_before(node):
    with pytest.raises(ValidationError) as caught:
        asyncio.run(node._attach(container("net:10.32.1.0/24 net:10.32.1.0/33")))
    assert caught.value.one_line() == (
        'for "net:10.32.1.0/33": invalid CIDR address: 10.32.1.0/33')
    assert node.done == [] and node.daemon.ipam.lookup("n1", "c1") == []


def test_hide_frees_net_lookups_but_leaves_plain_claims_in_the_ipam(node):
    ipam = node.daemon.ipam
    exposed = asyncio.run(node.expose(["net:default", "10.32.1.9/24"]))
    assert exposed == [IPv4Interface("10.32.0.1/24"), IPv4Interface("10.32.1.9/24")]
    hidden = asyncio.run(node.hide(["net:default", "10.32.1.9/24", "10.32.1.300/24"]))
    assert hidden == ["10.32.0.1/24", "10.32.1.9/24", "10.32.1.300/24"]
    assert [kind for kind, _ in node.done] == ["expose", "expose", "hide", "hide"]
    assert ipam.lookup("n1", EXPOSE_IDENT) == [IPv4Interface("10.32.1.9/24")]


def test_expose_keeps_what_the_ipam_granted_before_a_refusal(node):
    with pytest.raises(ValidationError, match="bits after network prefix"):
        asyncio.run(node.expose(["net:10.32.2.0/24", "net:10.32.3.5/24"]))
    assert node.done == []  # nothing reached the bridge
    assert node.daemon.ipam.lookup("n1", EXPOSE_IDENT) == [IPv4Interface("10.32.2.1/24")]


def test_expose_refusals_read_as_the_apis_answer(node):
    asyncio.run(node.expose(["10.32.1.9/24"]))
    node.daemon.ipam.allocate("n1", "c1", IPv4Network("10.32.2.0/24"))
    with pytest.raises(ConflictError) as caught:
        asyncio.run(node.expose(["10.32.2.1/24"]))
    assert caught.value.one_line().startswith("Unable to claim: address 10.32.2.1 is already "
                                              "owned by container c1 on node n1")


def test_hide_changes_nothing_when_a_lookup_is_refused(node):
    asyncio.run(node.expose(["net:default"]))
    node.done.clear()
    with pytest.raises(ValidationError, match="bits after network prefix"):
        asyncio.run(node.hide(["net:default", "net:10.32.1.5/24"]))
    assert node.done == []
    assert node.daemon.ipam.lookup("n1", EXPOSE_IDENT) == [IPv4Interface("10.32.0.1/24")]

"""Hostile input to every CIDR and WEAVE_CIDR parser and to the flags built on them (``--cidr``,
``--ipalloc-range``, ``--default-subnet``, ``--prefix-len``, ``--tenant``): arbitrary text only
ever raises our ValidationError family, in one line; valid input round-trips.

Examples are derandomized, so a failure reproduces on every run and in CI."""

import contextlib
import io
import re
from ipaddress import IPv4Interface, IPv4Network

import pytest
from fakes import FakeKV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenomad.cli import main
from weavenomad.config import build_settings
from weavenomad.errors import ValidationError, WeavenomadError
from weavenomad.jobs.render import offline_target
from weavenomad.tenancy import operations as ops
from weavenomad.tenancy import weavecidr
from weavenomad.tenancy.model import Cluster, Registry, Tenant
from weavenomad.tenancy.registry import TenantRegistry, resolve_target
from weavenomad.tenancy.subnets import allocate_subnet

#: settings whose Consul refuses at once (port 1): render's checks without the registry
NO_CONSUL = build_settings({}, {"CONSUL_HTTP_ADDR": "127.0.0.1:1"})
FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
CLUSTER = Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))
REGISTRY = Registry({"acme": Tenant("acme", IPv4Network("10.32.1.0/24"), "t")})

addresses = st.integers(0, 2**32 - 1)
networks = st.builds(lambda a, p: IPv4Network((a, p), strict=False), addresses,
                     st.integers(0, weavecidr.MAX_SUBNET_PREFIX))
interfaces = st.builds(lambda a, p: IPv4Interface((a, p)), addresses, st.integers(0, 32))
valid_tokens = st.one_of(
    st.just("net:default"),
    networks.map(lambda n: f"net:{n}"),
    interfaces.map(lambda i: f"ip:{i}"),
    interfaces.map(str),
)
spaces = st.sampled_from([" ", "  ", "\t", "\n", " \u2003", "\u00a0"])
near_misses = st.sampled_from([
    "net:", "ip:", "net:default ", "ip:default", "net:10.32.1.0", "net:10.32.1.1/24",
    "net:10.32.1.0/31", "net:10.32.1.0/33", "net:10.32.1.0/-1", "net:10.32.1.0/+24",
    "net:10.32.1.0/255.255.255.0", "ip:10.32.1.7/0.0.0.255", "10.32.1.7", "1e3/8",
    "net:010.032.001.000/24", "net:10.32.1.0/024", "net:::1/64", "ip:fe80::1/64",
    "net:10.32.1.0/24/8", "NET:10.32.1.0/24", "net:10.32.1.0/２４", "٣.٣.٣.٣/8", "none none",
    "net:\x00", "ip:10.32.1.7/24\x00", "net:1.2.3.4/", "ip:/24", "net:10.32.1.0 /24",
])
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(list("0123456789./:netipdfaulno \t")), max_size=40),
    st.lists(st.one_of(valid_tokens, near_misses), max_size=4).map(" ".join),
    st.tuples(valid_tokens, st.integers(0, 30), st.sampled_from(["", "/", ":", "x", "9", " "]))
    .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
)


def one_line(exc: Exception) -> str:
    text = str(exc)
    assert "\n" not in text and text.strip(), repr(text)
    return text


@FUZZ
@given(hostile_text)
def test_weave_cidr_parsing_never_raises_anything_but_validation_error(text):
    try:
        parsed = weavecidr.parse(text)
    except ValidationError as exc:
        one_line(exc)
        return
    for request in parsed.requests:
        if request.subnet is not None:
            assert request.subnet.prefixlen <= weavecidr.MAX_SUBNET_PREFIX
        if not request.is_default:  # Weave's Go parser takes a prefix length, never a mask
            assert request.token.rpartition("/")[2].isdigit(), request.token
        assert request.token in text
    # whatever was accepted reads back the same from its own text form
    assert weavecidr.parse(parsed.value()) == parsed


@FUZZ
@given(st.lists(valid_tokens, max_size=4), st.lists(spaces, min_size=5, max_size=5))
def test_valid_weave_cidr_values_round_trip(tokens, gaps):
    text = gaps[0] + "".join(t + g for t, g in zip(tokens, gaps[1:] * 2, strict=False))
    parsed = weavecidr.parse(text)
    assert parsed.attach and [r.token for r in parsed.requests] == tokens
    assert parsed.value() == " ".join(tokens)
    assert parsed.effective_requests() == (parsed.requests or (
        weavecidr.AddressRequest("net:default"),))


@FUZZ
@given(networks, interfaces)
def test_subnets_and_addresses_round_trip(network, interface):
    assert weavecidr.parse_subnet(str(network)) == network
    assert weavecidr.parse_address(str(interface)) == interface
    assert weavecidr.for_subnet(network) == f"net:{network}"
    assert weavecidr.parse(weavecidr.for_subnet(network)).requests[0].subnet == network


@FUZZ
@given(hostile_text)
def test_subnet_and_address_parsers_raise_validation_errors_only(text):
    for parse in (weavecidr.parse_subnet, weavecidr.parse_address):
        try:
            parse(text)
        except ValidationError as exc:
            assert repr(text) in one_line(exc)


# -- the flags that take CIDRs -----------------------------------------------------------------


flag_values = st.one_of(st.none(), hostile_text, networks.map(str),
                        st.sampled_from(["10.32.0.0/16", "10.32.0.0/24", "10.32.5.0/24"]))


@FUZZ
@given(flag_values, flag_values, flag_values, st.integers(-5, 40),
       st.sampled_from(["acme", "globex", "Bad_Name", "a\n", "", "-x", "z" * 64]))
def test_tenant_create_flags_give_a_tenant_or_a_clear_error(
        ipalloc_range, default_subnet, cidr, prefix_len, name):
    registry = TenantRegistry(FakeKV(), clock=lambda: "2026-01-01T00:00:00Z")
    try:
        cluster = ops.cluster_from_flags(ipalloc_range, default_subnet)
        created = ops.create_tenant(registry, name, cidr=cidr, prefix_len=prefix_len,
                                    cluster=cluster)
    except WeavenomadError as exc:
        one_line(exc)
        return
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) and len(name) <= 63
    recorded = registry.require_cluster()
    assert created.subnet.subnet_of(recorded.ipalloc_range)
    assert not created.subnet.overlaps(recorded.default_subnet)
    assert registry.load().tenants == {name: created}


@FUZZ
@given(st.one_of(st.text(max_size=70), st.sampled_from(["acme\n", "acme\n\n", " acme", "a" * 64,
                                                      "a-", "-a", "ACME", "a_b", "é"])))
def test_tenant_names_are_checked_whole(name):
    registry = TenantRegistry(FakeKV(), clock=lambda: "2026-01-01T00:00:00Z")
    registry.record_cluster(CLUSTER)
    try:
        registry.create(name)
    except WeavenomadError as exc:
        one_line(exc)
        return
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name), repr(name)
    assert list(registry.load().tenants) == [name]


@FUZZ
@given(st.one_of(hostile_text, hostile_text.map(lambda t: "net:" + t),
                 networks.map(lambda n: f"net:{n}"), st.sampled_from(["acme", "net:default"])))
def test_tenant_specs_resolve_or_fail_clearly(spec):
    try:
        target = resolve_target(spec, REGISTRY, CLUSTER)
    except WeavenomadError as exc:
        one_line(exc)
        return
    if target.subnet is None:
        assert spec == "net:default"
    else:
        assert target.subnet.subnet_of(CLUSTER.ipalloc_range)
        assert not target.subnet.overlaps(CLUSTER.default_subnet)
        owner = REGISTRY.owner_of(target.subnet)
        assert target.label == (owner.name if owner else spec)
        assert all(target.subnet == t.subnet or not target.subnet.overlaps(t.subnet)
                   for t in REGISTRY.tenants.values())


@FUZZ
@given(st.one_of(hostile_text.map(lambda t: "net:" + t), networks.map(lambda n: f"net:{n}")))
def test_offline_tenant_specs_resolve_or_fail_clearly(spec):
    try:  # no Consul answers: net: specs are checked against the configured range
        target = offline_target(spec, NO_CONSUL, [].append)
    except WeavenomadError as exc:
        one_line(exc)
        return
    assert target.weave_cidr == spec if target.subnet else spec == "net:default"


@pytest.fixture(scope="module")
def job_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "web.nomad"
    path.write_text('job "web" {\n  group "g" {\n    task "t" {\n      driver = "docker"\n'
                    '      config {\n        image = "bb:local"\n      }\n    }\n  }\n}\n')
    return str(path)


@settings(FUZZ, max_examples=40)
@given(spec=st.one_of(hostile_text.map(lambda t: "net:" + t), networks.map(lambda n: f"net:{n}")))
def test_the_render_command_answers_any_tenant_flag_without_a_traceback(job_file, spec):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as exited:
        main(["render", job_file, "--tenant", spec, "-o", "json"], environ={})
    if exited.value.code == 0:
        assert f'"WEAVE_CIDR": "{spec}"' in out.getvalue() or spec == "net:default"
    else:
        assert exited.value.code in (1, 64), exited.value.code
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err.getvalue(), err.getvalue()


@FUZZ
@given(st.lists(networks, max_size=6), st.integers(17, 30))
def test_allocation_never_overlaps_whatever_is_taken(taken, prefix_len):
    try:
        subnet = allocate_subnet(CLUSTER.ipalloc_range, CLUSTER.default_subnet, taken,
                                 prefix_len)
    except WeavenomadError as exc:
        one_line(exc)
        return
    assert subnet.prefixlen == prefix_len and subnet.subnet_of(CLUSTER.ipalloc_range)
    assert not any(subnet.overlaps(n) for n in [CLUSTER.default_subnet, *taken])

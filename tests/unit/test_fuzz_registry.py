"""Hostile tenant registry records in Consul KV (hand edits, corruption, other tools): reading
them gives a correct registry or one clear line naming the Consul key (and the tenant and field
when one is at fault); ``tenant list`` and ``tenant create`` stay sensible on whatever reads,
and create never hands out a subnet that overlaps anything stored, however inconsistent.

Examples are derandomized, so a failure reproduces on every run and in CI."""

import json
import re
from ipaddress import IPv4Network

import pytest
from fakes import FakeKV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenomad.errors import ValidationError, WeavenomadError
from weavenomad.tenancy import operations as ops
from weavenomad.tenancy.model import (
    QUARANTINE_VERSION,
    REGISTRY_VERSION,
    Cluster,
    decode_cluster,
    decode_registry,
    encode_registry,
    overlapping_tenants,
)
from weavenomad.tenancy.registry import TenantRegistry

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
KEY = "weavenomad/tenants"
CLUSTER = Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                         st.floats(allow_nan=False), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
subnet_texts = st.one_of(
    st.builds(lambda a, p: str(IPv4Network((a, p), strict=False)),
              st.integers(0x0A200000, 0x0A20FFFF), st.integers(16, 30)),  # inside the range
    st.builds(lambda a, p: str(IPv4Network((a, p), strict=False)),
              st.integers(0, 2**32 - 1), st.integers(0, 30)),            # anywhere
    st.sampled_from(["10.32.0.0/24", "10.32.1.0/24", "10.32.1.128/25", "10.32.0.0/16",
                     "10.32.1.1/24", "10.32.1.0", "banana", "", "10.32.1.0/255.255.255.0"]),
)
names = st.one_of(st.sampled_from(["acme", "globex", "initech", "a", "x-1"]),
                  st.text(max_size=8), st.just("acme\n"))


@st.composite
def tenant_records(draw):
    """A tenant record: mostly right, with any field now and then wrong, missing or extra."""
    record = {"subnet": draw(subnet_texts), "created": "2026-01-01T00:00:00Z",
              "description": draw(st.sampled_from(["", "ACME corp", "ünï\n"])),
              "labels": draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4),
                                             max_size=2))}
    for field in draw(st.lists(st.sampled_from(sorted(record) + ["extra"]), max_size=2)):
        if draw(st.booleans()):
            record.pop(field, None)
        else:
            record[field] = draw(json_values)
    return record if draw(st.integers(0, 15)) else draw(json_values)


def json_object(pairs) -> str:
    """JSON text of an object that may repeat keys (json.dumps cannot write that)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"


@st.composite
def registry_documents(draw) -> bytes:
    pairs = draw(st.lists(st.tuples(names, tenant_records().map(json.dumps)), max_size=6))
    version = draw(st.sampled_from(["1", "1", "1", "2", "true", "1.0", '"1"', "null"]))
    top = [("version", version), ("tenants", json_object(pairs))]
    shape = draw(st.integers(0, 12))
    if shape == 0:
        top = top[:1]                                   # no tenants at all
    elif shape == 1:
        top.append(("version", "1"))                    # a repeated top-level key
    elif shape == 2:
        top[1] = ("tenants", draw(json_values).__repr__().join('""'))  # wrong type
    text = json_object(top)
    mangle = draw(st.integers(0, 10))
    if mangle == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "{", "}", '"', ",", "\x00", "\\"])) + \
            text[at + 1:]
    elif mangle == 1:
        text = "[" * draw(st.integers(1, 3000)) + text
    return text.encode("utf-8") if mangle != 2 else b"\xff\xfe" + text.encode()


def check_error(exc: ValidationError) -> None:
    text = str(exc)
    assert "\n" not in text and text.startswith(f"Consul key {KEY}: "), text


@FUZZ
@given(st.one_of(registry_documents(), st.binary(max_size=60),
                 json_values.map(lambda v: json.dumps(v).encode())))
def test_decoding_any_registry_document_gives_a_registry_or_one_clear_line(raw):
    try:
        registry = decode_registry(raw, KEY)
    except ValidationError as exc:
        check_error(exc)
        return
    document = json.loads(raw)
    # 1, or 2 for a registry that holds quarantined subnets (an older weavenomad refuses it)
    assert document["version"] in (REGISTRY_VERSION, QUARANTINE_VERSION)
    assert document["version"] is not True
    for name, tenant in registry.tenants.items():
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name)
        assert str(tenant.subnet) == document["tenants"][name]["subnet"]
        assert isinstance(tenant.created, str) and isinstance(tenant.description, str)
        assert all(isinstance(v, str) for v in tenant.labels.values())
    assert decode_registry(encode_registry(registry), KEY) == registry


@FUZZ
@given(st.one_of(st.binary(max_size=40), st.fixed_dictionaries({
    "ipalloc_range": st.one_of(subnet_texts, json_values),
    "default_subnet": st.one_of(subnet_texts, json_values)}).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode())))
def test_decoding_any_cluster_record_gives_a_cluster_or_one_clear_line(raw):
    try:
        cluster = decode_cluster(raw, "weavenomad/cluster")
    except ValidationError as exc:
        assert str(exc).startswith("Consul key weavenomad/cluster: ")
        assert "\n" not in str(exc)
        return
    assert cluster.default_subnet.subnet_of(cluster.ipalloc_range)


@st.composite
def readable_registries(draw) -> bytes:
    """Documents that decode, but hold whatever a hand edit may leave: overlapping tenants,
    subnets outside the range or on the default subnet."""
    tenants = draw(st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        subnet_texts.filter(lambda t: re.fullmatch(r"[\d.]+/\d+", t) is not None and
                            str(IPv4Network(t, strict=False)) == t),
        max_size=6))
    return json.dumps({"version": 1, "tenants": {
        name: {"subnet": subnet, "created": "x"} for name, subnet in tenants.items()}}).encode()


@FUZZ
@given(readable_registries(), st.one_of(st.none(), st.integers(17, 30)),
       st.one_of(st.none(), subnet_texts))
def test_list_and_create_stay_sensible_on_inconsistent_registries(raw, prefix_len, cidr):
    kv = FakeKV()
    registry = TenantRegistry(kv, clock=lambda: "2026-01-01T00:00:00Z")
    registry.record_cluster(CLUSTER)
    kv.kv_put(KEY, raw)
    before = registry.load()
    listed = [ops.describe_tenant(t) for _, t in sorted(before.tenants.items())]
    assert [row["name"] for row in listed] == sorted(before.tenants)
    overlapping_tenants(before)  # what doctor reports; never raises
    try:
        created = ops.create_tenant(registry, "new", cidr=cidr, prefix_len=prefix_len or 24)
    except WeavenomadError as exc:
        assert "\n" not in str(exc)
        assert registry.load() == before, "a refused create must write nothing"
        return
    assert created.subnet.subnet_of(CLUSTER.ipalloc_range)
    for other in [CLUSTER.default_subnet, *before.subnets().values()]:
        assert not created.subnet.overlaps(other), (created.subnet, other)
    assert registry.load().tenants == {**before.tenants, "new": created}


@pytest.mark.parametrize("raw, message", [
    (b'{"version": 1, "tenants": {"acme": {"subnet": "10.32.1.0/24", "created": "x"}, '
     b'"acme": {"subnet": "10.32.2.0/24", "created": "y"}}}', "key 'acme' appears twice"),
    (b'{"version": 1, "version": 1, "tenants": {}}', "key 'version' appears twice"),
    (b'{"version": true, "tenants": {}}', "version True is not supported"),
    (b'{"version": 1, "tenants": {"acme\\n": {"subnet": "10.32.1.0/24", "created": "x"}}}',
     "tenant 'acme\\n': invalid tenant name"),
    (b'{"version": 1, "tenants": {"acme": {"created": "x"}}}',
     "tenant 'acme': field 'subnet' is missing"),
    (b'{"version": 1, "tenants": {"acme": {"subnet": "10.32.1.0/24", "created": 5}}}',
     "tenant 'acme': field 'created' must be a string, not a number"),
    (b'{"version": 1, "tenants": {"acme": {"subnet": "10.32.1.0/24", "created": "x", '
     b'"description": {}}}}', "tenant 'acme': field 'description' must be a string"),
    (b'{"version": 1, "tenants": {"acme": []}}', "tenant 'acme': must be an object, not a list"),
    (b'{"version": 1, "tenants": {"acme": {"subnet": "10.32.1.0/255.255.255.0", "created": '
     b'"x"}}}', "tenant 'acme': field 'subnet': invalid subnet '10.32.1.0/255.255.255.0'"),
    (b"[" * 100_000, "nested too deeply"),
    (b"\xff\xfe{}", "corrupt tenant registry"),
])
def test_hand_edits_name_the_key_the_tenant_and_the_field(raw, message):
    with pytest.raises(ValidationError) as caught:
        decode_registry(raw, KEY)
    assert message in str(caught.value) and KEY in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_cluster_record_with_the_default_subnet_outside_the_range_names_the_key():
    raw = b'{"ipalloc_range": "10.32.0.0/16", "default_subnet": "10.40.0.0/24"}'
    with pytest.raises(ValidationError, match=r"^Consul key weavenomad/cluster: field "
                                              r"'default_subnet' 10.40.0.0/24 is not inside"):
        decode_cluster(raw, "weavenomad/cluster")


def test_a_huge_registry_reads_and_finds_overlaps_fast():
    """3,000 tenants (Consul's 512 KiB value limit) plus one hand-written overlap."""
    tenants = {f"t{i}": {"subnet": str(IPv4Network((0x0A000000 + (i << 8), 24))),
                         "created": "x", "description": "d" * 100} for i in range(3000)}
    tenants["zz"] = {"subnet": "10.0.7.128/25", "created": "x"}
    raw = json.dumps({"version": 1, "tenants": tenants}).encode()
    registry = decode_registry(raw, KEY)
    assert len(registry.tenants) == 3001
    assert overlapping_tenants(registry) == [("t7", "zz")]

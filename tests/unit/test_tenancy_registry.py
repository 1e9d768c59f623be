"""The registry against an in-memory KV with Consul's check-and-set semantics."""

import json
import threading
from ipaddress import IPv4Network

import pytest
from fakes import FakeKV

from weavenomad.errors import ConflictError, NotFoundError, ValidationError
from weavenomad.tenancy.model import Cluster, decode_registry, overlapping_tenants
from weavenomad.tenancy.registry import TenantRegistry, resolve_target

CLUSTER = Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))


@pytest.fixture
def registry():
    reg = TenantRegistry(FakeKV(), "weavenomad/", clock=lambda: "2026-11-22T00:00:00Z")
    reg.record_cluster(CLUSTER)
    return reg


def test_cluster_must_be_recorded_first():
    reg = TenantRegistry(FakeKV())
    with pytest.raises(ValidationError, match="--ipalloc-range"):
        reg.create("acme")


def test_record_cluster_is_idempotent_and_refuses_mismatch(registry):
    assert registry.record_cluster(CLUSTER) is False
    other = Cluster(IPv4Network("10.40.0.0/16"), IPv4Network("10.40.0.0/24"))
    with pytest.raises(ConflictError, match="records Weave range 10.32.0.0/16"):
        registry.record_cluster(other)


def test_cluster_default_subnet_must_be_inside_range():
    with pytest.raises(ValidationError, match="not inside the Weave range"):
        Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.40.0.0/24"))


def test_create_list_delete(registry):
    acme = registry.create("acme", description="ACME corp", labels={"team": "a"})
    globex = registry.create("globex")
    assert acme.subnet == IPv4Network("10.32.1.0/24")
    assert globex.subnet == IPv4Network("10.32.2.0/24")
    assert sorted(registry.load().tenants) == ["acme", "globex"]
    assert registry.load().tenants["acme"].labels == {"team": "a"}
    registry.delete("acme")
    assert registry.create("initech").subnet == IPv4Network("10.32.1.0/24")
    with pytest.raises(NotFoundError, match="unknown tenant 'acme'"):
        registry.delete("acme")


def test_create_with_cidr_rules(registry):
    registry.create("acme", cidr=IPv4Network("10.32.7.0/24"))
    with pytest.raises(ConflictError, match="overlaps tenant 'acme'"):
        registry.create("b", cidr=IPv4Network("10.32.7.0/25"))
    with pytest.raises(ValidationError, match="default subnet"):
        registry.create("c", cidr=IPv4Network("10.32.0.0/24"))
    with pytest.raises(ValidationError, match="outside the Weave range"):
        registry.create("d", cidr=IPv4Network("10.99.0.0/24"))
    with pytest.raises(ConflictError, match="exists already"):
        registry.create("acme")
    with pytest.raises(ValidationError, match="invalid tenant name"):
        registry.create("Bad_Name")
    with pytest.raises(ValidationError, match="invalid tenant name"):
        registry.create("acme2\n")  # a regex's $ would let the newline through


def test_concurrent_creators_get_distinct_subnets():
    kv = FakeKV()
    TenantRegistry(kv).record_cluster(CLUSTER)
    results, errors = [], []

    def create(i):
        try:
            results.append(TenantRegistry(kv).create(f"t{i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    subnets = [t.subnet for t in results]
    assert len(set(subnets)) == 20
    registry = TenantRegistry(kv).load()
    assert len(registry.tenants) == 20 and overlapping_tenants(registry) == []


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "corrupt tenant registry"),
        (b"[]", "not a JSON object"),
        (b'{"version": 9, "tenants": {}}', "version 9 is not supported"),
        (b'{"version": 1, "tenants": []}', "'tenants' must be an object"),
        (b'{"version": 1, "tenants": {"a": {"subnet": 5, "created": "x"}}}',
         "field 'subnet' must be a str"),
        (b'{"version": 1, "tenants": {"a": {"subnet": "10.32.1.1/24", "created": "x"}}}',
         "bits after the network prefix"),
        (b'{"version": 1, "tenants": {"a": {"subnet": "10.32.1.0/24", "created": "x", '
         b'"labels": {"k": 1}}}}', "'labels' must map strings to strings"),
    ],
)
def test_corrupt_registry_records_give_clear_errors(raw, message):
    with pytest.raises(ValidationError, match=message):
        decode_registry(raw, "weavenomad/tenants")


def test_hand_written_overlaps_are_detected():
    doc = {"version": 1, "tenants": {
        "a": {"subnet": "10.32.1.0/24", "created": "x"},
        "b": {"subnet": "10.32.1.128/25", "created": "x"}}}
    assert overlapping_tenants(decode_registry(json.dumps(doc).encode(), "k")) == [("a", "b")]


def test_resolve_target(registry):
    registry.create("acme")
    reg = registry.load()
    assert resolve_target("acme", reg, CLUSTER).subnet == IPv4Network("10.32.1.0/24")
    by_cidr = resolve_target("net:10.32.1.0/24", reg, CLUSTER)
    assert by_cidr.label == "acme"
    raw = resolve_target("net:10.32.9.0/24", reg, CLUSTER)
    assert raw.label == "net:10.32.9.0/24" and raw.weave_cidr == "net:10.32.9.0/24"
    default = resolve_target("net:default", reg, CLUSTER)
    assert default.subnet is None and default.weave_cidr == "net:default"
    with pytest.raises(ConflictError, match="overlaps tenant 'acme'"):
        resolve_target("net:10.32.1.0/25", reg, CLUSTER)
    with pytest.raises(ValidationError, match="default subnet"):
        resolve_target("net:10.32.0.0/24", reg, CLUSTER)
    with pytest.raises(ValidationError, match="outside the Weave range"):
        resolve_target("net:192.168.0.0/24", reg, CLUSTER)
    with pytest.raises(NotFoundError, match="unknown tenant 'nope'"):
        resolve_target("nope", reg, CLUSTER)

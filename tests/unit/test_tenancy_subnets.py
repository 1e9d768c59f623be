from ipaddress import IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenomad.errors import ConflictError, ValidationError
from weavenomad.tenancy.subnets import allocate_subnet, check_tenant_subnet
from weavenomad.tenancy.weavecidr import parse_subnet

RANGE = IPv4Network("10.32.0.0/16")
DEFAULT = IPv4Network("10.32.0.0/24")


def test_first_tenant_gets_the_subnet_after_the_default():
    assert allocate_subnet(RANGE, DEFAULT, [], 24) == IPv4Network("10.32.1.0/24")


def test_lowest_free_subnet_fills_holes_and_respects_sizes():
    taken = [IPv4Network("10.32.1.0/24"), IPv4Network("10.32.3.0/24")]
    assert allocate_subnet(RANGE, DEFAULT, taken, 24) == IPv4Network("10.32.2.0/24")
    assert allocate_subnet(RANGE, DEFAULT, taken, 23) == IPv4Network("10.32.4.0/23")
    assert allocate_subnet(RANGE, DEFAULT, taken, 26) == IPv4Network("10.32.2.0/26")


def test_exhausted_range_is_a_clear_error():
    small = IPv4Network("10.32.0.0/23")
    with pytest.raises(ConflictError, match="no free /24 left in the Weave range 10.32.0.0/23"):
        allocate_subnet(small, DEFAULT, [IPv4Network("10.32.1.0/24")], 24)


def test_prefix_length_bounds():
    with pytest.raises(ValidationError, match="--prefix-len"):
        allocate_subnet(RANGE, DEFAULT, [], 16)
    with pytest.raises(ValidationError):
        allocate_subnet(RANGE, DEFAULT, [], 31)


def test_parse_subnet_is_strict_and_names_what():
    assert parse_subnet("10.32.1.0/24") == IPv4Network("10.32.1.0/24")
    with pytest.raises(ValidationError, match=r"invalid --cidr '10.32.1.1/24'.*10.32.1.0/24\?"):
        parse_subnet("10.32.1.1/24", what="--cidr")
    with pytest.raises(ValidationError, match="IPv4"):
        parse_subnet("fd00::/64")


def test_check_tenant_subnet_rules():
    tenants = {"acme": IPv4Network("10.32.1.0/24")}
    check_tenant_subnet(IPv4Network("10.32.2.0/24"), RANGE, DEFAULT, tenants, name="globex")
    check_tenant_subnet(IPv4Network("10.32.1.0/24"), RANGE, DEFAULT, tenants, name="acme")
    with pytest.raises(ValidationError, match="outside the Weave range"):
        check_tenant_subnet(IPv4Network("10.33.0.0/24"), RANGE, DEFAULT, tenants)
    with pytest.raises(ValidationError, match="default subnet"):
        check_tenant_subnet(IPv4Network("10.32.0.0/23"), RANGE, DEFAULT, tenants)
    with pytest.raises(ConflictError, match="tenant 'acme'"):
        check_tenant_subnet(IPv4Network("10.32.1.128/25"), RANGE, DEFAULT, tenants, name="x")


def _brute_force(weave_range, default, taken, prefix_len):
    for candidate in weave_range.subnets(new_prefix=prefix_len):
        if not any(candidate.overlaps(t) for t in (default, *taken)):
            return candidate
    return None


@settings(max_examples=300, deadline=None)
@given(
    taken=st.lists(
        st.tuples(st.integers(0, 255), st.integers(22, 28)).map(
            lambda t: IPv4Network((int(RANGE.network_address) + t[0] * 256, t[1]), strict=False)
        ),
        max_size=12,
    ),
    prefix_len=st.integers(17, 30),
)
def test_allocation_matches_brute_force(taken, prefix_len):
    expected = _brute_force(RANGE, DEFAULT, taken, prefix_len)
    if expected is None:
        with pytest.raises(ConflictError):
            allocate_subnet(RANGE, DEFAULT, taken, prefix_len)
    else:
        assert allocate_subnet(RANGE, DEFAULT, taken, prefix_len) == expected

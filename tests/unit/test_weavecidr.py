"""WEAVE_CIDR parsing: the forms Weave 2.x accepts, and one clear error naming a bad token."""

from ipaddress import IPv4Interface, IPv4Network

import pytest

from weavenomad.errors import ValidationError
from weavenomad.tenancy import weavecidr


def test_net_subnet():
    spec = weavecidr.parse("net:10.32.1.0/24")
    assert spec.attach
    (request,) = spec.requests
    assert request.subnet == IPv4Network("10.32.1.0/24")
    assert not request.is_claim and not request.is_default


def test_net_default_and_several_space_separated():
    spec = weavecidr.parse("net:default  net:10.32.1.0/24 ip:10.40.0.9/16")
    assert [r.token for r in spec.requests] == [
        "net:default", "net:10.32.1.0/24", "ip:10.40.0.9/16"
    ]
    assert spec.requests[0].is_default
    assert spec.requests[2].address == IPv4Interface("10.40.0.9/16")
    assert spec.value() == "net:default net:10.32.1.0/24 ip:10.40.0.9/16"


def test_bare_cidr_is_a_claim_like_ip():
    (request,) = weavecidr.parse("10.32.1.7/24").requests
    assert request.is_claim and request.address == IPv4Interface("10.32.1.7/24")


def test_none_means_not_attached():
    spec = weavecidr.parse("none")
    assert not spec.attach
    assert spec.effective_requests() == ()
    assert spec.value() == "none"


def test_empty_value_means_default_subnet():
    spec = weavecidr.parse("")
    assert spec.attach and spec.requests == ()
    assert [r.token for r in spec.effective_requests()] == ["net:default"]


@pytest.mark.parametrize(
    ("value", "bad", "why"),
    [
        ("net:10.32.1.0/33", "net:10.32.1.0/33", "invalid subnet"),
        ("net:10.32.1.5/24", "net:10.32.1.5/24", "did you mean 10.32.1.0/24"),
        ("net:10.32.1.0/31", "net:10.32.1.0/31", "smaller than /30"),
        ("net:10.32.1.0", "net:10.32.1.0", "prefix length is missing"),
        ("net:default ip:default", "ip:default", "use net:default"),
        ("ip:10.32.1.7", "ip:10.32.1.7", "prefix length is missing"),
        ("net:10.32.1.0/24 banana", "banana", "WEAVE_CIDR token"),
        ("none net:10.32.1.0/24", "none", "WEAVE_CIDR token"),
        ("net:fe80::/64", "net:fe80::/64", "IPv4"),
        # Weave parses with Go's net.ParseCIDR: a prefix length, never a netmask or hostmask
        ("net:10.32.1.0/255.255.255.0", "net:10.32.1.0/255.255.255.0", "IPv4 CIDR"),
        ("ip:10.32.1.7/0.0.0.255", "ip:10.32.1.7/0.0.0.255", "IPv4 address with prefix"),
    ],
)
def test_bad_tokens_give_one_line_naming_the_token(value, bad, why):
    with pytest.raises(ValidationError) as caught:
        weavecidr.parse(value)
    line = caught.value.one_line()
    assert f"'{bad}'" in line
    assert why in line
    assert "\n" not in line
    assert "net:CIDR" in line  # the fix: the forms that work


def test_from_env_takes_the_first_entry_like_the_proxy():
    env = ["A=1", "WEAVE_CIDR=net:10.32.1.0/24", "WEAVE_CIDR=none"]
    assert weavecidr.from_env(env) == "net:10.32.1.0/24"
    assert weavecidr.from_env(["WEAVE_CIDRX=1"]) is None
    assert weavecidr.from_env(None) is None
    assert weavecidr.from_env(["WEAVE_CIDR="]) == ""


def test_for_subnet_builds_the_tenant_value():
    assert weavecidr.for_subnet("10.32.1.0/24") == "net:10.32.1.0/24"
    assert weavecidr.for_subnet(IPv4Network("10.32.2.0/24")) == "net:10.32.2.0/24"
    with pytest.raises(ValidationError):
        weavecidr.for_subnet("10.32.2.1/24")

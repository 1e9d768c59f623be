"""The lab's Weave IPAM: lowest free address, never twice, clear errors, Weave's release rules."""

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from weavenomad_lab.weave.ipam import EXPOSE_IDENT, Ipam, load

from weavenomad.errors import ConflictError, ValidationError

SUBNET = IPv4Network("10.32.1.0/24")
DEFAULT = IPv4Network("10.32.0.0/24")


def fresh() -> Ipam:
    return Ipam(universe=IPv4Network("10.32.0.0/16"))


def test_lowest_free_address_skipping_the_network_address():
    ipam = fresh()
    assert ipam.allocate("n1", "c1", SUBNET) == IPv4Interface("10.32.1.1/24")
    assert ipam.allocate("n2", "c2", SUBNET) == IPv4Interface("10.32.1.2/24")
    ipam.release("n1", "c1")
    assert ipam.allocate("n1", "c3", SUBNET) == IPv4Interface("10.32.1.1/24")


def test_same_ident_and_subnet_gets_its_address_back():
    ipam = fresh()
    first = ipam.allocate("n1", "c1", SUBNET)
    assert ipam.allocate("n1", "c1", SUBNET) == first
    assert ipam.active_count("n1") == 1
    other = ipam.allocate("n1", "c1", DEFAULT)  # another subnet: a second address
    assert other == IPv4Interface("10.32.0.1/24")
    assert ipam.lookup("n1", "c1") == [other, first]
    assert ipam.lookup("n1", "c1", SUBNET) == [first]


def test_exhausted_subnet_is_one_clear_error():
    ipam = fresh()
    small = IPv4Network("10.32.9.0/30")
    ipam.allocate("n1", "a", small)
    ipam.allocate("n1", "b", small)
    with pytest.raises(ConflictError) as caught:
        ipam.allocate("n1", "c", small)
    line = caught.value.one_line()
    assert "no free address in 10.32.9.0/30" in line and "2 usable" in line
    assert "\n" not in line


def test_subnet_outside_the_range_is_refused():
    with pytest.raises(ValidationError, match="outside the Weave allocation range"):
        fresh().allocate("n1", "c", IPv4Network("10.33.0.0/24"))


def test_claims_conflict_with_other_owners_but_not_outside_the_range():
    ipam = fresh()
    ipam.allocate("n1", "c1", SUBNET)
    with pytest.raises(ConflictError, match="already owned by container c1 on node n1"):
        ipam.claim("n2", "c2", IPv4Interface("10.32.1.1/24"))
    assert ipam.claim("n2", "c2", IPv4Interface("10.32.1.9/24")) == IPv4Interface("10.32.1.9/24")
    # the allocator skips claimed addresses
    assert ipam.allocate("n1", "c3", SUBNET) == IPv4Interface("10.32.1.2/24")
    outside = IPv4Interface("192.168.7.7/24")
    assert ipam.claim("n1", "c4", outside) == outside
    assert ipam.lookup("n1", "c4") == []  # not tracked, like Weave
    with pytest.raises(ValidationError, match="broadcast"):
        ipam.claim("n1", "c5", IPv4Interface("10.32.1.255/24"))


def test_died_containers_keep_addresses_until_the_timeout_destroyed_lose_them_at_once():
    ipam = fresh()
    ipam.allocate("n1", "dying", SUBNET)
    ipam.allocate("n1", "removed", SUBNET)
    assert ipam.mark_dead("n1", "dying", now=100.0)
    assert ipam.next_expiry(timeout=30) == 130.0
    ipam.release("n1", "removed")  # docker rm: destroy event
    assert ipam.sweep(now=129.0, timeout=30) == []
    assert ipam.lookup("n1", "dying")
    assert ipam.sweep(now=130.0, timeout=30) == [("n1", "dying")]
    assert ipam.allocations == {}
    assert ipam.next_expiry() is None


def test_a_restart_before_the_timeout_keeps_the_address():
    ipam = fresh()
    address = ipam.allocate("n1", "c1", SUBNET)
    ipam.mark_dead("n1", "c1", now=0.0)
    assert ipam.allocate("n1", "c1", SUBNET) == address  # re-attach after restart
    assert ipam.sweep(now=1000.0) == []
    assert not ipam.mark_dead("n1", "unknown", now=0.0)


def test_release_node_and_forget_missing():
    ipam = fresh()
    ipam.allocate("n1", "c1", SUBNET)
    ipam.allocate("n1", EXPOSE_IDENT, SUBNET)
    ipam.allocate("n2", "c2", SUBNET)
    assert ipam.forget_missing("n1", existing=[]) == ["c1"]  # the expose address stays
    assert ipam.owned("n1") == {EXPOSE_IDENT: [IPv4Interface("10.32.1.2/24")]}
    assert ipam.release_node("n1") == 1
    assert ipam.nodes() == {"n2"}


def test_free_one_address():
    ipam = fresh()
    ipam.allocate("n1", EXPOSE_IDENT, SUBNET)
    ipam.allocate("n1", EXPOSE_IDENT, DEFAULT)
    assert not ipam.free("n1", "someone-else", IPv4Address("10.32.1.1"))
    assert ipam.free("n1", EXPOSE_IDENT, IPv4Address("10.32.1.1"))
    assert ipam.lookup("n1", EXPOSE_IDENT) == [IPv4Interface("10.32.0.1/24")]


def test_range_changes_only_while_empty():
    ipam = Ipam()
    ipam.set_universe(IPv4Network("10.32.0.0/16"))
    ipam.allocate("n1", "c1", SUBNET)
    with pytest.raises(ConflictError, match="differs from the range 10.32.0.0/16"):
        ipam.set_universe(IPv4Network("10.40.0.0/16"))
    ipam.set_universe(IPv4Network("10.32.0.0/16"))  # the same: fine


def test_state_survives_a_save_and_load(tmp_path):
    path = tmp_path / "weave" / "ipam.json"
    ipam = fresh()
    ipam.allocate("n1", "c1", SUBNET)
    ipam.claim("n2", EXPOSE_IDENT, IPv4Interface("10.32.0.9/24"))
    ipam.mark_dead("n1", "c1", now=5.0)
    ipam.save(path)
    again = load(path)
    assert again == ipam
    assert load(tmp_path / "missing.json") == Ipam()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "release", "die", "sweep"]),
                          st.sampled_from(["n1", "n2"]), st.integers(0, 9)), max_size=60))
def test_never_hands_out_one_address_twice(operations):
    ipam = fresh()
    small = IPv4Network("10.32.5.0/28")  # 14 usable: exhaustion happens too
    clock = 0.0
    for op, node, number in operations:
        ident = f"c{number}"
        clock += 10
        if op == "alloc":
            try:
                ipam.allocate(node, ident, small)
            except ConflictError:
                assert len([a for a in ipam.allocations if a in small]) == 14
        elif op == "release":
            ipam.release(node, ident)
        elif op == "die":
            ipam.mark_dead(node, ident, clock)
        else:
            ipam.sweep(clock)
        addresses = list(ipam.allocations)
        assert len(addresses) == len(set(addresses))
        assert all(a not in (small.network_address, small.broadcast_address) for a in addresses)
        owners = {}
        for allocation in ipam.allocations.values():
            key = (allocation.node, allocation.ident)
            assert key not in owners, "one address per owner and subnet"
            owners[key] = allocation.address

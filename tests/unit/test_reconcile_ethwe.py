"""Reading a container's ethwe addresses from /proc/<pid>/net, without Weave's API."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from weavenomad.reconcile import ethwe

#: /proc/<pid>/net/route of a lab container attached to 10.32.1.0/24 and 10.32.2.0/24
ROUTE = """\
Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010011AC	0003	0	0	0	00000000	0	0	0
ethwe	0001200A	00000000	0001	0	0	0	00FFFFFF	0	0	0
ethwe	0002200A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
ethwe	000000E0	00000000	0001	0	0	0	000000F0	0	0	0
"""

#: the start of its /proc/<pid>/net/fib_trie (the Main table; Local repeats it)
FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 4
     +-- 0.0.0.0/4 2 0 2
        |-- 0.0.0.0
           /0 universe UNICAST
        +-- 10.32.0.0/22 3 0 4
           +-- 10.32.1.0/31 1 0 0
              |-- 10.32.1.0
                 /24 link UNICAST
              |-- 10.32.1.1
                 /32 host LOCAL
           |-- 10.32.1.255
              /32 link BROADCAST
           +-- 10.32.2.0/31 1 0 0
              |-- 10.32.2.0
                 /24 link UNICAST
              |-- 10.32.2.1
                 /32 host LOCAL
           |-- 10.32.2.255
              /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        +-- 172.17.0.0/30 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.2
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
     |-- 224.0.0.0
        /4 link UNICAST
"""


def test_routes_name_each_connected_network_with_its_interface():
    routes = ethwe.parse_routes(ROUTE)
    assert ("ethwe", IPv4Network("10.32.1.0/24")) in routes
    assert ("ethwe", IPv4Network("10.32.2.0/24")) in routes
    assert ("eth0", IPv4Network("172.17.0.0/16")) in routes
    assert all(n != IPv4Network("0.0.0.0/0") for _, n in routes)  # the default route has a gw


def test_local_addresses_are_the_host_local_entries():
    assert ethwe.parse_local_addresses(FIB_TRIE) == [
        IPv4Address("10.32.1.1"), IPv4Address("10.32.2.1"), IPv4Address("172.17.0.2")]


def test_ethwe_addresses_carry_their_network_prefix():
    routes = ethwe.parse_routes(ROUTE)
    local = ethwe.parse_local_addresses(FIB_TRIE)
    assert ethwe.interface_addresses(routes, local) == (
        IPv4Interface("10.32.1.1/24"), IPv4Interface("10.32.2.1/24"))
    assert ethwe.interface_addresses(routes, local, "eth0") == (IPv4Interface("172.17.0.2/16"),)


def test_a_container_without_ethwe_has_none(tmp_path):
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "route").write_text(ROUTE.replace("ethwe", "eth1"))
    (net / "fib_trie").write_text(FIB_TRIE)
    assert ethwe.read_ethwe(42, tmp_path) == ()
    (net / "route").write_text(ROUTE)
    assert ethwe.read_ethwe(42, tmp_path) == (IPv4Interface("10.32.1.1/24"),
                                              IPv4Interface("10.32.2.1/24"))
    with pytest.raises(OSError):
        ethwe.read_ethwe(43, tmp_path)

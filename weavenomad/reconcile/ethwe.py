"""A container's ``ethwe`` addresses read from ``/proc/<pid>/net``, for when Weave's HTTP API
cannot say (Weave down, or an address its IPAM does not list); and the addresses this host
really has on its ``weave`` bridge (``/proc/self/net``), which after a reboot are not the ones
Weave's IPAM still owns for it.

``/proc/<pid>/net/*`` shows the network namespace of process ``pid``, so reading it needs no
``setns``, no ``docker exec`` and no tool inside the image. ``route`` names the interface of
each directly connected network; ``fib_trie`` lists the namespace's own (``host LOCAL``)
addresses. An ``ethwe`` address is a local address inside one of ``ethwe``'s networks. The
parsers are pure; :func:`read_ethwe` does the two reads.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

INTERFACE = "ethwe"


def _little_endian_ip(hex_text: str) -> IPv4Address:
    return IPv4Address(socket.inet_ntoa(struct.pack("<I", int(hex_text, 16))))


def parse_routes(text: str) -> list[tuple[str, IPv4Network]]:
    """(interface, network) of each gateway-less route in ``/proc/net/route``. Pure."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, gateway, mask = fields[0], fields[1], fields[2], fields[7]
        try:
            if int(gateway, 16) != 0:
                continue
            network = IPv4Network(f"{_little_endian_ip(destination)}/{_little_endian_ip(mask)}")
        except ValueError:
            continue
        routes.append((iface, network))
    return routes


def parse_local_addresses(text: str) -> list[IPv4Address]:
    """The ``host LOCAL`` addresses of ``/proc/net/fib_trie``, each once, in order. Pure."""
    found: list[IPv4Address] = []
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            last = stripped[4:].strip()
        elif last and stripped.startswith("/32 host LOCAL"):
            try:
                address = IPv4Address(last)
            except ValueError:
                continue
            if address not in found and not address.is_loopback:
                found.append(address)
    return found


def interface_addresses(routes: list[tuple[str, IPv4Network]], local: list[IPv4Address],
                        interface: str = INTERFACE) -> tuple[IPv4Interface, ...]:
    """The local addresses that lie in one of ``interface``'s networks, with its prefix. Pure."""
    networks = [n for name, n in routes if name == interface and n.prefixlen < 32
                and not n.is_multicast]
    found = []
    for address in local:
        network = next((n for n in networks if address in n), None)
        if network is not None:
            found.append(IPv4Interface(f"{address}/{network.prefixlen}"))
    return tuple(sorted(found))


#: the host's side of the overlay: Weave's bridge, which ``weave expose`` gives addresses
BRIDGE = "weave"


def read_addresses(net: Path, interface: str) -> tuple[IPv4Interface, ...]:
    """The addresses of ``interface`` in the network namespace whose ``/proc/…/net`` is
    ``net``. Raises OSError when it cannot be read."""
    routes = parse_routes((net / "route").read_text())
    local = parse_local_addresses((net / "fib_trie").read_text())
    return interface_addresses(routes, local, interface)


def read_ethwe(pid: int, proc: Path = Path("/proc")) -> tuple[IPv4Interface, ...]:
    """The ``ethwe`` addresses of process ``pid``'s network namespace. Raises OSError when the
    process is gone or its namespace cannot be read."""
    return read_addresses(proc / str(pid) / "net", INTERFACE)


def read_bridge(proc: Path = Path("/proc")) -> tuple[IPv4Interface, ...]:
    """The addresses on this host's weave bridge (none when it has no such bridge). Raises
    OSError when the namespace's tables cannot be read."""
    return read_addresses(proc / "self" / "net", BRIDGE)

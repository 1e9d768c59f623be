"""The simulated Consul's DNS interface: service lookups answered from the catalog and health
data its HTTP API serves, in the shapes a real Consul 1.4.0 gave (recorded with ``dig`` in
``tests/fixtures/recorded/plan-dns-catalog-checks/b1``-``b5``).

* ``NAME.service[.DC].consul`` and ``TAG.NAME.service[.DC].consul``, types A and SRV (ANY
  answers as A): the instances with no critical check (Consul's DNS leaves out critical
  instances only, ``dns_config.only_passing`` being false by default), shuffled, TTL 0;
* A: the service's address (the node's when it has none), one TXT
  ``consul-network-segment=`` per answer in ADDITIONAL (the node's meta);
* SRV: ``1 1 PORT <hex-ip>.addr.DC.consul.`` with that name's A record and the node's TXT
  (``NODE.node.DC.consul.``) in ADDITIONAL; ``<hex-ip>.addr.DC.consul`` itself answers A;
* no instance (an unknown service, a tag nobody carries, every instance critical):
  NXDOMAIN with ``consul. 0 IN SOA ns.consul. hostmaster.consul. SERIAL 3600 600 86400 0``
  in AUTHORITY, the serial being the clock's Unix seconds;
* flags ``qr aa`` plus the query's ``rd`` (no ``ra``: "recursion requested but not available").

Namespaced lookups and prepared queries are not simulated. Messages are built and parsed with
dnspython; :class:`DNSServer` serves UDP (what ``dig`` and resolvers use first).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from weavenomad_lab import netns as netns_mod
from weavenomad_lab.consul.records import Node
from weavenomad_lab.consul.state import ConsulState

log = logging.getLogger(__name__)

DOMAIN = "consul"
DNS_PORT = 8600
_SOA = "ns.consul. hostmaster.consul. {serial} 3600 600 86400 0"


def hex_address(address: str) -> str:
    """``10.32.1.3`` -> ``0a200103``, the label of Consul's ``.addr.`` names."""
    return ipaddress.IPv4Address(address).packed.hex()


def _labels(qname: dns.name.Name) -> list[str]:
    return [label.decode().lower() for label in qname.relativize(dns.name.root).labels]


class ConsulDNS:
    """Answers for one cluster (:class:`~weavenomad_lab.consul.state.ConsulState`)."""

    def __init__(self, state: ConsulState, clock=time.time, shuffle=random.shuffle):
        self.state = state
        self.clock = clock
        self.shuffle = shuffle

    def answer(self, wire: bytes) -> bytes | None:
        """The response to one query message; None when it cannot be parsed at all."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - whatever dnspython refuses, nothing to answer
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if query.question:
            self._fill(query.question[0], response)
        return response.to_wire()

    def _fill(self, question: dns.rrset.RRset, response: dns.message.Message) -> None:
        labels = _labels(question.name)
        rdtype = question.rdtype
        datacenter = self.state.datacenter
        if len(labels) < 2 or labels[-1] != DOMAIN:
            self._nxdomain(response)
            return
        inner = labels[:-1]
        if inner and inner[-1] == datacenter:
            inner = inner[:-1]
        if len(inner) == 2 and inner[1] == "addr":
            self._addr(question.name, inner[0], rdtype, response)
        elif len(inner) in (2, 3) and inner[-1] == "service":
            tag = inner[0] if len(inner) == 3 else None
            self._service(question.name, inner[-2], tag, rdtype, response)
        else:
            self._nxdomain(response)

    def _nxdomain(self, response: dns.message.Message) -> None:
        response.set_rcode(dns.rcode.NXDOMAIN)
        soa = dns.rrset.from_text(f"{DOMAIN}.", 0, "IN", "SOA",
                                  _SOA.format(serial=int(self.clock()) & 0xFFFFFFFF))
        response.authority.append(soa)

    def _addr(self, qname: dns.name.Name, label: str, rdtype: int,
              response: dns.message.Message) -> None:
        try:
            address = str(ipaddress.IPv4Address(bytes.fromhex(label)))
        except ValueError:
            self._nxdomain(response)
            return
        if rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            response.answer.append(dns.rrset.from_text(qname, 0, "IN", "A", address))

    def _service(self, qname: dns.name.Name, name: str, tag: str | None, rdtype: int,
                 response: dns.message.Message) -> None:
        found = self.state.dns_instances(name, tag)
        if not found:
            self._nxdomain(response)
            return
        self.shuffle(found)
        datacenter = self.state.datacenter
        for node, service in found:
            address = service.address or node.address
            txt = f'"{_segment(node)}"'
            if rdtype == dns.rdatatype.SRV:
                target = f"{hex_address(address)}.addr.{datacenter}.{DOMAIN}."
                response.answer.append(dns.rrset.from_text(
                    qname, 0, "IN", "SRV", f"1 1 {service.port} {target}"))
                response.additional.append(dns.rrset.from_text(target, 0, "IN", "A", address))
                response.additional.append(dns.rrset.from_text(
                    f"{node.name}.node.{datacenter}.{DOMAIN}.", 0, "IN", "TXT", txt))
            elif rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                _merge(response.answer, dns.rrset.from_text(qname, 0, "IN", "A", address))
                response.additional.append(dns.rrset.from_text(qname, 0, "IN", "TXT", txt))


def _segment(node: Node) -> str:
    return f"consul-network-segment={node.meta.get('consul-network-segment', '')}"


def _merge(section: list, rrset: dns.rrset.RRset) -> None:
    """Add ``rrset``'s record to the section's set of the same name and type (one A RRset
    with several records, as dig prints them)."""
    for existing in section:
        if existing.name == rrset.name and existing.rdtype == rrset.rdtype:
            existing.union_update(rrset)
            return
    section.append(rrset)


class DNSServer:
    """UDP listeners of one node's DNS interface (inside its namespace and on the host)."""

    def __init__(self, resolver: ConsulDNS):
        self.resolver = resolver
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def listen(self, host: str = "127.0.0.1", port: int = 0, netns: str | None = None) -> int:
        """Serve on ``host:port`` (0: a free one) inside ``netns``; the port."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, port))
            return sock

        sock = netns_mod.call_in_netns(netns, make)
        sock.settimeout(0.5)
        self._sockets.append(sock)
        thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                  name=f"consul-dns-{sock.getsockname()[1]}")
        thread.start()
        self._threads.append(thread)
        return sock.getsockname()[1]

    def _serve(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self.resolver.answer(wire)
                if reply is not None:
                    sock.sendto(reply, peer)
            except Exception:  # noqa: BLE001 - one bad query never stops the listener
                log.exception("DNS query from %s failed", peer)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2)
        for sock in self._sockets:
            sock.close()

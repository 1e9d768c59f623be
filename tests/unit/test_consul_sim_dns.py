"""The simulated Consul's DNS answers, held against the answers a real Consul 1.4.0 gave to
``dig`` (tests/fixtures/recorded/plan-dns-catalog-checks/b1-b5), over UDP."""

from __future__ import annotations

import re
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from test_consul_sim_support import nomad_service, running_sim

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "plan-dns-catalog-checks"


def recorded_answer(name: str) -> list[tuple[str, ...]]:
    """The ANSWER section of a recorded dig output as (name, ttl, type, data) tuples."""
    text = (RECORDED / name).read_text()
    section = text.split(";; ANSWER SECTION:\n")[1].split("\n\n")[0]
    return sorted(tuple(re.split(r"\s+", line, maxsplit=4)[i] for i in (0, 1, 3, 4))
                  for line in section.splitlines())


@pytest.fixture
def consul_dns():
    with running_sim() as running:
        sim = running.sim
        port = sim.listen_dns()
        u1 = running["u1"]
        for alloc, address in (("a1", "10.32.1.2"), ("a2", "10.32.1.3")):
            twin = nomad_service(alloc, address=address)
            twin["ID"] = f"weavenomad-{alloc}"
            twin["Checks"][0].update(CheckID=f"weavenomad-{alloc}-check-0", Status="passing")
            u1.ok("PUT", "/v1/agent/service/register", twin)
            nomad = nomad_service(alloc, address=f"172.17.0.{alloc[-1]}")
            nomad["Checks"][0]["Status"] = "passing"
            u1.ok("PUT", "/v1/agent/service/register", nomad)
            u1.ok("PUT", "/v1/agent/check/register", {
                "ID": f"weavenomad-mask-{alloc}", "Name": "mask", "ServiceID": nomad["ID"],
                "TTL": "8760h", "Status": "critical"})

        def ask(name: str, rdtype: str) -> dns.message.Message:
            query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
            return dns.query.udp(query, "127.0.0.1", port=port, timeout=5)

        yield ask


def rows(message: dns.message.Message, section: str = "answer") -> list[tuple[str, ...]]:
    return sorted((rrset.name.to_text(), str(rrset.ttl), dns.rdatatype.to_text(rrset.rdtype),
                   rdata.to_text())
                  for rrset in getattr(message, section) for rdata in rrset)


def test_a_answers_the_weave_addresses_as_recorded(consul_dns):
    answer = consul_dns("httpbackend.service.consul", "A")
    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.flags & dns.flags.AA and answer.flags & dns.flags.RD
    assert not answer.flags & dns.flags.RA
    assert rows(answer) == recorded_answer("b1-dig-A-reconciler-running.txt")
    assert {r[3] for r in rows(answer, "additional")} == {'"consul-network-segment="'}


def test_srv_answers_port_and_addr_targets_with_glue_as_recorded(consul_dns):
    answer = consul_dns("httpbackend.service.consul", "SRV")
    assert rows(answer) == recorded_answer("b2-dig-SRV-reconciler-running.txt")
    glue = {(r[0], r[3]) for r in rows(answer, "additional") if r[2] == "A"}
    assert glue == {("0a200102.addr.dc1.consul.", "10.32.1.2"),
                    ("0a200103.addr.dc1.consul.", "10.32.1.3")}
    assert consul_dns("0a200103.addr.dc1.consul", "A").answer[0][0].to_text() == "10.32.1.3"


@pytest.mark.parametrize(("name", "rdtype"), [("nosuchservice.service.consul", "A"),
                                              ("nosuchservice.service.consul", "SRV"),
                                              ("notag.httpbackend.service.consul", "A")])
def test_nothing_to_answer_is_nxdomain_with_the_soa(consul_dns, name, rdtype):
    answer = consul_dns(name, rdtype)
    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert not answer.answer
    (soa,) = answer.authority
    assert soa.name.to_text() == "consul." and soa.ttl == 0
    assert re.fullmatch(r"ns\.consul\. hostmaster\.consul\. \d+ 3600 600 86400 0",
                        soa[0].to_text())

"""``weavenomad status`` rows, the daemon's log formats and the metrics address."""

from __future__ import annotations

import io
import json
import logging
from ipaddress import ip_network

import pytest
from reconcile_support import job_allocation, tcp_service, tenancy

from weavenomad.clients.weave_ipam import IpamWait
from weavenomad.errors import BackendUnavailable, ConfigError
from weavenomad.reconcile import status
from weavenomad.reconcile.consul import instances_from_health
from weavenomad.reconcile.metrics import parse_listen_addr
from weavenomad.reconcile.model import allocation_from_api
from weavenomad.runtime import logs

A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"
C = "cccccccc-0000-0000-0000-000000000003"
META = {"weavenomad.tenant": "acme", "weavenomad.subnet": "10.32.1.0/24"}


def alloc(alloc_id: str, meta=META, **kwargs):
    return allocation_from_api(job_allocation(alloc_id, meta=meta, tasks=[{
        "Name": "web", "Driver": "docker", "Services": [tcp_service("web", "8080")]}], **kwargs))


def entry(service_id: str, address: str, checks: list[tuple[str, str]]) -> dict:
    return {"Service": {"ID": service_id, "Address": address, "Port": 8080},
            "Checks": [{"CheckID": "serfHealth", "ServiceID": "", "Status": "passing"}]
            + [{"CheckID": cid, "ServiceID": service_id, "Status": st} for cid, st in checks]}


def nomad(alloc_id: str, masked: bool) -> dict:
    sid = f"_nomad-task-{alloc_id}-web-web-8080"
    checks = [("_nomad-check-1", "passing")]
    if masked:
        checks.append((f"weavenomad-mask-{alloc_id}-web-web-8080", "critical"))
    return entry(sid, "172.17.0.2", checks)


def twin(alloc_id: str, address: str, state: str = "passing") -> dict:
    tid = f"weavenomad-{alloc_id}-web-web-8080"
    return entry(tid, address, [(tid + "-check-0", state)])


def instances(health: dict) -> dict:
    """Consul's health answers per service name, as the Consul agent hands them to ``rows``."""
    return {name: instances_from_health(entries) for name, entries in health.items()}


def test_rows_tell_correct_from_wrong_advertisement():
    allocations = [(alloc(A), "n1"), (alloc(B), "n2"), (alloc(C), "n2"),
                   (alloc("dddddddd-0000-0000-0000-000000000004", meta=None), "n1"),
                   (alloc("eeeeeeee-0000-0000-0000-000000000005", desired_status="stop"), "n1")]
    health = {"web": [nomad(A, True), twin(A, "10.32.1.1"),
                      nomad(B, False),
                      nomad(C, True), twin(C, "10.32.1.3", "critical")]}
    found = status.rows(allocations, instances(health), tenancy(acme="10.32.1.0/24"))
    by_alloc = {r.alloc_id[:1]: r for r in found}
    assert set(by_alloc) == {"a", "b", "c", "d"}  # the stopped allocation is not listed
    assert by_alloc["a"].state == status.OK and by_alloc["a"].weave_address == "10.32.1.1:8080"
    assert by_alloc["b"].state == status.WRONG_ADDRESS
    assert by_alloc["c"].state == status.TWIN_FAILING
    assert by_alloc["d"].state == status.NOT_REGISTERED and by_alloc["d"].tenant == "-"
    assert by_alloc["a"].subnet == "10.32.1.0/24"
    text = status.render(found)
    # issue 17: a table with a header row (was "tenant acme (10.32.1.0/24)" headings)
    assert text.splitlines()[0].split() == ["TENANT", "JOB", "GROUP", "SERVICE", "ALLOC", "NODE",
                                            "WEAVE", "ADDRESS", "CONSUL", "ANSWERS", "STATE"]
    assert "1 of 4 advertised correctly" in text
    assert by_alloc["b"].to_json()["correct"] is False
    # what Consul answers: only registrations whose checks all pass
    assert by_alloc["a"].consul_answers == ("10.32.1.1:8080",)
    assert by_alloc["b"].consul_answers == ("172.17.0.2:8080",)
    assert by_alloc["c"].consul_answers == () and by_alloc["d"].consul_answers == ()
    row = next(line for line in text.splitlines() if line.split()[4] == A[:8])
    assert row.split() == ["acme", "web", "web", "web", A[:8], "n1", "10.32.1.1:8080",
                           "10.32.1.1:8080", "ok"]
    assert status.explanations(found) == [
        "not registered: Nomad has not registered the service (yet)",
        "twin failing: the twin's checks are not passing",
        "wrong address advertised: Nomad's address is returned: no twin (is the reconciler "
        "running?)"]


class Registry:
    def __init__(self, **tenants):
        from weavenomad.tenancy.model import Registry as Data
        from weavenomad.tenancy.model import Tenant

        self.data = Data({name: Tenant(name, ip_network(cidr), "2026-01-01T00:00:00Z")
                          for name, cidr in tenants.items()})

    def load(self):
        return self.data


def test_an_unknown_tenant_is_an_error_not_an_empty_table():
    from weavenomad.errors import NotFoundError, ValidationError

    registry = Registry(acme="10.32.1.0/24")
    with pytest.raises(NotFoundError, match="unknown tenant 'nosuch' \\(tenants: acme\\)"):
        status.tenant_filter("nosuch", registry)
    with pytest.raises(ValidationError, match="did you mean net:10.32.1.0/24"):
        status.tenant_filter("10.32.1.0/24", registry)
    assert status.tenant_filter("acme", registry) == "acme"
    assert status.tenant_filter("net:10.32.1.0/24", registry) == "acme"
    assert status.tenant_filter("net:10.32.9.0/24", registry) == "net:10.32.9.0/24"


def test_a_masked_instance_without_twin_is_not_advertised_and_outside_is_flagged():
    health = {"web": [nomad(A, True), nomad(B, True), twin(B, "10.32.2.9")]}
    found = status.rows([(alloc(A), "n1"), (alloc(B), "n1")], instances(health),
                        tenancy(acme="10.32.1.0/24"))
    assert [r.state for r in found] == [status.NOT_ADVERTISED, status.OUTSIDE_TENANT]


def test_json_logs_carry_the_fields(root_logger):
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    logging.getLogger("weavenomad.reconciler").warning(
        "port %s", "http", extra={"fields": {"service_id": "s1", "reason": "port"}})
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["message"] == "port http" and line["level"] == "warning"
    assert line["service_id"] == "s1" and line["reason"] == "port" and line["time"].endswith("Z")


def test_text_logs_append_the_fields(root_logger):
    stream = io.StringIO()
    logs.configure("text", stream=stream)
    logging.getLogger("weavenomad.reconciler").warning(
        "denied", extra={"fields": {"service_id": "s1", "reason": "register failed"}})
    assert stream.getvalue().rstrip().endswith('denied service_id=s1 reason="register failed"')


def test_metrics_addresses():
    assert parse_listen_addr("127.0.0.1:9810") == ("127.0.0.1", 9810)
    assert parse_listen_addr(":9810") == ("0.0.0.0", 9810)
    for bad in ("9810", "host:", "h:99999"):
        with pytest.raises(ConfigError):
            parse_listen_addr(bad)


def test_a_held_service_is_ok_with_its_twin_under_the_public_name():
    hidden = "weavenomad-hidden-web"
    service = tcp_service(hidden, "8080", Meta={"weavenomad-service": "web"})

    def held_alloc(alloc_id):
        return allocation_from_api(job_allocation(alloc_id, meta=META, tasks=[{
            "Name": "web", "Driver": "docker", "Services": [service]}]))

    def nomad_held(alloc_id):
        return entry(f"_nomad-task-{alloc_id}-web-{hidden}-8080", "172.17.0.2",
                     [("_nomad-check-1", "passing")])

    def twin_held(alloc_id, address):
        tid = f"weavenomad-{alloc_id}-web-{hidden}-8080"
        return entry(tid, address, [(tid + "-check-0", "passing")])

    health = {hidden: [nomad_held(A), nomad_held(B)], "web": [twin_held(A, "10.32.1.1")]}
    found = status.rows([(held_alloc(A), "n1"), (held_alloc(B), "n1")], instances(health),
                        tenancy(acme="10.32.1.0/24"))
    assert [(r.service, r.state, r.consul_answers) for r in found] == [
        ("web", status.OK, ("10.32.1.1:8080",)), ("web", status.NO_TWIN, ())]
    assert found[0].nomad_address == "172.17.0.2:8080"


class _Weave:
    def __init__(self, answer):
        self.answer = answer

    def ipam_waits(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_status_says_when_this_nodes_weave_waits_for_peers_and_which():
    waiting = IpamWait("Weave's IPAM awaits consensus: it needs 2 of the 3 peers named at "
                       "launch connected, 1 are", ("192.168.57.12", "192.168.57.13"))
    assert status.local_peer_wait(_Weave(waiting)) == waiting
    line = status.peer_wait_line(waiting)
    assert line.startswith("this node waits for peers: Weave's IPAM awaits consensus")
    assert "not connected: 192.168.57.12, 192.168.57.13" in line
    assert "not exposed" in line and "weavenomad doctor" in line
    # a node that can allocate, and a machine without Weave (status runs anywhere): nothing
    assert status.local_peer_wait(_Weave(None)) is None
    assert status.local_peer_wait(_Weave(BackendUnavailable(
        "cannot reach Weave at http://127.0.0.1:6784: connection refused",
        backend="weave"))) is None

"""Consul's wire format in one module: the agent's answers into neutral records, and neutral
twins and masks into exactly the register bodies the reconciler has always sent (Consul 1.4's
agent API; the bodies below are the ones it sent before the plan spoke in neutral terms)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Interface

import pytest
from reconcile_support import SID_A, job_allocation, recorded, tcp_service

from weavenomad.config import ReconcilerSettings
from weavenomad.errors import (
    BackendError,
    BackendNotFound,
    BackendServerError,
    BackendUnavailable,
)
from weavenomad.reconcile import consul
from weavenomad.reconcile.model import Container, Observation, Tenancy, allocation_from_api
from weavenomad.reconcile.plan import REGISTER_MASK, REGISTER_TWIN, plan
from weavenomad.reconcile.registrations import (
    MIRROR,
    AgentCheck,
    Mask,
    Twin,
    TwinCheck,
    digest_of,
)

ALLOC = "11111111-2222-3333-4444-555555555555"
SID = f"_nomad-task-{ALLOC}-web-web-8443"
TWIN = f"weavenomad-{ALLOC}-web-web-8443"
MASK = f"weavenomad-mask-{ALLOC}-web-web-8443"
CHECKS = [
    {"Name": "ready", "Type": "http", "Path": "health", "Protocol": "https", "Method": "POST",
     "Header": {"X-A": ["1"], "B": "2"}, "TLSSkipVerify": True, "Interval": 10_000_000_000,
     "Timeout": 1_500_000_000},
    {"Name": "plain", "Type": "http", "Interval": 2_000_000_000, "InitialStatus": "passing"},
    {"Name": "rpc", "Type": "grpc", "GRPCService": "svc.Health", "GRPCUseTLS": True,
     "Interval": 5_000_000_000},
    {"Name": "rpc2", "Type": "grpc", "Interval": 5_000_000_001},
    {"Name": "t", "Type": "tcp", "Interval": 1_000_000, "Timeout": 999, "PortLabel": "9000"},
    {"Name": "script", "Type": "script", "Command": "/bin/check", "Interval": 30_000_000_000},
    {"Name": "", "Type": "docker", "Interval": 30_000_000_000},
]
#: what the reconciler registered for that service before this module existed (digest aside)
TWIN_BODY = [
    ("ID", TWIN), ("Name", "web"), ("Tags", ["a", "b"]), ("Address", "10.32.1.3"),
    ("Port", 8443),
    ("Meta", {"x": "1", "weavenomad-managed": "true", "weavenomad-source": SID}),
    ("EnableTagOverride", True),
    ("Checks", [
        [("CheckID", f"{TWIN}-check-0"), ("Name", "ready"), ("Interval", "10s"),
         ("Timeout", "1500ms"), ("HTTP", "https://10.32.1.3:8443/health"), ("Method", "POST"),
         ("Header", {"B": ["2"], "X-A": ["1"]}), ("TLSSkipVerify", True)],
        [("CheckID", f"{TWIN}-check-1"), ("Name", "plain"), ("Interval", "2s"),
         ("Status", "passing"), ("HTTP", "http://10.32.1.3:8443/")],
        [("CheckID", f"{TWIN}-check-2"), ("Name", "rpc"), ("Interval", "5s"),
         ("GRPC", "10.32.1.3:8443/svc.Health"), ("GRPCUseTLS", True)],
        [("CheckID", f"{TWIN}-check-3"), ("Name", "rpc2"), ("Interval", "5000ms"),
         ("GRPC", "10.32.1.3:8443")],
        [("CheckID", f"{TWIN}-check-4"), ("Name", "t"), ("Interval", "1ms"), ("Timeout", "1ms"),
         ("TCP", "10.32.1.3:9000")],
        [("CheckID", f"{TWIN}-check-5"), ("Name", "script"), ("TTL", "210s"),
         ("Status", "passing"),
         ("Notes", "mirrors Nomad's script check 'script', which cannot be aimed at an address")],
        [("CheckID", f"{TWIN}-check-6"), ("Name", "check 6"), ("TTL", "210s"),
         ("Status", "critical"),
         ("Notes", "mirrors Nomad's docker check '', which cannot be aimed at an address")],
    ]),
]
MASK_BODY = [
    ("ID", MASK), ("Name", "weave address mask"), ("ServiceID", SID), ("TTL", "8760h"),
    ("Status", "critical"),
    ("Notes", f"weavenomad: superseded by {TWIN} at 10.32.1.3:8443 (Weave address)"),
]


def planned():
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker", "Services": [
        tcp_service("web", "8443", checks=CHECKS)]}])
    nomads = consul.service_from_agent({
        "ID": SID, "Service": "web", "Address": "172.17.0.9", "Port": 0, "Tags": ["a", "b"],
        "Meta": {"x": "1"}, "EnableTagOverride": True})
    script = AgentCheck("_nomad-check-abc", SID, "script", "passing")
    container = Container("c1", ALLOC, "web", True, (IPv4Interface("10.32.1.3/24"),))
    obs = Observation({ALLOC: allocation_from_api(raw)}, {SID: nomads}, {script.id: script},
                      {(ALLOC, "web"): container}, Tenancy())
    return plan(obs, ReconcilerSettings(resync=60.0))


def items(body: dict) -> list:
    """A body's keys and values in the order they are sent, checks included."""
    return [(k, [list(c.items()) for c in v] if k == "Checks" else v) for k, v in body.items()]


def test_a_twin_with_every_check_form_renders_as_it_always_did():
    mask_action, twin_action = planned().actions
    assert twin_action.kind == REGISTER_TWIN and mask_action.kind == REGISTER_MASK
    body = consul.service_definition(twin_action.twin)
    digest = body["Meta"].pop("weavenomad-digest")
    assert items(body) == TWIN_BODY
    assert digest == twin_action.twin.digest == digest_of(twin_action.twin)
    assert list(body["Meta"]) == ["x", "weavenomad-managed", "weavenomad-source"]


def test_a_mask_renders_as_a_critical_ttl_check_that_never_deregisters_nomads_service():
    mask_action = planned().actions[0]
    body = consul.mask_definition(mask_action.mask)
    assert list(body.items()) == MASK_BODY
    assert "DeregisterCriticalServiceAfter" not in body


def test_check_definitions_of_hand_made_checks():
    tcp = TwinCheck("c0", "t", "tcp", "10.32.1.3:80", interval_ns=5 * 10**9)
    assert consul.check_definition(tcp) == {"CheckID": "c0", "Name": "t", "Interval": "5s",
                                            "TCP": "10.32.1.3:80"}
    bare = TwinCheck("c1", "h", "http", "http://10.32.1.3:80/")
    assert consul.check_definition(bare) == {"CheckID": "c1", "Name": "h",
                                             "HTTP": "http://10.32.1.3:80/"}
    mirror = TwinCheck("c2", "s", MIRROR, status="warning", ttl_ns=90 * 10**9, notes="n")
    assert list(consul.check_definition(mirror).items()) == [
        ("CheckID", "c2"), ("Name", "s"), ("TTL", "90s"), ("Status", "warning"), ("Notes", "n")]
    twin = Twin("t1", "s1", "web", "10.32.1.3", 80)
    assert consul.service_definition(twin) == {"ID": "t1", "Name": "web", "Tags": [],
                                               "Address": "10.32.1.3", "Port": 80, "Meta": {}}


def test_the_digest_follows_the_definition_but_not_a_mirrors_status():
    twin = planned().actions[1].twin
    mirror = twin.mirrors[0]
    assert mirror.status == "passing"
    flipped = dataclasses.replace(twin, checks=tuple(
        dataclasses.replace(c, status="critical") if c == mirror else c for c in twin.checks))
    assert digest_of(flipped) == twin.digest
    assert digest_of(dataclasses.replace(twin, container_id="another")) == twin.digest
    assert digest_of(dataclasses.replace(twin, port=9999)) != twin.digest
    reaimed = dataclasses.replace(twin.checks[1], status="warning")  # an initial status counts
    assert digest_of(dataclasses.replace(twin, checks=(reaimed, *twin.checks[2:]))) != \
        digest_of(dataclasses.replace(twin, checks=twin.checks[1:]))


def test_agent_answers_become_neutral_records():
    services = recorded("consul-agent-services.json")
    nomads = consul.service_from_agent(services[SID_A])
    assert nomads.nomad_task and not nomads.ours
    assert (nomads.id, nomads.name, nomads.address, nomads.port) == (
        SID_A, "httpbackend", "172.17.0.2", 8081)
    mask = consul.check_from_agent(recorded("consul-agent-checks.json")["weavenomad-mask-test"])
    assert (mask.id, mask.service_id, mask.status, mask.notes) == (
        "weavenomad-mask-test", SID_A, "critical", "superseded")


def test_health_entries_become_instances_with_their_own_checks():
    entries = [{"Service": {"ID": "s1", "Service": "web", "Address": "10.32.1.1", "Port": 80},
                "Checks": [{"CheckID": "serfHealth", "ServiceID": "", "Status": "passing"},
                           {"CheckID": "s1-check-0", "ServiceID": "s1", "Status": "critical"}]}]
    (instance,) = consul.instances_from_health(entries).values()
    assert (instance.service.id, instance.service.address, instance.service.port) == (
        "s1", "10.32.1.1", 80)
    assert [(c.id, c.status) for c in instance.checks] == [("s1-check-0", "critical")]


class API:
    """The Consul adapter's calls, recorded; ``fail`` is raised by the next write."""

    def __init__(self, fail: Exception | None = None):
        self.calls: list[tuple] = []
        self.fail = fail
        self.client = self

    def _write(self, *call) -> None:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail

    def service_register(self, body, replace_existing_checks=False):
        self._write("service_register", body["ID"], replace_existing_checks)

    def check_register(self, body):
        self._write("check_register", body["ID"])

    def check_ttl(self, check_id, status):
        self._write("check_ttl", check_id, status)

    def check_deregister(self, check_id):
        self._write("check_deregister", check_id)

    def service_deregister(self, service_id):
        self._write("service_deregister", service_id)

    def agent_services(self):
        return {"weavenomad-s1": {"ID": "weavenomad-s1", "Service": "web",
                                  "Meta": {"weavenomad-managed": "true"}}}

    def agent_checks(self):
        return {"c1": {"CheckID": "c1", "ServiceID": "s1", "Status": "passing"}}

    def agent_self(self):
        self.calls.append(("agent_self",))
        return {"Config": {"NodeName": self.node_name}}

    node_name = "n1"

    @property
    def catalog(self):
        return self

    def node(self, name, **kwargs):
        self.calls.append(("catalog.node", name, kwargs))
        return "7", {"Services": {}}


def test_the_agent_writes_each_action_in_one_call():
    api = API()
    agent = consul.ConsulAgent(api)
    agent.register_twin(Twin("t1", "s1", "web", "10.32.1.3", 80))
    assert agent.register_mask(Mask("m1", "s1", "n")) is True
    agent.set_status("t1-check-0", "passing")
    agent.remove_mask("m1")
    agent.remove_twin("t1")
    assert api.calls == [("service_register", "t1", True), ("check_register", "m1"),
                         ("check_ttl", "t1-check-0", "passing"), ("check_deregister", "m1"),
                         ("service_deregister", "t1")]
    assert agent.services()["weavenomad-s1"].ours and agent.checks()["c1"].status == "passing"


def test_a_mask_for_a_service_that_is_gone_says_so_and_other_failures_raise():
    gone = BackendServerError("Consul failed", backend="consul", status=500,
                              body='ServiceID "_nomad-task-x" does not exist')
    assert consul.ConsulAgent(API(gone)).register_mask(Mask("m1", "x", "n")) is False
    for failure in (BackendServerError("Consul failed", backend="consul", status=500, body="x"),
                    BackendUnavailable("Consul does not answer", backend="consul"),
                    BackendNotFound("no such thing", backend="consul", status=404)):
        with pytest.raises(type(failure)):
            consul.ConsulAgent(API(failure)).register_mask(Mask("m1", "x", "n"))


def test_the_services_watch_reads_the_nodes_catalog_and_asks_its_name_once():
    api = API()
    agent = consul.ConsulAgent(api)
    assert agent.watch_services(None, None) == (7, {"Services": {}})
    assert agent.watch_services(7, 30.0) == (7, {"Services": {}})
    assert api.calls == [("agent_self",), ("catalog.node", "n1", {}),
                         ("catalog.node", "n1", {"index": 7, "wait": "30000ms"})]


def test_an_agent_without_a_node_name_is_a_backend_error():
    api = API()
    api.node_name = ""
    with pytest.raises(BackendError, match="no Config.NodeName"):
        consul.ConsulAgent(api).node_name()

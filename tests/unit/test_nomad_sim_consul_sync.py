"""Nomad's Consul registrations and periodic sync, as pure functions, against the recorded
IDs and the verified behaviour (docs/design.md)."""

from __future__ import annotations

import pytest
from test_nomad_sim_support import recorded
from weavenomad_lab.nomad import consul_sync as cs

ALLOC = "496e93a7-1a21-2d3d-58e6-14355eed58dc"
SERVICE_ID = f"_nomad-task-{ALLOC}-httpbackend-httpbackend-8081"


def seed_task() -> dict:
    return recorded("nomad-job.json")["body"]["TaskGroups"][0]["Tasks"][0]


def test_ids_equal_the_recorded_ones():
    services, checks = cs.workload_registrations(
        ALLOC, "httpbackend", seed_task()["Services"], [{"IP": "10.0.3.15"}],
        cs.DriverNetwork("172.17.0.2"), [])
    assert list(services) == [SERVICE_ID]
    recorded_checks = recorded("consul-agent-checks.json")["body"]
    assert list(checks)[0] in recorded_checks
    assert recorded_checks[list(checks)[0]]["ServiceID"] == SERVICE_ID


def test_driver_mode_registers_the_docker_bridge_address_like_the_recording():
    services, checks = cs.workload_registrations(
        ALLOC, "httpbackend", seed_task()["Services"], [{"IP": "10.0.3.15"}],
        cs.DriverNetwork("172.17.0.2"), [])
    agent_view = recorded("consul-agent-services.json")["body"][SERVICE_ID]
    body = services[SERVICE_ID]
    assert (body["Address"], body["Port"], body["Meta"]) == (
        agent_view["Address"], agent_view["Port"], agent_view["Meta"])
    assert list(checks.values())[0]["TCP"] == "172.17.0.2:8081"
    assert list(checks.values())[0]["Interval"] == "5s"


@pytest.mark.parametrize("mode, label, driver, expected", [
    ("driver", "8081", cs.DriverNetwork("172.17.0.2"), ("172.17.0.2", 8081)),
    ("host", "", None, ("10.0.3.15", 0)),            # the seed's "10.0.3.15 : 0"
    ("host", "8081", None, ("", 8081)),              # numeric label: Consul's own address
    ("auto", "8081", cs.DriverNetwork("172.17.0.2"), ("", 8081)),   # bridge: not advertised
    ("auto", "8081", cs.DriverNetwork("10.9.0.2", auto_advertise=True), ("10.9.0.2", 8081)),
])
def test_address_modes(mode, label, driver, expected):
    assert cs.get_address(mode, label, [{"IP": "10.0.3.15"}], driver, []) == expected


def test_driver_mode_without_a_driver_network_is_an_error():
    with pytest.raises(cs.AddressError, match="no driver network"):
        cs.get_address("driver", "8081", [], None, [])


def wanted() -> tuple[dict, dict]:
    return cs.workload_registrations(ALLOC, "httpbackend", seed_task()["Services"],
                                     [{"IP": "10.0.3.15"}], cs.DriverNetwork("172.17.0.2"), [])


def consul_view(service: dict, **changes) -> dict:
    view = {"ID": service["ID"], "Service": service["Name"], "Tags": [], "Meta": service["Meta"],
            "Port": service["Port"], "Address": service["Address"], "EnableTagOverride": False}
    view.update(changes)
    return view


def test_nothing_to_do_when_consul_agrees():
    services, checks = wanted()
    consul_services = {k: consul_view(v) for k, v in services.items()}
    consul_checks = {k: {"CheckID": k, "ServiceID": SERVICE_ID} for k in checks}
    assert cs.plan_sync(services, checks, consul_services, consul_checks).empty()


def test_address_drift_is_reverted_and_foreign_things_are_left_alone():
    services, checks = wanted()
    consul_services = {SERVICE_ID: consul_view(services[SERVICE_ID], Address="10.32.1.1"),
                       "weavenomad-twin": {"ID": "weavenomad-twin", "Service": "httpbackend"},
                       "_nomad-task-gone-x-y-1": {"ID": "_nomad-task-gone-x-y-1", "Service": "z"}}
    consul_checks = {**{k: {"CheckID": k, "ServiceID": SERVICE_ID} for k in checks},
                     "weavenomad-mask": {"CheckID": "weavenomad-mask", "ServiceID": SERVICE_ID},
                     "_nomad-check-old": {"CheckID": "_nomad-check-old", "ServiceID": SERVICE_ID}}
    plan = cs.plan_sync(services, checks, consul_services, consul_checks)
    assert [s["ID"] for s in plan.register_services] == [SERVICE_ID]
    assert plan.deregister_services == ["_nomad-task-gone-x-y-1"]
    assert plan.deregister_checks == ["_nomad-check-old"]
    assert plan.register_checks == []


def test_probation_keeps_unknown_services_unless_nomad_removed_them():
    consul_services = {"_nomad-task-a-t-s-1": {"ID": "_nomad-task-a-t-s-1", "Service": "s"},
                       "_nomad-task-b-t-s-1": {"ID": "_nomad-task-b-t-s-1", "Service": "s"}}
    plan = cs.plan_sync({}, {}, consul_services, {}, in_probation=True,
                        removed_services={"_nomad-task-b-t-s-1"})
    assert plan.deregister_services == ["_nomad-task-b-t-s-1"]


def test_port_meta_and_tag_drift_count_tags_only_without_tag_override():
    services, _ = wanted()
    service = services[SERVICE_ID]
    assert cs.different(service, consul_view(service, Port=1), periodic=True)
    assert cs.different(service, consul_view(service, Meta={}), periodic=True)
    assert cs.different(service, consul_view(service, Tags=["x"]), periodic=True)
    eto = dict(service, EnableTagOverride=True)
    assert not cs.different(eto, consul_view(eto, Tags=["x"], EnableTagOverride=True),
                            periodic=True)
    assert cs.different(eto, consul_view(eto, Tags=["x"], EnableTagOverride=True),
                        periodic=False)


# -- the sync loop against a fake agent ------------------------------------------------------


class FakeAgent:
    """An in-memory Consul agent that records the calls Nomad's sync makes."""

    def __init__(self):
        self.registered: dict[str, dict] = {}
        self.registered_checks: dict[str, dict] = {}
        self.calls: list[str] = []

    def services(self):
        return {k: dict(v) for k, v in self.registered.items()}

    def checks(self):
        return dict(self.registered_checks)

    def register_service(self, body, replace_existing_checks=False):
        self.calls.append(f"register {body['ID']}" + (" replacing" if replace_existing_checks
                                                       else ""))
        carried = {c["CheckID"] for c in body.get("Checks") or ()}
        for check in body.get("Checks") or ():
            self.registered_checks[check["CheckID"]] = {"CheckID": check["CheckID"],
                                                        "ServiceID": body["ID"]}
        if replace_existing_checks:  # Consul >= 1.6.1
            for cid, check in list(self.registered_checks.items()):
                if check["ServiceID"] == body["ID"] and cid not in carried:
                    del self.registered_checks[cid]
        self.registered[body["ID"]] = {
            "ID": body["ID"], "Service": body["Name"], "Tags": body.get("Tags", []),
            "Meta": body["Meta"], "Port": body.get("Port", 0), "Address": body.get("Address", ""),
            "EnableTagOverride": False}

    def deregister_service(self, sid):
        self.calls.append(f"deregister {sid}")
        self.registered.pop(sid, None)

    def register_check(self, body):
        self.registered_checks[body["ID"]] = {"CheckID": body["ID"], "ServiceID": body["ServiceID"]}

    def deregister_check(self, cid):
        self.registered_checks.pop(cid, None)


def _soon(condition, pause) -> bool:
    for _ in range(150):
        if condition():
            return True
        pause.wait(0.02)
    return condition()


def test_a_shorter_interval_takes_effect_at_once_and_drift_is_reverted():
    import threading

    from weavenomad_lab.nomad.consul_client import ServiceSyncer

    agent = FakeAgent()
    syncer = ServiceSyncer(agent, interval=30.0, probation=0.0)
    services, checks = wanted()
    syncer.set_workload(ALLOC, "httpbackend", services, checks)
    stop, pause = threading.Event(), threading.Event()
    thread = threading.Thread(target=syncer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert _soon(lambda: SERVICE_ID in agent.registered, pause)
        assert _soon(lambda: syncer.syncs >= 1, pause)
        agent.registered[SERVICE_ID]["Address"] = "10.32.1.250"
        syncer.set_timing(interval=0.1)
        assert _soon(lambda: agent.registered[SERVICE_ID]["Address"] == "172.17.0.2", pause)
        syncer.remove_workload(ALLOC, "httpbackend")
        assert _soon(lambda: SERVICE_ID not in agent.registered, pause)
        assert agent.registered_checks == {}
    finally:
        stop.set()
        syncer.wake()
        thread.join(timeout=5)


@pytest.mark.parametrize(("version", "mask_kept", "calls"), [
    ("1.0.18", True, ["register SID"]),
    ("1.7.7", False, ["register SID replacing"]),
])
def test_a_changed_service_is_re_registered_as_each_version_does(version, mask_kept, calls):
    """1.0: a plain re-registration, foreign checks stay; 1.7+: the service's own checks ride
    along and replace-existing-checks drops the rest (a Consul >= 1.6.1)."""
    from weavenomad_lab.nomad import versions
    from weavenomad_lab.nomad.consul_client import ServiceSyncer

    agent = FakeAgent()
    syncer = ServiceSyncer(agent, interval=30.0, probation=0.0,
                           semantics=versions.parse(version))
    services, checks = wanted()
    syncer.set_workload(ALLOC, "httpbackend", services, checks)
    syncer.sync(periodic=False)
    first = agent.calls[-1]
    assert first == f"register {SERVICE_ID}"
    assert set(agent.registered_checks) == set(checks)  # embedded (1.7) or separate (1.0)
    agent.registered_checks["weavenomad-mask"] = {"CheckID": "weavenomad-mask",
                                                  "ServiceID": SERVICE_ID}
    changed = {sid: dict(body, Tags=["v2"]) for sid, body in services.items()}
    syncer.set_workload(ALLOC, "httpbackend", changed, checks)
    syncer.sync(periodic=False)
    assert agent.calls[-1] == calls[0].replace("SID", SERVICE_ID)
    assert ("weavenomad-mask" in agent.registered_checks) is mask_kept
    assert set(checks) <= set(agent.registered_checks)


def test_an_unknown_nomad_version_is_named():
    from weavenomad_lab.nomad import versions

    with pytest.raises(versions.UnknownVersion, match="unknown Nomad version 'one.seven'"):
        versions.parse("one.seven")

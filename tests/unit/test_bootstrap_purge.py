"""``reset --purge``: the reconciler's twins and masks (recognised as the reconciler recognises
them, where they live) and our units go, units first, masks before twins; a failure puts the
masks, the unit files and the units back."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from weavenomad.bootstrap import purge, system
from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.apply import Executor, StepFailed, apply_plan
from weavenomad.errors import BackendUnavailable
from weavenomad.reconcile.registrations import AgentCheck, AgentService, Mask
from weavenomad.runtime import units
from weavenomad.runtime.unitcheck import UnitFile, UnitState

A = "aaaaaaaa-0000-0000-0000-000000000001"
NOMAD_WEB = f"_nomad-task-{A}-web-web-8080"
NOMAD_HELD = f"_nomad-task-{A}-web-api-8080"
MANAGED = MappingProxyType({"weavenomad-managed": "true"})


def agent_view():
    services = {
        NOMAD_WEB: AgentService(NOMAD_WEB, "web", "172.17.0.5", 8080, namespace="team-a"),
        NOMAD_HELD: AgentService(NOMAD_HELD, "weavenomad-hidden-api", "172.17.0.6", 8080,
                                 meta=MappingProxyType({"weavenomad-service": "api"})),
        f"weavenomad-{A}-web-web-8080": AgentService(
            f"weavenomad-{A}-web-web-8080", "web", "10.32.1.5", 8080, meta=MANAGED,
            namespace="team-a"),
        f"weavenomad-{A}-web-api-8080": AgentService(
            f"weavenomad-{A}-web-api-8080", "api", "10.32.1.6", 8080, meta=MANAGED),
        # named like ours but not marked: someone else's, left alone
        "weavenomad-lookalike": AgentService("weavenomad-lookalike", "x", "10.0.0.1", 1),
        "consul": AgentService("consul", "consul"),
    }
    checks = {
        f"weavenomad-mask-{A}-web-web-8080": AgentCheck(
            f"weavenomad-mask-{A}-web-web-8080", NOMAD_WEB, notes="masked by weavenomad"),
        f"service:{NOMAD_WEB}": AgentCheck(f"service:{NOMAD_WEB}", NOMAD_WEB, status="passing"),
    }
    return services, checks


def reconciler_unit(path: str, loaded: bool = True) -> purge.InstalledUnit:
    state = UnitState("loaded", "active", "running", fragment=path) if loaded else None
    return purge.InstalledUnit("weavenomad-reconciler.service", UnitFile(path, "[Unit]\n"),
                               state)


def test_only_the_reconcilers_twins_and_masks_are_found_where_they_live():
    found = purge.registrations(*agent_view())
    assert found.twins == (st.Registration(f"weavenomad-{A}-web-api-8080"),
                           st.Registration(f"weavenomad-{A}-web-web-8080", "team-a"))
    assert found.masks == (Mask(f"weavenomad-mask-{A}-web-web-8080", NOMAD_WEB,
                                "masked by weavenomad", "team-a"),)
    assert found.held == ("api",)


def test_the_units_stop_first_masks_go_before_twins_and_unit_files_last():
    found = purge.registrations(*agent_view())
    facts = purge.PurgeFacts(found.twins, found.masks, found.held,
                             (reconciler_unit("/etc/systemd/system/r.service"),))
    steps, notes = purge.plan_purge(facts)
    assert [st.kind(s.action) for s in steps] == ["StopUnit", "RemoveMasks", "RemoveTwins",
                                                  "RemoveUnitFile"]
    assert st.command_line(steps[0].action) == \
        "systemctl disable --now weavenomad-reconciler.service"
    assert steps[0].undo == st.StartUnit("weavenomad-reconciler.service")
    assert steps[1].undo == st.RegisterMasks(found.masks) and steps[1].undo_if_failed
    assert "Nomad's instances answer again" in steps[1].title
    assert st.describe(steps[2].action) == (f"deregister the service(s) weavenomad-{A}-web-api-"
                                            f"8080 weavenomad-{A}-web-web-8080")
    assert steps[3].undo == st.WriteUnitFile("/etc/systemd/system/r.service", "[Unit]\n")
    assert len(notes) == 1 and "nothing answers for api" in notes[0] and \
        "nomad job run" in notes[0]


def test_without_a_loaded_unit_the_plan_warns_of_a_reconciler_run_by_other_means():
    found = purge.registrations(*agent_view())
    steps, notes = purge.plan_purge(purge.PurgeFacts(found.twins, found.masks))
    assert [st.kind(s.action) for s in steps] == ["RemoveMasks", "RemoveTwins"]
    assert notes[0].startswith("no reconciler unit is loaded here")


def test_a_node_without_anything_of_the_reconciler_plans_nothing():
    missing = purge.InstalledUnit("weavenomad-reconciler.service",
                                  UnitFile("/etc/systemd/system/x", None),
                                  UnitState("not-found", "inactive", "dead"))
    assert purge.plan_purge(purge.PurgeFacts(units=(missing,))) == ([], [])


class FakeConsulAPI:
    """The agent's register and deregister calls; fails the ``fail_at``-th deregistration."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple] = []
        self.fail_at = fail_at

    def _count(self, call: tuple) -> bool:
        self.calls.append(call)
        if self.fail_at is not None and sum(c[0].endswith("deregister")
                                            for c in self.calls) == self.fail_at:
            raise BackendUnavailable("cannot reach Consul at http://127.0.0.1:8500: "
                                     "connection refused", backend="consul")
        return True

    def check_deregister(self, check_id, namespace="", partition=""):
        return self._count(("check_deregister", check_id, namespace))

    def service_deregister(self, service_id, namespace="", partition=""):
        return self._count(("service_deregister", service_id, namespace))

    def check_register(self, definition):
        self.calls.append(("check_register", definition["ID"], definition.get("Namespace", "")))


class PurgeClients:
    def __init__(self, consul):
        self.consul = consul


@pytest.fixture
def systemctl(monkeypatch):
    calls = []
    monkeypatch.setattr(units, "disable", lambda unit, command: calls.append(("disable", unit)))
    monkeypatch.setattr(units, "enable", lambda unit, command: calls.append(("enable", unit)))
    monkeypatch.setattr(units, "daemon_reload", lambda command: calls.append(("reload",)))
    monkeypatch.setattr(system, "systemd_running", lambda: True)
    return calls


def unit_and_steps(tmp_path):
    """A reconciler unit file in ``tmp_path`` and the purge of it and of :func:`agent_view`."""
    unit = tmp_path / "weavenomad-reconciler.service"
    unit.write_text("[Unit]\n")
    found = purge.registrations(*agent_view())
    steps, _ = purge.plan_purge(purge.PurgeFacts(found.twins, found.masks, (),
                                                 (reconciler_unit(str(unit)),)))
    return unit, steps


def test_a_purge_removes_masks_then_twins_in_their_namespaces_and_the_unit(systemctl,
                                                                           tmp_path):
    unit, steps = unit_and_steps(tmp_path)
    consul = FakeConsulAPI()
    apply_plan(st.Plan(tuple(steps)), Executor(PurgeClients(consul)), lambda line: None)
    assert consul.calls == [
        ("check_deregister", f"weavenomad-mask-{A}-web-web-8080", "team-a"),
        ("service_deregister", f"weavenomad-{A}-web-api-8080", ""),
        ("service_deregister", f"weavenomad-{A}-web-web-8080", "team-a")]
    assert systemctl == [("disable", "weavenomad-reconciler.service"), ("reload",)]
    assert not unit.exists()


def test_a_purge_that_fails_half_way_puts_the_masks_and_the_reconciler_back(systemctl,
                                                                            tmp_path):
    unit, steps = unit_and_steps(tmp_path)
    consul = FakeConsulAPI(fail_at=3)  # the mask and one twin went, then Consul went away
    restore = st.Step("restore the config", st.DropBackup(str(tmp_path / "none")))
    with pytest.raises(StepFailed) as info:
        apply_plan(st.Plan((*steps, restore)), Executor(PurgeClients(consul)),
                   lambda line: None)
    assert consul.calls[-1] == ("check_register", f"weavenomad-mask-{A}-web-web-8080",
                                "team-a")
    assert systemctl == [("disable", "weavenomad-reconciler.service"),
                         ("enable", "weavenomad-reconciler.service")]
    assert unit.read_text() == "[Unit]\n"
    message = info.value.one_line()
    assert message.startswith("step 3/5 (remove the reconciler's 2 twin(s)) failed: cannot "
                              "reach Consul")
    assert "systemctl enable --now weavenomad-reconciler.service" in message

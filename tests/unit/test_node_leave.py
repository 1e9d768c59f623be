"""``weavenomad node leave``: its refusals (allocations still running, Weave unable to hand its
space back), the plan (reset --purge's steps and the peer record's removal just before
``weave reset``, written back should it fail), and the CLI's bad input."""

from __future__ import annotations

import copy

import pytest
from test_bootstrap_cli import run
from test_bootstrap_facts import bootstrapped, fresh, weave_report

from weavenomad.bootstrap import commands, system
from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.commands import NodeOptions, run_leave
from weavenomad.bootstrap.leave import (
    busy_allocations,
    check_leave,
    own_record,
    plan_leave,
)
from weavenomad.bootstrap.leftovers import WeaveContainer
from weavenomad.bootstrap.reset import plan_reset
from weavenomad.config import build_settings
from weavenomad.errors import ConflictError, ExitCode
from weavenomad.tenancy.peers import PeerRecord

ROUTER = weave_report()["Router"]
ME = PeerRecord("192.168.56.3", ROUTER["Name"], ROUTER["NickName"])
OTHER = PeerRecord("192.168.56.4", "aa:00:00:00:00:04", "n2")


def connected_report() -> dict:
    report = copy.deepcopy(weave_report(["192.168.56.4"]))
    report["Router"]["Connections"] = [{"Address": "192.168.56.4:6783", "Outbound": True,
                                        "State": "established", "Info": "fastdp"}]
    return report


def leaving(**changes):
    return bootstrapped(weave_report=connected_report(), peer_records=[ME, OTHER], **changes)


def test_running_allocations_are_refused_with_the_drain_command():
    allocations = [{"JobID": "web", "Name": "web.api[0]", "ClientStatus": "running"},
                   {"JobID": "old", "Name": "old.x[0]", "ClientStatus": "complete"}]
    busy = busy_allocations(allocations)
    assert busy == ["web/web.api[0]"]
    with pytest.raises(ConflictError, match=r"Nomad still runs 1 allocation\(s\) on this node: "
                                            r"web/web\.api\[0\]") as exc:
        check_leave(leaving(), busy, None)
    assert "nomad node drain -enable -self" in exc.value.hint


def test_a_nomad_that_cannot_be_asked_is_no_permission():
    with pytest.raises(ConflictError, match="cannot tell whether Nomad still runs allocations"
                                            ".*connection refused"):
        check_leave(leaving(), None, "connection refused")


def test_weave_that_could_not_hand_its_space_back_is_refused():
    alone = bootstrapped(weave_report=weave_report(["192.168.56.4"]), peer_records=[ME, OTHER])
    with pytest.raises(ConflictError, match="connected to no other peer.*192.168.56.4"):
        check_leave(alone, [], None)
    stopped = fresh(peer_records=[OTHER], weave_containers=[
        WeaveContainer("weave", "exited", ("--no-dns",))])
    with pytest.raises(ConflictError, match="Weave is stopped here") as exc:
        check_leave(stopped, [], None)
    assert "docker start weave" in exc.value.hint


def test_the_last_node_and_a_connected_node_may_leave():
    check_leave(bootstrapped(peer_records=[ME]), [], None)  # nobody to hand its space to
    check_leave(leaving(), [], None)
    check_leave(fresh(peer_records=[]), [], None)  # left already


def test_the_record_goes_just_before_weave_reset_and_comes_back_if_it_fails():
    facts = leaving()
    assert own_record(facts) == ME
    plan = plan_leave(plan_reset(facts, ("true",)), own_record(facts))
    kinds = [st.kind(s.action) for s in plan.steps]
    at = kinds.index("RemovePeerRecord")
    assert kinds[at + 1] == "WeaveReset"
    assert plan.steps[at].undo == st.WritePeerRecord(ME)
    assert "the other nodes forget it" in plan.steps[at].title


def test_a_node_that_left_already_plans_nothing():
    facts = fresh(peer_records=[OTHER], consul_self={"Member": {"Addr": "192.168.56.3"}})
    assert own_record(facts) is None
    assert plan_leave(plan_reset(facts, None), None).steps == ()


def test_the_cli_refuses_a_node_still_running_allocations_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(system, "euid", lambda: 0)
    facts = leaving()
    facts.nomad_self = {"stats": {"client": {"node_id": "n-1"}}}

    class Nomad:
        def node_allocations(self, node_id):
            assert node_id == "n-1"
            return 7, [{"JobID": "web", "Name": "web.api[0]", "ClientStatus": "running"}]

    class Clients:
        nomad = Nomad()

    monkeypatch.setattr(commands, "observe_node", lambda *args: facts)
    said = []
    with pytest.raises(ConflictError) as exc:
        run_leave(build_settings({}, {}), NodeOptions(), said.append, clients=Clients())
    assert said == []  # refused before any plan is shown or anything changes
    assert "web/web.api[0]" in exc.value.one_line()


def test_the_cli_says_leave_must_run_as_root(capsys, monkeypatch):
    monkeypatch.setattr(system, "euid", lambda: 1000)
    code, out, err = run(["node", "leave", "--dry-run"], capsys)
    assert code == ExitCode.ERROR and out == ""
    assert err.count("\n") == 1 and "weavenomad node leave must run as root" in err

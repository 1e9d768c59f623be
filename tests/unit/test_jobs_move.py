"""Issue 15: ``run`` and ``plan`` refuse to move a registered job into another tenant unless
``--move-tenant`` asks for it; then Nomad's plan must replace every overlay allocation, and the
job is registered against the modify index that plan saw."""

from ipaddress import IPv4Network

import pytest
from test_jobs_run import JOBS, FakeNomad, Lines, registry  # noqa: F401 - fixture

from weavenomad.errors import ConflictError, ExitCode
from weavenomad.jobs import plan as plan_view
from weavenomad.jobs.move import check_replaced, overlay_groups, tenant_move
from weavenomad.jobs.submit import RunOptions, run
from weavenomad.tenancy.contract import TenantTarget

GLOBEX = TenantTarget("globex", IPv4Network("10.32.2.0/24"))


def options(tenant="globex", **kw):
    return RunOptions(path=str(JOBS / "httpbackend-another-subnet.nomad"), tenant=tenant, **kw)


def registered(tenant="acme", subnet="10.32.1.0/24", index=42):
    meta = {} if tenant is None else {"weavenomad.tenant": tenant, "weavenomad.subnet": subnet}
    return {"ID": "httpbackend", "Meta": meta, "JobModifyIndex": index,
            "TaskGroups": [{"Name": "httpbackend", "Tasks": [{"Driver": "docker"}]}]}


def in_globex():
    return registered("globex", "10.32.2.0/24")


def plan_answer(in_place=0, destructive=2, index=42):
    return {"Annotations": {"DesiredTGUpdates": {"httpbackend": {
        "InPlaceUpdate": in_place, "DestructiveUpdate": destructive}}},
        "JobModifyIndex": index, "Diff": {"Type": "Edited"}, "Warnings": ""}


def test_what_counts_as_a_move():
    assert tenant_move(None, GLOBEX) is None  # a new job
    assert tenant_move(registered(tenant=None), GLOBEX) is None  # nobody's yet: it joins
    assert tenant_move(registered("globex", "10.32.2.0/24"), GLOBEX) is None
    move = tenant_move(registered(), GLOBEX)
    assert (move.job_id, move.tenant, move.subnet, move.index) == (
        "httpbackend", "acme", "10.32.1.0/24", 42)
    # the same subnet under another name is a move too (the meta changes), but may stay put
    relabel = tenant_move(registered("net:10.32.2.0/24", "10.32.2.0/24"), GLOBEX)
    assert relabel is not None
    check_replaced(relabel, registered(), plan_answer(in_place=2, destructive=0), GLOBEX)


def test_a_move_updated_in_place_is_refused():
    move = tenant_move(registered(), GLOBEX)
    check_replaced(move, registered(), plan_answer(), GLOBEX)
    with pytest.raises(ConflictError, match=r"task group\(s\) httpbackend \(1\) in place, and "
                                            r"their tasks would keep addresses in 10.32.1.0/24"):
        check_replaced(move, registered(), plan_answer(in_place=1, destructive=1), GLOBEX)
    exec_only = {"TaskGroups": [{"Name": "httpbackend", "Tasks": [{"Driver": "exec"}]}]}
    assert overlay_groups(exec_only) == []
    check_replaced(move, exec_only, plan_answer(in_place=2, destructive=0), GLOBEX)


def test_run_and_plan_refuse_an_unasked_move_and_register_nothing(registry):  # noqa: F811
    registry.create("globex")  # acme has 10.32.1.0/24, where the recorded job asks to be
    nomad = FakeNomad(running=in_globex(), plan_answer=plan_answer())
    for dry_run in (False, True):
        with pytest.raises(ConflictError) as caught:
            run(nomad, registry, options(tenant="acme", dry_run=dry_run), Lines())
        assert caught.value.one_line() == (
            "job 'httpbackend' is registered in tenant globex (10.32.2.0/24), not acme "
            "(10.32.1.0/24) (pass --move-tenant to move it: Nomad replaces all its allocations, "
            "whose tasks get addresses in the new subnet)")
    assert [c[0] for c in nomad.calls] == ["parse", "parse"]


def test_an_asked_move_is_planned_then_registered_against_the_planned_index(registry):  # noqa: F811
    registry.create("globex")
    nomad, lines = FakeNomad(running=in_globex(), plan_answer=plan_answer(index=42)), Lines()
    assert run(nomad, registry, options(tenant="acme", move_tenant=True), lines) == ExitCode.OK
    assert [c[0] for c in nomad.calls] == ["parse", "plan", "register"]
    _, job, check_index = nomad.calls[-1]
    assert check_index == 42 and job["Meta"]["weavenomad.tenant"] == "acme"
    assert lines[0] == ("warning: moving job httpbackend from tenant globex (10.32.2.0/24) to "
                        "tenant acme (10.32.1.0/24): Nomad replaces its allocations")
    (registered_event,) = [e for e in lines.events if e.kind == "registered"]
    assert registered_event.lines[0].startswith(
        "moved job httpbackend from tenant globex (10.32.2.0/24) to tenant acme "
        "(10.32.1.0/24); evaluation ev1")
    assert registered_event.data["moved_from"] == {"tenant": "globex", "subnet": "10.32.2.0/24"}
    # an index given by the user wins; a plan that updates in place registers nothing
    nomad = FakeNomad(running=in_globex(), plan_answer=plan_answer(index=42))
    run(nomad, registry, options(tenant="acme", move_tenant=True, check_index=7), Lines())
    assert nomad.calls[-1][2] == 7
    nomad = FakeNomad(running=in_globex(), plan_answer=plan_answer(in_place=2, destructive=0))
    with pytest.raises(ConflictError, match="in place"):
        run(nomad, registry, options(tenant="acme", move_tenant=True), Lines())
    assert [c[0] for c in nomad.calls] == ["parse", "plan"]


def test_a_planned_move_says_so_and_its_hint_carries_the_flag(registry):  # noqa: F811
    registry.create("globex")
    nomad, lines = FakeNomad(running=in_globex(), plan_answer=plan_answer()), Lines()
    code = run(nomad, registry, options(tenant="acme", move_tenant=True, dry_run=True), lines)
    assert code == plan_view.CHANGES
    assert lines[0].startswith("warning: moving job httpbackend from tenant globex")
    assert lines.events[-1].lines[1].startswith(
        "  weavenomad run --check-index 42 --tenant acme --move-tenant ")
    (plan_event,) = [e for e in lines.events if e.kind == "plan"]
    assert plan_event.data["moved_from"] == {"tenant": "globex", "subnet": "10.32.2.0/24"}
    # the same tenant again is no move: no flag needed, nothing said
    nomad = FakeNomad(running=registered(), plan_answer=plan_answer())
    lines = Lines()
    run(nomad, registry, options(tenant="acme", dry_run=True), lines)
    assert not any("moving" in line for line in lines)

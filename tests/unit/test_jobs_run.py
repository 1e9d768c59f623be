"""``run``'s flow against a fake Nomad that records calls, and the monitor's decisions."""

import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from fakes import FakeKV

from weavenomad.errors import BackendNotFound, ExitCode, ValidationError
from weavenomad.jobs import monitor
from weavenomad.jobs import plan as plan_view
from weavenomad.jobs.submit import RunOptions, run
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.registry import TenantRegistry

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
JOBS = Path(__file__).resolve().parents[2] / "jobs"


def recorded(name):
    return json.loads((RECORDED / name).read_text())["body"]


class Lines(list):
    """A report callable that keeps the events' text lines (and the events)."""

    def __init__(self):
        super().__init__()
        self.events = []

    def __call__(self, event):
        self.events.append(event)
        self.extend(event.lines)


class FakeNomad:
    def __init__(self, evaluations=None, deployments=None, running=None, plan_answer=None):
        self.calls = []
        self.plan_answer = plan_answer
        self.evaluations = evaluations or [
            {"ID": "ev1", "Status": "complete", "DeploymentID": "dep1"}]
        self.deployments = deployments or [
            {"ID": "dep1", "Status": "successful", "StatusDescription": "Deployment completed "
             "successfully", "TaskGroups": {"httpbackend": {"DesiredTotal": 2, "PlacedAllocs": 2,
                                                            "HealthyAllocs": 2}}}]
        self.running = running

    def parse_job(self, text, variables=None, var_text=None, filename=None):
        self.calls.append(("parse", filename))
        return recorded("nomad-jobs-parse.json")

    def job(self, job_id):
        if self.running is None:
            raise BackendNotFound("job not found", backend="nomad", status=404)
        return self.running

    def plan_job(self, job):
        self.calls.append(("plan", job))
        return self.plan_answer

    def register_job(self, job, check_index=None):
        self.calls.append(("register", job, check_index))
        return {"EvalID": "ev1", "Warnings": ""}

    def job_evaluations(self, job_id, index=None, wait=None):
        return 10, self.evaluations

    def job_deployments(self, job_id, index=None, wait=None):
        return 11, self.deployments


@pytest.fixture
def registry():
    reg = TenantRegistry(FakeKV())
    reg.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    reg.create("acme")
    return reg


def options(**kw):
    return RunOptions(path=str(JOBS / "httpbackend-another-subnet.nomad"), tenant="acme", **kw)


def test_run_registers_transformed_job_and_reports_deployment(registry):
    nomad, lines = FakeNomad(), Lines()
    assert run(nomad, registry, options(), lines) == ExitCode.OK
    _, job, check_index = next(c for c in nomad.calls if c[0] == "register")
    task = job["TaskGroups"][0]["Tasks"][0]
    assert task["Env"]["WEAVE_CIDR"] == "net:10.32.1.0/24"
    assert job["Meta"]["weavenomad.tenant"] == "acme"
    assert check_index is None
    assert any("registered job httpbackend in tenant acme" in line for line in lines)
    assert any("healthy 2" in line for line in lines)
    assert lines[-1].startswith("deployment dep1 successful")


def test_placement_failures_exit_2(registry):
    evaluation = {"ID": "ev1", "Status": "complete", "FailedTGAllocs": {
        "httpbackend": {"NodesEvaluated": 0, "NodesAvailable": {"dc9": 0}}}}
    lines = Lines()
    code = run(FakeNomad(evaluations=[evaluation]), registry, options(), lines)
    assert code == ExitCode.ATTENTION
    # issue 17: in Nomad's words (was "placement failure: task group 'httpbackend'")
    assert '  Task Group "httpbackend" (failed to place 1 allocation):' in lines
    assert "    * No nodes were eligible for evaluation" in lines
    assert '    * No nodes are available in datacenter "dc9"' in lines


def test_failed_deployment_exit_2(registry):
    dep = [{"ID": "dep1", "Status": "failed", "StatusDescription": "Failed due to unhealthy "
            "allocations", "TaskGroups": {}}]
    assert run(FakeNomad(deployments=dep), registry, options(), Lines()) == ExitCode.ATTENTION


def test_detach_returns_after_registration(registry):
    nomad = FakeNomad(evaluations=[{"ID": "ev1", "Status": "pending"}])
    assert run(nomad, registry, options(detach=True), Lines()) == ExitCode.OK


def test_dry_run_registers_nothing_and_prints_nomads_plan(registry):
    # issue 17: the plan from Nomad's plan endpoint replaces the JSON job and its JSON diff
    answer = json.loads((RECORDED / "plan-dns-catalog-checks" / "a3-plan-api-count3.json")
                        .read_text())
    nomad, lines = FakeNomad(plan_answer=answer), Lines()
    assert run(nomad, registry, options(dry_run=True), lines) == plan_view.CHANGES
    assert not any(c[0] == "register" for c in nomad.calls)
    (_, planned), = [c for c in nomad.calls if c[0] == "plan"]
    assert planned["TaskGroups"][0]["Tasks"][0]["Env"]["WEAVE_CIDR"] == "net:10.32.1.0/24"
    (plan_event,) = [e for e in lines.events if e.kind == "plan"]
    assert plan_event.lines[:4] == (
        '+/- Job: "httpbackend"', '+/- Task Group: "httpbackend" (1 create, 2 in-place update)',
        '  +/- Count: "2" => "3" (forces create)', '      Task: "httpbackend"')
    assert [e.stream for e in lines.events] == ["warning", "result", "hint"]
    assert "task network resources have been deprecated" in lines[0]
    assert plan_event.data["plan"] == answer and plan_event.data["changes"] is True
    assert plan_event.data["job"]["Meta"]["weavenomad.tenant"] == "acme"
    assert lines.events[-1].lines == (
        "To register exactly this plan (refused if the job changed since):",
        f"  weavenomad run --check-index 651 --tenant acme {options().path}")


def test_bad_tenant_registers_nothing(registry):
    nomad = FakeNomad()
    with pytest.raises(ValidationError, match="outside the Weave range"):
        run(nomad, registry, RunOptions(path=str(JOBS / "httpbackend.nomad"),
                                        tenant="net:10.99.0.0/24"), Lines())
    assert nomad.calls == []


def test_unreadable_job_file_names_it(registry):
    with pytest.raises(ValidationError, match="cannot read job file /nonexistent.nomad"):
        run(FakeNomad(), registry, RunOptions(path="/nonexistent.nomad", tenant="acme"),
            Lines())



def test_monitor_judgements():
    assert monitor.judge_evaluation({"Status": "pending"}) is None
    failed = monitor.judge_evaluation({"ID": "abcdefgh1", "Status": "failed",
                                       "StatusDescription": "boom"})
    assert failed.exit_code == ExitCode.ERROR and "boom" in failed.lines[0]
    assert monitor.judge_deployment({"Status": "running"}) is None
    lines = monitor.placement_failures({"FailedTGAllocs": {"g": {
        "NodesEvaluated": 2, "ConstraintFiltered": {"${attr.kernel.name} = windows": 2}}}})
    # issue 17: Nomad's words (was "constraint '...' filtered 2 node(s)")
    assert '    * Constraint "${attr.kernel.name} = windows": 2 nodes excluded by filter' in lines

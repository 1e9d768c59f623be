import copy
import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from weavenomad.errors import ValidationError
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT, TenantTarget

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
ACME = TenantTarget("acme", IPv4Network("10.32.1.0/24"), IPv4Network("10.32.0.0/24"))
DEFAULT = TenantTarget("net:default", None, IPv4Network("10.32.0.0/24"))


def recorded_job() -> dict:
    return json.loads((RECORDED / "nomad-jobs-parse.json").read_text())["body"]


def job_with(config=None, env=None, driver="docker", group_networks=None) -> dict:
    task = {"Name": "t", "Driver": driver, "Config": {"image": "bb:local", **(config or {})},
            "Env": env}
    return {"ID": "j", "Name": "j", "Meta": None,
            "TaskGroups": [{"Name": "g", "Networks": group_networks, "Tasks": [task]}]}


def only_task(job):
    return job["TaskGroups"][0]["Tasks"][0]


def test_recorded_seed_job_already_in_acme_subnet_is_kept_and_labelled():
    job = recorded_job()
    before = copy.deepcopy(job)
    result = apply_tenant(job, ACME)
    assert job == before, "the input must not be modified"
    assert only_task(result.job)["Env"] == {"WEAVE_CIDR": "net:10.32.1.0/24"}
    assert result.job["Meta"] == {META_TENANT: "acme", META_SUBNET: "10.32.1.0/24"}
    assert result.warnings == ()


def test_sets_weave_cidr_and_removes_weave_network_mode_with_warning():
    result = apply_tenant(job_with(config={"network_mode": "weave"}), ACME)
    task = only_task(result.job)
    assert task["Env"]["WEAVE_CIDR"] == "net:10.32.1.0/24"
    assert "network_mode" not in task["Config"]
    assert len(result.warnings) == 1 and "network_mode" in result.warnings[0]


def test_default_subnet_target():
    result = apply_tenant(job_with(), DEFAULT)
    assert only_task(result.job)["Env"]["WEAVE_CIDR"] == "net:default"
    assert result.job["Meta"][META_SUBNET] == "default"


@pytest.mark.parametrize("value", ["net:10.32.1.0/25", "ip:10.32.1.7/24", "10.32.1.9/24"])
def test_existing_weave_cidr_inside_the_tenant_is_kept(value):
    result = apply_tenant(job_with(env={"WEAVE_CIDR": value}), ACME)
    assert only_task(result.job)["Env"]["WEAVE_CIDR"] == value


@pytest.mark.parametrize(
    "value",
    ["net:10.32.2.0/24", "ip:10.32.2.7/24", "net:default", "none", "net:10.32.0.0/16",
     "net:10.32.1.0/24 net:10.32.2.0/24"],
)
def test_existing_weave_cidr_outside_the_tenant_is_refused(value):
    with pytest.raises(ValidationError, match="group 'g' task 't'"):
        apply_tenant(job_with(env={"WEAVE_CIDR": value}), ACME)


def test_bad_weave_cidr_in_job_names_the_task():
    with pytest.raises(ValidationError, match=r"task 't'.*invalid WEAVE_CIDR token"):
        apply_tenant(job_with(env={"WEAVE_CIDR": "net:banana"}), ACME)


@pytest.mark.parametrize("mode", ["host", "container:abc", "mynet"])
def test_network_modes_the_proxy_skips_are_refused(mode):
    with pytest.raises(ValidationError, match=f"network_mode = '{mode}'"):
        apply_tenant(job_with(config={"network_mode": mode}), ACME)


@pytest.mark.parametrize("mode", ["", "default", "bridge", "none"])
def test_network_modes_the_proxy_attaches_are_kept(mode):
    result = apply_tenant(job_with(config={"network_mode": mode}), ACME)
    assert only_task(result.job)["Config"]["network_mode"] == mode


@pytest.mark.parametrize("mode", ["bridge", "cni/mynet"])
def test_group_network_namespaces_are_refused(mode):
    with pytest.raises(ValidationError, match=rf"group 'g': network\[0\] mode = '{mode}'"):
        apply_tenant(job_with(group_networks=[{"Mode": mode}]), ACME)


def test_host_group_network_is_fine():
    apply_tenant(job_with(group_networks=[{"Mode": "host"}, {"Mode": ""}]), ACME)


def test_non_docker_tasks_are_left_alone_with_a_warning():
    job = job_with(driver="exec")
    result = apply_tenant(job, ACME)
    assert only_task(result.job) is only_task(job)
    assert "driver 'exec'" in result.warnings[0]


def test_existing_job_meta_is_kept():
    job = job_with()
    job["Meta"] = {"owner": "team-a"}
    assert apply_tenant(job, ACME).job["Meta"]["owner"] == "team-a"

"""``run`` holds a job's Consul services under private names (weavenomad.jobs.services), so
that only the reconciler's twins answer for the public names and tags."""

import copy
from ipaddress import IPv4Network

import pytest

from weavenomad.errors import ValidationError
from weavenomad.jobs.render import rendered_hcl
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy.contract import HIDDEN_PREFIX, META_SERVICE, TenantTarget, hidden_name

ACME = TenantTarget("acme", IPv4Network("10.32.1.0/24"), IPv4Network("10.32.0.0/24"))


def job_with(task_services=None, group_services=None, driver="docker") -> dict:
    task = {"Name": "t", "Driver": driver, "Config": {"image": "bb:local"}, "Env": None,
            "Services": task_services}
    return {"ID": "j", "Name": "j", "Meta": None,
            "TaskGroups": [{"Name": "g", "Networks": None, "Tasks": [task],
                            "Services": group_services}]}


def web(**extra) -> dict:
    return {"Name": "web", "PortLabel": "http", "Tags": ["urlprefix-/", "v1"],
            "Meta": {"team": "a"}, "Checks": [{"Name": "alive", "Type": "tcp"}], **extra}


def test_task_service_is_held_under_a_private_name_tags_and_meta():
    job = job_with([web(CanaryTags=["canary"], CanaryMeta={"stage": "canary"})])
    before = copy.deepcopy(job)
    result = apply_tenant(job, ACME)
    assert job == before
    (service,) = result.job["TaskGroups"][0]["Tasks"][0]["Services"]
    assert service["Name"] == "weavenomad-hidden-web"
    assert service["Tags"] == ["weavenomad-hidden:urlprefix-/", "weavenomad-hidden:v1"]
    assert service["CanaryTags"] == ["weavenomad-hidden:canary"]
    assert service["Meta"] == {"team": "a", META_SERVICE: "web"}
    assert service["CanaryMeta"] == {"stage": "canary", META_SERVICE: "web"}
    assert service["Checks"] == [{"Name": "alive", "Type": "tcp"}]
    assert service["PortLabel"] == "http"
    assert [c.describe() for c in result.changes if c.section == "Service"] == [
        'group "g" task "t": Service Name = "weavenomad-hidden-web"']


def test_group_service_unnamed_check_and_default_name():
    job = job_with(group_services=[{"PortLabel": "http", "Checks": [{"Type": "http"}]}])
    (service,) = apply_tenant(job, ACME).job["TaskGroups"][0]["Services"]
    assert service["Name"] == "weavenomad-hidden-j-g"
    assert service["Meta"] == {META_SERVICE: "j-g"}
    # Nomad would name the check after the private name; it keeps the public one
    assert service["Checks"] == [{"Type": "http", "Name": 'service: "j-g" check'}]


def test_interpolated_name_keeps_its_interpolation_in_name_and_meta():
    job = job_with([web(Name="${NOMAD_META_app}-web")])
    (service,) = apply_tenant(job, ACME).job["TaskGroups"][0]["Tasks"][0]["Services"]
    assert service["Name"] == HIDDEN_PREFIX + "${NOMAD_META_app}-web"
    assert service["Meta"][META_SERVICE] == "${NOMAD_META_app}-web"


def test_long_names_are_shortened_with_a_hash_and_interpolated_ones_refused():
    long = "a" * 60
    assert len(hidden_name(long)) == 63
    assert hidden_name(long) != hidden_name("a" * 59 + "b")
    (service,) = apply_tenant(job_with([web(Name=long)]), ACME).job[
        "TaskGroups"][0]["Tasks"][0]["Services"]
    assert service["Meta"][META_SERVICE] == long
    with pytest.raises(ValidationError) as refused:
        apply_tenant(job_with([web(Name="${NOMAD_META_app}-" + "b" * 40)]), ACME)
    assert "cannot be held under a private name" in refused.value.message
    assert "\n" not in refused.value.message


def test_left_alone_nomad_provider_held_services_and_groups_without_docker():
    native = web(Provider="nomad")
    held = apply_tenant(job_with([web()]), ACME).job["TaskGroups"][0]["Tasks"][0]["Services"]
    job = job_with([native, *held])
    services = apply_tenant(job, ACME).job["TaskGroups"][0]["Tasks"][0]["Services"]
    assert services == [native, *held]
    exec_job = job_with(group_services=[web()], driver="exec")
    assert apply_tenant(exec_job, ACME).job["TaskGroups"][0]["Services"] == [web()]


def test_too_many_meta_pairs_is_refused_in_one_line():
    meta = {f"k{i}": "v" for i in range(64)}
    with pytest.raises(ValidationError) as refused:
        apply_tenant(job_with([web(Meta=meta)]), ACME)
    assert "64 meta pairs" in refused.value.message


HCL = '''job "j" {
  group "g" {
    service {
      name = "front"
      port = "http"
      tags = ["urlprefix-/"]
      canary_tags = ["canary"]
      check {
        type = "tcp"
      }
    }
    task "t" {
      driver = "docker"
      config {
        image = "bb:local"
      }
      service {
        name = "${NOMAD_META_app}"
        meta {
          team = "a"
        }
        canary_meta {
          stage = "canary"
        }
      }
    }
  }
}
'''


def test_render_writes_the_held_services_back_into_the_file():
    text = rendered_hcl(HCL, "job.nomad", ACME, lambda _: None)
    assert 'name = "weavenomad-hidden-front"' in " ".join(text.split())
    assert '"weavenomad-hidden:urlprefix-/"' in text
    assert '"weavenomad-hidden:canary"' in text
    assert 'name = "service: \\"front\\" check"' in " ".join(text.split())
    # "$${" is HCL's literal "${": Nomad gets the text and interpolates it at run time
    assert 'name = "weavenomad-hidden-$${NOMAD_META_app}"' in " ".join(text.split())
    assert text.count('weavenomad-service') == 3


def test_render_refuses_a_service_name_only_nomad_evaluates():
    with pytest.raises(ValidationError) as refused:
        rendered_hcl(HCL.replace('"front"', "var.name"), "job.nomad", ACME, lambda _: None)
    assert "service[0]: name is an expression" in refused.value.message

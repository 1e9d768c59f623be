"""HCL2 variables and locals: defaults, NOMAD_VAR_*, var files and --var, as Nomad 1.0 does."""

from __future__ import annotations

import pytest
from weavenomad_lab.nomad.jobspec import JobspecError, load_job_file, parse_job

JOB = """
variable "datacenter" {
  type    = string
  default = "dc1"
}
variable "count" {
  type    = number
  default = 1
}
variable "tags" {
  type    = list(string)
  default = ["web"]
}
variable "image" {
  description = "no default: must be given"
}
locals {
  name  = "app-${var.datacenter}"
  total = var.count * 2
}
job "app" {
  datacenters = [var.datacenter]
  group "g" {
    count = local.total
    task "t" {
      driver = "docker"
      config {
        image = var.image
        args  = ["--dc", "${var.datacenter}", "${NOMAD_ALLOC_ID}"]
      }
      service {
        name = local.name
        tags = var.tags
      }
    }
  }
}
"""


def parsed(**kwargs) -> tuple[dict, dict, dict]:
    kwargs.setdefault("variables", {"image": "bb:local"})
    job = parse_job(JOB, "app.nomad", **kwargs)
    group = job["TaskGroups"][0]
    return job, group, group["Tasks"][0]


def test_defaults_references_and_locals():
    job, group, task = parsed()
    assert job["Datacenters"] == ["dc1"]
    assert group["Count"] == 2
    assert task["Config"] == {"image": "bb:local",
                              "args": ["--dc", "dc1", "${NOMAD_ALLOC_ID}"]}
    assert task["Services"][0]["Name"] == "app-dc1"
    assert task["Services"][0]["Tags"] == ["web"]


def test_command_line_values_are_typed_by_the_declaration():
    job, group, task = parsed(variables={"image": "x", "count": "3", "tags": '["a", "b"]',
                                         "datacenter": "dc9"})
    assert job["Datacenters"] == ["dc9"] and group["Count"] == 6
    assert task["Services"][0]["Tags"] == ["a", "b"]


def test_precedence_default_env_file_then_command_line():
    env = {"NOMAD_VAR_datacenter": "from-env", "NOMAD_VAR_image": "env-image",
           "NOMAD_VAR_undeclared": "ignored", "HOME": "/root"}
    job, _, task = parsed(variables={}, env=env)
    assert job["Datacenters"] == ["from-env"] and task["Config"]["image"] == "env-image"
    files = {"prod.vars.hcl": 'datacenter = "from-file"\ncount = 5\n'}
    job, group, _ = parsed(variables={}, env=env, var_files=files)
    assert job["Datacenters"] == ["from-file"] and group["Count"] == 10
    job, _, _ = parsed(variables={"datacenter": "from-cli"}, env=env, var_files=files)
    assert job["Datacenters"] == ["from-cli"]


def test_json_var_files(tmp_path):
    job_file = tmp_path / "app.nomad"
    job_file.write_text(JOB)
    var_file = tmp_path / "vars.json"
    var_file.write_text('{"image": "json-image", "tags": ["x"]}')
    job = load_job_file(job_file, var_files=[var_file])
    task = job["TaskGroups"][0]["Tasks"][0]
    assert task["Config"]["image"] == "json-image"
    assert task["Services"][0]["Tags"] == ["x"]


def test_variables_block_declares_defaults():
    job = parse_job('variables {\n  dc = "dc7"\n}\njob "j" {\n  datacenters = [var.dc]\n}\n')
    assert job["Datacenters"] == ["dc7"]


@pytest.mark.parametrize("kwargs, words", [
    ({"variables": {}}, 'Unset variable "image"'),
    ({"variables": {"image": "x", "nope": "1"}}, 'A "nope" variable was set'),
    ({"variables": {"image": "x", "count": "many"}}, "count: a number is required"),
    ({"variables": {"image": "x", "tags": "[unclosed"}}, "Invalid"),
    ({"variables": {"image": "x"}, "var_files": {"v.hcl": 'variable "x" {}\n'}},
     "Variable declaration in a var file"),
    ({"variables": {"image": "x"}, "var_files": {"v.hcl": "image = var.other\n"}},
     "Variables not allowed"),
    ({"variables": {"image": "x"}, "var_files": {"v.json": "[1]"}}, "an object is required"),
])
def test_bad_variable_values(kwargs, words):
    with pytest.raises(JobspecError) as caught:
        parse_job(JOB, "app.nomad", **kwargs)
    assert words in caught.value.message


def test_default_cannot_reference_variables():
    with pytest.raises(JobspecError, match="Variables not allowed"):
        parse_job('variable "a" { default = "x" }\nvariable "b" { default = var.a }\n'
                  'job "j" {}\n')


def test_variable_type_must_fit_the_default():
    with pytest.raises(JobspecError, match="a number is required"):
        parse_job('variable "n" {\n  type = number\n  default = "ten"\n}\njob "j" {}\n')

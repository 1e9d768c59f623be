"""Job files -> Nomad's canonical JSON job, checked against real Nomad 1.0.18's answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from weavenomad_lab.nomad.jobspec import load_job_file, parse_job

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests" / "fixtures" / "recorded"
JOBS = ROOT / "jobs"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


@pytest.fixture(scope="module")
def parse_answer() -> dict:
    return recorded("nomad-jobs-parse.json")


def task_of(job: dict, group: int = 0, task: int = 0) -> dict:
    return job["TaskGroups"][group]["Tasks"][task]


def test_recorded_job_hcl_gives_exactly_nomads_canonical_answer(parse_answer):
    job = parse_job(parse_answer["request"]["body"]["JobHCL"])
    assert job == parse_answer["body"]


def in_current_syntax(recorded_job: dict, job: dict) -> tuple[dict, dict]:
    """Issue 17 moved the example files to current syntax: the recorded job's task network
    (``resources { network { mbits = 10 } }``) became a group network block in host mode.
    Both sides without those networks, after checking the group's."""
    expected = json.loads(json.dumps(recorded_job))
    assert task_of(expected)["Resources"]["Networks"][0]["MBits"] == 10
    task_of(expected)["Resources"]["Networks"] = None
    (network,) = job["TaskGroups"][0]["Networks"]
    assert network["Mode"] == "host" and not (network["DynamicPorts"] or network["ReservedPorts"])
    job["TaskGroups"][0]["Networks"] = None
    return job, expected


def test_job_file_is_the_recorded_seed_job(parse_answer):
    job, expected = in_current_syntax(
        parse_answer["body"], load_job_file(JOBS / "httpbackend-another-subnet.nomad"))
    assert job == expected


def test_default_subnet_job_differs_only_by_network_mode_and_env(parse_answer):
    job, expected = in_current_syntax(parse_answer["body"],
                                      load_job_file(JOBS / "httpbackend.nomad"))
    task = task_of(expected)
    task["Env"] = None
    task["Config"]["network_mode"] = "weave"
    assert job == expected


def test_registered_job_has_the_same_job_fields(parse_answer):
    """nomad-job.json is the same job after registration: what the job file says must agree."""
    registered = recorded("nomad-job.json")["body"]
    parsed = parse_answer["body"]
    for key in ("ID", "Name", "Datacenters", "Type", "Priority", "Region", "Namespace"):
        assert registered[key] == parsed[key]
    assert task_of(registered)["Config"] == task_of(parsed)["Config"]
    assert task_of(registered)["Env"] == task_of(parsed)["Env"]


def test_without_canonicalize_only_what_the_file_says_is_set(parse_answer):
    job = parse_job(parse_answer["request"]["body"]["JobHCL"], canonical=False)
    assert set(job) == set(parse_answer["body"])  # same JSON shape
    assert job["ID"] == job["Name"] == "httpbackend"
    assert job["Priority"] is None and job["Region"] is None and job["Update"] is None
    group = job["TaskGroups"][0]
    assert group["Count"] == 2 and group["RestartPolicy"] is None
    task = task_of(job)
    assert task["KillTimeout"] is None and task["Resources"]["CPU"] is None
    assert task["Resources"]["Networks"][0]["MBits"] == 10
    assert task["Services"][0]["Checks"][0]["Interval"] == 5_000_000_000


RICH = """
job "web" {
  datacenters = ["dc1", "dc2"]
  type        = "service"
  region      = "eu"
  namespace   = "team-a"
  priority    = 70
  meta { owner = "ops"
    ratio = 1.5 }
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  constraint { distinct_hosts = true }
  constraint {
    attribute = "${attr.nomad.version}"
    version   = ">= 1.0"
  }
  update {
    max_parallel = 2
    stagger      = "1m"
  }
  group "front" {
    count = 3
    meta = { "rack.id" = "r1" }
    network {
      mode = "bridge"
      port "http" {
        static = 8080
        to     = 80
      }
      port "admin" {}
    }
    service {
      name = "front"
      port = "http"
      tags = ["a", "b"]
      meta { version = "2" }
      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "1s"
        check_restart { limit = 3 }
      }
    }
    restart { attempts = 5 }
    reschedule { unlimited = false }
    ephemeral_disk { size = 500 }
    update { canary = 1 }
    task "app" {
      driver = "docker"
      user   = "nobody"
      config {
        image    = "bb:local"
        port_map { http = 80 }
        labels   = { team = "a" }
        mount "bind" { source = "/srv" }
        script   = <<-EOT
          echo ${NOMAD_ALLOC_ID}
            indented $${literal}
          EOT
      }
      env = { "A.B" = "x", N = 3 }
      kill_timeout = "1m30s"
      lifecycle { hook = "prestart" }
      logs { max_files = 3 }
      resources {
        cpu    = 200
        memory = 64
      }
      restart { delay = "1s" }
      service { port = "http" }
    }
  }
}
"""


@pytest.fixture(scope="module")
def rich() -> dict:
    return parse_job(RICH, "rich.nomad")


def test_job_level_fields_and_constraints(rich):
    assert (rich["Region"], rich["Namespace"], rich["Priority"]) == ("eu", "team-a", 70)
    assert rich["Meta"] == {"owner": "ops", "ratio": "1.5"}
    assert rich["Constraints"] == [
        {"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="},
        {"LTarget": "", "RTarget": "", "Operand": "distinct_hosts"},
        {"LTarget": "${attr.nomad.version}", "RTarget": ">= 1.0", "Operand": "version"},
    ]


def test_update_merges_job_into_group_like_nomad(rich):
    assert rich["Update"]["MaxParallel"] == 2 and rich["Update"]["Stagger"] == 60 * 10**9
    group_update = rich["TaskGroups"][0]["Update"]
    assert group_update["MaxParallel"] == 2 and group_update["Canary"] == 1
    assert group_update["HealthCheck"] == "checks"


def test_group_network_ports_split_static_from_dynamic(rich):
    network = rich["TaskGroups"][0]["Networks"][0]
    assert network["Mode"] == "bridge"
    assert network["ReservedPorts"] == [
        {"Label": "http", "Value": 8080, "To": 80, "HostNetwork": ""}]
    assert network["DynamicPorts"] == [{"Label": "admin", "Value": 0, "To": 0, "HostNetwork": ""}]


def test_group_service_and_policies(rich):
    group = rich["TaskGroups"][0]
    service = group["Services"][0]
    assert (service["Name"], service["PortLabel"], service["AddressMode"]) == (
        "front", "http", "auto")
    assert service["Meta"] == {"version": "2"} and service["Tags"] == ["a", "b"]
    check = service["Checks"][0]
    assert check["Interval"] == 10 * 10**9 and check["Timeout"] == 10**9
    assert check["CheckRestart"] == {"Limit": 3, "Grace": 10**9, "IgnoreWarnings": False}
    assert group["Meta"] == {"rack.id": "r1"}
    assert group["RestartPolicy"]["Attempts"] == 5
    assert group["RestartPolicy"]["Delay"] == 15 * 10**9  # merged with the default
    assert group["ReschedulePolicy"]["Unlimited"] is False
    assert group["ReschedulePolicy"]["DelayFunction"] == "exponential"
    assert group["EphemeralDisk"] == {"Migrate": False, "SizeMB": 500, "Sticky": False}


def test_task_config_follows_nomads_block_rules(rich):
    config = task_of(rich)["Config"]
    assert config["port_map"] == [{"http": 80}]
    assert config["labels"] == [{"team": "a"}]  # an object attribute becomes a list of one map
    assert config["mount"] == [{"bind": [{"source": "/srv"}]}]  # labels nest maps
    assert config["script"] == "echo ${NOMAD_ALLOC_ID}\n  indented ${literal}\n"


def test_task_fields(rich):
    task = task_of(rich)
    assert task["Env"] == {"A.B": "x", "N": "3"}
    assert task["KillTimeout"] == 90 * 10**9 and task["User"] == "nobody"
    assert task["Lifecycle"] == {"Hook": "prestart", "Sidecar": False}
    assert task["LogConfig"] == {"MaxFiles": 3, "MaxFileSizeMB": 10}
    assert (task["Resources"]["CPU"], task["Resources"]["MemoryMB"]) == (200, 64)
    assert task["RestartPolicy"] == {"Attempts": 5, "Delay": 10**9,
                                     "Interval": 30 * 60 * 10**9, "Mode": "fail"}
    assert task["Services"][0]["Name"] == "web-front-app"  # Nomad's default name


def test_batch_job_defaults():
    job = parse_job('job "b" {\n type = "batch"\n group "g" {\n task "t" {\n'
                    ' driver = "exec"\n }\n }\n}\n')
    group = job["TaskGroups"][0]
    assert job["Update"] is None and group["Update"] is None and group["Migrate"] is None
    assert group["RestartPolicy"] == {"Attempts": 3, "Delay": 15 * 10**9,
                                      "Interval": 24 * 3600 * 10**9, "Mode": "fail"}
    assert group["ReschedulePolicy"]["DelayFunction"] == "constant"


def test_system_job_has_no_reschedule_policy():
    job = parse_job('job "s" {\n type = "system"\n group "g" {\n }\n}\n')
    assert job["TaskGroups"][0]["ReschedulePolicy"] is None


@pytest.mark.parametrize("text, value", [
    ('"${NOMAD_ALLOC_ID}"', "${NOMAD_ALLOC_ID}"),
    ('"a-${node.unique.name}-b"', "a-${node.unique.name}-b"),
    ("NOMAD_ALLOC_INDEX", "${NOMAD_ALLOC_INDEX}"),
    ('"$${var.kept}"', "${var.kept}"),
    ('"tab\\there \\u00e9"', "tab\there \u00e9"),
    ("1 + 2 * 3", "7"),
    ('2 > 1 ? "yes" : "no"', "yes"),
    ("1.5e3", "1500"),
    ("true", "true"),
])
def test_values_as_nomad_evaluates_them(text, value):
    job = parse_job(f'job "j" {{\n  meta {{\n    k = {text}\n  }}\n}}\n')
    assert job["Meta"] == {"k": value}


def test_durations_accept_go_syntax_and_nanoseconds():
    body = 'kill_timeout = "{}"'
    for text, nanos in [("1.5s", 1_500_000_000), ("1h30m", 5400 * 10**9), ("250ms", 250 * 10**6)]:
        job = parse_job(f'job "j" {{\n group "g" {{\n task "t" {{\n {body.format(text)}\n'
                        " }\n }\n}\n")
        assert task_of(job)["KillTimeout"] == nanos
    job = parse_job('job "j" {\n group "g" {\n task "t" {\n kill_timeout = 7\n }\n }\n}\n')
    assert task_of(job)["KillTimeout"] == 7

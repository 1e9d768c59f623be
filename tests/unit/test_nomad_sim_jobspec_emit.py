"""JSON job -> HCL job file that parses back to the same canonical job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from weavenomad_lab.nomad.jobspec import parse_job, render_hcl
from weavenomad_lab.nomad.jobspec.emit import quote

from weavenomad.errors import ValidationError

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def recorded_body(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())["body"]


@pytest.fixture(scope="module")
def seed_job() -> dict:
    return recorded_body("nomad-jobs-parse.json")


def test_recorded_canonical_job_round_trips(seed_job):
    text = render_hcl(seed_job)
    assert parse_job(text, "rendered.hcl") == seed_job


def test_rendered_job_reads_like_a_hand_written_one(seed_job):
    text = render_hcl(seed_job)
    assert 'job "httpbackend" {' in text
    assert 'WEAVE_CIDR = "net:10.32.1.0/24"' in text
    assert 'interval = "5s"' in text and "logging {" in text
    for default in ("namespace", "region", "priority", "restart", "reschedule", "migrate",
                    "ephemeral_disk", "kill_timeout", "logs", "update", "cpu ="):
        assert default not in text, default


def test_registered_job_from_nomad_round_trips_without_server_fields(seed_job):
    registered = recorded_body("nomad-job.json")
    text = render_hcl({"Job": registered})
    job = parse_job(text)
    assert job["ModifyIndex"] == 0 and job["Status"] == ""
    assert job["TaskGroups"][0]["Tasks"][0]["Config"] == \
        seed_job["TaskGroups"][0]["Tasks"][0]["Config"]
    assert render_hcl(job) == text


def test_rich_job_round_trips():
    from test_nomad_sim_jobspec_parse import RICH as rich_text

    job = parse_job(rich_text)
    assert parse_job(render_hcl(job)) == job


def test_non_canonical_job_renders_to_its_canonical_form(seed_job):
    sparse = {"ID": "j", "Type": "batch", "TaskGroups": [
        {"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec",
                                 "Config": {"command": "/bin/true"}}]}]}
    job = parse_job(render_hcl(sparse))
    assert job["Type"] == "batch" and job["Update"] is None
    assert job["TaskGroups"][0]["RestartPolicy"]["Attempts"] == 3


def test_multiline_strings_become_heredocs_and_templates_stay_literal():
    job = {"ID": "j", "TaskGroups": [{"Name": "g", "Tasks": [{
        "Name": "t", "Driver": "raw_exec",
        "Config": {"command": "sh", "script": "echo ${NOMAD_ALLOC_ID}\necho ${var.not}\n"}}],
        "Meta": {"a.b": "1", "lit": "$${x} %{y} \"q\" \\"}}]}
    text = render_hcl(job)
    assert "<<EOT\necho ${NOMAD_ALLOC_ID}\necho $${var.not}\nEOT" in text
    assert 'meta = { "a.b" = "1"' in text
    parsed = parse_job(text)
    group = parsed["TaskGroups"][0]
    assert group["Tasks"][0]["Config"]["script"] == "echo ${NOMAD_ALLOC_ID}\necho ${var.not}\n"
    assert group["Meta"]["lit"] == "$${x} %{y} \"q\" \\"


@pytest.mark.parametrize("job, words", [
    ({"ID": "j", "Periodic": {"Spec": "@daily"}}, "Job.Periodic"),
    ({"ID": "j", "NodePool": "gpu"}, "Job.NodePool"),
    ({"ID": "j", "TaskGroups": [{"Name": "g", "Tasks": [
        {"Name": "t", "Templates": [{"EmbeddedTmpl": "x"}]}]}]}, "Tasks[0].Templates"),
    ({"ID": "j", "TaskGroups": [{"Name": "g", "Count": "two"}]}, "must be a number"),
    ({"ID": "j", "TaskGroups": [{"Name": "g", "Tasks": [
        {"Name": "t", "Config": {"labels": {"a": "b"}}}]}]}, "config.labels"),
    (["not", "a", "job"], "not a JSON object"),
])
def test_what_hcl_cannot_express_is_refused(job, words):
    with pytest.raises(ValidationError) as caught:
        render_hcl(job)
    assert words in caught.value.message


def test_server_and_empty_fields_are_ignored(seed_job):
    job = dict(seed_job, Status="running", Version=4, Stop=True, Affinities=[], NodePool="")
    assert parse_job(render_hcl(job)) == seed_job


@pytest.mark.parametrize("text", ["plain", "${NOMAD_ALLOC_ID}", "$${x}", "a\"b\\c\nd\te",
                                  "${var.x}", "${true}", "%{ if x }", "\u00e9\x01"])
def test_quote_round_trips_any_string(text):
    job = parse_job(f'job "j" {{\n  meta {{\n    k = {quote(text)}\n  }}\n}}\n')
    assert job["Meta"]["k"] == text

"""Bad job files fail with a ValidationError that names the cause and FILE:LINE:COL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from weavenomad_lab.nomad.jobspec import JobspecError, load_job_file, parse_job

from weavenomad.errors import ValidationError

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def error_of(text: str, filename: str = "jobs/bad.nomad", **kwargs) -> JobspecError:
    with pytest.raises(JobspecError) as caught:
        parse_job(text, filename, **kwargs)
    assert isinstance(caught.value, ValidationError)
    return caught.value


def test_syntax_error_points_where_nomad_does():
    answer = json.loads((RECORDED / "error-nomad-parse-syntax.json").read_text())
    err = error_of(answer["request"]["body"]["JobHCL"])
    # Nomad: "input.hcl:4,16-5,1: Invalid expression; Expected the start of an expression..."
    assert (err.pos.line, err.pos.column) == (4, 16)
    assert err.message.startswith("jobs/bad.nomad:4:16: Invalid expression; Expected the start")
    assert err.nomad_style().startswith("input.hcl:4,16: Invalid expression")
    assert answer["body"].startswith("input.hcl:4,16")


@pytest.mark.parametrize("text, where, words", [
    ('job "a" {\n  type = "batch"\n', (3, 1), "Unclosed block"),
    ('job "a" {\n  type = @\n}\n', (2, 10), "'@'"),
    ('job "a" {\n  x = "unterminated\n}\n', (2, 8), "Unterminated string"),
])
def test_other_syntax_errors_have_positions(text, where, words):
    err = error_of(text)
    assert (err.pos.line, err.pos.column) == where
    assert words in err.message


@pytest.mark.parametrize("text, where, name, summary", [
    ('job "x" {\n  group "g" {\n    task "t" {\n      drivr = "docker"\n    }\n  }\n}\n',
     (4, 7), '"drivr"', "Unsupported argument"),
    ('job "x" {\n  group "g" {\n    sidecar {\n    }\n  }\n}\n',
     (3, 5), '"sidecar"', "Unsupported block type"),
    ('job "x" {\n  group "g" {\n    task "t" {\n      resources {\n        gpu = 1\n'
     "      }\n    }\n  }\n}\n", (5, 9), '"gpu"', "Unsupported argument"),
    ('job "x" {\n  group "g" {\n    task "t" {\n      service {\n        check {\n'
     '          kind = "tcp"\n        }\n      }\n    }\n  }\n}\n', (6, 11), '"kind"',
     "Unsupported argument"),
    ('job "x" {\n  group "g" {\n    task "t" {\n      config = { a = 1 }\n    }\n  }\n}\n',
     (4, 7), '"config"', "Unsupported argument"),
    ('oops "x" {\n}\n', (1, 1), '"oops"', "Unsupported block type"),
])
def test_unknown_attributes_and_blocks_are_named(text, where, name, summary):
    err = error_of(text)
    assert (err.pos.line, err.pos.column) == where
    assert summary in err.message and name in err.message


@pytest.mark.parametrize("construct, text", [
    ("template", 'task "t" {\n template {\n data = "x"\n }\n }'),
    ("artifact", 'task "t" {\n artifact {\n source = "x"\n }\n }'),
    ("volume", 'volume "v" {\n type = "host"\n }'),
    ("connect", 'service {\n connect {\n native = true\n }\n }'),
    ("upper()", 'meta {\n a = upper("x")\n }'),
    ("for expressions", 'meta {\n a = [for x in ["a"]: x][0]\n }'),
    ("splat", 'meta {\n a = var.x[*]\n }'),
    ("directives", 'meta {\n a = "%{ if true }x%{ endif }"\n }'),
    ("dynamic block", 'dynamic "task" {\n for_each = []\n content {}\n }'),
])
def test_offline_unsupported_constructs_are_named_never_dropped(construct, text):
    err = error_of(f'job "x" {{\n group "g" {{\n {text}\n }}\n}}\n')
    assert construct in err.message
    assert err.message.startswith("jobs/bad.nomad:")
    assert "offline" in err.message


@pytest.mark.parametrize("line, words, at_line", [
    ('count = "two"', '"count": a whole number required', 3),
    ("count = 1.5", '"count": a whole number required', 3),
    ('shutdown_delay = "5 s"', 'Unsuitable duration value for "shutdown_delay"', 3),
    ("meta { a = [1] }", '"meta.a": string required', 3),
    ('meta {\n a { b = 1 }\n }', 'Blocks of type "a" are not expected in meta', 4),
])
def test_values_of_the_wrong_type(line, words, at_line):
    err = error_of(f'job "x" {{\n group "g" {{\n {line}\n }}\n}}\n')
    assert words in err.message and err.pos.line == at_line


@pytest.mark.parametrize("text, words", [
    ('variable "x" {}\njob "x" {}\n', 'Unset variable "x"'),
    ('job "x" {\n datacenters = [var.nope]\n}\n', 'No variable named "nope"'),
    ('job "x" {\n datacenters = [local.nope]\n}\n', 'No local named "nope"'),
    ('variable "x" { default = 1 }\n', "Missing job block"),
    ('job "a" {}\njob "b" {}\n', "Duplicate job block"),
    ('job "a" {\n group {\n }\n}\n', "Missing name for group"),
    ('job "a" {\n group "g" "h" {\n }\n}\n', "Extraneous label for group"),
    ('job "a" {\n type = "batch"\n type = "service"\n}\n', 'The argument "type" was already'),
    ('job "a" {\n update {}\n update {}\n}\n', "Duplicate update block"),
    ('job "a" {\n meta = { a = "b" }\n meta { c = "d" }\n}\n', "Duplicate meta block"),
    ('job "${var.x}" {\n}\n', "Labels cannot contain interpolations"),
    ('{"Job": {"ID": "x"}}', "JSON job files"),
    ('locals {\n a = local.b\n b = local.a\n}\njob "x" {}\n', "depends on itself"),
])
def test_structural_errors(text, words):
    assert words in error_of(text).message


def test_missing_job_file_is_a_validation_error(tmp_path):
    with pytest.raises(ValidationError, match="cannot read"):
        load_job_file(tmp_path / "absent.nomad")


def test_error_messages_are_one_line():
    err = error_of('job "a" {\n  type = \n}\n')
    assert "\n" not in err.one_line()


def test_offline_limits_name_every_unsupported_block():
    from weavenomad_lab.nomad.jobspec import offline_limits

    text = offline_limits()
    for name in ("template", "artifact", "vault", "volume", "connect", "periodic", "dynamic"):
        assert name in text

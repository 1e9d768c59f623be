"""The example jobs in jobs/: current Nomad syntax (no deprecation warning from Nomad), and
every command their headers show works as written (the ones that need a cluster run in
tests/lab/test_run_tenants_lab.py)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from job_headers import header_commands
from weavenomad_lab.nomad import jobs as nomad_jobs
from weavenomad_lab.nomad.jobspec import load_job_file

from weavenomad.cli import cli, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "jobs").glob("*.nomad"))


def test_every_example_shows_commands():
    assert EXAMPLES
    for path in EXAMPLES:
        commands = header_commands(path)
        assert any(c[:2] == ["weavenomad", "plan"] for c in commands), path.name
        assert any(c[:2] == ["weavenomad", "render"] for c in commands), path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_no_example_makes_nomad_warn_about_deprecated_syntax(path):
    job = nomad_jobs.canonicalize(load_job_file(path))
    assert nomad_jobs.warnings(job) == ""


@pytest.mark.parametrize("argv", [c for p in EXAMPLES for c in header_commands(p)
                                  if c[:2] == ["weavenomad", "render"]], ids=" ".join)
def test_render_commands_in_the_headers_work_as_written(argv, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nomad CLI: render works without one
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as exited:
        main(argv[1:], environ={})
    assert exited.value.code == 0, err.getvalue()
    assert '"weavenomad.tenant"' in out.getvalue() or "weavenomad.tenant" in out.getvalue()
    assert "WEAVE_CIDR" in out.getvalue()


@pytest.mark.parametrize("argv", [c for p in EXAMPLES for c in header_commands(p)
                                  if c[0] == "weavenomad"], ids=" ".join)
def test_every_weavenomad_command_in_the_headers_parses(argv, monkeypatch):
    monkeypatch.chdir(ROOT)
    command = cli.get_command(cli.make_context("weavenomad", ["--help"], resilient_parsing=True),
                              argv[1])
    context = command.make_context(argv[1], argv[2:])
    assert Path(context.params["jobfile"]).is_file()

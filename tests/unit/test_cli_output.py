"""Where output goes and how it looks (issue 17): results on stdout, progress, warnings and
hints on stderr, JSON with --json (one object per event while watching), the deployment redrawn
in place on a terminal only, colour only on a terminal without NO_COLOR; config show's sources;
exit codes and shell completion in --help."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from test_jobs_run import FakeNomad, Lines, options, registry  # noqa: F401 - fixture

from weavenomad.cli import cli, main
from weavenomad.cli.options import AppContext
from weavenomad.cli.run import EventPrinter
from weavenomad.cli.style import ansi, colour_on, painter, plain
from weavenomad.config import build_settings, describe, describe_text
from weavenomad.jobs.monitor import HINT, PROGRESS, RESULT, WARNING, Event
from weavenomad.jobs.submit import run


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def printer(json_output=False, tty=False, environ=None):
    out, err = (Terminal(), Terminal()) if tty else (io.StringIO(), io.StringIO())
    return EventPrinter(AppContext(environ or {}), json_output, out, err), out, err


def test_colour_only_on_a_terminal_and_never_with_no_color():
    assert colour_on(Terminal(), {}) and not colour_on(io.StringIO(), {})
    assert not colour_on(Terminal(), {"NO_COLOR": "1"}) and not colour_on(Terminal(),
                                                                          {"TERM": "dumb"})
    assert colour_on(Terminal(), {"NO_COLOR": ""})  # no-color.org: set and not empty
    assert painter(Terminal(), {}) is ansi and painter(io.StringIO(), {}) is plain
    assert ansi("FAIL", "red") == "\033[31mFAIL\033[0m" and ansi("", "red") == ""


def test_a_run_sends_results_to_stdout_and_progress_and_warnings_to_stderr(registry):  # noqa: F811
    shown, out, err = printer()
    nomad = FakeNomad(deployments=[{"ID": "dep1", "Status": "successful", "StatusDescription":
                                    "Deployment completed successfully", "TaskGroups": {
                                        "httpbackend": {"DesiredTotal": 2, "PlacedAllocs": 2,
                                                        "HealthyAllocs": 2}}}])
    nomad.register_job = lambda job, check_index=None: {"EvalID": "ev1", "Warnings": (
        '1 warning(s):\n\n* Group "g" has warnings: 1 error occurred:\n\t* 1 error occurred:'
        '\n\t* Task "t": old syntax\n\n\n\n')}
    assert run(nomad, registry, options(), shown) == 0
    assert out.getvalue().splitlines() == [
        "registered job httpbackend in tenant acme (10.32.1.0/24); evaluation ev1",
        "deployment dep1 successful: Deployment completed successfully"]
    assert err.getvalue().splitlines() == [
        'warning: Nomad: Group "g": Task "t": old syntax',
        "evaluation ev1 complete; deployment dep1",
        "deployment dep1 httpbackend: desired 2, placed 2, healthy 2, unhealthy 0"]


def test_with_json_every_event_is_one_object_on_stdout(registry):  # noqa: F811
    shown, out, err = printer(json_output=True)
    assert run(FakeNomad(), registry, options(), shown) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["registered", "evaluation", "deployment",
                                            "deployment"]
    assert events[0]["job_id"] == "httpbackend" and events[0]["subnet"] == "10.32.1.0/24"
    assert events[0]["transform"][0] == {"field": "Meta[weavenomad.tenant]", "group": None,
                                         "new": "acme", "old": None, "section": None,
                                         "task": None}
    assert events[-1]["status"] == "successful" and err.getvalue() == ""


def deployment(healthy: int, status: str = "running") -> Event:
    table = ("Deployment \"dep1\" " + status, "  Task Group   Desired  Healthy",
             f"  httpbackend  2        {healthy}")
    return Event("deployment", {}, (f"healthy {healthy}",), PROGRESS if status == "running"
                 else RESULT, table)


def test_on_a_terminal_the_deployment_is_redrawn_in_place():
    shown, out, err = printer(tty=True)
    shown(deployment(0))
    shown(deployment(1))
    shown(Event("warning", {}, ("warning: careful",), WARNING))  # keeps what was drawn
    shown(deployment(2, "successful"))
    text = err.getvalue()
    assert text.count("\033[3F\033[J") == 1  # the second table replaced the first only
    assert "healthy 1" not in text and "  httpbackend  2        1" in text
    assert text.index("careful") < text.rindex("  httpbackend  2        2")
    assert out.getvalue() == "healthy 2\n"  # the outcome stays a plain line on stdout


def test_piped_the_deployment_is_one_plain_line_per_change():
    shown, out, err = printer()
    for healthy in (0, 1):
        shown(deployment(healthy))
    assert err.getvalue() == "healthy 0\nhealthy 1\n" and "\033" not in err.getvalue()


def test_hints_and_warnings_never_reach_the_json_on_stdout():
    shown, out, err = printer(json_output=True)
    shown(Event("hint", {}, ("To register exactly this plan:",), HINT))
    shown(Event("warning", {"warning": "x"}, ("warning: x",), WARNING))
    assert out.getvalue() == "" and err.getvalue() == "To register exactly this plan:\n" \
                                                      "warning: x\n"


def test_config_show_names_where_each_value_came_from(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[registry]\nkv_prefix = "team/"\n[http]\ntimeout = 3\n')
    settings = build_settings({"nomad_addr": "http://n:4646"},
                              {"CONSUL_HTTP_TOKEN": "s3cr3t-token", "NOMAD_REGION": "eu"},
                              {"registry.kv_prefix": "team/", "http.timeout": 3.0},
                              config_file=str(config))
    described = describe(settings)
    assert described["sources"]["nomad.addr"] == "flag --nomad-addr"
    assert described["sources"]["nomad.region"] == "env NOMAD_REGION"
    assert described["sources"]["registry.kv_prefix"] == f"file {config}"
    assert described["sources"]["weave.api"] == "default"
    assert described["sources"]["nomad.namespace"] == "not set"
    assert described["settings"]["consul"]["token"] == "<set>"
    text = describe_text(described)
    assert "s3cr3t" not in text and "None" not in text and "()" not in text
    lines = {line.split("#")[0].strip(): line.split("#", 1)[1].strip()
             for line in text.splitlines() if " = " in line and not line.startswith("#")}
    assert lines['addr = "http://n:4646"'] == "flag --nomad-addr"
    assert lines['kv_prefix = "team/"'] == f"file {config}"
    assert lines["timeout = 3"] == f"file {config}"
    assert lines["token = <set>"] == "env CONSUL_HTTP_TOKEN"
    assert "[registry]" in text and "[http]" in text  # the file's own sections and keys
    assert "# namespace =" in text  # nothing sets it: commented out, with where it could come


@pytest.mark.parametrize("words", ["Exit codes:", "64 bad flags", "130 interrupted",
                                   "_WEAVENOMAD_COMPLETE=bash_source weavenomad",
                                   "_WEAVENOMAD_COMPLETE=zsh_source weavenomad",
                                   "NO_COLOR"])
def test_help_documents_exit_codes_completion_and_colour(words):
    assert words in " ".join(CliRunner().invoke(cli, ["--help"]).output.split())


@pytest.mark.parametrize("command", [["run"], ["plan"], ["status"], ["doctor"], ["bootstrap"]])
def test_each_command_documents_its_exit_codes(command):
    text = " ".join(CliRunner().invoke(cli, [*command, "--help"]).output.split())
    assert "Exit codes" in text and "64 bad flags" in text


def test_usage_errors_are_one_line_naming_the_help(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["run", "jobs/httpbackend.nomad"], {})
    assert exited.value.code == 64
    assert capsys.readouterr().err == ("weavenomad: error: Missing option '--tenant'. "
                                       "(see 'weavenomad run --help')\n")

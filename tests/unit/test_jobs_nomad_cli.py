"""Job variables on the way to Nomad, and a local ``nomad`` CLI as the evaluator.

``run`` asks Nomad's ``/v1/jobs/parse`` whether it evaluates ``Variables`` (Nomad 1.0 ignores
them); where it does not, ``nomad job run -output`` evaluates the job, or the run is refused
before anything is registered. ``render -o json`` uses the CLI when there is one. The ``nomad``
here is a stand-in executable written by the test: it records its arguments and prints the job
Nomad 1.0.18 answered for the httpbackend job (tests/fixtures/recorded/nomad-jobs-parse.json)."""

import json
import sys
import textwrap
from pathlib import Path

import pytest
import test_jobs_run
from test_clients_support import FakeAdapter, fake_session, recorded
from test_jobs_render import cli as render_cli

from weavenomad.clients.nomad import VARIABLES_PROBE, NomadAPI
from weavenomad.config import build_settings
from weavenomad.errors import BackendError, ExitCode, ValidationError
from weavenomad.jobs import nomad_cli
from weavenomad.jobs.submit import RunOptions, run

#: the fixture: a registry with tenant acme (10.32.1.0/24) in 10.32.0.0/16
registry = test_jobs_run.registry
JOB = Path(__file__).resolve().parents[2] / "jobs" / "httpbackend.nomad"
PARSED = recorded("nomad-jobs-parse.json")["body"]
#: a Nomad without JobsParseRequest.Variables answers the probe so (400; the text as quoted in
#: hashicorp/terraform-provider-nomad#451)
UNSET = ('Failed to parse job: <nil>: Unset variable "weavenomad_probe"; A used variable must '
         "be set or have a default value")


class StubNomad:
    """A ``nomad`` executable on PATH: records argv, prints a job, or fails as told."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.argv_file = directory / "argv.json"

    def write(self, stdout: str = "", stderr: str = "", code: int = 0, sleep: float = 0) -> None:
        script = self.directory / "nomad"
        script.write_text(textwrap.dedent(f"""\
            #!{sys.executable}
            import json, sys, time
            with open({str(self.argv_file)!r}, "w") as out:
                json.dump(sys.argv[1:], out)
            time.sleep({sleep!r})
            sys.stdout.write({stdout!r})
            sys.stderr.write({stderr!r})
            sys.exit({code!r})
            """))
        script.chmod(0o755)

    def prints_job(self, job: dict = PARSED) -> None:
        self.write(stdout=json.dumps({"Job": job}, indent=4) + "\n")

    @property
    def argv(self) -> list[str] | None:
        return json.loads(self.argv_file.read_text()) if self.argv_file.exists() else None


@pytest.fixture
def stub(tmp_path, monkeypatch):
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return StubNomad(directory)


@pytest.fixture
def no_cli(tmp_path, monkeypatch):
    directory = tmp_path / "empty"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))


def nomad_api(parse_status: int, parse_body) -> tuple[NomadAPI, FakeAdapter]:
    """The real adapter over a fake transport: every parse answers the same."""
    adapter = FakeAdapter()
    adapter.add("POST", "/v1/jobs/parse", status=parse_status, body=parse_body,
                headers={"Content-Type": "application/json"} if parse_status == 200 else {})
    adapter.add("POST", "/v1/jobs", body={"EvalID": "", "Warnings": ""},
                headers={"Content-Type": "application/json"})
    adapter.add("GET", "/v1/job/httpbackend", status=404, body="job not found")  # a new job
    settings = build_settings({}, {})
    return NomadAPI.from_settings(settings, session=fake_session(adapter)), adapter


def nomad_10() -> tuple[NomadAPI, FakeAdapter]:
    return nomad_api(400, UNSET)


def sent(adapter: FakeAdapter, path: str) -> list[dict]:
    return [s.json() for s in adapter.sent if s.path == path]


def run_options(**kw) -> RunOptions:
    return RunOptions(path=str(JOB), tenant="acme", detach=True, **kw)


# -- the probe ---------------------------------------------------------------------------------


def test_a_nomad_that_ignores_variables_is_told_apart():
    nomad, adapter = nomad_10()
    assert nomad.parse_evaluates_variables() is False
    (body,) = sent(adapter, "/v1/jobs/parse")
    assert body["JobHCL"] == VARIABLES_PROBE
    assert body["Variables"] == 'weavenomad_probe = "probe"\n'


def test_a_nomad_that_evaluates_variables_is_told_apart():
    nomad, _ = nomad_api(200, {"ID": "weavenomad-probe", "Datacenters": ["probe"]})
    assert nomad.parse_evaluates_variables() is True
    nomad, _ = nomad_api(200, {"ID": "weavenomad-probe", "Datacenters": None})
    assert nomad.parse_evaluates_variables() is False  # parsed with something else


# -- run ---------------------------------------------------------------------------------------


def test_run_without_variables_parses_with_nomad_only(stub, registry):
    stub.prints_job()
    nomad, adapter = nomad_api(200, PARSED)
    assert run(nomad, registry, run_options(), [].append) == ExitCode.OK
    assert [b["JobHCL"] for b in sent(adapter, "/v1/jobs/parse")] == [JOB.read_text()]
    assert stub.argv is None


def test_run_sends_variables_to_a_nomad_that_evaluates_them(stub, registry, tmp_path):
    stub.prints_job()
    var_file = tmp_path / "vars.hcl"
    var_file.write_text('image = "bb:2"\n')
    nomad, adapter = nomad_api(200, dict(PARSED, Datacenters=["probe"]))
    options = run_options(variables={"count": "3"}, var_files=[str(var_file)])
    assert run(nomad, registry, options, [].append) == ExitCode.OK
    probe, parse = sent(adapter, "/v1/jobs/parse")
    assert probe["JobHCL"] == VARIABLES_PROBE
    assert parse["Variables"] == 'image = "bb:2"\ncount = "3"\n'
    assert stub.argv is None  # Nomad did the evaluation


def test_run_with_variables_on_nomad_10_evaluates_them_with_the_nomad_cli(stub, registry,
                                                                          tmp_path):
    stub.prints_job()
    var_file = tmp_path / "vars.hcl"
    var_file.write_text('image = "bb:2"\n')
    nomad, adapter = nomad_10()
    options = run_options(variables={"image": "bb:2", "x": "a=b"}, var_files=[str(var_file)])
    lines = test_jobs_run.Lines()
    assert run(nomad, registry, options, lines) == ExitCode.OK
    assert stub.argv == ["job", "run", "-output", "-var", "image=bb:2", "-var", "x=a=b",
                         "-var-file", str(var_file), str(JOB)]
    (registered,) = sent(adapter, "/v1/jobs")
    task = registered["Job"]["TaskGroups"][0]["Tasks"][0]
    assert task["Env"]["WEAVE_CIDR"] == "net:10.32.1.0/24"
    assert registered["Job"]["Meta"]["weavenomad.tenant"] == "acme"
    assert any("registered job httpbackend in tenant acme" in line for line in lines)


@pytest.mark.parametrize("flags, flag", [({"variables": {"image": "x"}}, "--var"),
                                         ({"var_files": ["VARS"]}, "--var-file")])
def test_run_with_variables_on_nomad_10_without_a_cli_registers_nothing(no_cli, registry,
                                                                        tmp_path, flags, flag):
    if "var_files" in flags:
        (tmp_path / "vars.hcl").write_text('image = "x"\n')
        flags = {"var_files": [str(tmp_path / "vars.hcl")]}
    nomad, adapter = nomad_10()
    with pytest.raises(ValidationError) as caught:
        run(nomad, registry, run_options(**flags), test_jobs_run.Lines())
    assert caught.value.one_line() == (
        f"{flag}: this Nomad's /v1/jobs/parse ignores job variables (Nomad 1.0 does), and there "
        "is no nomad CLI on PATH to evaluate them (install the nomad CLI (any version from 1.0; "
        "it needs no server for this), or give the variables defaults in the job file)")
    assert sent(adapter, "/v1/jobs") == []


def test_run_names_an_unreadable_variable_file_before_asking_nomad(no_cli, registry):
    nomad, adapter = nomad_10()
    with pytest.raises(ValidationError, match="cannot read variable file /nonexistent.hcl"):
        run(nomad, registry, run_options(var_files=["/nonexistent.hcl"]), test_jobs_run.Lines())
    assert adapter.sent == []


def test_run_dry_run_with_variables_uses_the_cli_and_registers_nothing(stub, registry):
    stub.prints_job()
    nomad, adapter = nomad_10()
    adapter.add("POST", "/v1/job/httpbackend/plan", body=recorded(
        "plan-dns-catalog-checks/a1-plan-api-unregistered.json"))
    lines = test_jobs_run.Lines()
    options = RunOptions(path=str(JOB), tenant="acme", variables={"image": "x"}, dry_run=True)
    assert run(nomad, registry, options, lines) == 1  # nomad job plan's "changes"
    # issue 17: the job goes to Nomad's plan endpoint instead of being printed as JSON
    (planned,) = sent(adapter, "/v1/job/httpbackend/plan")
    assert planned["Diff"] is True
    assert planned["Job"]["TaskGroups"][0]["Tasks"][0]["Env"]["WEAVE_CIDR"] == "net:10.32.1.0/24"
    assert sent(adapter, "/v1/jobs") == []


# -- the CLI's failures: one line naming the file ----------------------------------------------


def test_a_cli_that_refuses_the_job_is_one_line(stub):
    stub.write(stderr="Error getting job struct: Error parsing job file from job.nomad:\n"
                      'job.nomad:3,3-8: Unsupported argument; An argument named "foo" is not '
                      "expected here.\n", code=1)
    with pytest.raises(ValidationError) as caught:
        nomad_cli.job_output(nomad_cli.find(), "job.nomad", {"a": "b"})
    assert caught.value.one_line() == (
        "job.nomad: the nomad CLI cannot evaluate it: Error getting job struct: Error parsing "
        'job file from job.nomad: job.nomad:3,3-8: Unsupported argument; An argument named "foo" '
        "is not expected here.")


@pytest.mark.parametrize("stdout", ["", "not json", "[1]", '{"Job": "x"}', "[" * 100_000])
def test_a_cli_that_prints_no_job_is_one_line(stub, stdout):
    stub.write(stdout=stdout)
    with pytest.raises(ValidationError) as caught:
        nomad_cli.job_output(nomad_cli.find(), "job.nomad")
    line = caught.value.one_line()
    assert line.startswith("job.nomad: 'nomad job run -output' printed no job: ")
    assert "\n" not in line and len(line) < 400


def test_a_cli_that_hangs_is_stopped(stub):
    stub.write(sleep=30)
    with pytest.raises(BackendError) as caught:
        nomad_cli.job_output(nomad_cli.find(), "job.nomad", timeout=0.5)
    assert caught.value.one_line() == ("job.nomad: 'nomad job run -output' did not finish "
                                       "within 0.5s")


def test_a_cli_that_cannot_start_is_one_line(stub):
    stub.write()
    (stub.directory / "nomad").chmod(0o644)
    with pytest.raises(BackendError, match=r"job.nomad: cannot run .*nomad: Permission denied"):
        nomad_cli.job_output(str(stub.directory / "nomad"), "job.nomad")


def test_a_path_that_looks_like_a_flag_stays_a_path():
    assert nomad_cli.output_argv("nomad", "-job.nomad", {}, [])[-1] == "./-job.nomad"
    assert nomad_cli.output_argv("nomad", "-", {}, [])[-1] == "./-"


# -- render -o json ----------------------------------------------------------------------------


def test_render_json_is_the_complete_job_the_cli_evaluates(stub, tmp_path):
    stub.prints_job()
    var_file = tmp_path / "vars.hcl"
    var_file.write_text('image = "x"\n')
    code, out, err = render_cli(str(JOB), "--tenant", "net:10.32.1.0/24", "-o", "json",
                                "--var", "image=bb:2", "--var-file", str(var_file))
    assert code == 0, err
    assert err == ""  # a complete job: no warning
    assert stub.argv == ["job", "run", "-output", "-var", "image=bb:2", "-var-file",
                         str(var_file), str(JOB)]
    job = json.loads(out)["Job"]
    assert job["Datacenters"] == ["dc1"] and job["TaskGroups"][0]["Count"] == 2
    assert job["TaskGroups"][0]["Tasks"][0]["Env"] == {"WEAVE_CIDR": "net:10.32.1.0/24"}
    assert job["Meta"] == {"weavenomad.tenant": "net:10.32.1.0/24",
                           "weavenomad.subnet": "10.32.1.0/24"}


def test_render_json_refuses_what_the_evaluated_job_puts_outside_the_tenant(stub):
    task = dict(PARSED["TaskGroups"][0]["Tasks"][0], Config={"network_mode": "host"})
    group = dict(PARSED["TaskGroups"][0], Tasks=[task])
    stub.prints_job(dict(PARSED, TaskGroups=[group]))
    code, out, err = render_cli(str(JOB), "--tenant", "net:10.32.1.0/24", "-o", "json")
    assert code == 1 and out == ""
    assert err.startswith(f"weavenomad: error: {JOB}: job 'httpbackend' group 'httpbackend' "
                          "task 'httpbackend': config network_mode = 'host'")
    assert len(err.splitlines()) == 1


def test_render_hcl_reads_the_file_itself_even_with_a_cli(stub):
    stub.prints_job()
    code, out, err = render_cli(str(JOB), "--tenant", "net:10.32.1.0/24")
    assert code == 0, err
    assert 'WEAVE_CIDR = "net:10.32.1.0/24"' in out and stub.argv is None


def test_render_json_names_the_file_when_the_cli_refuses_it(stub):
    stub.write(stderr="Error getting job struct: boom\n", code=1)
    code, out, err = render_cli(str(JOB), "--tenant", "net:10.32.1.0/24", "-o", "json")
    assert (code, out) == (1, "")
    assert err == (f"weavenomad: error: {JOB}: the nomad CLI cannot evaluate it: Error getting "
                   "job struct: boom\n")

"""Every command against hostile input (issue 17): missing files, directories, empty files,
agents that do not answer or refuse the token, unicode, very long names. Each answer is one
line on stderr naming the culprit (and the fix where there is one), the documented exit code,
no traceback, and nothing half-applied.

Commands run in-process through :func:`weavenomad.cli.main`, the way the entry point runs
them. Agents that "do not answer" are 127.0.0.1:1 (refused at once); one that refuses the
token is a local HTTP server answering 403 as Nomad and Consul do."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import test_jobs_run
from fakes import FakeKV
from test_secrets_output import EchoServer

from weavenomad.cli import main
from weavenomad.errors import ExitCode
from weavenomad.jobs.plan import PLAN_ERROR
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.registry import TenantRegistry

ROOT = Path(__file__).resolve().parents[2]
JOB = str(ROOT / "jobs" / "httpbackend.nomad")
LONG = "a" * 5000
USAGE, ERROR, OK = ExitCode.USAGE, ExitCode.ERROR, ExitCode.OK


@pytest.fixture(scope="module")
def refusing():
    """An agent that knows no token: 403 "ACL token not found", as Nomad and Consul answer
    (the echo of the request's headers, token included, must come out redacted)."""
    server = EchoServer(403, "ACL token not found")
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Hostile files: an empty one, a directory, broken TOML and HCL, a non-empty foreign
    directory, a plain file where a directory is wanted."""
    where = tmp_path_factory.mktemp("hostile")
    (where / "empty.nomad").write_text("")
    (where / "empty.toml").write_text("")
    (where / "dir").mkdir()
    (where / "bad.toml").write_text("[nomad\naddr = \n")
    (where / "unicode.toml").write_text('[nomad]\n"ädr" = 1\n')
    (where / "negative.toml").write_text("[http]\ntimeout = -1\n")
    (where / "broken").mkdir()
    (where / "broken" / "agent.hcl").write_text('client {\n  enabled = \n')
    (where / "foreign").mkdir()
    (where / "foreign" / "precious.txt").write_text("keep me\n")
    (where / "a-file").write_text("x\n")
    (where / "no-path").mkdir()
    return {name: str(where / name) for name in (
        "empty.nomad", "empty.toml", "dir", "bad.toml", "unicode.toml", "negative.toml",
        "broken", "foreign", "a-file", "no-path")}


@dataclass
class Case:
    argv: list
    code: int
    #: the error line names this (any one of them)
    needles: tuple[str, ...]
    env: dict = field(default_factory=dict)
    #: a fake tenant registry (acme, 10.32.1.0/24) and a fake Nomad that records writes
    fakes: bool = False

    def id(self) -> str:
        return " ".join(str(a)[:30] for a in self.argv)


def cases() -> list[Case]:
    """``{name}`` in an argument or env value is one of :func:`files`; ``{refusing}`` the
    refusing agent's address."""
    c = Case
    run_like = []
    for verb, failed in (("run", ERROR), ("plan", PLAN_ERROR)):
        run_like += [
            c([verb, "/nonexistent.nomad", "--tenant", "acme"], failed,
              ("cannot read job file /nonexistent.nomad: No such file or directory",),
              fakes=True),
            c([verb, "{dir}", "--tenant", "acme"], failed, ("Is a directory",), fakes=True),
            c([verb, "{empty.nomad}", "--tenant", "acme"], failed, ("is empty",), fakes=True),
            c([verb, JOB, "--tenant", "10.32.1.0/24"], failed,
              ("did you mean net:10.32.1.0/24 (tenant acme's subnet)?",), fakes=True),
            c([verb, JOB, "--tenant", ""], failed, ("--tenant is empty",), fakes=True),
            c([verb, JOB, "--tenant", "Ünïcødé-作业"], failed, ("is not a tenant name",),
              fakes=True),
            c([verb, JOB, "--tenant", LONG], failed, ("is not a tenant name",), fakes=True),
            c([verb, JOB, "--tenant", "nosuch"], failed,
              ("unknown tenant 'nosuch' (tenants: acme)",), fakes=True),
            c([verb, JOB, "--tenant", "net:0.0.0.0/0"], failed,
              ("outside the Weave range 10.32.0.0/16",), fakes=True),
            c([verb, JOB, "--tenant", "acme"], failed, ("cannot reach Consul at",)),
            c([verb, JOB, "--tenant", "acme"], failed,
              ("Nomad does not know the token in NOMAD_TOKEN",),
              {"NOMAD_ADDR": "{refusing}", "NOMAD_TOKEN": "wrong-token"}, fakes="registry"),
            c([verb, JOB, "--tenant", "acme", "--var", "=x"], USAGE, ("expected KEY=VALUE",)),
        ]
    return run_like + [
        c(["run", JOB, "--tenant", "acme", "--timeout", "-5"], USAGE,
          ("-5.0 is not in the range",)),
        c(["run", JOB, "--tenant", "acme", "--timeout", "0"], USAGE, ("not in the range x>0",)),
        c(["run", JOB, "--tenant", "acme", "--check-index", "-1"], USAGE, ("--check-index",)),
        # render: offline, the tenant spec checked as run checks it
        c(["render", "/nonexistent.nomad", "--tenant", "net:10.32.1.0/24"], ERROR,
          ("cannot read job file /nonexistent.nomad",)),
        c(["render", "{dir}", "--tenant", "net:10.32.1.0/24"], ERROR, ("Is a directory",)),
        c(["render", "{empty.nomad}", "--tenant", "net:10.32.1.0/24"], ERROR, ("is empty",)),
        c(["render", JOB, "--tenant", "net:0.0.0.0/0"], ERROR, ("outside the Weave range",)),
        c(["render", JOB, "--tenant", "10.32.1.0/24"], ERROR, ("did you mean net:10.32.1.0/24",)),
        c(["render", JOB, "--tenant", "Ünïcødé"], ERROR, ("is not a tenant name",)),
        c(["render", JOB, "--tenant", LONG], ERROR, ("is not a tenant name",)),
        c(["render", JOB, "--tenant", "acme"], ERROR, ("cannot reach Consul at",)),
        # status
        c(["status"], ERROR, ("cannot reach Nomad at http://127.0.0.1:1",)),
        c(["status", "--tenant", "nosuch"], ERROR, ("unknown tenant 'nosuch' (tenants: acme)",),
          fakes=True),
        c(["status", "--tenant", "10.32.1.0/24"], ERROR, ("did you mean net:10.32.1.0/24",),
          fakes=True),
        c(["status", "--tenant", "Ünï"], ERROR, ("is not a tenant name",), fakes=True),
        c(["status", "--tenant", LONG], ERROR, ("is not a tenant name",), fakes=True),
        c(["status", "--tenant", "acme"], ERROR, ("Consul denied",),
          {"CONSUL_HTTP_ADDR": "{refusing}", "CONSUL_HTTP_TOKEN": "wrong-token"}),
        # tenant
        c(["tenant", "create", "Ünïcødé"], ERROR, ("invalid tenant name 'Ünïcødé'",)),
        c(["tenant", "create", LONG], ERROR, ("invalid tenant name 'aaaa",)),
        c(["tenant", "create", "acme", "--cidr", "10.32.1.0/33"], ERROR, ("invalid --cidr",)),
        c(["tenant", "create", "acme", "--cidr", "10.32.1.0/24", "--prefix-len", "20"], USAGE,
          ("exclude each other",)),
        c(["tenant", "create", "acme"], ERROR, ("cannot reach Consul at http://127.0.0.1:1",)),
        c(["tenant", "show", "nosuch"], ERROR, ("unknown tenant 'nosuch'",), fakes=True),
        c(["tenant", "delete", "nosuch"], ERROR, ("unknown tenant 'nosuch'",), fakes=True),
        c(["tenant", "list"], ERROR, ("Consul denied",),
          {"CONSUL_HTTP_ADDR": "{refusing}", "CONSUL_HTTP_TOKEN": "wrong-token"}),
        # config show
        c(["config", "show", "--config", "/nonexistent.toml"], ERROR,
          ("cannot read config file /nonexistent.toml: No such file or directory",)),
        c(["config", "show", "--config", "{dir}"], ERROR, ("Is a directory",)),
        c(["config", "show", "--config", "{bad.toml}"], ERROR, ("invalid TOML",)),
        c(["config", "show", "--config", "{unicode.toml}"], ERROR,
          ("unknown setting 'nomad.ädr'",)),
        c(["config", "show", "--config", "{negative.toml}"], ERROR,
          ("setting 'http.timeout': expected a positive number",)),
        c(["config", "show"], ERROR, ("contains whitespace",), {"NOMAD_TOKEN": "two words"}),
        # doctor: read-only; its checks are its output
        c(["doctor", "--config", "/nonexistent.toml"], ERROR, ("cannot read config file",)),
        c(["doctor", "--config", "{dir}"], ERROR, ("Is a directory",)),
        c(["doctor"], ERROR, ("contains whitespace",), {"CONSUL_HTTP_TOKEN": "a\tb"}),
        c(["doctor", "--nomad-token", "x y"], ERROR, ("contains whitespace",)),
        c(["doctor", "--bogus"], USAGE, ("No such option",)),
        # bootstrap and reset: refused before anything is read or changed
        c(["bootstrap", "--dry-run", "--ipalloc-range", "10.99.0.0/33"], ERROR,
          ("invalid --ipalloc-range '10.99.0.0/33'",)),
        c(["bootstrap", "--dry-run", "--default-subnet", "192.168.0.0/24"], ERROR,
          ("is not inside the Weave range",)),
        c(["bootstrap", "--dry-run", "--peer", "no.such.host.invalid"], ERROR,
          ("unknown peer 'no.such.host.invalid'",)),
        c(["bootstrap", "--dry-run", "--nomad-config", "/nonexistent.hcl"], ERROR,
          ("/nonexistent.hcl does not exist", "must run as root")),
        c(["bootstrap", "--dry-run", "--nomad-config", "{no-path}"], ERROR,
          ("no *.hcl or *.json files in", "must run as root")),
        c(["bootstrap", "--dry-run", "--nomad-config", "{broken}"], ERROR,
          ("agent.hcl", "must run as root")),
        c(["reset", "--dry-run", "--nomad-config", "/nonexistent.hcl"], ERROR,
          ("/nonexistent.hcl does not exist", "must run as root")),
        c(["reset", "--dry-run", "--nomad-config", "{no-path}"], ERROR,
          ("no *.hcl or *.json files in", "must run as root")),
        c(["reset", "--dry-run", "--nomad-config", "{broken}"], ERROR,
          ("agent.hcl", "must run as root")),
        c(["reset", "--dry-run", "--nomad-config", "/nonexistent/Ünï.hcl"], ERROR,
          ("Ünï.hcl does not exist", "must run as root")),
        c(["reset", "--dry-run", "--config", "{dir}"], ERROR, ("Is a directory",)),
        # guard
        c(["guard", "ensure", "--every", "0"], USAGE, ("0.0 is not in the range x>=1.0",)),
        c(["guard", "ensure", "--every", "-3"], USAGE, ("is not in the range",)),
        c(["guard", "ensure", "--config", "{dir}"], ERROR, ("Is a directory",)),
        c(["guard", "install", "--unit-dir", "{a-file}"], USAGE, ("is a file",)),
        c(["guard", "install", "--unit-dir", "{dir}/units"], ERROR,
          ("this node does not run systemd",)),
        # reconciler
        c(["reconciler", "run", "--once", "--resync", "-1"], USAGE, ("not in the range x>0",)),
        c(["reconciler", "run", "--once", "--resync", "0"], USAGE, ("not in the range x>0",)),
        c(["reconciler", "run", "--once", "--metrics-addr", "nonsense"], ERROR,
          ("invalid metrics address 'nonsense'",)),
        c(["reconciler", "run", "--once", "--log-format", "xml"], USAGE, ("'xml' is not one of",)),
        c(["reconciler", "run", "--once", "--config", "{dir}"], ERROR, ("Is a directory",)),
        c(["reconciler", "run", "--once"], ERROR, ("Nomad does not know the token",),
          {"NOMAD_ADDR": "{refusing}", "NOMAD_TOKEN": "wrong-token"}),
        c(["reconciler", "install", "--unit-dir", "{a-file}"], USAGE, ("is a file",)),
        # lab
        c(["lab", "status", "--state-dir", "/nonexistent-lab"], ERROR,
          ("no lab in /nonexistent-lab", "needs root")),
        c(["lab", "exec", "--state-dir", "/nonexistent-lab", "n9", "--", "true"], ERROR,
          ("no lab in /nonexistent-lab", "needs root")),
        c(["lab", "env", "--node", "n9", "--state-dir", "/nonexistent-lab"], ERROR,
          ("no lab in /nonexistent-lab",)),
        c(["lab", "up", "--nodes", "99", "--state-dir", "/nonexistent-lab"], USAGE,
          ("99 is not in the range 1<=x<=16",)),
        c(["lab", "up", "--name", "Ünï", "--state-dir", "/nonexistent-lab"], ERROR,
          ("invalid lab name 'Ünï'", "needs root")),
        c(["lab", "up", "--state-dir", "{a-file}"], USAGE, ("is a file",)),
        c(["lab", "up", "--state-dir", "{foreign}"], ERROR,
          ("is not empty and holds no lab", "needs root")),
        c(["lab", "nomad-restart", "n9", "--state-dir", "/nonexistent-lab"], ERROR,
          ("no lab in /nonexistent-lab",)),
        # demo
        c(["demo", "--state-dir", "{a-file}"], USAGE, ("is a file",)),
        c(["demo", "--bogus"], USAGE, ("No such option",)),
        c(["demo", "--state-dir", "{a-file}", "--keep"], USAGE, ("is a file",)),
        c(["demo", "extra-argument"], USAGE, ("Got unexpected extra argument",)),
    ]


def fill(value, files: dict, refusing: str):
    if isinstance(value, str):
        for name, path in {**files, "refusing": refusing}.items():
            value = value.replace("{" + name + "}", path)
    return value


def invoke(argv: list[str], environ: dict) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as exited:
        main(argv, environ)
    return exited.value.code, out.getvalue(), err.getvalue()


def base_environ(files: dict, tmp_path: Path) -> dict:
    return {"NOMAD_ADDR": "http://127.0.0.1:1", "CONSUL_HTTP_ADDR": "127.0.0.1:1",
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
            "WEAVE_HTTP_ADDR": "127.0.0.1:1", "WEAVENOMAD_CONFIG": files["empty.toml"]}


def fake_registry() -> TenantRegistry:
    registry = TenantRegistry(FakeKV())
    registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    registry.create("acme")
    return registry


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines()
             if line and not line.startswith(("warning: ", "weavenomad: warning: "))]
    assert len(lines) == 1, err
    assert lines[0].startswith("weavenomad: error: "), err
    assert len(lines[0]) < 500 and "wrong-token" not in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", cases(), ids=Case.id)
def test_hostile_input_gets_one_line_and_the_documented_code(case, files, refusing, tmp_path,
                                                              monkeypatch):
    if case.argv[0] not in ("lab", "demo"):  # the lab needs the machine's dockerd, ip, …
        monkeypatch.setenv("PATH", str(tmp_path))  # no nomad, systemctl or weave of the machine
    environ = base_environ(files, tmp_path)
    environ.update({k: fill(v, files, refusing) for k, v in case.env.items()
                    if not k.startswith("@")})
    nomad = test_jobs_run.FakeNomad()
    if case.fakes:
        registry = fake_registry()
        monkeypatch.setattr("weavenomad.tenancy.operations.registry_for",
                            lambda settings: registry)
    if case.fakes is True:
        monkeypatch.setattr("weavenomad.clients.nomad_client", lambda settings: nomad)
    argv = [fill(a, files, refusing) for a in case.argv]
    code, out, err = invoke(argv, environ)
    assert code == case.code, (code, out, err)
    line = one_error_line(err)
    assert any(needle in line for needle in case.needles), line
    assert "Traceback" not in out + err
    assert not any(call[0] == "register" for call in nomad.calls)  # nothing half-applied


def test_nothing_is_left_of_a_unit_systemctl_refuses(files, tmp_path, monkeypatch):
    """systemd runs, systemctl fails: the unit written a moment before is taken back."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2\n"
                                       "exit 1\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    units = tmp_path / "units"
    code, _, err = invoke(["guard", "install", "--unit-dir", str(units)],
                          base_environ(files, tmp_path))
    assert code == ERROR
    line = one_error_line(err)
    assert "systemctl daemon-reload failed (exit 1): Failed to connect to bus" in line
    assert "was put back as it was" in line
    assert list(units.iterdir()) == []


def test_doctor_against_agents_that_do_not_answer(files, tmp_path, monkeypatch):
    """Its checks are its output (stdout, one line each); the verdict is one line on stderr."""
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = invoke(["doctor"], base_environ(files, tmp_path))
    assert code == ERROR
    assert "doctor found" in one_error_line(err) and "Traceback" not in out + err
    assert any(line.startswith("FAIL  nomad-agent") for line in out.splitlines())
    code, out, err = invoke(["doctor", "--json"], base_environ(files, tmp_path))
    assert code == ERROR and json.loads(out)["summary"]["fail"] > 0


def test_the_demo_refuses_a_foreign_directory_and_leaves_it_alone(files, tmp_path):
    code, out, err = invoke(["demo", "--state-dir", files["foreign"]],
                            base_environ(files, tmp_path))
    assert code == ERROR and "Traceback" not in out + err
    assert "FAIL  lab up" in out and "is not empty and holds no lab" in out
    assert sorted(p.name for p in Path(files["foreign"]).iterdir()) == ["precious.txt"]


def test_an_unknown_node_in_a_lab_names_the_nodes(files, tmp_path):
    from weavenomad_lab import core
    from weavenomad_lab.layout import LabLayout

    state = Path(tempfile.mkdtemp(prefix="wnh", dir="/tmp")) / "lab"  # short: socket paths
    layout = LabLayout.plan("tz", state, 2)
    layout = layout.with_ports(core.plan_ports(layout, iter(range(21000, 21100))))
    state.mkdir()
    layout.save()
    for argv in (["lab", "env", "--node", "n9", "--state-dir", str(state)],
                 ["lab", "exec", "--state-dir", str(state), "n9", "--", "true"],
                 ["lab", "nomad-restart", "n9", "--state-dir", str(state)]):
        code, _, err = invoke(argv, base_environ(files, tmp_path))
        assert code == ERROR
        line = one_error_line(err)
        assert "no node 'n9' in lab 'tz' (nodes: n1, n2)" in line or "needs root" in line
        assert "--node" not in line
    shutil.rmtree(state.parent)

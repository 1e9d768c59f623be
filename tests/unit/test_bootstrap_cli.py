"""bootstrap, reset and doctor through the CLI: bad input is one line and a non-zero exit before
anything is touched; doctor reports every backend that does not answer."""

import json

import pytest

from weavenomad.bootstrap import system
from weavenomad.cli import main
from weavenomad.errors import ExitCode

#: nothing listens there: every backend fails fast, nothing of the host is used
UNREACHABLE = {"NOMAD_ADDR": "http://127.0.0.1:1", "CONSUL_HTTP_ADDR": "127.0.0.1:1",
               "WEAVE_HTTP_ADDR": "127.0.0.1:1", "DOCKER_HOST": "unix:///nonexistent/docker.sock",
               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def run(argv, capsys, **env):
    with pytest.raises(SystemExit) as exit_info:
        main(argv, {**UNREACHABLE, **env})
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(system, "euid", lambda: 0)


def test_default_subnet_outside_the_range(capsys):
    code, out, err = run(["bootstrap", "--ipalloc-range", "10.32.0.0/16", "--default-subnet",
                          "10.33.0.0/24"], capsys)
    assert code == ExitCode.ERROR and out == ""
    assert err.count("\n") == 1 and "not inside the Weave range" in err


def test_unknown_peer(capsys):
    code, out, err = run(["bootstrap", "--peer", "no-such-peer.invalid"], capsys)
    assert code == ExitCode.ERROR and out == ""
    assert "unknown peer 'no-such-peer.invalid'" in err


def test_not_root(capsys, monkeypatch):
    monkeypatch.setattr(system, "euid", lambda: 1000)
    for command in ("bootstrap", "reset"):
        code, out, err = run([command], capsys)
        assert code == ExitCode.ERROR and out == ""
        assert f"weavenomad {command} must run as root" in err and "sudo" in err


def test_invalid_nomad_config_names_file_and_line_and_stays_untouched(capsys, as_root, tmp_path):
    config = tmp_path / "client.hcl"
    text = 'client {\n  enabled = true\n  servers = = ["x"]\n}\n'
    config.write_text(text)
    code, out, err = run(["bootstrap", "--nomad-config", str(config)], capsys)
    assert code == ExitCode.ERROR and out == ""
    assert f"{config}:3:" in err and err.count("\n") == 1
    assert config.read_text() == text and sorted(tmp_path.iterdir()) == [config]


def test_unreadable_config_directory(capsys, as_root, tmp_path):
    code, _, err = run(["reset"], capsys, WEAVENOMAD_NOMAD_CONFIG=str(tmp_path / "nope"))
    assert code == ExitCode.ERROR and "does not exist" in err


def test_doctor_reports_every_backend_that_does_not_answer(capsys):
    code, out, err = run(["doctor", "--json"], capsys)
    assert code == ExitCode.ERROR and "doctor found" in err
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    for name in ("docker", "weave-command", "nomad-agent", "consul-agent", "weave-router"):
        assert checks[name]["status"] == "fail", name
        assert checks[name]["fix"]
    assert "127.0.0.1:1" in checks["nomad-agent"]["detail"]


def test_a_corrupt_weave_ipam_answer_is_one_line_before_anything_changes(monkeypatch, as_root):
    """Weave answers GET /ip with something that is not weave 2.8's shape: bootstrap refuses
    in one line before planning (exposure is judged from it), doctor says it cannot tell."""
    from test_bootstrap_facts import bootstrapped

    from weavenomad.bootstrap import checks as ck
    from weavenomad.bootstrap import commands
    from weavenomad.bootstrap.commands import NodeOptions, run_bootstrap
    from weavenomad.config import build_settings
    from weavenomad.errors import BackendError

    error = ("Weave answered GET /ip with an unreadable IPAM list: owned[0].addrs[0] = "
             "'10.32.1.300/24' is no IPv4 address with a prefix length")
    facts = bootstrapped(exposed=None, ipam_exposed=None)
    facts.errors["weave-ip"] = error
    monkeypatch.setattr(commands, "observe_node", lambda *args: facts)
    monkeypatch.setattr(commands, "preflight", lambda *args: [])
    said = []
    with pytest.raises(BackendError) as caught:
        run_bootstrap(build_settings({}, {}), NodeOptions(), {}, said.append, clients=object())
    assert caught.value.one_line().startswith(f"cannot read Weave's IPAM: {error}")
    assert said == []  # nothing planned, nothing printed, nothing changed
    check = ck.check_exposed(None, [], ipam_error=error)
    assert check.status == ck.FAIL and check.detail == f"cannot tell: {error}"

"""Issue 8, part 5 on a lab with ACLs and TLS on: weavenomad works end to end with NOMAD_TOKEN /
CONSUL_HTTP_TOKEN and the CA and client certificate variables, fails in one line naming the fix
without them (or with a wrong CA), and never shows a token: not in its output, not in any
process's command line, not in a file it writes more openly than the original.

Own one-node lab (``lab up --acl --tls --require-client-cert``): the session lab has no ACLs.
Commands run as an operator on the node would run them: inside the node's namespace, with the
agents at their usual addresses (``weavenomad lab exec``'s environment).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import lab_name, lab_state_dir, running_lab
from labtools import wait_for
from weavenomad_lab import core, security
from weavenomad_lab.layout import LabLayout, LabSecurity

JOBS = Path(__file__).resolve().parents[2] / "jobs"
SECURED = LabSecurity(acl=True, tls=True, verify_client=True)
PREFIX = "secrets-test/"


@pytest.fixture(scope="module")
def secured():
    state_dir = lab_state_dir("-sec")
    with running_lab(state_dir, lab_name("s"), 1, "the secured lab", security=SECURED) as layout:
        yield layout


def tokens(lab: LabLayout) -> list[str]:
    return [security.token(lab, "nomad"), security.token(lab, "consul")]


def node_env(lab: LabLayout, **changes: str | None) -> dict:
    """The node's environment for an operator; a change of None removes the variable."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("NOMAD_", "CONSUL_", "WEAVENOMAD_"))}
    env = core.exec_env(lab, "n1", base)
    env["WEAVENOMAD_KV_PREFIX"] = PREFIX
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def on_node(lab: LabLayout, *args: str, env: dict | None = None, prefix: tuple = (),
            timeout: float = 120) -> subprocess.CompletedProcess:
    argv = core.exec_argv(lab, "n1", [*prefix, sys.executable, "-m", "weavenomad", *args])
    return subprocess.run(argv, env=env or node_env(lab), capture_output=True, text=True,
                          timeout=timeout)


def assert_no_token(lab: LabLayout, text: str) -> None:
    for token in tokens(lab):
        assert token not in text, f"a token was printed:\n{text}"


def test_secured_lab_refuses_anonymous_and_plain_http_clients(secured):
    import requests

    node = secured.nodes[0]
    assert node.url("nomad").startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(node.url("nomad") + "/v1/status/leader", timeout=5)
    opts = security.requests_options(secured)
    anonymous = requests.get(node.url("nomad") + "/v1/jobs", timeout=5, **opts)
    assert (anonymous.status_code, anonymous.text) == (403, "Permission denied")
    status = {part.part: part for part in core.status(secured.state_dir)[1]}
    assert status["security"].healthy and "client certificate required" in \
        status["security"].detail
    assert status["nomad"].healthy and status["consul"].healthy


def test_end_to_end_with_tokens_and_certificates(secured):
    config = secured.nodes[0].nomad_config_dir / "agent.hcl"
    # the secured agent config holds the agent's Consul token: private, and it stays private
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    dry = on_node(secured, "bootstrap", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert_no_token(secured, dry.stdout + dry.stderr)
    done = on_node(secured, "bootstrap")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_token(secured, done.stdout + done.stderr)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    backup = config.with_name(config.name + ".weavenomad.bak")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    created = on_node(secured, "tenant", "create", "acme")
    assert created.returncode == 0, created.stderr
    submitted = on_node(secured, "run", "--detach", str(JOBS / "httpbackend.nomad"),
                        "--tenant", "acme")
    assert submitted.returncode == 0, submitted.stderr
    try:
        def running() -> bool:
            answer = on_node(secured, "--json", "status")
            return answer.returncode in (0, 2) and answer.stdout.count('"alloc') >= 2

        wait_for("the job's two allocations", running, timeout=90, every=1)
        # the daemon's privileges: no capability at all, no way to gain one (the unit's)
        once = on_node(secured, "--debug", "reconciler", "run", "--once",
                       prefix=("setpriv", "--bounding-set=-all", "--inh-caps=-all",
                               "--ambient-caps=-all", "--no-new-privs", "--"))
        assert once.returncode == 0, once.stderr
        assert "one pass: converged" in once.stderr
        assert_no_token(secured, once.stdout + once.stderr)
        # Consul runs the twins' checks on its own schedule (the first within a second, then
        # every 10 s: one that ran before the pass exposed the subnet waits for the next)

        def advertised():
            answer = on_node(secured, "status")
            return answer if "2 of 2 advertised correctly" in answer.stdout else None

        shown = wait_for("both twins passing", advertised, timeout=40, every=1)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert len(re.findall(r"10\.32\.1\.\d+:8081\s+ok", shown.stdout)) == 2
    finally:
        on_node(secured, "tenant", "list")  # keeps the registry readable for the next test
        import requests

        requests.delete(secured.nodes[0].url("nomad") + "/v1/job/httpbackend?purge=true",
                        timeout=30, **security.requests_options(secured),
                        headers=security.auth_headers(secured, "nomad"))


def _other_ca(tmp_path: Path) -> str:
    pem = security.make_certificates("other", [])["ca_cert"]
    path = tmp_path / "other-ca.pem"
    path.write_bytes(pem)
    return str(path)


#: command -> the agents it talks to
COMMANDS = {
    ("status",): {"nomad", "consul"},
    ("tenant", "list"): {"consul"},
    ("run", "--detach", str(JOBS / "httpbackend.nomad"), "--tenant", "acme"): {"nomad", "consul"},
    ("reconciler", "run", "--once"): {"nomad", "consul"},
    ("bootstrap", "--dry-run"): {"nomad", "consul"},
}


def test_without_credentials_every_command_fails_in_one_line_naming_the_fix(secured, tmp_path):
    wrong_ca = _other_ca(tmp_path)
    cases = {
        "NOMAD_TOKEN": {"NOMAD_TOKEN": None},
        "CONSUL_HTTP_TOKEN": {"CONSUL_HTTP_TOKEN": None},
        "NOMAD_CACERT": {"NOMAD_CACERT": wrong_ca},
        "CONSUL_CACERT": {"CONSUL_CACERT": wrong_ca},
        "NOMAD_CLIENT_CERT": {"NOMAD_CLIENT_CERT": None, "NOMAD_CLIENT_KEY": None},
    }
    runs = []
    for fix, changes in cases.items():
        env = node_env(secured, **changes)
        for command, agents in COMMANDS.items():
            if fix.split("_")[0].lower() not in agents:
                continue  # e.g. 'tenant list' needs no Nomad credentials
            argv = core.exec_argv(secured, "n1", [sys.executable, "-m", "weavenomad", *command])
            runs.append((fix, command, subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    assert len(runs) == 22
    problems = []
    for fix, command, proc in runs:
        out, err = proc.communicate(timeout=120)
        assert_no_token(secured, out + err)
        errors = [line for line in err.splitlines() if line.startswith("weavenomad: error:")]
        if proc.returncode == 0 or len(errors) != 1 or fix not in errors[0]:
            problems.append(f"{fix} / {' '.join(command)}: exit {proc.returncode}: {err[-400:]}")
        elif "Traceback" in err:
            problems.append(f"{fix} / {' '.join(command)}: traceback: {err[-400:]}")
    assert not problems, "\n".join(problems)


def test_no_token_in_any_command_line_while_weavenomad_works(secured):
    """Every process on the machine, sampled while the reconciler daemon runs and reset and
    bootstrap (with their weave, iptables and Nomad restart children) run: no token in any
    argv. The agent config keeps its private mode through the restore as well."""
    wanted = tokens(secured)
    seen: set[int] = set()
    leaks: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    argv = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                seen.add(int(entry.name))
                text = argv.decode(errors="replace")
                if any(t in text for t in wanted):
                    leaks.append(f"{entry.name}: {text}")
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    argv = core.exec_argv(secured, "n1", [sys.executable, "-m", "weavenomad", "reconciler",
                                          "run", "--resync", "2"])
    daemon = subprocess.Popen(argv, env=node_env(secured), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        for command in ("reset", "bootstrap"):
            answer = on_node(secured, command)
            assert answer.returncode == 0, answer.stdout + answer.stderr
            assert_no_token(secured, answer.stdout + answer.stderr)
            config = secured.nodes[0].nomad_config_dir / "agent.hcl"
            assert stat.S_IMODE(config.stat().st_mode) == 0o600, command
        reconciler_pid = _child_running(daemon.pid, "reconciler")
        environ = Path(f"/proc/{reconciler_pid}/environ")
        # the tokens are in its environment, which only its owner may read
        assert stat.S_IMODE(environ.stat().st_mode) == 0o400
        assert any(t.encode() in environ.read_bytes() for t in wanted)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
        done.set()
        sampler.join(timeout=5)
    assert daemon.returncode == 0, err[-800:]
    assert_no_token(secured, err)
    assert len(seen) > 20, "the sampler must have seen the processes"
    assert not leaks, "\n".join(leaks)


def _child_running(pid: int, word: str) -> int:
    """The pid of the process ``pid`` became (nsenter execs it) once its argv shows ``word``."""
    def ready():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if word in argv else None

    return wait_for(f"process {pid} running {word}", ready, timeout=30)

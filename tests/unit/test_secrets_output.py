"""A sentinel token never shows in what weavenomad prints or logs, across commands, with and
without ``--debug``, even when a hostile or broken server echoes the request's headers back in
its error answers.

The commands run as real processes (``python -m weavenomad``), so logging, urllib3's debug
lines and tracebacks are configured exactly as in use; the fake agents record the headers they
received, which shows the token was sent (the test would pass vacuously otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

NOMAD_SENTINEL = "sentinel-nomad-6b1f0c2e-token"
CONSUL_SENTINEL = "sentinel-consul-93d5aa07-token"
JOBS = Path(__file__).resolve().parents[2] / "jobs"


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and a body that repeats the request line and all
    its headers, the token header included."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append(dict(self.headers.items()))
        echoed = f"{self.command} {self.path} " + " ".join(
            f"{k}: {v}" for k, v in self.headers.items())
        body = (self.server.reason + " " + echoed).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


class EchoServer:
    def __init__(self, status: int, reason: str):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        self.httpd.daemon_threads = True
        self.httpd.status, self.httpd.reason, self.httpd.seen = status, reason, []
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def seen(self) -> list[dict]:
        return self.httpd.seen

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=[(403, "Permission denied"), (500, "rpc error: internal")],
                ids=["denied", "server-error"])
def agents(request):
    nomad, consul = EchoServer(*request.param), EchoServer(*request.param)
    yield nomad, consul
    nomad.close()
    consul.close()


def _environ(nomad: EchoServer, consul: EchoServer, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOMAD_", "CONSUL_", "WEAVENOMAD_", "DOCKER_"))}
    env.update(NOMAD_ADDR=nomad.url, CONSUL_HTTP_ADDR=consul.url, NOMAD_TOKEN=NOMAD_SENTINEL,
               CONSUL_HTTP_TOKEN=CONSUL_SENTINEL, WEAVE_HTTP_ADDR="127.0.0.1:1",
               DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
               WEAVENOMAD_CONFIG=str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text("[http]\ntimeout = 3\n")
    return env


def _weavenomad(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weavenomad", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _all_at_once(env: dict, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run the commands side by side (each pays Python's start-up), then collect them."""
    procs = [(args, subprocess.Popen([sys.executable, "-m", "weavenomad", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for args in commands]
    done = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


COMMANDS = [
    ("status",),
    ("tenant", "list"),
    ("tenant", "create", "acme"),
    ("run", str(JOBS / "httpbackend.nomad"), "--tenant", "net:10.32.1.0/24"),
    ("reconciler", "run", "--once"),
]


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_no_command_prints_or_logs_a_token(agents, tmp_path, debug):
    nomad, consul = agents
    env = _environ(nomad, consul, tmp_path)
    runs = _all_at_once(env, [["--debug", *c] if debug else list(c) for c in COMMANDS])
    outputs = list(zip(COMMANDS, runs, strict=True))
    for command, done in outputs:
        text = done.stdout + done.stderr
        assert NOMAD_SENTINEL not in text and CONSUL_SENTINEL not in text, (command, text)
        assert done.returncode != 0, (command, text)  # every agent refuses
        assert "Traceback" not in done.stderr or debug, (command, done.stderr)
    everything = "".join(d.stdout + d.stderr for _, d in outputs)
    # the echoed headers reached the messages, redacted
    assert "<redacted>" in everything
    if debug:  # urllib3's request lines are there, and carry no token
        assert "HTTP/1.1" in everything and "Starting new HTTP connection" in everything
    # and the tokens were really sent, each to its own agent only
    assert any(h.get("X-Nomad-Token") == NOMAD_SENTINEL for h in nomad.seen)
    assert any(h.get("X-Consul-Token") == CONSUL_SENTINEL for h in consul.seen)
    assert not any(CONSUL_SENTINEL in json.dumps(h) for h in nomad.seen)
    assert not any(NOMAD_SENTINEL in json.dumps(h) for h in consul.seen)


def test_a_token_flag_is_never_printed_and_is_warned_about(tmp_path):
    nomad, consul = EchoServer(403, "Permission denied"), EchoServer(403, "Permission denied")
    try:
        env = _environ(nomad, consul, tmp_path)
        del env["NOMAD_TOKEN"], env["CONSUL_HTTP_TOKEN"]
        done = _weavenomad(env, "--debug", "--nomad-token", NOMAD_SENTINEL, "--consul-token",
                           CONSUL_SENTINEL, "status")
        text = done.stdout + done.stderr
        assert NOMAD_SENTINEL not in text and CONSUL_SENTINEL not in text, text
        assert "--nomad-token puts the token in this process's command line" in done.stderr
        assert "set NOMAD_TOKEN" in done.stderr
        shown = _weavenomad(env, "--nomad-token", NOMAD_SENTINEL, "config", "show")
        assert NOMAD_SENTINEL not in shown.stdout + shown.stderr
    finally:
        nomad.close()
        consul.close()


def test_a_token_with_a_stray_newline_is_trimmed_and_one_with_inner_spaces_refused(tmp_path):
    nomad, consul = EchoServer(403, "Permission denied"), EchoServer(403, "Permission denied")
    try:
        env = _environ(nomad, consul, tmp_path)
        env["NOMAD_TOKEN"] = NOMAD_SENTINEL + "\n"  # as `NOMAD_TOKEN=$(cat file)` never is
        _weavenomad(env, "status")
        assert nomad.seen[-1]["X-Nomad-Token"] == NOMAD_SENTINEL
        env["NOMAD_TOKEN"] = "half " + NOMAD_SENTINEL  # requests would echo it in its error
        done = _weavenomad(env, "--debug", "status")
        assert NOMAD_SENTINEL not in done.stdout + done.stderr
        assert "the Nomad token (NOMAD_TOKEN" in done.stderr
        assert "contains whitespace or control characters" in done.stderr
    finally:
        nomad.close()
        consul.close()

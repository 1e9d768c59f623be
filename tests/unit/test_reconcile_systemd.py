"""The systemd side: the unit file, its installers, sd_notify and the watchdog settings."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from weavenomad.cli import cli
from weavenomad.errors import ConfigError, WeavenomadError
from weavenomad.reconcile import systemd
from weavenomad.runtime import units
from weavenomad.runtime.notify import Notifier

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_the_shipped_unit_is_the_rendered_one():
    assert (SCRIPTS / systemd.UNIT_NAME).read_text() == systemd.render_unit()


def test_the_unit_is_ordered_restarted_notified_and_hardened():
    text = systemd.render_unit(["/opt/wn/bin/weavenomad"], ["--resync", "30"])
    lines = set(text.splitlines())
    assert "ExecStart=/opt/wn/bin/weavenomad reconciler run --resync 30" in lines
    after = next(line for line in lines if line.startswith("After="))
    for unit in ("docker.service", "weave.service", "consul.service", "nomad.service"):
        assert unit in after
    for wanted in ("Type=notify", "Restart=always", "WatchdogSec=30", "CapabilityBoundingSet=",
                   "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateDevices=yes",
                   "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"):
        assert wanted in lines, wanted
    # reading /proc/<pid>/net of task containers must stay possible
    assert not any(line.startswith("ProtectProc=") for line in lines)


def test_command_prefix_prefers_the_given_then_path_then_this_python():
    assert units.command_prefix("/x/weavenomad") == ["/x/weavenomad"]
    assert units.command_prefix(None, which=lambda _: "/usr/bin/weavenomad") == [
        "/usr/bin/weavenomad"]
    prefix = units.command_prefix(None, which=lambda _: None)
    assert prefix[1:] == ["-m", "weavenomad"]


def test_install_writes_the_unit_and_enables_it(tmp_path):
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    path = units.write_unit(tmp_path, systemd.render_unit(), systemd.UNIT_NAME,
                            "weavenomad reconciler install")
    assert path == tmp_path / systemd.UNIT_NAME and oct(path.stat().st_mode)[-3:] == "644"
    units.enable(systemd.UNIT_NAME, "weavenomad reconciler run", run=run)
    assert calls == [["systemctl", "daemon-reload"],
                     ["systemctl", "enable", "--now", systemd.UNIT_NAME]]

    def failing(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, "", "Failed to connect to bus")

    with pytest.raises(WeavenomadError, match="Failed to connect to bus"):
        units.enable(systemd.UNIT_NAME, "weavenomad reconciler run", run=failing)

    def missing(argv, **kwargs):
        raise FileNotFoundError(argv[0])

    with pytest.raises(ConfigError, match="does not run systemd"):
        units.enable(systemd.UNIT_NAME, "weavenomad reconciler run", run=missing)


@pytest.mark.parametrize("command,unit,exec_start", [
    ("reconciler", systemd.UNIT_NAME, "reconciler run"),
    ("guard", "weavenomad-guards.service", "guard ensure --every 10"),
])
def test_cli_install_without_enabling(tmp_path, command, unit, exec_start):
    result = CliRunner().invoke(cli, [command, "install", "--unit-dir", str(tmp_path),
                                      "--executable", "/opt/wn/weavenomad", "--no-enable"])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / unit}: written" in result.output
    text = (tmp_path / unit).read_text()
    assert f"ExecStart=/opt/wn/weavenomad {exec_start}" in text
    printed = CliRunner().invoke(cli, [command, "install", "--print", "--executable",
                                       "/opt/wn/weavenomad"])
    assert printed.exit_code == 0 and printed.output == text


def test_the_install_script_points_execstart_at_weavenomad(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "UNIT_DIR": str(tmp_path / "units"), "WEAVENOMAD": "/opt/wn/weavenomad"}
    done = subprocess.run([str(SCRIPTS / "install-reconciler")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "units" / systemd.UNIT_NAME).read_text()
    assert text == systemd.render_unit(["/opt/wn/weavenomad"])
    assert log.read_text().splitlines() == ["daemon-reload", f"enable --now {systemd.UNIT_NAME}"]


def test_notifier_speaks_sd_notify(tmp_path):
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(2)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.ready("reconciling") and notifier.watchdog() and notifier.stopping()
    assert [listener.recv(100) for _ in range(3)] == [
        b"READY=1\nSTATUS=reconciling", b"WATCHDOG=1", b"STOPPING=1"]
    listener.close()
    assert Notifier.from_environ({}).ready() is False  # outside systemd: nothing


def test_watchdog_interval_is_half_the_timeout_and_only_for_us():
    env = {"WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environ(env, pid=7).watchdog_interval == 15.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": "7"}, pid=7).watchdog_usec
    other = Notifier.from_environ({**env, "WATCHDOG_PID": "8"}, pid=7)
    assert other.watchdog_interval is None
    assert Notifier.from_environ({"WATCHDOG_USEC": "x"}).watchdog_interval is None

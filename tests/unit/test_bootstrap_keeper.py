"""Keeping the isolation guards after bootstrap: ``weavenomad guard ensure|install`` and its
systemd unit. The iptables side is the lab's (tests/lab/test_bootstrap_lab.py)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from weavenomad.bootstrap import guards as gd
from weavenomad.bootstrap import keeper, system
from weavenomad.cli import cli, main
from weavenomad.errors import BackendError, BackendUnavailable, ExitCode
from weavenomad.runtime.notify import Notifier, Supervised

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
GUARDS = gd.guards("docker0")


class FakeEnsure:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.bridges: list[str] = []

    def __call__(self, bridge: str):
        self.bridges.append(bridge)
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_nothing_is_added_while_the_node_has_no_weave_bridge():
    ensure = FakeEnsure(list(GUARDS))
    look = keeper.Keeper(lambda: "docker0", weave_present=lambda: False, ensure=ensure).look()
    assert look == keeper.Round(False) and ensure.bridges == []


def test_a_look_puts_back_what_is_missing_on_dockers_bridge():
    ensure = FakeEnsure([GUARDS[0]])
    look = keeper.Keeper(lambda: "br-custom", weave_present=lambda: True, ensure=ensure).look()
    assert look == keeper.Round(True, (GUARDS[0],)) and ensure.bridges == ["br-custom"]


def test_keeping_survives_a_failing_look_and_logs_it_once(caplog):
    failure = BackendError("cannot read iptables (filter table): busy", backend="system")
    ensure = FakeEnsure([], failure, failure, [GUARDS[1]])
    guard_keeper = keeper.Keeper(lambda: "docker0", weave_present=lambda: True, ensure=ensure)
    rounds: list[keeper.Round] = []

    def report(look):
        rounds.append(look)
        if look.added:
            guard_keeper.stop.set()

    runner = threading.Thread(target=guard_keeper.keep, args=(0.001, report))
    with caplog.at_level(logging.INFO, logger="weavenomad.guards"):
        runner.start()
        runner.join(5)
    assert not runner.is_alive()
    assert rounds == [keeper.Round(True), keeper.Round(True, (GUARDS[1],))]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "busy" in errors[0].getMessage()
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_dockers_bridge_is_asked_each_time_and_remembered_while_docker_is_away(monkeypatch):
    answers = [{"Options": {"com.docker.network.bridge.name": "br0"}},
               BackendUnavailable("Docker does not answer", backend="docker"), {}]

    def inspect(docker):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(keeper, "docker_bridge_network", inspect)
    name = keeper.docker_bridge_of(object())
    assert [name(), name(), name()] == ["br0", "br0", "docker0"]


def test_the_shipped_unit_is_the_rendered_one_and_holds_only_network_capabilities():
    assert (SCRIPTS / keeper.UNIT_NAME).read_text() == keeper.render_unit()
    lines = set(keeper.render_unit(["/opt/wn/weavenomad"]).splitlines())
    assert "ExecStart=/opt/wn/weavenomad guard ensure --every 10" in lines
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" in lines
    assert {"Restart=always", "NoNewPrivileges=yes", "Before=nomad.service"} <= lines


def test_ensure_refuses_to_run_without_root(monkeypatch, capsys):
    monkeypatch.setattr(system, "euid", lambda: 1000)
    with pytest.raises(SystemExit) as exit_info:
        main(["guard", "ensure"], {"PATH": "/usr/bin:/bin"})
    out, err = capsys.readouterr()
    assert exit_info.value.code == ExitCode.ERROR and out == ""
    assert err.count("\n") == 1 and "must run as root" in err


def test_ensure_once_reports_what_it_put_back(monkeypatch):
    monkeypatch.setattr(system, "euid", lambda: 0)
    monkeypatch.setattr(keeper.Keeper, "look",
                        lambda self: keeper.Round(True, (GUARDS[0], GUARDS[3])))
    result = CliRunner().invoke(cli, ["--json", "guard", "ensure"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"weave": True, "added": ["docker-to-weave",
                                                                 "docker-icc"]}
    monkeypatch.setattr(keeper.Keeper, "look", lambda self: keeper.Round(False))
    result = CliRunner().invoke(cli, ["guard", "ensure"])
    assert "nothing to guard" in result.output


def test_keeping_reports_each_put_back_and_stops_on_its_signal(monkeypatch, caplog):
    monkeypatch.setattr(system, "euid", lambda: 0)
    monkeypatch.setattr("weavenomad.runtime.logs.configure", lambda *a, **k: None)
    caplog.set_level(logging.INFO, logger="weavenomad.guards")
    looks = [keeper.Round(True), keeper.Round(True, (GUARDS[2],))]

    def keep(self, every, report):
        assert every == 5.0
        for look in looks:
            report(look)

    monkeypatch.setattr(keeper.Keeper, "keep", keep)
    result = CliRunner().invoke(cli, ["guard", "ensure", "--every", "5"])
    assert result.exit_code == 0, result.output
    # the keeper is a daemon: it logs, like the reconciler (issue 21)
    lines = [r.getMessage() for r in caplog.records if r.name == "weavenomad.guards"]
    assert lines[0] == "keeping the isolation guards, a look every 5 s"
    assert len(lines) == 2  # the round that put nothing back says nothing
    assert lines[1].startswith("put back the isolation guard against the host routing from")


class RecordingNotifier(Notifier):
    def __init__(self):
        super().__init__("recording", watchdog_usec=2_000)
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *lines: str) -> bool:
        self.sent.append(lines)
        return True


def test_the_keeper_is_ready_after_its_first_look_and_says_what_it_found_or_waits_for():
    failure = BackendError("cannot read iptables (filter table): busy", backend="system")
    present = iter([False, True, True, True])
    ensure = FakeEnsure(failure, [GUARDS[1]])
    notifier = RecordingNotifier()
    guard_keeper = keeper.Keeper(lambda: "docker0", weave_present=lambda: next(present),
                                 ensure=ensure, supervised=Supervised(notifier))
    looks: list[keeper.Round] = []

    def report(look):
        looks.append(look)
        if len(looks) == 3:
            guard_keeper.stop.set()

    guard_keeper.keep(0.01, report)
    said = [lines for lines in notifier.sent if lines != ("WATCHDOG=1",)]
    assert said == [
        ("READY=1", "STATUS=waiting for Weave: no 'weave' bridge on this node, nothing to "
                    "guard"),
        ("STATUS=waiting for iptables: cannot read iptables (filter table): busy",),
        ("STATUS=put back 1 isolation guard(s) (weave-routed); every guard is in place",),
        ("STATUS=every isolation guard is in place",),
        ("STOPPING=1",)]
    assert notifier.sent.count(("WATCHDOG=1",)) >= 3  # fed in every wait


def test_the_guard_unit_is_a_supervised_notify_service():
    lines = set(keeper.render_unit().splitlines())
    assert {"Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=always"} <= lines

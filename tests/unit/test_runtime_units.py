"""Our units as installed: what ``reconciler install`` / ``guard install`` and ``doctor`` read back
(the unit file, its env files, ``systemctl show``, the journal) and the one line with the fix
each problem gets. Pure checks on plain data; the install command against a recording
systemctl and journalctl on PATH. (The same under a real systemd: tests/systemd.)"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from weavenomad.bootstrap import checks as ck
from weavenomad.bootstrap import doctor, keeper
from weavenomad.cli import cli
from weavenomad.reconcile import systemd
from weavenomad.runtime import unitcheck as uc
from weavenomad.runtime import units

SPEC = systemd.SPEC
EXE = "/opt/wn/bin/weavenomad"
RUNNING = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running",
           "Result": "success", "StatusText": "waiting for Nomad at http://127.0.0.1:4646: "
           "connection refused", "NRestarts": "0", "ExecMainStatus": "0",
           "FragmentPath": "/etc/systemd/system/weavenomad-reconciler.service"}


def show(**values: str) -> str:
    return "".join(f"{k}={v}\n" for k, v in {**RUNNING, **values}.items())


def state(**values: str) -> uc.UnitState:
    parsed = uc.parse_state(show(**values))
    assert parsed is not None
    return parsed


def unit_file(tmp_path: Path, text: str | None = None, *, runnable: bool = True,
              env: uc.EnvFile | None = None) -> uc.UnitFile:
    return uc.UnitFile(str(tmp_path / SPEC.name), systemd.render_unit([EXE]) if text is None
                       else text, runnable, (env,) if env else ())


# -- reading what systemd and the files say ----------------------------------------------------


def test_systemctl_show_is_read_and_nothing_said_is_no_state():
    found = state(NRestarts="3", DropInPaths="/a.conf /b.conf", NeedDaemonReload="yes",
                  LoadError='org.freedesktop.systemd1.BadUnitSetting "Unit x has a bad setting."')
    assert found.running and found.restarts == 3 and found.need_reload
    assert found.drop_ins == ("/a.conf", "/b.conf")
    assert found.load_error == "Unit x has a bad setting."
    assert found.fragment == RUNNING["FragmentPath"]
    assert uc.parse_state("") is None  # no systemd (a recording systemctl) says nothing


def test_execstart_its_command_prefix_and_env_files_are_read_from_the_unit():
    text = systemd.render_unit(["/usr/bin/python3", "-m", "weavenomad"])
    assert uc.exec_start(text) == ["/usr/bin/python3", "-m", "weavenomad", "reconciler", "run"]
    assert uc.command_prefix_of(text, SPEC.run_args) == ["/usr/bin/python3", "-m", "weavenomad"]
    assert uc.command_prefix_of("ExecStart=-/bin/true x\n", SPEC.run_args) == ["/bin/true"]
    assert uc.environment_files(text) == [(systemd.ENV_FILE, True)]
    guard = keeper.render_unit([EXE])
    assert uc.command_prefix_of(guard, keeper.SPEC.run_args) == [EXE]


def test_env_lines_systemd_ignores_are_found():
    text = "# settings\nNOMAD_ADDR=http://n:4646\n\nexport CONSUL_HTTP_TOKEN=x\n2X=1\nnonsense\n"
    assert uc.ignored_env_lines(text) == ((4, "export CONSUL_HTTP_TOKEN=x"), (5, "2X=1"),
                                          (6, "nonsense"))


def test_env_files_and_the_unit_are_read_back_from_disk(tmp_path):
    env = tmp_path / "reconciler.env"
    text = systemd.render_unit([sys.executable, "-m", "weavenomad"]).replace(
        systemd.ENV_FILE, str(env))
    path = tmp_path / SPEC.name
    path.write_text(text)
    assert units.read_unit_file(tmp_path / "none.service") == uc.UnitFile(
        str(tmp_path / "none.service"), None)
    found = units.read_unit_file(path)
    assert found.exec_runnable and found.env_files == (uc.EnvFile(str(env), True, "missing"),)
    env.mkdir()
    assert units.read_unit_file(path).env_files[0].kind == "not-a-file"
    env.rmdir()
    env.write_text("export A=1\n")
    env.chmod(0o644)
    read = units.read_unit_file(path).env_files[0]
    assert (read.kind, read.mode & 0o777, read.ignored_lines) == ("file", 0o644,
                                                                  ((1, "export A=1"),))


def test_the_telling_journal_line_is_the_daemons_worst_then_systemds():
    lines = [{"_PID": "1", "PRIORITY": "4", "MESSAGE": "x.service: start operation timed out."},
             {"_PID": "70", "PRIORITY": "3", "MESSAGE": "ERROR weavenomad.systemd: cannot tell"},
             {"_PID": "70", "PRIORITY": "4", "MESSAGE": "WARNING weavenomad.reconciler:  weave\n"},
             {"_PID": "1", "PRIORITY": "4", "MESSAGE": "x.service: Failed with result 'timeout'."}]
    journal = "\n".join(json.dumps(entry) for entry in lines) + "\nnot json\n"
    assert uc.telling_line(journal) == "ERROR weavenomad.systemd: cannot tell"
    assert uc.telling_line(json.dumps(lines[0])) == "x.service: start operation timed out."
    assert uc.telling_line("") == ""


# -- the problems, one line each with the fix ---------------------------------------------------


def test_a_unit_as_install_writes_it_has_no_problem(tmp_path):
    assert uc.file_problems(SPEC, unit_file(tmp_path)) == []
    assert uc.state_problem(SPEC, state()) is None


def test_a_unit_edited_by_hand_is_named_by_its_first_changed_line(tmp_path):
    edited = systemd.render_unit([EXE]).replace("WatchdogSec=30", "WatchdogSec=60")
    [problem] = uc.file_problems(SPEC, unit_file(tmp_path, edited))
    assert not problem.severe
    assert "'WatchdogSec=60' where it writes 'WatchdogSec=30'" in problem.message
    assert problem.fix == ("weavenomad reconciler install to rewrite it; keep local changes in "
                           "a drop-in (systemctl edit weavenomad-reconciler)")
    extra = systemd.render_unit([EXE]) + "Environment=X=1\n"
    assert "'Environment=X=1' where it writes nothing" in uc.file_problems(
        SPEC, unit_file(tmp_path, extra))[0].message


def test_an_execstart_program_that_is_gone_comes_first(tmp_path):
    edited = systemd.render_unit([EXE]).replace("WatchdogSec=30", "WatchdogSec=60")
    problems = uc.file_problems(SPEC, unit_file(tmp_path, edited, runnable=False))
    assert [p.severe for p in problems] == [True, False]
    assert problems[0].one_line() == (
        f"ExecStart of {SPEC.name}: {EXE} does not exist or is not executable: systemd could not "
        "start the unit; fix: weavenomad reconciler install --executable PATH, the weavenomad "
        "command installed on this node")
    hidden = uc.exec_problem("/root/venv/bin/weavenomad", True, SPEC.install_command)
    assert hidden is not None and not hidden.severe and "/root" in hidden.message
    assert uc.exec_problem(EXE, True, SPEC.install_command) is None


@pytest.mark.parametrize("env, severe, words", [
    (uc.EnvFile("/e", True, "missing"), None, None),
    (uc.EnvFile("/e", False, "missing"), True, "needs its EnvironmentFile /e, which does not "
                                                "exist: systemd will not start it"),
    (uc.EnvFile("/e", True, "not-a-file"), True, "is not a file: systemd ignores it, so none "
                                                 "of its settings apply"),
    (uc.EnvFile("/e", True, "unreadable"), False, "cannot read EnvironmentFile /e"),
    (uc.EnvFile("/e", True, "file", 0o600, 0, ((2, "export A=1"), (3, "B"))), False,
     "line 2 of /e is not NAME=value ('export A=1' and 1 more): systemd ignores it"),
    (uc.EnvFile("/e", True, "file", 0o644, 0), False, "may hold tokens but is mode 0644"),
    (uc.EnvFile("/e", True, "file", 0o600, 0), None, None),
])
def test_env_file_problems(tmp_path, env, severe, words):
    problems = uc.file_problems(SPEC, unit_file(tmp_path, env=env))
    if severe is None:
        assert problems == []
        return
    assert len(problems) == 1 and problems[0].severe is severe and words in problems[0].message
    assert problems[0].fix


@pytest.mark.parametrize("values, words, fix", [
    ({"LoadState": "not-found"}, "systemd does not know", "weavenomad reconciler install"),
    ({"LoadState": "masked"}, "is masked", "systemctl unmask weavenomad-reconciler"),
    ({"NeedDaemonReload": "yes"}, "changed on disk", "systemctl daemon-reload"),
    ({"ActiveState": "activating", "SubState": "start"}, "has not said READY=1 yet", "wait"),
    ({"ActiveState": "inactive", "SubState": "dead"}, "is not running",
     "systemctl enable --now weavenomad-reconciler"),
    ({"ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
      "ExecMainStatus": "203", "NRestarts": "4"},
     "is activating (auto-restart, restarted 4 time(s)): systemd cannot run its ExecStart "
     "program (status 203/EXEC); its log says: x", "--executable PATH"),
    ({"ActiveState": "failed", "SubState": "failed", "Result": "start-limit-hit"},
     "systemd stopped restarting it", "systemctl reset-failed weavenomad-reconciler"),
    ({"ActiveState": "activating", "SubState": "auto-restart", "Result": "timeout"},
     "did not say READY=1 within TimeoutStartSec", "journalctl -u weavenomad-reconciler"),
    ({"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
      "ExecMainStatus": "1"}, "its process exited with status 1", "journalctl"),
])
def test_what_systemds_view_says_is_wrong(values, words, fix):
    problem = uc.state_problem(SPEC, state(**values), "x")
    assert problem is not None and words in problem.message and fix in problem.fix, problem


# -- doctor -----------------------------------------------------------------------------------


def test_doctor_checks_an_installed_unit_in_one_line(tmp_path):
    absent = uc.UnitFile(str(tmp_path / SPEC.name), None)
    assert doctor.check_unit("reconciler-unit", SPEC, absent, None) is None
    assert doctor.check_unit("reconciler-unit", SPEC, absent, state(LoadState="not-found")) \
        is None  # not installed: the service check says so
    ok = doctor.check_unit("reconciler-unit", SPEC, unit_file(tmp_path), state())
    assert ok == ck.Check("reconciler-unit", ck.PASS, f"{SPEC.name} as 'weavenomad reconciler "
                          "install' writes it: waiting for Nomad at http://127.0.0.1:4646: "
                          "connection refused")
    edited = unit_file(tmp_path, systemd.render_unit([EXE]).replace("RestartSec=2",
                                                                     "RestartSec=5"))
    failing = state(ActiveState="activating", SubState="auto-restart", Result="timeout")
    check = doctor.check_unit("reconciler-unit", SPEC, edited, failing, "ERROR cannot tell")
    assert check.status == ck.FAIL and check.detail.endswith("; its log says: ERROR cannot "
                                                             "tell (and 1 more)"), check
    local = doctor.check_unit("reconciler-unit", SPEC, unit_file(tmp_path),
                              state(DropInPaths="/etc/x.d/local.conf", StatusText=""))
    assert local.status == ck.PASS and local.detail.endswith("writes it, with "
                                                             "/etc/x.d/local.conf")
    stopped = doctor.check_unit("guard-unit", keeper.SPEC, uc.UnitFile(
        "/g", keeper.render_unit([EXE]), True), state(ActiveState="inactive", SubState="dead"))
    assert stopped.status == ck.PASS  # stopped, nothing failed: the guard-keeper check says so


def test_doctor_reads_both_units(tmp_path):
    seen = []

    def inspect(spec):
        seen.append(spec.name)
        return uc.UnitFile(str(tmp_path / spec.name), spec.render([EXE]), True), state(), ""

    found = doctor.unit_checks(inspect)
    assert seen == [SPEC.name, keeper.SPEC.name]
    assert [(c.name, c.status) for c in found] == [("reconciler-unit", ck.PASS),
                                                    ("guard-unit", ck.PASS)]


# -- install against a recording systemctl and journalctl ------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> {log}
case "$1" in
  show) cat {root}/show 2>/dev/null ;;
  is-active) [ -e {root}/active ] ;;
  enable) [ -e {root}/enable-fails ] && {{ echo "Job for x failed." >&2; exit 1; }}; exit 0 ;;
esac
exit 0
"""
FAKE_JOURNALCTL = "#!/bin/sh\ncat {root}/journal 2>/dev/null\n"


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    """A systemctl and journalctl that say what ``root``'s files say; calls in ``log``."""
    root, bin_dir = tmp_path / "systemd", tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    log = root / "calls"
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("journalctl", FAKE_JOURNALCTL)):
        script = bin_dir / name
        script.write_text(text.format(log=shlex.quote(str(log)), root=shlex.quote(str(root))))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    exe = tmp_path / "weavenomad"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root, log, str(exe)


def install(tmp_path, exe: str, *args: str):
    return CliRunner().invoke(cli, ["reconciler", "install", "--unit-dir",
                                    str(tmp_path / "units"), "--executable", exe, *args])


def test_install_says_what_the_started_daemon_waits_for(tmp_path, fake_systemd):
    root, log, exe = fake_systemd
    (root / "show").write_text(show())
    result = install(tmp_path, exe)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"{tmp_path / 'units' / SPEC.name}: enabled and started; waiting "
                             "for Nomad at http://127.0.0.1:4646: connection refused\n")
    assert "lies under /tmp, which the unit's sandbox hides" in result.stderr  # the test's exe
    assert log.read_text().splitlines()[:2] == ["daemon-reload", f"enable --now {SPEC.name}"]


def test_install_refuses_an_executable_that_does_not_exist_and_writes_nothing(tmp_path,
                                                                              fake_systemd):
    result = install(tmp_path, "/nonexistent/weavenomad")
    assert result.exit_code == 1
    assert not (tmp_path / "units").exists() and not fake_systemd[1].exists()


def test_install_replaces_a_hand_edit_saying_so_and_restarts_the_running_unit(tmp_path,
                                                                              fake_systemd):
    root, log, exe = fake_systemd
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / SPEC.name).write_text(
        systemd.render_unit([exe]).replace("RestartSec=2", "RestartSec=9"))
    (root / "active").touch()
    (root / "show").write_text(show())
    result = install(tmp_path, exe)
    assert result.exit_code == 0, result.output
    assert "'RestartSec=9' where it writes 'RestartSec=2'" in result.output
    assert f"systemctl edit {SPEC.short}" in result.output
    assert (tmp_path / "units" / SPEC.name).read_text() == systemd.render_unit([exe])
    assert f"restart {SPEC.name}" in log.read_text().splitlines()


def test_a_unit_that_does_not_start_is_an_error_naming_why(tmp_path, fake_systemd):
    root, _, exe = fake_systemd
    (root / "enable-fails").touch()
    (root / "show").write_text(show(ActiveState="activating", SubState="auto-restart",
                                    Result="timeout", NRestarts="1"))
    (root / "journal").write_text(json.dumps({
        "_PID": "80", "PRIORITY": "3", "MESSAGE": "ERROR weavenomad.systemd: cannot tell systemd "
        "at NOTIFY_SOCKET=/run/systemd/notify: Address family not supported"}) + "\n")
    result = install(tmp_path, exe)
    assert result.exit_code == 1
    assert "did not say READY=1 within TimeoutStartSec" in str(result.exception)
    assert "cannot tell systemd at NOTIFY_SOCKET" in str(result.exception)
    (root / "show").unlink()  # systemd says nothing more: systemctl's own words
    result = install(tmp_path, exe)
    assert result.exit_code == 1 and "Job for x failed." in str(result.exception)

"""The reconciler's and the guard keeper's units under a real systemd (Debian 12's systemd 252,
booted in a container inside a lab node's network namespace; see systemdbox.py): installed
with ``weavenomad reconciler install`` / ``guard install`` from this checkout, they start and
run while Nomad is down and keep running when it comes up; READY and the watchdog, a frozen
daemon killed and restarted, a SIGKILL followed by a restart, a quick stop, warnings under
``journalctl -p warning``, the hardening's score, ``systemd-analyze verify``, and bad input
named with its fix.

The tests run in file order on one container: each leaves the units running for the next.
Figures (how long install, a restart, a stop took) are printed at the end of each test.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from labtools import wait_for

UNIT = "weavenomad-reconciler.service"
GUARDS = "weavenomad-guards.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
ENV_FILE = "/etc/weavenomad/reconciler.env"
NOMAD = "http://127.0.0.1:4646"
#: the shipped unit's watchdog (WatchdogSec=30) and restart delay (RestartSec=2)
WATCHDOG = 30.0
STATE = ("ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "Result",
         "WatchdogTimestampMonotonic")
#: a line that begins with its own timestamp ("2026-12-07 19:05:03,236 INFO …")
STAMPED = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def state(box, unit: str = UNIT) -> dict[str, str]:
    return box.show(unit, *STATE)


def running(box, unit: str = UNIT) -> dict[str, str] | None:
    found = state(box, unit)
    return found if (found["ActiveState"], found["SubState"]) == ("active", "running") else None


def journal(box, unit: str, *args: str) -> str:
    return box.sh(f"journalctl --no-pager --quiet -u {unit} {' '.join(args)}")


def journal_entries(box, unit: str) -> list[dict]:
    return [json.loads(line) for line in journal(box, unit, "-o json").splitlines() if line]


def nomad_down(lab) -> None:
    from weavenomad_lab.nomad import component

    component.daemon(lab).stop()


def nomad_up(lab) -> None:
    from weavenomad_lab.nomad import component

    component.COMPONENT.up(lab)


def doctor_check(box, name: str) -> dict:
    """One check of ``weavenomad doctor --json`` in the container."""
    done = box.run("weavenomad", "--json", "doctor", timeout=180)
    try:
        checks = json.loads(done.stdout)["checks"]
    except (ValueError, KeyError):
        pytest.fail(f"doctor --json said no checks (exit {done.returncode}): {done.stderr}")
    return next((c for c in checks if c["name"] == name), {"missing": name, "all": checks})


@pytest.fixture(scope="module", autouse=True)
def nomad_back_up_at_the_end(lab):
    """The tests take the lab's Nomad down for a while: other tests of the session want it."""
    yield
    nomad_up(lab)


@pytest.fixture
def units(box):
    """Both units installed and running (for a test run on its own)."""
    for command, unit in (("reconciler", UNIT), ("guard", GUARDS)):
        if box.show(unit, "LoadState")["LoadState"] != "loaded":
            box.run("weavenomad", command, "install", timeout=150, check=True)
        if not running(box, unit):
            box.run("systemctl", "restart", unit, timeout=90, check=True)


def test_install_returns_at_once_while_nomad_is_down_and_says_what_it_waits_for(box, lab):
    nomad_down(lab)
    started = time.monotonic()
    done = box.run("weavenomad", "reconciler", "install", timeout=150)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert f"enabled and started; waiting for Nomad at {NOMAD}: connection refused" in \
        done.stdout, done.stdout
    assert took < 15, f"reconciler install took {took:.1f}s"
    found = running(box)
    assert found, state(box)
    assert found["StatusText"].startswith(f"waiting for Nomad at {NOMAD}"), found

    guard_started = time.monotonic()
    done = box.run("weavenomad", "guard", "install", timeout=150)
    assert done.returncode == 0, done.stderr
    guard = running(box, GUARDS)
    assert guard and guard["StatusText"], state(box, GUARDS)
    print(f"\nreconciler install with Nomad down: {took:.2f}s; guard install: "
          f"{time.monotonic() - guard_started:.2f}s; guard status: {guard['StatusText']}")


@pytest.mark.usefixtures("units")
def test_the_watchdog_is_fed_while_waiting(box):
    before = {unit: state(box, unit) for unit in (UNIT, GUARDS)}

    def fed() -> bool:
        now = {unit: state(box, unit) for unit in (UNIT, GUARDS)}
        return all(int(now[u]["WatchdogTimestampMonotonic"])
                   > int(before[u]["WatchdogTimestampMonotonic"]) for u in now)

    wait_for("a watchdog ping of both daemons", fed, timeout=WATCHDOG / 2 + 5)
    for unit in (UNIT, GUARDS):
        now = running(box, unit)
        assert now, state(box, unit)
        assert now["MainPID"] == before[unit]["MainPID"] and now["NRestarts"] == "0", now
    assert state(box)["StatusText"].startswith(f"waiting for Nomad at {NOMAD}")


@pytest.mark.usefixtures("units")
def test_warnings_reach_the_journal_with_their_priority_and_no_timestamp_of_their_own(box):
    warnings = journal(box, UNIT, "-p warning -o cat")
    assert f"cannot find this node's Nomad client: cannot reach Nomad at {NOMAD}" in warnings
    for unit, info in ((UNIT, "reconciler starting"),
                       (GUARDS, "keeping the isolation guards, a look every 10 s")):
        own = [e for e in journal_entries(box, unit) if e.get("_PID") != "1"
               and e.get("SYSLOG_IDENTIFIER") != "systemd"]
        assert own, f"{unit} logged nothing"
        for entry in own:
            assert not STAMPED.match(entry["MESSAGE"]), entry["MESSAGE"]
        said = {e["MESSAGE"]: e["PRIORITY"] for e in own}
        assert any(info in message and priority == "6" for message, priority in said.items()), \
            said
    waits = [e for e in journal_entries(box, UNIT) if "cannot find this node's" in e["MESSAGE"]]
    assert waits and {e["PRIORITY"] for e in waits} == {"4"}, waits


@pytest.mark.usefixtures("units")
def test_nomad_coming_up_is_served_without_a_restart(box, lab):
    pid = state(box)["MainPID"]
    nomad_up(lab)
    found = wait_for("the reconciler to serve its node",
                       lambda: "twin(s)" in state(box)["StatusText"] and state(box), timeout=30)
    assert found["MainPID"] == pid and found["NRestarts"] == "0", found
    assert "serving Nomad node" in journal(box, UNIT, "-o cat")
    started = time.monotonic()
    box.run("systemctl", "restart", UNIT, timeout=90, check=True)
    took = time.monotonic() - started
    assert running(box), state(box)
    wait_for("a pass after the restart", lambda: "twin(s)" in state(box)["StatusText"],
               timeout=30)
    assert took < 10, f"a restart with Nomad up took {took:.1f}s"
    print(f"\nrestart with Nomad up: {took:.2f}s; status: {state(box)['StatusText']}")


@pytest.mark.usefixtures("units")
def test_a_frozen_daemon_is_killed_by_the_watchdog_and_restarted(box):
    before = state(box)
    box.sh(f"kill -STOP {before['MainPID']}")
    started = time.monotonic()
    found = wait_for("the watchdog to restart the frozen daemon", lambda: (
        (now := running(box)) and now["MainPID"] != before["MainPID"] and now),
        timeout=WATCHDOG + 20, every=0.5)
    took = time.monotonic() - started
    assert int(found["NRestarts"]) == int(before["NRestarts"]) + 1, found
    assert "Watchdog timeout" in journal(box, UNIT, "-o cat")
    print(f"\nfrozen daemon restarted {took:.1f}s after SIGSTOP (WatchdogSec={WATCHDOG:g})")


@pytest.mark.usefixtures("units")
def test_a_killed_daemon_is_restarted(box):
    for unit in (UNIT, GUARDS):
        before = state(box, unit)
        box.sh(f"kill -KILL {before['MainPID']}")
        started = time.monotonic()
        found = wait_for(f"{unit} to come back after SIGKILL", lambda u=unit, b=before: (
            (now := running(box, u)) and now["MainPID"] != b["MainPID"] and now), timeout=15)
        took = time.monotonic() - started
        assert int(found["NRestarts"]) == int(before["NRestarts"]) + 1, found
        print(f"\n{unit} back {took:.2f}s after SIGKILL")


@pytest.mark.usefixtures("units")
def test_stop_is_quick(box):
    for unit in (UNIT, GUARDS):
        started = time.monotonic()
        box.run("systemctl", "stop", unit, timeout=60, check=True)
        took = time.monotonic() - started
        assert state(box, unit)["ActiveState"] == "inactive", state(box, unit)
        assert took < 2, f"systemctl stop {unit} took {took:.2f}s"
        box.run("systemctl", "start", unit, timeout=90, check=True)
        assert running(box, unit), state(box, unit)
        print(f"\nsystemctl stop {unit}: {took:.2f}s")


def _exposure(box, unit: str) -> float:
    out = box.run("systemd-analyze", "security", "--no-pager", unit, check=True).stdout
    overall = next(line for line in out.splitlines() if "Overall exposure" in line)
    return float(overall.split(":")[1].split()[0])


@pytest.mark.usefixtures("units")
def test_the_hardening_scores_low_and_the_units_verify_clean(box):
    reconciler, guards = _exposure(box, UNIT), _exposure(box, GUARDS)
    print(f"\nsystemd-analyze security: reconciler {reconciler}, guards {guards}")
    assert reconciler <= 1.8
    assert guards <= 4.1
    done = box.run("systemd-analyze", "verify", UNIT_FILE, f"/etc/systemd/system/{GUARDS}")
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), \
        done.stderr


@pytest.mark.usefixtures("units")
def test_an_executable_that_does_not_exist_is_refused_with_the_fix(box):
    done = box.run("weavenomad", "reconciler", "install", "--executable",
                   "/nonexistent/weavenomad")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent/weavenomad does not exist" in lines[0], lines
    assert "--executable PATH" in lines[0]
    assert running(box), "a refused install must leave the running unit alone"


@pytest.mark.usefixtures("units")
def test_a_unit_edited_by_hand_is_named_by_doctor_and_install(box):
    box.sh(f"sed -i 's/^WatchdogSec=30$/WatchdogSec=60/' {UNIT_FILE} && systemctl daemon-reload")
    check = doctor_check(box, "reconciler-unit")
    assert check.get("status") == "warn", check
    assert "'WatchdogSec=60' where it writes 'WatchdogSec=30'" in check["detail"], check
    assert "weavenomad reconciler install" in check["fix"], check
    done = box.run("weavenomad", "reconciler", "install", timeout=150)
    assert done.returncode == 0, done.stderr
    assert "replacing" in done.stderr and "'WatchdogSec=60'" in done.stderr, done.stderr
    assert "WatchdogSec=30" in box.sh(f"cat {UNIT_FILE}")
    assert box.show(UNIT, "WatchdogUSec")["WatchdogUSec"] == "30s"
    assert doctor_check(box, "reconciler-unit").get("status") == "pass"


@pytest.mark.usefixtures("units")
def test_env_file_mistakes_are_named_with_the_fix(box):
    box.sh(f"mkdir -p /etc/weavenomad && printf 'export NOMAD_ADDR={NOMAD}\\n' > {ENV_FILE} "
           f"&& chmod 600 {ENV_FILE}")
    check = doctor_check(box, "reconciler-unit")
    assert check.get("status") == "warn", check
    assert f"line 1 of {ENV_FILE} is not NAME=value" in check["detail"], check
    assert "no 'export'" in check["fix"]
    box.sh(f"rm {ENV_FILE} && mkdir {ENV_FILE}")
    check = doctor_check(box, "reconciler-unit")
    assert check.get("status") == "fail", check
    assert f"EnvironmentFile {ENV_FILE} of {UNIT} is not a file" in check["detail"], check
    done = box.run("weavenomad", "reconciler", "install", timeout=150)
    assert done.returncode == 0 and "is not a file" in done.stderr, done.stderr
    box.sh(f"rmdir {ENV_FILE}")
    assert doctor_check(box, "reconciler-unit").get("status") == "pass"


@pytest.mark.usefixtures("units")
def test_a_notify_socket_that_does_not_answer_is_named_not_looped_on_in_silence(box):
    dropin = f"/etc/systemd/system/{UNIT}.d"
    # a sandbox without unix sockets: sd_notify cannot reach systemd (the daemon's stderr,
    # already open, still reaches the journal); the empty line resets the unit's own list
    box.sh(f"mkdir -p {dropin} && printf '[Service]\\nRestrictAddressFamilies=\\n"
           f"RestrictAddressFamilies=AF_INET AF_INET6\\nTimeoutStartSec=5\\n' "
           f"> {dropin}/sandbox.conf && systemctl daemon-reload")
    box.run("systemctl", "restart", "--no-block", UNIT, check=True)
    started = time.monotonic()
    done = box.run("weavenomad", "reconciler", "install", timeout=150)
    took = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, (done.stdout, done.stderr)
    assert "did not say READY=1" in lines[0], lines[0]
    assert "cannot tell systemd at NOTIFY_SOCKET=" in lines[0], lines[0]
    assert "cannot tell systemd at NOTIFY_SOCKET=" in journal(box, UNIT, "-p warning -o cat")
    box.sh(f"rm -r {dropin} && systemctl daemon-reload && systemctl reset-failed {UNIT}; "
           f"systemctl restart {UNIT}", timeout=90)
    assert running(box), state(box)
    print(f"\ninstall named the silent notify socket after {took:.1f}s: {lines[0]}")


@pytest.mark.usefixtures("units")
def test_an_executable_gone_after_install_is_named_by_doctor(box):
    box.sh("rm /usr/local/bin/weavenomad && systemctl restart --no-block "
           f"{UNIT}")
    wait_for("the failed exec", lambda: state(box)["Result"] == "exit-code", timeout=15)
    done = box.run("/opt/weavenomad/bin/weavenomad", "--json", "doctor", timeout=180)
    check = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "reconciler-unit")
    assert check["status"] == "fail", check
    assert "/usr/local/bin/weavenomad does not exist" in check["detail"], check
    assert "--executable PATH" in check["fix"], check
    box.sh(f"ln -s /opt/weavenomad/bin/weavenomad /usr/local/bin/weavenomad && "
           f"systemctl reset-failed {UNIT}; systemctl restart {UNIT}", timeout=90)
    assert running(box), state(box)

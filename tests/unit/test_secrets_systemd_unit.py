"""The reconciler's systemd unit runs with the least privileges the daemon needs: no
capabilities, a read-only file system, a syscall allow-list without the privileged and
resource groups, only unix and IP sockets, and no token on its command line.

Why each is enough was tested on a lab node: ``reconciler run --once`` and the daemon (event
streams, metrics, SIGTERM) converge as root with an empty capability bounding set,
no_new_privs, ``/proc`` mounted with ``subset=pid``, a seccomp filter equal to this unit's
(``@system-service`` minus ``@privileged @resources``, sockets AF_UNIX/INET/INET6 only) and no
file opened for writing, with Weave's API down so the addresses came from /proc/<pid>/net.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "scripts" / "weavenomad-reconciler.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections of ``Key=value`` lines; a key may repeat (its values
    accumulate, and an empty value resets the list, as for SystemCallFilter=)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"not a unit line: {raw!r}"
        values = sections[current][key.strip()]
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
            values.append("")
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(service, key: str) -> str:
    values = service.get(key)
    assert values, f"{key}= is missing"
    return values[-1]


def test_no_capabilities_and_no_way_to_gain_any(service):
    assert one(service, "CapabilityBoundingSet") == ""
    assert one(service, "AmbientCapabilities") == ""
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "RestrictSUIDSGID") == "yes"
    assert "User" not in service or one(service, "User") == "root"  # Docker's socket is root's


@pytest.mark.parametrize("key, value", [
    ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"), ("PrivateMounts", "yes"), ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"), ("ProtectClock", "yes"), ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"), ("RestrictRealtime", "yes"), ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"), ("SystemCallArchitectures", "native"),
    ("UMask", "0077"), ("ProcSubset", "pid"), ("SystemCallErrorNumber", "EPERM"),
])
def test_hardening_setting(service, key, value):
    assert one(service, key) == value


def test_the_daemon_may_write_nothing(service):
    for key in ("ReadWritePaths", "StateDirectory", "LogsDirectory", "CacheDirectory"):
        assert key not in service, f"{key}= would give the daemon a writable path"


def test_other_processes_proc_net_stays_readable(service):
    # ProtectProc=invisible/noaccess would hide the task containers' /proc/<pid>/net
    assert "ProtectProc" not in service
    assert "PrivateUsers" not in service  # would turn Docker's socket owner into nobody


def test_syscalls_and_sockets_are_restricted(service):
    filters = service["SystemCallFilter"]
    assert "@system-service" in filters
    denied = {group for f in filters if f.startswith("~") for group in f[1:].split()}
    assert {"@privileged", "@resources"} <= denied
    assert set(one(service, "RestrictAddressFamilies").split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6"}


def test_no_token_on_the_command_line_or_in_the_unit(service):
    exec_start = one(service, "ExecStart")
    assert exec_start.endswith("weavenomad reconciler run")
    assert "token" not in exec_start.lower()
    assert not any("TOKEN" in e for e in service.get("Environment", []))
    assert one(service, "EnvironmentFile") == "-/etc/weavenomad/reconciler.env"


def test_it_stays_a_supervised_notify_service(service):
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "Restart") == "always"
    assert one(service, "WatchdogSec") == "30"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_analyze_accepts_the_unit_and_scores_it_low(tmp_path):
    unit = tmp_path / UNIT.name
    # verify wants an ExecStart that exists here
    unit.write_text(UNIT.read_text().replace("ExecStart=/usr/local/bin/weavenomad ",
                                             "ExecStart=/usr/bin/env weavenomad "))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert "Unknown key" not in verify.stderr and "Ignoring" not in verify.stderr, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, timeout=60)
    if security.returncode != 0 and "offline" in security.stderr:
        pytest.skip("this systemd-analyze has no --offline")  # systemd < 250
    overall = next(line for line in security.stdout.splitlines() if "Overall exposure" in line)
    score = float(overall.split(":")[1].split()[0])
    assert score <= 2.0, overall

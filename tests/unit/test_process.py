import subprocess
import sys
import time

from weavenomad_lab.process import Daemon, _alive


def test_zombie_counts_as_dead():
    # a child that exits and is not reaped stays a zombie until we wait for it
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.01)
    assert state == "Z"
    # _alive reaps our own zombie child, and in any case reports it dead
    assert _alive(child.pid) is False


def test_daemon_start_stop_roundtrip(tmp_path):
    marker = f"wn-test-marker-{tmp_path.name}"
    daemon = Daemon(
        name="sleeper",
        argv=(sys.executable, "-c", "import time; time.sleep(60)", marker),
        pid_file=tmp_path / "d.pid",
        log_file=tmp_path / "d.log",
        marker=marker,
    )
    pid = daemon.start(ready=lambda: True)
    assert daemon.pid() == pid
    daemon.stop(timeout=5)
    assert daemon.pid() is None and not (tmp_path / "d.pid").exists()
    assert _alive(pid) is False

"""A Debian container with systemd as its init, for the systemd tier: the rootfs is made once by
``debootstrap`` (Debian bookworm) and cached, a venv with the product's pinned dependencies is
added to it once per lock file, and each run boots it with ``systemd-nspawn -b`` on a throwaway
overlay (``--volatile=overlay``: nothing a run does stays in the cache), inside a lab node's
network namespace, so the container's 127.0.0.1:4646 and :8500 are that node's simulated Nomad
and Consul, and 127.0.0.1:6784 its emulated Weave, where a real node has them; the node's
dockerd socket is bound to /run/docker.sock. The product is built from this checkout as a wheel
and installed into the container's venv (``/opt/weavenomad``, ``/usr/local/bin/weavenomad``),
as an operator installs it.

Commands run inside with ``nsenter`` into the container's namespaces (the host's PID 1 is not
systemd here, so there is no machinectl). On this machine kind nspawn boots with the cgroup v1
layout, and needs ``--register=no --keep-unit`` (no system bus on the host).

Anything that keeps the container from booting raises :class:`BoxError`; the tier fails on it,
it never skips.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: where the rootfs is kept between runs (WEAVENOMAD_SYSTEMD_CACHE to move it)
CACHE = Path(os.environ.get("WEAVENOMAD_SYSTEMD_CACHE", "/var/cache/weavenomad/systemd-tier"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: systemd as init, Python for the product, iptables and ip for the guard keeper
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iptables",
            "iproute2")
VENV = "/opt/weavenomad"
#: where the product's wheel and the lock file appear inside the container
WHEELS = "/run/weavenomad-wheels"
#: where the dependencies' wheels appear while the venv is made
DEPS = "/run/weavenomad-deps"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_TIMEOUT = 1200
PIP_TIMEOUT = 900
BOOT_TIMEOUT = 90


class BoxError(Exception):
    """The container could not be made or booted."""


def _run(argv: list[str], what: str, timeout: float, log: Path | None = None,
         **kwargs) -> subprocess.CompletedProcess:
    try:
        if log is None:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  **kwargs)
        else:
            with open(log, "a") as out:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True,
                                      timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise BoxError(f"{what}: {argv[0]} is not installed (scripts/test-systemd installs "
                       "debootstrap and systemd-container)") from None
    except subprocess.TimeoutExpired:
        raise BoxError(f"{what} did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout or "").strip()[-1500:] if log is None else \
            log.read_text(errors="replace").strip()[-1500:]
        raise BoxError(f"{what} failed (exit {done.returncode}): {detail}")
    return done


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def rootfs(log: Path) -> Path:
    """The cached Debian rootfs, made by debootstrap when missing or made for other packages."""
    directory, stamp = CACHE / SUITE, CACHE / f"{SUITE}.ok"
    wanted = " ".join(PACKAGES)
    with _locked(CACHE / "lock"):
        if stamp.exists() and stamp.read_text() == wanted and directory.is_dir():
            return directory
        stamp.unlink(missing_ok=True)
        for stale in (directory, CACHE / f"{SUITE}.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
              str(CACHE / f"{SUITE}.tmp"), MIRROR], f"debootstrap {SUITE}", DEBOOTSTRAP_TIMEOUT,
             log)
        os.rename(CACHE / f"{SUITE}.tmp", directory)
        stamp.write_text(wanted)
        print(f"systemd tier: made the {SUITE} rootfs in {time.monotonic() - started:.0f}s "
              f"({directory})", file=sys.stderr)
    return directory


def build_wheel(out: Path) -> Path:
    """The product's wheel, built from a copy of this checkout (an in-tree build would leave
    build/ behind)."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "weavenomad", source / "weavenomad",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = out / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
          str(source)], "building the product's wheel", PIP_TIMEOUT)
    shutil.copy2(ROOT / "constraints.txt", wheels / "constraints.txt")
    found = sorted(wheels.glob("weavenomad-*.whl"))
    if not found:
        raise BoxError(f"pip wheel made no weavenomad wheel in {wheels}")
    return found[-1]


def prepare_venv(root: Path, wheel: Path, log: Path) -> None:
    """The venv with the product's pinned dependencies, made in the cached rootfs once per
    lock file and dependency list. pip runs on the host, as the ordinary client with this
    machine's index and certificate settings, and makes a wheel of every dependency; the
    container installs them offline (it runs in a lab node's namespace, with no way out)."""
    stamp = root / VENV.lstrip("/") / (".deps-" + _digest(
        (ROOT / "constraints.txt").read_bytes(), (ROOT / "pyproject.toml").read_bytes()))
    with _locked(CACHE / "lock"):
        if stamp.exists():
            return
        deps = wheel.parent.parent / "deps"
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "-c",
              str(ROOT / "constraints.txt"), "-w", str(deps), str(wheel)],
             "making wheels of the product's dependencies", PIP_TIMEOUT, log)
        shutil.rmtree(root / VENV.lstrip("/"), ignore_errors=True)
        script = (f"python3 -m venv {VENV} && {VENV}/bin/pip install --quiet "
                  f"--disable-pip-version-check --no-index --find-links {DEPS} "
                  f"-c {WHEELS}/constraints.txt {WHEELS}/{wheel.name}")
        _run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--pipe",
              "--private-network", "-D", str(root), f"--bind-ro={wheel.parent}:{WHEELS}",
              f"--bind-ro={deps}:{DEPS}", "/bin/sh", "-c", script],
             "making the venv in the rootfs", PIP_TIMEOUT, log)
        stamp.touch()


@dataclass
class Box:
    """A booted container: ``run`` a command inside, ``shutdown`` at the end."""

    name: str
    process: subprocess.Popen
    leader: int
    console: Path

    def run(self, *argv: str, timeout: float = 60, check: bool = False,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        """``argv`` inside the container as root, with a clean environment."""
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "env", "-i",
                               f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root", *argv],
                              capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed (exit {done.returncode}): "
                                 f"{done.stderr.strip() or done.stdout.strip()}")
        return done

    def sh(self, script: str, timeout: float = 60, check: bool = True) -> str:
        return self.run("/bin/sh", "-c", script, timeout=timeout, check=check).stdout

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show`` of ``unit``."""
        out = self.run("systemctl", "show", "-p", ",".join(properties), unit, check=True).stdout
        return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)

    def console_tail(self, lines: int = 15) -> str:
        text = self.console.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def shutdown(self, timeout: float = 30) -> None:
        """Power the container off (nspawn turns SIGTERM into a clean shutdown), else kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _leader(nspawn: subprocess.Popen) -> int | None:
    """The container's PID 1 (systemd): the child of nspawn that runs systemd."""
    for task in Path(f"/proc/{nspawn.pid}/task").glob("*/children"):
        for pid in task.read_text().split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
    return None


def boot(root: Path, name: str, netns: str, binds: dict[str, str], console: Path) -> Box:
    """Boot ``root`` on a throwaway overlay in network namespace ``netns``; returns once
    systemd says the system is up (running, or degraded with failed units named)."""
    argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--volatile=overlay",
            f"--machine={name}", "--directory", str(root),
            f"--network-namespace-path=/var/run/netns/{netns}",
            *[f"--bind={source}:{target}" for source, target in binds.items()]]
    out = open(console, "w")  # noqa: SIM115 - nspawn's console, for the failure message
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    except FileNotFoundError:
        out.close()
        raise BoxError("systemd-nspawn is not installed (scripts/test-systemd installs "
                       "systemd-container)") from None
    out.close()
    deadline = time.monotonic() + BOOT_TIMEOUT
    leader = None
    while leader is None and time.monotonic() < deadline and process.poll() is None:
        leader = _leader(process)
        time.sleep(0.1)
    box = Box(name, process, leader or 0, console)
    if leader is None:
        box.shutdown()
        raise BoxError(f"systemd-nspawn did not boot systemd (exit {process.poll()}): "
                       f"{box.console_tail()}")
    state = ""
    while time.monotonic() < deadline:
        state = box.run("systemctl", "is-system-running", timeout=30).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.3)
    if state not in ("running", "degraded"):
        box.shutdown()
        raise BoxError(f"systemd in the container did not finish booting within "
                       f"{BOOT_TIMEOUT}s (state {state or 'unknown'}): {box.console_tail()}")
    return box


def install_product(box: Box, wheel: Path) -> None:
    """pip install the wheel into the container's venv, offline; weavenomad on PATH."""
    box.sh(f"{VENV}/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps "
           f"--force-reinstall {WHEELS}/{wheel.name} && "
           f"ln -sf {VENV}/bin/weavenomad /usr/local/bin/weavenomad", timeout=PIP_TIMEOUT)

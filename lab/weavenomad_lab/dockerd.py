"""A private dockerd per lab node, inside the node's network namespace.

Everything of a node's dockerd lives under ``S/nodes/nX/docker`` (data-root, exec-root, its
containerd, pid files, log, config file and trust key) plus its socket ``S/nodes/nX/docker.sock``.
Which Docker Engine the node runs (:mod:`weavenomad_lab.engines`: Debian 12's 20.10 or trixie's
26) is kept in ``S/nodes/nX/docker-engine``; :func:`switch_engine` replaces it on a running node
the way a package upgrade does: dockerd and its containers stop, the new dockerd starts on the
same data-root, and containers with a restart policy come back.
Containers go to a cgroup parent of their own (``weavenomad-NAME-nX``): that finds every
container process of the node, even after a crash, and leaves no cgroup behind on ``down``.
``--config-file`` points at our own (empty) daemon.json so the host's /etc/docker/daemon.json
can neither break nor change a lab node.

The host-cleanup helpers below (processes by command line, cgroups, mounts) are also used by
:mod:`weavenomad_lab.core` for its final sweep on ``lab down``.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from weavenomad_lab import engines
from weavenomad_lab.core import PartStatus
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import DOCKER_BRIDGE_CIDR, LabLayout, NodeLayout
from weavenomad_lab.netns import nsenter_argv
from weavenomad_lab.process import Daemon

START_TIMEOUT = 30.0
#: containerd 1.6 puts each shim's socket here, named by a hash of (address, namespace, id)
SHIM_SOCKET_DIR = Path("/run/containerd/s")
CONTAINERD_NAMESPACE = "moby"
MNT_DETACH = 2
#: pid files of dockerd and its containerd, relative to the node's docker dir
STALE_PID_FILES = ("dockerd.pid", "exec/containerd/containerd.pid")

_libc = ctypes.CDLL(None, use_errno=True)


def cgroup_parent(lab: LabLayout, node: NodeLayout) -> str:
    return f"weavenomad-{lab.name}-{node.name}"


def engine_file(node: NodeLayout) -> Path:
    return node.dir / "docker-engine"


def engine_name(node: NodeLayout) -> str:
    """The Docker Engine the node runs (or will run when started)."""
    try:
        return engine_file(node).read_text().strip() or engines.DEFAULT_ENGINE
    except OSError:
        return engines.DEFAULT_ENGINE


def choose_engine(node: NodeLayout, name: str) -> engines.Engine:
    """Record ``name`` as the node's engine (fetching it first if needed); the engine."""
    chosen = engines.engine(name)
    node.dir.mkdir(parents=True, exist_ok=True)
    engine_file(node).write_text(name + "\n")
    return chosen


def dockerd_argv(lab: LabLayout, node: NodeLayout,
                 engine: engines.Engine | None = None) -> list[str]:
    d = node.docker_dir
    return nsenter_argv(node.netns, [
        engine.binary("dockerd") if engine is not None else "dockerd",
        "--config-file", str(d / "daemon.json"),
        "--data-root", str(d / "data"),
        "--exec-root", str(d / "exec"),
        "--pidfile", str(d / "dockerd.pid"),
        "-H", node.docker_host,
        "--storage-driver", "vfs",
        "--iptables=false",
        "--bip", DOCKER_BRIDGE_CIDR,
        "--exec-opt", "native.cgroupdriver=cgroupfs",
        "--cgroup-parent", f"/{cgroup_parent(lab, node)}",
        "--log-level", "warn",
    ])


def daemon_config(node: NodeLayout) -> dict:
    # dockerd 20.10 writes its trust key to /etc/docker/key.json unless told otherwise
    return {"deprecated-key-path": str(node.docker_dir / "key.json")}


def daemon(lab: LabLayout, node: NodeLayout, engine: engines.Engine | None = None) -> Daemon:
    """The node's dockerd; ``engine`` None: enough to find, stop or ask it, not to start it."""
    # dockerd writes and checks its own --pidfile; Daemon keeps a separate one, so the two
    # never race on one file
    return Daemon(
        name=f"dockerd of {node.name}",
        argv=tuple(dockerd_argv(lab, node, engine)),
        pid_file=node.docker_dir / "daemon.pid",
        log_file=node.docker_dir / "dockerd.log",
        marker=str(node.docker_sock),
        env=tuple(engine.environment(os.environ).items()) if engine is not None else (),
    )


def ping(sock: Path, timeout: float = 2.0) -> bool:
    """Whether the Docker API on ``sock`` answers ``GET /_ping`` with 200 OK."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
    except OSError:
        return False
    status_line = answer.split(b"\r\n", 1)[0]
    return status_line.split(b" ")[1:2] == [b"200"] and answer.endswith(b"OK")


# --------------------------------------------------------------------------------------------
# host cleanup helpers: processes, cgroups, mounts


def _own_lineage() -> set[int]:
    """This process and its ancestors: never killed, even when their argv names the lab."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        pid = _ppid(pid) or 0
    return pids


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def mentions(argv: Sequence[str], path: str | Path) -> bool:
    """Whether a command line refers to ``path`` or anything below it (``/s/a`` does not
    refer to ``/s/ab``)."""
    path = str(path).rstrip("/")
    return any(arg == path or path + "/" in arg or arg.endswith("=" + path) for arg in argv)


def _argv(proc_dir: str) -> list[str]:
    try:
        raw = Path(proc_dir, "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pids_mentioning(path: str | Path) -> list[int]:
    """Live processes whose command line refers to ``path``, with all their descendants
    (a container's processes do not name the lab, their shim does). Never this process or
    its ancestors."""
    spared = _own_lineage()
    found: set[int] = set()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if mentions(_argv(entry.path), path):
            found.add(pid)
        parent = _ppid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found - spared)


def kill_and_wait(
    pids: Iterable[int], timeout: float = 10.0, sig: int = signal.SIGKILL
) -> list[int]:
    """Signal every pid and wait until each has exited; returns the pids still alive.

    pidfds make both race-free: a pid recycled meanwhile is never signalled, and the wait is
    a poll on exit events rather than a sleep loop. An exited process counts as gone even
    while it waits as a zombie for a parent (or an init) that reaps slowly."""
    handles: list[tuple[int, int]] = []
    for pid in set(pids) - _own_lineage():
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(handle, sig)
        except ProcessLookupError:
            os.close(handle)
            continue
        handles.append((pid, handle))
    poller = select.poll()
    pending = {}
    for pid, handle in handles:
        poller.register(handle, select.POLLIN)
        pending[handle] = pid
    deadline = time.monotonic() + timeout
    try:
        while pending:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            for handle, _ in poller.poll(left_ms):
                poller.unregister(handle)
                pending.pop(handle, None)
        return sorted(pending.values())
    finally:
        for _, handle in handles:
            os.close(handle)


def _mountinfo() -> list[tuple[int, str, str]]:
    """(mount id, mount point, filesystem type) of every mount this process sees."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        point = parts[4].encode().decode("unicode_escape")  # \040 and friends
        mounts.append((int(parts[0]), point, rest.split()[0] if rest else ""))
    return mounts


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest and newest first (the order to unmount)."""
    root = str(path).rstrip("/")
    hits = [(point.count("/"), mid, point) for mid, point, _ in _mountinfo()
            if point == root or point.startswith(root + "/")]
    return [point for _, _, point in sorted(hits, reverse=True)]


def unmount_under(path: Path) -> None:
    """Unmount everything at or below ``path``; a busy mount is detached (lazy unmount)."""
    for _ in range(8):  # mounts can be stacked on one point: a few passes
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            if _libc.umount2(point.encode(), 0) != 0:
                err = ctypes.get_errno()
                if err == errno.EBUSY:
                    _libc.umount2(point.encode(), MNT_DETACH)
    left = mounts_under(path)
    if left:
        raise LabError(f"cannot unmount {left[0]}", hint=f"unmount it by hand: umount -l {left[0]}")


def cgroup_dirs(name: str) -> list[Path]:
    """The directories of cgroup ``/name`` in every mounted cgroup hierarchy (v1 and v2)."""
    found = []
    for _, point, fstype in _mountinfo():
        if fstype in ("cgroup", "cgroup2"):
            candidate = Path(point) / name
            if candidate.is_dir():
                found.append(candidate)
    return found


def cgroup_pids(dirs: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for top in dirs:
        for here, _, _ in os.walk(top):
            try:
                pids.update(int(p) for p in Path(here, "cgroup.procs").read_text().split())
            except OSError:
                continue
    return pids


def remove_cgroups(dirs: Iterable[Path]) -> None:
    for top in dirs:
        for here, _, _ in sorted(os.walk(top), key=lambda w: w[0].count("/"), reverse=True):
            try:
                os.rmdir(here)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise LabError(f"cannot remove cgroup {here}: {exc.strerror}") from None


def shim_sockets(node: NodeLayout) -> list[Path]:
    """The shim sockets the node's containers would have in /run/containerd/s (containerd
    1.6 names them sha256(<containerd address>/<namespace>/<container id>))."""
    address = node.docker_dir / "exec" / "containerd" / "containerd.sock"
    containers = node.docker_dir / "data" / "containers"
    ids = [e.name for e in os.scandir(containers)] if containers.is_dir() else []
    names = (f"{address}/{CONTAINERD_NAMESPACE}/{i}".encode() for i in ids)
    return [SHIM_SOCKET_DIR / hashlib.sha256(name).hexdigest() for name in names]


# --------------------------------------------------------------------------------------------
# one node


def start_node(lab: LabLayout, node: NodeLayout) -> None:
    dockerd = daemon(lab, node, engines.engine(engine_name(node)))
    if not dockerd.running():
        # leftovers of a dockerd that died (its containerd, shims) would hold the old sockets
        kill_and_wait(pids_mentioning(node.docker_dir))
        # A killed dockerd or containerd stays a zombie until something reaps it, and a zombie
        # "exists" for kill(pid, 0): dockerd would refuse to start, or wait for a containerd
        # that is dead. Their pid files go with them.
        for stale in STALE_PID_FILES:
            (node.docker_dir / stale).unlink(missing_ok=True)
        node.docker_dir.mkdir(parents=True, exist_ok=True)
        (node.docker_dir / "daemon.json").write_text(json.dumps(daemon_config(node)) + "\n")
    dockerd.start(ready=lambda: ping(node.docker_sock, 1.0), timeout=START_TIMEOUT)


def kill_task_containers(node: NodeLayout) -> None:
    """SIGKILL the node's Nomad task containers: what stopping dockerd does to them, without
    the 10 s each a busybox httpd (which ignores SIGTERM) would get from dockerd's shutdown."""
    import docker

    from weavenomad_lab.nomad.dockertask import ALLOC_LABEL

    client = docker.DockerClient(base_url=node.docker_host, timeout=30)
    try:
        for container in client.api.containers(filters={"label": ALLOC_LABEL}):
            try:
                client.api.kill(container["Id"])
            except docker.errors.APIError:
                continue  # it exited meanwhile
    finally:
        client.close()


def switch_engine(lab: LabLayout, node: NodeLayout, name: str) -> engines.Engine:
    """Replace the node's Docker Engine by ``name``, as ``apt upgrade`` (or a downgrade) of
    the Docker packages does: dockerd stops with its containers, the new one starts on the same
    data-root and brings back the containers whose restart policy says so (Weave's router)."""
    chosen = engines.engine(name)  # fetched before anything stops
    running = daemon(lab, node).running()
    if running:
        kill_task_containers(node)
        stop_dockerd(daemon(lab, node))
    choose_engine(node, name)
    if running:
        start_node(lab, node)
    return chosen


def stop_node(lab: LabLayout, node: NodeLayout) -> None:
    groups = cgroup_dirs(cgroup_parent(lab, node))
    # containers first: dockerd would otherwise give each one 10 s to stop
    kill_and_wait(cgroup_pids(groups))
    stop_dockerd(daemon(lab, node))
    stragglers = kill_and_wait(pids_mentioning(node.docker_dir) + sorted(cgroup_pids(groups)))
    if stragglers:
        raise LabError(f"processes {stragglers} of {node.name}'s dockerd survived SIGKILL")
    remove_cgroups(groups)
    for stale in shim_sockets(node):
        stale.unlink(missing_ok=True)
    unmount_under(node.docker_dir)
    if node.docker_dir.exists():
        shutil.rmtree(node.docker_dir)
    node.docker_sock.unlink(missing_ok=True)


def stop_dockerd(dockerd: Daemon, timeout: float = 15.0) -> None:
    """SIGTERM (dockerd then stops its containerd), SIGKILL when that takes too long."""
    pid = dockerd.pid()
    if pid is not None and kill_and_wait([pid], timeout, signal.SIGTERM):
        kill_and_wait([pid])
    dockerd.stop()  # forgets the pid file; the process is gone


def node_status(lab: LabLayout, node: NodeLayout) -> PartStatus:
    pid = daemon(lab, node).pid()
    if pid is None:
        healthy, detail = False, "not running"
    elif ping(node.docker_sock):
        healthy, detail = True, f"running, pid {pid}"
    else:
        healthy, detail = False, f"pid {pid} runs but {node.docker_sock} does not answer"
    return PartStatus("dockerd", node.name, healthy, node.docker_host,
                      f"Docker {engine_name(node)}, {detail}")


def for_each_node(lab: LabLayout, work) -> list:
    """Run ``work(lab, node)`` for every node at once; re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=max(1, len(lab.nodes))) as pool:
        futures = [pool.submit(work, lab, node) for node in lab.nodes]
        return [future.result() for future in futures]


class Dockerd:
    name = "dockerd"

    def up(self, lab: LabLayout) -> None:
        from weavenomad_lab import apt

        for_each_node(lab, start_node)
        for node in lab.nodes:  # the node's package manager, for its Docker packages
            apt.install_shims(lab, node)

    def down(self, lab: LabLayout) -> None:
        from weavenomad_lab import apt

        for_each_node(lab, stop_node)
        for node in lab.nodes:
            apt.remove_shims(node)
            apt.state_file(node).unlink(missing_ok=True)
            engine_file(node).unlink(missing_ok=True)
            try:  # only when nothing else lives there
                node.bin_dir.rmdir()
            except OSError:
                pass

    def status(self, lab: LabLayout) -> list[PartStatus]:
        return for_each_node(lab, node_status)


COMPONENT = Dockerd()

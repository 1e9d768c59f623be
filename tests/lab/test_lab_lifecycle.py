"""The lab's lifecycle on real dockerds and namespaces: up, up again, refusals, down without trace.

Uses the session's ``lab`` (2 nodes) where a running lab is enough; the tests that must watch
a lab appear and vanish bring up their own small one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from conftest import lab_name, lab_state_dir
from weavenomad_lab import core, dockerd, netns
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LAB_IMAGE, LabLayout

from weavenomad.errors import ConflictError, PrivilegeError

pytestmark = pytest.mark.lab


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weavenomad", "lab", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _traces(layout: LabLayout) -> dict[str, list]:
    """Everything of a lab that could outlive it, found without the lab's own helpers."""
    root = str(layout.state_dir)
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.decode(errors="replace").startswith(root + "/") or a == root.encode()
                   for a in argv):
                processes.append(int(entry.name))
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(root)]
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/weavenomad-{layout.name}-*")]
    cgroups += [str(p) for p in Path("/sys/fs/cgroup").glob(f"weavenomad-{layout.name}-*")]
    return {
        "namespaces": [name for name in os.listdir(netns.NETNS_DIR)
                       if name.startswith(layout.name + "-")],
        "processes": processes,
        "mounts": mounts,
        "files": [root] if os.path.exists(root) else [],
        "cgroups": cgroups,
    }


NO_TRACE = {"namespaces": [], "processes": [], "mounts": [], "files": [], "cgroups": []}


# -- a running lab ---------------------------------------------------------------------------


def test_every_node_runs_lab_image_containers_on_its_own_dockerd(lab, run_bb):
    roots = set()
    for node in lab.nodes:
        output = run_bb(node, "sh", "-c", "ip -4 -o addr show eth0; busybox | head -1")
        assert "inet 172.17." in output and "BusyBox" in output
        client = docker.DockerClient(base_url=node.docker_host, timeout=10)
        try:
            info = client.info()
            assert client.images.get(LAB_IMAGE).attrs["Config"].get("Env") in (None, [])
        finally:
            client.close()
        assert info["DockerRootDir"] == str(node.docker_dir / "data")
        assert info["Driver"] == "vfs"
        roots.add(info["ID"])
    assert len(roots) == len(lab.nodes), "each node has a dockerd of its own"


def test_nodes_reach_each_other_on_the_underlay(lab):
    for node in lab.nodes:
        for other in lab.nodes:
            if other is node:
                continue
            done = netns.run_in_netns(node.netns, ["busybox", "ping", "-c", "1", "-W", "2",
                                                   other.host_ip], check=False, timeout=10)
            assert done.returncode == 0, f"{node.name} -> {other.host_ip}: {done.stdout}"


def test_the_root_namespace_gets_no_lab_interface(lab):
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    names = {link["ifname"] for link in links}
    assert not names & {"ufab", "wfab", *(f"u-{n.name}" for n in lab.nodes)}


def test_status_reports_every_part_healthy(lab):
    _, parts = core.status(lab.state_dir)
    assert parts and all(p.healthy for p in parts), [p for p in parts if not p.healthy]
    assert {(p.part, p.node) for p in parts} >= {
        ("dockerd", n.name) for n in lab.nodes} | {("network", n.name) for n in lab.nodes}


def test_up_again_is_harmless_and_quick(lab):
    pids = [dockerd.daemon(lab, node).pid() for node in lab.nodes]
    before = (lab.state_dir / "lab.json").read_text()
    started = time.monotonic()
    again = core.up(lab.state_dir, lab.name, len(lab.nodes))
    assert time.monotonic() - started < 5
    assert again == lab
    assert (lab.state_dir / "lab.json").read_text() == before
    assert [dockerd.daemon(lab, node).pid() for node in lab.nodes] == pids


def test_up_restarts_a_dockerd_that_died(lab, run_bb):
    node = lab.nodes[-1]
    victim = dockerd.daemon(lab, node).pid()
    assert dockerd.kill_and_wait([victim]) == []
    _, parts = core.status(lab.state_dir)
    assert not next(p for p in parts if p.part == "dockerd" and p.node == node.name).healthy
    core.up(lab.state_dir)
    assert dockerd.daemon(lab, node).pid() not in (None, victim)
    assert "restarted" in run_bb(node, "echo", "restarted")


def test_state_dir_of_another_lab_is_refused(lab):
    with pytest.raises(ConflictError) as info:
        core.up(lab.state_dir, "zz", 1)
    text = info.value.one_line()
    assert f"belongs to lab '{lab.name}'" in text
    assert f"lab down --state-dir {lab.state_dir}" in text
    with pytest.raises(ConflictError, match="needs a new lab"):
        core.up(lab.state_dir, None, len(lab.nodes) + 1)


def test_namespaces_of_another_lab_are_refused_without_leftovers(lab):
    other_dir = lab_state_dir("-o")
    with pytest.raises(ConflictError) as info:
        core.up(other_dir, lab.name, 1)
    text = info.value.one_line()
    assert f"{lab.name}-n1" in text and f"lab down --state-dir {lab.state_dir}" in text
    assert not other_dir.exists()


def test_non_root_is_refused_before_anything_is_created():
    target = lab_state_dir("-r")
    with pytest.raises(PrivilegeError, match="needs root"):
        core.up(target, lab_name("r"), 1, euid=1000)
    assert not target.exists()
    assert not netns.exists(f"{lab_name('r')}-n1")


def test_cli_env_and_exec_give_the_node_view(lab):
    env = _cli("env", "--state-dir", str(lab.state_dir), "--node", "n2")
    assert env.returncode == 0, env.stderr
    assert f"export DOCKER_HOST={lab.nodes[1].docker_host}" in env.stdout.splitlines()
    done = _cli("exec", "--state-dir", str(lab.state_dir), "n2", "--",
                "sh", "-c", 'echo "$DOCKER_HOST $NOMAD_ADDR"; ip -4 -o addr show eth0; exit 3')
    assert done.returncode == 3, done.stderr
    assert f"{lab.nodes[1].docker_host} http://127.0.0.1:4646" in done.stdout
    assert f"inet {lab.nodes[1].host_ip}/24" in done.stdout


def test_cli_status_json_lists_the_parts(lab):
    done = _cli("status", "--state-dir", str(lab.state_dir), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {"part", "node", "healthy", "address", "detail"} <= set(rows[0])
    assert all(row["healthy"] for row in rows)


# -- a lab of its own ------------------------------------------------------------------------


class Failing:
    name = "failing"

    def up(self, lab):
        raise RuntimeError("boom")

    def down(self, lab):
        pass

    def status(self, lab):
        return []


def test_failed_up_removes_everything_it_created():
    state_dir, name = lab_state_dir("-f"), lab_name("f")
    parts = [*core.COMPONENTS[:2], Failing()]
    with pytest.raises(LabError, match="lab up failed in failing: boom"):
        core.up(state_dir, name, 1, components=parts)
    layout = LabLayout.plan(name, state_dir, 1)
    assert _traces(layout) == NO_TRACE


def test_down_leaves_no_trace():
    state_dir, name = lab_state_dir("-d"), lab_name("d")
    started = time.monotonic()
    layout = core.up(state_dir, name, 1)
    assert time.monotonic() - started < 20, "lab up --nodes 1 must take under 20 s"
    client = docker.DockerClient(base_url=layout.nodes[0].docker_host, timeout=30)
    try:
        # a container that ignores SIGTERM, and one still running
        client.containers.run(LAB_IMAGE, ["sleep", "600"], detach=True)
        client.containers.run(LAB_IMAGE, ["sh", "-c", "trap '' TERM; sleep 600"], detach=True)
    finally:
        client.close()
    assert _traces(layout)["processes"], "the check must see a running lab"
    shim_sockets = dockerd.shim_sockets(layout.nodes[0])
    assert len(shim_sockets) == 2 and all(s.exists() for s in shim_sockets)
    started = time.monotonic()
    assert core.down(state_dir) is True
    assert time.monotonic() - started < 15
    assert _traces(layout) == NO_TRACE
    assert not any(s.exists() for s in shim_sockets)
    assert core.down(state_dir) is False, "down twice is harmless"

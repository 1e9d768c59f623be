"""The lab's pure parts: layout, ports, ownership, environment, network plan, image bytes."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from weavenomad_lab import core, network
from weavenomad_lab.dockerd import cgroup_parent, dockerd_argv, mentions
from weavenomad_lab.errors import LabError
from weavenomad_lab.image import is_static_elf, rootfs_tar
from weavenomad_lab.layout import SERVICES, LabLayout
from weavenomad_lab.network import Link, Observed, plan_network

from weavenomad.errors import ConfigError, ConflictError, PrivilegeError


def _layout(nodes=2, name="ta", state_dir="/tmp/ta-s") -> LabLayout:
    return LabLayout.plan(name, Path(state_dir), nodes)


def _with_ports(layout: LabLayout) -> LabLayout:
    return layout.with_ports(core.plan_ports(layout, iter(range(20000, 20100))))


# -- layout ----------------------------------------------------------------------------------


def test_plan_names_addresses_and_paths():
    lab = _layout(3)
    assert [n.netns for n in lab.nodes] == ["ta-n1", "ta-n2", "ta-n3"]
    assert [n.host_ip for n in lab.nodes] == ["192.168.56.3", "192.168.56.4", "192.168.56.5"]
    assert lab.fabric_netns == "ta-fab"
    assert lab.namespaces() == ["ta-n1", "ta-n2", "ta-n3", "ta-fab"]
    assert lab.nodes[1].docker_host == "unix:///tmp/ta-s/nodes/n2/docker.sock"
    assert lab.node("2") is lab.nodes[1] and lab.node("n2") is lab.nodes[1]
    with pytest.raises(LabError, match="no node 'n9'"):
        lab.node("n9")


@pytest.mark.parametrize("name", ["", "A1", "1ab", "toolongname", "a-b"])
def test_bad_lab_names_are_refused(name):
    with pytest.raises(ConfigError, match="invalid lab name"):
        _layout(name=name)


@pytest.mark.parametrize("count", [0, 17])
def test_node_count_is_bounded(count):
    with pytest.raises(ConfigError, match="--nodes"):
        _layout(count)


def test_state_dir_too_long_for_unix_sockets():
    with pytest.raises(ConfigError, match="too long"):
        _layout(state_dir="/tmp/" + "x" * 80)


@pytest.fixture
def short_dir():
    """A directory short enough for the lab's unix socket paths (pytest's tmp_path is not)."""
    path = Path(tempfile.mkdtemp(prefix="wnu-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ports_persist_through_save_and_load(short_dir):
    lab = _with_ports(LabLayout.plan("ta", short_dir, 2))
    lab.save()
    again = LabLayout.load(short_dir)
    assert again == lab
    assert json.loads((short_dir / "lab.json").read_text())["nodes"][0]["ports"]["nomad"] == 20001


# -- ports -----------------------------------------------------------------------------------


def test_every_node_gets_a_distinct_port_per_service():
    lab = _with_ports(_layout(3))
    ports = [n.ports[s] for n in lab.nodes for s in SERVICES]
    assert len(ports) == len(set(ports)) == 3 * len(SERVICES)


def test_assigned_ports_are_kept():
    lab = _with_ports(_layout(2))
    again = core.plan_ports(lab, iter(range(30000, 30010)))
    assert again == {n.name: n.ports for n in lab.nodes}


def test_free_ports_are_distinct_and_bindable():
    free = core._free_ports()
    try:
        ports = [next(free) for _ in range(6)]
    finally:
        free.close()
    assert len(set(ports)) == 6 and all(1024 < p < 65536 for p in ports)


# -- up's decisions --------------------------------------------------------------------------


def test_new_lab_uses_defaults():
    lab = core.decide_layout(Path("/tmp/ta-s"), None, None, None)
    assert lab.name == "wn" and len(lab.nodes) == 1


def test_existing_lab_is_adopted_when_nothing_else_is_asked():
    existing = _with_ports(_layout(2))
    assert core.decide_layout(existing.state_dir, None, None, existing) is existing
    assert core.decide_layout(existing.state_dir, "ta", 2, existing) is existing


def test_state_dir_of_another_lab_is_a_conflict_naming_the_fix():
    existing = _layout(2)
    with pytest.raises(ConflictError) as info:
        core.decide_layout(existing.state_dir, "other", None, existing)
    text = info.value.one_line()
    assert "belongs to lab 'ta'" in text and "lab down --state-dir /tmp/ta-s" in text


def test_changing_the_node_count_needs_a_new_lab():
    existing = _layout(2)
    with pytest.raises(ConflictError, match="has 2 node"):
        core.decide_layout(existing.state_dir, None, 3, existing)


def test_namespaces_tagged_by_another_state_dir_are_a_conflict():
    lab = _layout(1)
    conflict = core.ownership_conflict(lab, True, ["ta-n1", "ta-fab"], "/tmp/elsewhere")
    assert conflict is not None
    text = conflict.one_line()
    assert "ta-n1, ta-fab" in text and "lab down --state-dir /tmp/elsewhere" in text


def test_untagged_namespaces_without_a_lab_file_are_a_conflict():
    lab = _layout(1)
    assert core.ownership_conflict(lab, False, ["ta-n1"], None) is not None
    # with our own lab file they are ours (a crash between 'netns add' and the tag)
    assert core.ownership_conflict(lab, True, ["ta-n1"], None) is None
    assert core.ownership_conflict(lab, False, ["ta-fab"], "/tmp/ta-s") is None
    assert core.ownership_conflict(lab, False, [], None) is None


def test_root_and_commands_are_checked_before_anything_happens(tmp_path):
    target = tmp_path / "lab"
    with pytest.raises(PrivilegeError, match="needs root"):
        core.up(target, "ta", 1, euid=1000)
    with pytest.raises(LabError, match="apt-get install busybox-static docker.io"):
        core.up(target, "ta", 1, euid=0,
                which=lambda c: None if c in ("busybox", "dockerd") else f"/usr/bin/{c}")
    with pytest.raises(PrivilegeError):
        core.down(target, euid=1000)
    assert not target.exists()


def test_a_non_empty_directory_without_a_lab_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConflictError, match="not empty and holds no lab"):
        core.up(tmp_path, "ta", 1, euid=0, which=lambda c: "/bin/true")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- environment -----------------------------------------------------------------------------


def test_env_lines_point_at_the_node_from_the_host():
    lab = _with_ports(_layout(2))
    n2 = lab.nodes[1]
    lines = core.env_lines(lab, "n2")
    assert "export DOCKER_HOST=unix:///tmp/ta-s/nodes/n2/docker.sock" in lines
    assert f"export NOMAD_ADDR=http://127.0.0.1:{n2.ports['nomad']}" in lines
    assert f"export CONSUL_HTTP_ADDR=127.0.0.1:{n2.ports['consul']}" in lines
    assert f"export WEAVE_HTTP_ADDR=127.0.0.1:{n2.ports['weave_api']}" in lines
    assert "export WEAVENOMAD_LAB_STATE_DIR=/tmp/ta-s" in lines
    assert lines[-1] == 'export PATH=/tmp/ta-s/nodes/n2/bin:"$PATH"'


def test_exec_runs_in_the_node_namespace_with_in_node_addresses():
    lab = _with_ports(_layout(2))
    argv = core.exec_argv(lab, "n1", ["docker", "ps"])
    assert argv == ["nsenter", "--net=/var/run/netns/ta-n1", "--", "docker", "ps"]
    env = core.exec_env(lab, "n1", {"PATH": "/usr/bin", "HOME": "/root"})
    assert env["NOMAD_ADDR"] == "http://127.0.0.1:4646"
    assert env["CONSUL_HTTP_ADDR"] == "127.0.0.1:8500"
    assert env["WEAVE_HTTP_ADDR"] == "127.0.0.1:6784"
    assert env["DOCKER_HOST"] == "unix:///tmp/ta-s/nodes/n1/docker.sock"
    assert env["PATH"] == "/tmp/ta-s/nodes/n1/bin:/usr/bin" and env["HOME"] == "/root"


def test_command_lines_that_mention_a_state_dir():
    assert mentions(["dockerd", "--data-root", "/s/x/nodes/n1/docker/data"], "/s/x")
    assert mentions(["sim", "--state-dir", "/s/x"], "/s/x")
    assert mentions(["sim", "--state-dir=/s/x"], "/s/x")
    assert not mentions(["sim", "--state-dir", "/s/xy"], "/s/x")
    assert not mentions(["sim", "/s/xy/nodes"], "/s/x")


def test_dockerd_is_private_to_its_node():
    lab = _layout(2)
    argv = dockerd_argv(lab, lab.nodes[1])
    assert argv[:3] == ["nsenter", "--net=/var/run/netns/ta-n2", "--"]
    flags = {flag: argv[i + 1] for i, flag in enumerate(argv) if flag.startswith("-")
             and "=" not in flag and i + 1 < len(argv)}
    root = "/tmp/ta-s/nodes/n2/docker"
    assert flags["--data-root"] == f"{root}/data" and flags["--exec-root"] == f"{root}/exec"
    assert flags["--config-file"] == f"{root}/daemon.json"
    assert flags["-H"] == "unix:///tmp/ta-s/nodes/n2/docker.sock"
    assert flags["--cgroup-parent"] == f"/{cgroup_parent(lab, lab.nodes[1])}" == "/weavenomad-ta-n2"
    assert "--iptables=false" in argv


# -- network plan ----------------------------------------------------------------------------


def _complete(lab: LabLayout) -> Observed:
    fab = {"lo": Link(True), "ufab": Link(True, alias=str(lab.state_dir)), "wfab": Link(True)}
    links = {lab.fabric_netns: fab}
    for node in lab.nodes:
        fab[f"u-{node.name}"] = Link(True, master="ufab")
        eth0 = Link(True, addresses=(f"{node.host_ip}/24",))
        links[node.netns] = {"lo": Link(True), "eth0": eth0}
    return Observed(frozenset(lab.namespaces()), links)


def test_network_plan_from_nothing_builds_everything_in_order():
    lab = _layout(2)
    steps = plan_network(lab, Observed(frozenset()))
    commands = [(ns, " ".join(args)) for ns, args in steps]
    assert commands[:3] == [(None, "netns add ta-n1"), (None, "netns add ta-n2"),
                            (None, "netns add ta-fab")]
    assert ("ta-fab", "link add ufab type bridge") in commands
    assert ("ta-fab", "link set ufab alias /tmp/ta-s") in commands
    veth = ("ta-fab", "link add u-n2 type veth peer name eth0 netns ta-n2")
    address = ("ta-n2", "addr add 192.168.56.4/24 dev eth0")
    assert commands.index(veth) < commands.index(address)
    assert all(ns is not None for ns, _ in commands[3:]), "nothing else in the root namespace"


def test_network_plan_of_a_complete_lab_is_empty():
    lab = _layout(2)
    assert plan_network(lab, _complete(lab)) == []
    assert all(ok for ok, _ in network.node_health(lab, _complete(lab)).values())


def test_network_plan_repairs_a_half_veth_pair():
    lab = _layout(1)
    seen = _complete(lab)
    del seen.links["ta-fab"]["u-n1"]
    commands = [" ".join(args) for _, args in plan_network(lab, seen)]
    assert commands[:2] == ["link del eth0", "link add u-n1 type veth peer name eth0 netns ta-n1"]
    assert "addr add 192.168.56.3/24 dev eth0" in commands
    health = network.node_health(lab, seen)
    assert health["n1"][0] is False and health[""][0] is True


def test_steps_of_one_namespace_run_as_one_batch():
    steps = [(None, ("netns", "add", "a")), ("a", ("link", "set", "lo", "up")),
             ("a", ("link", "add", "x", "type", "bridge")), (None, ("netns", "add", "b"))]
    assert network.group_steps(steps) == [
        (None, ["netns add a"]), ("a", ["link set lo up", "link add x type bridge"]),
        (None, ["netns add b"]),
    ]


# -- image -----------------------------------------------------------------------------------


def test_static_and_dynamic_binaries_are_told_apart():
    assert is_static_elf(Path("/usr/bin/busybox").read_bytes()[:65536])
    assert not is_static_elf(Path(sys.executable).resolve().read_bytes()[:65536])
    assert not is_static_elf(b"#!/bin/sh\n")


def test_rootfs_has_busybox_and_an_applet_link_each_and_is_reproducible():
    data = rootfs_tar(b"\x7fELF-fake", ["sh", "ping", "httpd"])
    assert data == rootfs_tar(b"\x7fELF-fake", ["sh", "ping", "httpd"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].mode == 0o755 and members["bin/busybox"].size == 9
    assert members["bin/httpd"].issym() and members["bin/httpd"].linkname == "busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777


# -- the CLI over a saved lab (no root needed for env) ---------------------------------------


def _main(argv, environ):
    from weavenomad.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv, environ)
    return exit_info.value.code


def test_cli_env_reads_the_state_dir_from_the_environment(short_dir, capsys):
    lab = _with_ports(LabLayout.plan("ta", short_dir, 2))
    lab.save()
    assert _main(["lab", "env", "--node", "n2"], {"WEAVENOMAD_LAB_STATE_DIR": str(short_dir)}) == 0
    assert capsys.readouterr().out.splitlines() == core.env_lines(lab, "n2")


def test_cli_errors_are_one_line_with_the_fix(short_dir, capsys):
    assert _main(["lab", "env", "--state-dir", str(short_dir / "none")], {}) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"weavenomad: error: no lab in {short_dir / 'none'} "
                   "(run 'weavenomad lab up' or pass --state-dir)"]


def test_status_table_lines_up():
    from weavenomad_lab.cli import format_table

    rows = [core.PartStatus("network", None, True, None, "fab ok").to_json(),
            core.PartStatus("dockerd", "n1", False, "unix:///s", "not running").to_json()]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["PART", "NODE", "STATE", "ADDRESS", "DETAIL"]
    assert lines[2].split() == ["dockerd", "n1", "FAIL", "unix:///s", "not", "running"]
    assert len({line.index(line.split()[2]) for line in lines}) == 1, "columns line up"


def test_the_demo_needs_its_job_file_and_says_so_before_starting(tmp_path):
    from weavenomad_lab import demo

    assert demo.require_job_file().name == "httpbackend.nomad"  # this checkout has it
    missing = tmp_path / "jobs" / "httpbackend.nomad"
    with pytest.raises(LabError) as caught:
        demo.require_job_file(missing)
    line = caught.value.one_line()
    assert str(missing) in line and "pip install -e ./lab" in line and "\n" not in line

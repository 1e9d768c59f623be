"""Issue 20 on one 3-node lab of its own: Weave's IPAM as unkind as the real one
(``multi-node/``: a lone first node cannot allocate, shares per peer, a lost peer stays
``unreachable!`` until ``rmpeer``, ``reset`` hands a share back), two nodes cloned with the
same machine id, and ``bootstrap`` on the nodes one after the other (each run to completion
before the next) ending with every node exposed within seconds of the last one and ``doctor``
without a FAIL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_interface, ip_network
from pathlib import Path

import pytest
import requests
from conftest import running_lab
from weavenomad_lab.layout import LabLayout, NodeLayout

pytestmark = pytest.mark.lab

STATE_DIR = Path(f"/tmp/wnmulti-{os.getpid()}")
LAB_NAME = f"m{os.getpid() % 100000}"
RANGE, DEFAULT = "10.32.0.0/16", "10.32.0.0/24"
ROW = re.compile(r"^(\S+)\((\S+)\)\s+(\d+) IPs \((\S+)% of total\) ?(.*)$")


@pytest.fixture(scope="module")
def lab3():
    with running_lab(STATE_DIR, LAB_NAME, 3, "the 3-node lab") as layout:
        yield layout


def on_node(node: NodeLayout, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "weavenomad", "lab", "exec", "--state-dir",
               str(STATE_DIR), node.name, "--", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def weave(node: NodeLayout, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(node.bin_dir / "weave"), *args], capture_output=True,
                          text=True, timeout=timeout)


def launch(lab: LabLayout, node: NodeLayout) -> None:
    peers = [other.host_ip for other in lab.nodes if other != node]
    done = weave(node, "launch", "--no-dns", "--no-default-ipalloc", "--ipalloc-range", RANGE,
                 "--ipalloc-default-subnet", DEFAULT, *peers)
    assert done.returncode == 0, done.stderr


def shares(node: NodeLayout) -> dict[str, tuple[int, str]]:
    """``weave status ipam`` as nickname -> (IPs, the row's remark)."""
    done = weave(node, "status", "ipam")
    assert done.returncode == 0, done.stderr
    rows = [ROW.match(line) for line in done.stdout.splitlines()]
    assert all(rows), done.stdout
    return {row.group(2): (int(row.group(3)), row.group(5)) for row in rows}


def reset_all(lab: LabLayout) -> None:
    for node in lab.nodes:
        weave(node, "reset", "--force")


def bootstrap(lab: LabLayout, node: NodeLayout) -> subprocess.CompletedProcess:
    peers = [arg for other in lab.nodes if other != node for arg in ("--peer", other.host_ip)]
    return on_node(node, sys.executable, "-m", "weavenomad", "bootstrap", *peers,
                   "--ipalloc-range", RANGE, "--default-subnet", DEFAULT)


def doctor(node: NodeLayout) -> dict[str, dict]:
    done = on_node(node, sys.executable, "-m", "weavenomad", "doctor", "--json")
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def exposed(node: NodeLayout) -> bool:
    """Whether Weave's IPAM gave the host an address in the default subnet (one local read)."""
    try:
        owned = requests.get(node.url("weave_api") + "/ip", timeout=5).json().get("owned")
    except (requests.RequestException, ValueError):
        return False
    return any(ip_interface(a).ip in ip_network(DEFAULT) for entry in owned or []
               if entry["containerid"] == "weave:expose" for a in entry["addrs"])


def wait_until(condition, deadline: float) -> None:
    """Look every 0.2 s until ``condition()`` or the deadline (monotonic); the caller asserts."""
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_nodes_with_the_same_machine_id_are_named_as_clones(lab3):
    n1, n2 = lab3.nodes[:2]
    original = n2.machine_id_file.read_text()
    n2.machine_id_file.write_text(n1.machine_id_file.read_text())
    try:
        launch(lab3, n1)
        done = on_node(n2, sys.executable, "-m", "weavenomad", "bootstrap", "--peer",
                       n1.host_ip, "--ipalloc-range", RANGE, "--default-subnet", DEFAULT)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"the node at {n1.host_ip} has this node's Weave peer name" in done.stderr
        assert "/etc/machine-id" in done.stderr and "rolled back" in done.stderr
        assert weave(n2, "status").returncode != 0  # nothing half-done: Weave is gone again
        launch(lab3, n2)
        check = doctor(n1)["weave-peer-name"]
        assert check["status"] == "fail" and n2.host_ip in check["detail"], check
        assert "machine-id" in check["fix"]
    finally:
        n2.machine_id_file.write_text(original)
        reset_all(lab3)


def test_weave_ipam_waits_for_a_majority_and_keeps_a_lost_peers_share(lab3):
    n1, n2, n3 = lab3.nodes
    try:
        launch(lab3, n1)
        # alone, the first node of three cannot allocate: 'weave expose' blocks (multi-node/1)
        with pytest.raises(subprocess.TimeoutExpired):
            weave(n1, "expose", timeout=2)
        status = weave(n1, "status").stdout
        assert "Status: awaiting consensus (quorum: 2, known: 1)" in status, status
        assert weave(n1, "status", "ipam").stdout == ""
        refused = weave(n1, "status", "connections").stdout
        assert f"-> {n2.host_ip}:6783" in refused and "connection refused, retry: " in refused

        launch(lab3, n2)  # two of three: consensus, the range split between them
        exposed = weave(n1, "expose", timeout=30)
        assert exposed.returncode == 0 and exposed.stdout.startswith("10.32.0."), exposed
        split = shares(n1)
        assert set(split) == {"n1", "n2"} and sum(ips for ips, _ in split.values()) == 65536
        assert split["n1"][1] == "(1 active)" and split["n2"] == (32768, "")

        launch(lab3, n3)  # a later peer is granted space on demand (multi-node/3: 64 IPs)
        assert weave(n3, "expose", timeout=30).returncode == 0
        assert shares(n1)["n3"] == (64, "")

        # n3 lost: its share stays, unreachable, until rmpeer on one live peer (multi-node/2)
        assert on_node(n3, "docker", "stop", "weave").returncode == 0
        assert shares(n1)["n3"] == (64, "- unreachable!")
        taken = weave(n1, "rmpeer", "n3")
        assert (taken.returncode, taken.stdout) == (0, "64 IPs taken over from n3\n")
        assert "n3" not in shares(n1) and "n3" not in shares(n2)
        forced = weave(n3, "reset", "--force")
        assert (forced.returncode, forced.stderr) == (0, "Weave is not running (ignore on "
                                                          "Kubernetes).\n")

        # a reset while connected hands the share back to a live peer
        assert weave(n2, "reset").returncode == 0
        assert shares(n1) == {"n1": (65536, "(1 active)")}
    finally:
        reset_all(lab3)


def test_nodes_bootstrapped_one_after_the_other_all_end_exposed(lab3):
    """Last in this module: it leaves the nodes bootstrapped (the lab goes down after it)."""
    n1, n2, n3 = lab3.nodes
    reconcilers = []
    try:
        first = bootstrap(lab3, n1)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "not yet: this node waits for peers" in first.stdout, first.stdout
        checks = doctor(n1)
        assert checks["weave-ipam"]["status"] == "fail"
        assert "waits for peers" in checks["weave-ipam"]["detail"]
        assert n2.host_ip in checks["weave-ipam"]["detail"]
        assert "waits for peers" in checks["weave-exposed"]["detail"]
        status = on_node(n1, sys.executable, "-m", "weavenomad", "status")
        assert "this node waits for peers" in status.stderr and n2.host_ip in status.stderr, \
            status.stderr
        for node in lab3.nodes:  # the reconciler, as its unit would run it
            reconcilers.append(subprocess.Popen(
                [sys.executable, "-m", "weavenomad", "lab", "exec", "--state-dir",
                 str(STATE_DIR), node.name, "--", sys.executable, "-m", "weavenomad",
                 "reconciler", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # two of three: Weave's IPAM reaches consensus at n2's first allocation (its expose
        # step); n1's reconciler sees that and exposes n1 within seconds, during n2's bootstrap
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(bootstrap, lab3, n2)
            wait_until(lambda: exposed(n2), time.monotonic() + 120)
            consensus = time.monotonic()
            wait_until(lambda: exposed(n1), consensus + 60)
            first_exposed = time.monotonic() - consensus
            assert second.result().returncode == 0, second.result().stdout + \
                second.result().stderr
        third = bootstrap(lab3, n3)
        assert third.returncode == 0, third.stdout + third.stderr
        last = time.monotonic()
        wait_until(lambda: all(exposed(node) for node in lab3.nodes), last + 60)
        all_exposed = time.monotonic() - last
        with ThreadPoolExecutor(len(lab3.nodes)) as pool:
            found = dict(zip([n.name for n in lab3.nodes], pool.map(doctor, lab3.nodes),
                             strict=True))
        failing = {name: [c for c in checks.values() if c["status"] == "fail"]
                   for name, checks in found.items()}
        assert not any(failing.values()), failing
        print(f"\nthree nodes bootstrapped one after the other: the first exposed "
              f"{first_exposed:.1f}s after Weave's IPAM reached consensus, every "
              f"node {all_exposed:.1f}s after the last bootstrap, doctor 0 FAIL on all "
              f"{time.monotonic() - last:.1f}s after it")
    finally:
        for proc in reconcilers:
            proc.terminate()
        for proc in reconcilers:
            proc.wait(timeout=15)

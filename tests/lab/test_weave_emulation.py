"""The emulated Weave Net end to end on a 2-node lab: launch, the proxy's attach with
WEAVE_CIDR, isolation between subnets (across nodes, and with several subnets exposed on a
node), expose, the pass-through of streams and hijacked connections, release of addresses,
bad input, the ``weave`` shim's outputs, reset and a daemon restart."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from ipaddress import IPv4Interface, IPv4Network

import docker
import pytest
from weavenomad_lab.netns import nsenter_argv
from weavenomad_lab.weave import ipam
from weavenomad_lab.weave.daemon import COMPONENT

RANGE, DEFAULT, TENANT = "10.32.0.0/16", "10.32.0.0/24", "10.32.1.0/24"
IMAGE = "bb:local"


def weave(node, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(node.bin_dir / "weave"), *args], capture_output=True, text=True,
                          timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def in_node(node, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(nsenter_argv(node.netns, list(argv)), capture_output=True, text=True,
                          timeout=timeout)


def node_pings(node, address: str) -> bool:
    return in_node(node, "busybox", "ping", "-c1", "-W1", address).returncode == 0


def api(node, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(node.url("weave_api") + path, timeout=5) as answer:
        return answer.status, answer.read().decode()


@pytest.fixture(scope="module")
def launched(lab):
    """The lab with the weave emulator up and both nodes launched like a real cluster."""
    COMPONENT.up(lab)
    n1, n2 = lab.nodes[:2]
    for node, peer in ((n1, n2), (n2, n1)):
        weave(node, "launch", "--no-dns", "--no-default-ipalloc", "--ipalloc-range", RANGE,
              "--ipalloc-default-subnet", DEFAULT, peer.host_ip)
    yield lab
    for node in (n1, n2):
        weave(node, "reset", check=False)


class Containers:
    """Containers started through a node's proxy socket, removed at the end of the test."""

    def __init__(self):
        self.clients: dict[str, docker.DockerClient] = {}
        self.started: list = []

    def client(self, node) -> docker.DockerClient:
        if node.name not in self.clients:
            self.clients[node.name] = docker.DockerClient(
                base_url=f"unix://{node.weave_sock}", timeout=30
            )
        return self.clients[node.name]

    def run(self, node, weave_cidr: str | None, *command: str):
        env = {} if weave_cidr is None else {"WEAVE_CIDR": weave_cidr}
        container = self.client(node).containers.run(
            IMAGE, list(command or ("sleep", "300")), detach=True, environment=env
        )
        self.started.append(container)
        return container

    def close(self):
        for container in self.started:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
        for client in self.clients.values():
            client.close()


@pytest.fixture
def containers():
    made = Containers()
    yield made
    made.close()


def ethwe(container) -> list[IPv4Interface]:
    code, out = container.exec_run(["ip", "-4", "-o", "addr", "show", "dev", "ethwe"])
    assert code == 0, out
    return [IPv4Interface(line.split()[3]) for line in out.decode().splitlines()]


def pings(container, address: str) -> bool:
    code, _ = container.exec_run(["ping", "-c1", "-W1", str(address)])
    return code == 0


def guard_drops(node) -> int:
    out = in_node(node, "iptables", "-w", "-L", "FORWARD", "-v", "-n", "-x").stdout
    rows = [line.split() for line in out.splitlines() if "DROP" in line and "weave" in line]
    assert rows, out
    return int(rows[0][0])


def test_launch_builds_bridge_fabric_guard_and_api(launched):
    n1 = launched.nodes[0]
    assert '"master":"weave"' in in_node(n1, "ip", "-j", "link", "show", "vethwe-bridge").stdout
    fabric = subprocess.run(["ip", "-n", launched.fabric_netns, "-j", "link", "show",
                             "master", "wfab"], capture_output=True, text=True).stdout
    assert {"vwf-n1", "vwf-n2"} <= {link["ifname"] for link in json.loads(fabric)}
    assert in_node(n1, "iptables", "-w", "-C", "FORWARD", "-i", "docker0", "-o", "weave",
                   "-j", "DROP").returncode == 0
    status, text = api(n1, "/status")
    assert status == 200 and "DefaultSubnet: 10.32.0.0/24" in text and "Peers: 2" in text
    inside = in_node(n1, "busybox", "wget", "-qO-", "http://127.0.0.1:6784/ipinfo/defaultsubnet")
    assert inside.stdout == DEFAULT
    assert weave(n1, "launch", check=False).returncode == 1  # already running


def test_tenant_subnet_reaches_across_nodes_and_stays_isolated(launched, containers):
    n1, n2 = launched.nodes[:2]
    a = containers.run(n1, f"net:{TENANT}")
    b = containers.run(n2, f"net:{TENANT}")
    d = containers.run(n2, "net:default")
    d_local = containers.run(n1, "net:default")
    (a_ip,) = ethwe(a)
    (b_ip,), (d_ip,), (d_local_ip,) = ethwe(b), ethwe(d), ethwe(d_local)
    assert a_ip.network == IPv4Network(TENANT) == b_ip.network
    assert d_ip.network == IPv4Network(DEFAULT) == d_local_ip.network
    assert a.attrs["Config"]["Entrypoint"] == ["/w/w"]
    assert pings(a, b_ip.ip)  # same subnet, other node
    assert not pings(a, d_ip.ip)  # other subnet

    assert not node_pings(n1, str(a_ip.ip))  # not exposed yet
    host_ips = weave(n1, "expose", f"net:{TENANT}").stdout.split()
    assert len(host_ips) == 1 and IPv4Interface(f"{host_ips[0]}/24").network == a_ip.network
    assert node_pings(n1, str(a_ip.ip))
    assert node_pings(n1, str(b_ip.ip))  # the fabric carries it to node 2

    weave(n1, "expose", "net:default")  # now node 1 has a foot in both subnets
    assert node_pings(n1, str(d_local_ip.ip))
    drops = guard_drops(n1)
    assert not pings(a, d_local_ip.ip)  # via a's default route through node 1: the guard
    assert not pings(a, d_ip.ip)
    assert not pings(d_local, a_ip.ip)
    assert guard_drops(n1) > drops, "the guard, not a missing route, must be what blocks"


def test_several_addresses_and_weave_ps(launched, containers):
    n1 = launched.nodes[0]
    c = containers.run(n1, f"net:default net:{TENANT} ip:10.32.7.7/24")
    addresses = ethwe(c)
    assert IPv4Interface("10.32.7.7/24") in addresses
    assert {a.network for a in addresses} == {IPv4Network(DEFAULT), IPv4Network(TENANT),
                                              IPv4Network("10.32.7.0/24")}
    rows = [line.split() for line in weave(n1, "ps").stdout.splitlines()]
    assert rows[0][0] == "weave:expose"
    mine = [r for r in rows if r[0] == c.id[:12]]
    assert mine and sorted(IPv4Interface(a) for a in mine[0][2:]) == sorted(addresses)
    assert len(mine[0][1].split(":")) == 6  # the MAC
    status, default_only = api(n1, f"/ip/{c.id}")
    assert IPv4Interface(default_only).network == IPv4Network(DEFAULT)


def test_docker_cli_passthrough_attach_logs_and_events(launched):
    n1 = launched.nodes[0]
    env = {"DOCKER_HOST": f"unix://{n1.weave_sock}", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    hello = subprocess.run(["docker", "-H", f"unix://{n1.weave_sock}", "run", "--rm", IMAGE,
                            "echo", "hi"], env={"PATH": env["PATH"]},
                           capture_output=True, text=True, timeout=60)
    assert (hello.returncode, hello.stdout) == (0, "hi\n"), hello.stderr
    piped = subprocess.run(["docker", "run", "--rm", "-i", "-e", f"WEAVE_CIDR=net:{TENANT}",
                            IMAGE, "cat"], input="through stdin\n", env=env,
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout == "through stdin\n", piped.stderr

    events = subprocess.Popen(["docker", "events", "--filter", "type=container", "--format",
                               "{{.Action}} {{.Actor.ID}}"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        ticker = subprocess.run(
            ["docker", "run", "-d", "-e", f"WEAVE_CIDR=net:{TENANT}", IMAGE, "sh", "-c",
             "for i in 1 2 3; do echo line $i; sleep 0.2; done; sleep 300"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()
        logs = subprocess.Popen(["docker", "logs", "-f", ticker], env=env,
                                stdout=subprocess.PIPE, text=True)
        try:
            lines = [logs.stdout.readline() for _ in range(3)]
        finally:
            logs.kill()
            logs.wait()
        assert lines == ["line 1\n", "line 2\n", "line 3\n"]
        seen = [events.stdout.readline().split() for _ in range(2)]
        assert ["create", ticker] in seen and ["start", ticker] in seen
    finally:
        events.kill()
        events.wait()
        subprocess.run(["docker", "rm", "-f", ticker], env=env, capture_output=True)


def test_addresses_are_freed_when_the_container_is_removed(launched, containers):
    n1 = launched.nodes[0]
    c = containers.run(n1, "net:10.32.3.0/24")
    (address,) = ethwe(c)
    assert str(address) in api(n1, "/ip")[1]
    c.remove(force=True)
    deadline = time.monotonic() + 5
    while str(address) in api(n1, "/ip")[1]:  # the destroy event arrives asynchronously
        assert time.monotonic() < deadline, "address not released after removal"
        time.sleep(0.05)
    again = containers.run(n1, "net:10.32.3.0/24")
    assert ethwe(again) == [address]  # the lowest free address is the released one


def test_bad_weave_cidr_and_exhausted_subnet_are_one_clear_error(launched, containers):
    n1 = launched.nodes[0]
    env = {"DOCKER_HOST": f"unix://{n1.weave_sock}", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    bad = subprocess.run(["docker", "run", "--rm", "-e", "WEAVE_CIDR=net:10.32.1.0/33", IMAGE,
                          "echo", "never"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "never" not in bad.stdout
    errors = [line for line in bad.stderr.splitlines() if "Error response" in line]
    # Weave's proxy names the token Go-quoted: for "net:10.32.1.0/33": invalid CIDR address: ...
    assert len(errors) == 1 and '"net:10.32.1.0/33"' in errors[0], bad.stderr

    containers.run(n1, "net:10.32.9.0/30")
    containers.run(n1, "net:10.32.9.0/30")
    with pytest.raises(docker.errors.APIError) as caught:
        containers.run(n1, "net:10.32.9.0/30")
    assert "no free address in 10.32.9.0/30" in str(caught.value)
    refused = [c for c in containers.client(n1).containers.list(all=True, ignore_removed=True)
               if c.attrs["Config"]["Env"] and "WEAVE_CIDR=net:10.32.9.0/30" in
               c.attrs["Config"]["Env"] and c.status == "running"]
    assert len(refused) == 2  # the third was killed, as Weave does


def test_shim_env_status_and_hide(launched):
    n1 = launched.nodes[0]
    env_line = weave(n1, "env").stdout.strip()
    assert env_line.startswith(f"export DOCKER_HOST=unix://{n1.weave_sock}")
    assert weave(n1, "config").stdout.strip() == f"-H=unix://{n1.weave_sock}"
    status = weave(n1, "status").stdout
    assert status.startswith("\n        Version: ") and "Range: 10.32.0.0/16" in status
    report = json.loads(weave(n1, "report").stdout)
    assert report["IPAM"]["DefaultSubnet"] == DEFAULT
    exposed = weave(n1, "expose", "net:10.32.4.0/24").stdout.strip()
    assert weave(n1, "hide", "net:10.32.4.0/24").stdout.strip() == exposed
    assert exposed not in in_node(n1, "ip", "addr", "show", "weave").stdout
    wrong = weave(n1, "launch", "--no-such-flag", check=False)
    assert wrong.returncode == 1 and "--no-such-flag" in wrong.stderr


def test_daemon_restart_keeps_addresses_and_reset_cleans_up(launched, containers):
    n1, n2 = launched.nodes[:2]
    c = containers.run(n2, f"net:{TENANT}")
    before = ethwe(c)
    COMPONENT.daemon(launched).stop()
    COMPONENT.up(launched)
    assert str(before[0]) in api(n2, "/ip")[1]
    assert ethwe(c) == before

    weave(n2, "reset")
    assert in_node(n2, "ip", "link", "show", "weave").returncode != 0
    assert in_node(n2, "iptables", "-w", "-C", "FORWARD", "-i", "docker0", "-o", "weave",
                   "-j", "DROP").returncode != 0
    assert not n2.weave_sock.exists()
    assert weave(n2, "status", check=False).returncode == 1
    saved = ipam.load(launched.component_dir("weave") / "ipam.json")
    assert saved.owned("n2") == {}  # reset released the node's addresses
    weave(n2, "launch", "--no-dns", "--no-default-ipalloc", "--ipalloc-range", RANGE,
          "--ipalloc-default-subnet", DEFAULT, n1.host_ip)
    # like Weave's AttachExistingContainers: a launch re-attaches running proxy containers
    assert json.loads(api(n2, "/ip")[1])["owned"] == [
        {"containerid": c.id, "addrs": [str(before[0])]}
    ]


def test_stop_keeps_the_network_and_addresses(launched, containers):
    n1, n2 = launched.nodes[:2]
    c = containers.run(n2, f"net:{TENANT}")
    (address,) = ethwe(c)
    weave(n2, "stop")
    assert not n2.weave_sock.exists()
    assert in_node(n2, "ip", "link", "show", "weave").returncode == 0
    assert pings(containers.run(n1, f"net:{TENANT}"), address.ip)  # the data path stays up
    assert weave(n2, "stop", check=False).stderr.strip() == "weave is not running."
    weave(n2, "launch", "--no-dns", "--no-default-ipalloc", "--ipalloc-range", RANGE,
          "--ipalloc-default-subnet", DEFAULT, n1.host_ip)
    assert str(address) in api(n2, "/ip")[1]

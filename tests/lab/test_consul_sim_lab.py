"""The simulated Consul in a real lab: an agent per node, inside the node's namespace and on the
host, and health checks that run from the node they belong to."""

from __future__ import annotations

import json
import time

import pytest
import requests
from weavenomad_lab import core
from weavenomad_lab.layout import CONSUL_PORT, LabLayout, NodeLayout
from weavenomad_lab.netns import connect_tcp

pytestmark = pytest.mark.lab

SPEC = "weavenomad_lab.consul.component:COMPONENT"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def consul_lab(lab: LabLayout):
    """The session lab with the simulated Consul (started here while ``lab up`` does not)."""
    from weavenomad_lab.consul.component import COMPONENT

    added = SPEC not in core.COMPONENTS
    if added:
        COMPONENT.up(lab)
    try:
        yield lab
    finally:
        if added:
            COMPONENT.down(lab)


def agent(node: NodeLayout, method: str, path: str, body: dict | None = None):
    answer = requests.request(method, node.url("consul") + path, timeout=10,
                              data=json.dumps(body) if body is not None else None)
    assert answer.status_code == 200, answer.text
    return answer.json() if answer.text else None


def get_in_node(node: NodeLayout, path: str) -> dict:
    """GET from inside the node's namespace, at the address a real node has its agent."""
    with connect_tcp("127.0.0.1", CONSUL_PORT, node.netns, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def wait_for(what: str, probe):
    deadline = time.monotonic() + TIMEOUT
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last: {value!r})")


def test_every_node_has_its_agent_in_its_namespace_and_on_the_host(consul_lab):
    from weavenomad_lab.consul.component import COMPONENT

    for node in consul_lab.nodes:
        assert agent(node, "GET", "/v1/agent/self")["Config"]["NodeName"] == node.name
        inside = get_in_node(node, "/v1/agent/self")
        assert (inside["Config"]["NodeName"], inside["Member"]["Addr"]) == (
            node.name, node.host_ip)
    parts = COMPONENT.status(consul_lab)
    assert [p.node for p in parts] == [n.name for n in consul_lab.nodes]
    assert all(p.healthy for p in parts), parts


def test_a_tcp_check_runs_from_the_node_it_belongs_to(consul_lab, run_bb):
    n1, n2 = consul_lab.nodes[:2]
    server = run_bb(n1, "httpd", "-f", "-p", "8081", "-h", "/", detach=True)

    def address() -> str:
        server.reload()
        return server.attrs["NetworkSettings"]["IPAddress"]

    ip = wait_for("the container's address", address)
    check = {"TCP": f"{ip}:8081", "Interval": "1s", "Timeout": "1s"}
    # the same target registered on both nodes: only n1's namespace has that container
    agent(n1, "PUT", "/v1/agent/service/register", {"Name": "tdprobe", "ID": "tdprobe-n1",
                                                    "Address": ip, "Port": 8081,
                                                    "Check": check})
    agent(n2, "PUT", "/v1/agent/service/register", {"Name": "tdprobe", "ID": "tdprobe-n2",
                                                    "Address": ip, "Port": 8081,
                                                    "Check": check})
    try:
        def status(node: NodeLayout) -> dict:
            return agent(node, "GET", "/v1/agent/checks")[f"service:tdprobe-{node.name}"]

        passing = wait_for("n1's check to pass", lambda: status(n1)["Status"] == "passing")
        assert passing
        assert status(n1)["Output"] == f"TCP connect {ip}:8081: Success"
        failed = wait_for("n2's check to run", lambda: status(n2)["Output"])
        assert status(n2)["Status"] == "critical"
        assert failed.startswith(f"dial tcp {ip}:8081: ")
        healthy = agent(n2, "GET", "/v1/health/service/tdprobe?passing")
        assert [entry["Service"]["ID"] for entry in healthy] == ["tdprobe-n1"]
    finally:
        agent(n1, "PUT", "/v1/agent/service/deregister/tdprobe-n1")
        agent(n2, "PUT", "/v1/agent/service/deregister/tdprobe-n2")

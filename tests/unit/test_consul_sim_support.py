"""Shared helpers for the simulated-Consul tests (imported by the other ``test_consul_sim_*``).

``running_sim`` starts a :class:`~weavenomad_lab.consul.server.ConsulSimulator` on 127.0.0.1
with two nodes (u1 the server, u2 a client) and no network namespace; ``SimClient`` talks to one
node's agent over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import requests
from weavenomad_lab.consul.server import ConsulSimulator, SimNode

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
NODES = (SimNode("u1", "127.0.0.1", server=True), SimNode("u2", "127.0.0.2"))
TIMEOUT = 10


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def always(status: str = "passing"):
    """A probe that answers ``status`` with Consul-like output, without touching the network."""

    def probe(definition):
        target = definition.tcp or definition.http
        return status, f"TCP connect {target}: Success"

    return probe


class SimClient:
    def __init__(self, base: str, token: str | None = None):
        self.base = base
        self.session = requests.Session()
        if token:
            self.session.headers["X-Consul-Token"] = token

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, body=None, **kwargs) -> requests.Response:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return self.request("PUT", path, data=body, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, body=None, **kwargs) -> requests.Response:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        response = self.request(method, path, data=body, **kwargs)
        assert response.status_code == 200, (method, path, response.status_code, response.text)
        return response


class RunningSim:
    def __init__(self, sim: ConsulSimulator, token: str | None):
        self.sim = sim
        self.clients = {}
        for node in sim.state.nodes():
            host, port = sim.listen(node.name)
            self.clients[node.name] = SimClient(f"http://{host}:{port}", token)

    def __getitem__(self, node: str) -> SimClient:
        return self.clients[node]


@contextlib.contextmanager
def running_sim(token: str | None = None, **kwargs) -> Iterator[RunningSim]:
    kwargs.setdefault("probe", always())
    kwargs.setdefault("first_run_within", 0.05)
    sim = ConsulSimulator(NODES, **kwargs)
    sim.start()
    try:
        yield RunningSim(sim, token)
    finally:
        sim.stop()


def nomad_service(alloc: str, address: str = "172.17.0.2", port: int = 8081,
                  check_port: int | None = None) -> dict:
    """A service as Nomad 1.0 registers a Docker task (address_mode driver, TCP check)."""
    return {
        "ID": f"_nomad-task-{alloc}-httpbackend-httpbackend-{port}",
        "Name": "httpbackend", "Tags": [], "Address": address, "Port": port,
        "Meta": {"external-source": "nomad"},
        "Checks": [{"CheckID": f"_nomad-check-{alloc}", "Name": 'service: "httpbackend" check',
                    "TCP": f"{address}:{check_port or port}", "Interval": "10s",
                    "Timeout": "2s"}],
    }

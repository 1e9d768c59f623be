"""Helpers of the simulated-Nomad unit tests: recorded answers, structural comparison, and an
in-process cluster (state + HTTP API, fake nodes, no sockets, no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from weavenomad_lab.nomad import agentconfig, agentself, fingerprint, shapes
from weavenomad_lab.nomad.http import NomadAPI, Request
from weavenomad_lab.nomad.server import parse_job_text
from weavenomad_lab.nomad.state import NomadState

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def shape_differences(ours: Any, theirs: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ in keys or types (values are not compared). A null on
    either side matches anything: Go leaves optional pointers nil."""
    if ours is None or theirs is None:
        return []
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return [] if type(ours) is type(theirs) else [f"{path}: {type(ours)} vs {type(theirs)}"]
    if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)):
        return []
    if type(ours) is not type(theirs):
        return [f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"]
    if isinstance(theirs, dict):
        problems = [f"{path}: missing {k}" for k in sorted(set(theirs) - set(ours))]
        problems += [f"{path}: extra {k}" for k in sorted(set(ours) - set(theirs))]
        for key in sorted(set(ours) & set(theirs)):
            problems += shape_differences(ours[key], theirs[key], f"{path}.{key}")
        return problems
    if isinstance(theirs, list) and theirs and ours:
        # optional (omitempty) fields differ between entries: match each of ours with the
        # recorded entry it resembles most
        problems = []
        for index, item in enumerate(ours):
            candidates = [shape_differences(item, t, f"{path}[{index}]") for t in theirs]
            problems += min(candidates, key=len)
        return problems
    return []


def fake_node(name: str, ip: str, *, datacenter: str = "dc1", healthy: bool = True) -> dict:
    docker = shapes.driver_info(
        healthy, healthy, "Healthy" if healthy else fingerprint.CONNECT_FAILED,
        {"driver.docker": "true", "driver.docker.os_type": "linux",
         "driver.docker.runtimes": "runc", "driver.docker.version": "20.10.24+dfsg1"}
        if healthy else None, 1,
    )
    return fingerprint.node_document(
        node_id=fingerprint.node_id_for("t", name, "x"), name=name, ip=ip,
        datacenter=datacenter, docker=docker, meta={}, now=1_795_315_383_000_000_000,
    )


class Cluster:
    """A simulated Nomad without sockets: ``call(method, path, body)`` -> (status, headers,
    decoded body)."""

    def __init__(self, nodes: int = 2):
        self.state = NomadState()
        self.nodes = [fake_node(f"n{i}", f"192.168.56.{2 + i}") for i in range(1, nodes + 1)]
        for node in self.nodes:
            self.state.upsert_node(node)
        config = agentconfig.AgentConfig(files=("/x/agent.hcl",),
                                         plugins={"docker": {"endpoint": "unix:///d.sock"}})
        self.api = NomadAPI(
            self.state,
            lambda: agentself.agent_self(node_name="n1", node_ip="192.168.56.3",
                                         node_id=self.nodes[0]["ID"], config=config,
                                         data_dir="/d", allocations=0, server=True),
            parse_job_text,
        )

    def raw(self, method: str, target: str, body: bytes = b""):
        return self.api.handle(Request(method, target, body))

    def call(self, method: str, target: str, body: Any = None):
        payload = json.dumps(body).encode() if body is not None else b""
        response = self.raw(method, target, payload)
        text = response.body.decode()
        try:
            value = json.loads(text) if text else None
        except json.JSONDecodeError:
            value = text
        return response.status, response.headers, value

    def register_seed_job(self) -> dict:
        job = recorded("nomad-jobs-parse.json")["body"]
        status, _, answer = self.call("POST", "/v1/jobs", {"Job": job})
        assert status == 200, answer
        return answer

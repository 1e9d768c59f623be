"""The simulated Consul as a lab component: ``lab up`` starts it, ``lab status`` asks every
node's agent, ``lab down`` stops it and removes its directory."""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path

from weavenomad_lab import security
from weavenomad_lab.consul import COMPONENT_NAME
from weavenomad_lab.core import PartStatus
from weavenomad_lab.layout import LabLayout, NodeLayout
from weavenomad_lab.process import Daemon, python_module_argv

MODULE = "weavenomad_lab.consul"
_TIMEOUT = 2.0


def _get(lab: LabLayout, node: NodeLayout, path: str, token: str | None) -> tuple[int, bytes]:
    port = node.ports[COMPONENT_NAME]
    context = security.client_context(lab)
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_TIMEOUT)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=_TIMEOUT, context=context)
    try:
        conn.request("GET", path, headers={"X-Consul-Token": token} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def dns_ports_path(layout: LabLayout) -> Path:
    return layout.component_dir("consul") / "dns-ports.json"


def write_dns_ports(layout: LabLayout, ports: dict[str, int]) -> None:
    """Where each node's DNS interface answers on the host (its port 8600 in the node)."""
    path = dns_ports_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports) + "\n")


def dns_port(layout: LabLayout, node: str) -> int:
    """The host port of ``node``'s Consul DNS (UDP on 127.0.0.1), for tests and tools."""
    return int(json.loads(dns_ports_path(layout).read_text())[node])


def _leader_answers(lab: LabLayout, node: NodeLayout) -> bool:
    try:
        return _get(lab, node, "/v1/status/leader", None)[0] == 200
    except (OSError, KeyError):
        return False


class ConsulComponent:
    name = COMPONENT_NAME

    def daemon(self, lab: LabLayout) -> Daemon:
        directory = lab.component_dir(COMPONENT_NAME)
        return Daemon(
            name="simulated consul",
            argv=python_module_argv(MODULE, "--state-dir", str(lab.state_dir)),
            pid_file=directory / "consul.pid",
            log_file=directory / "consul.log",
            marker=f"{MODULE} --state-dir {lab.state_dir}",
        )

    def up(self, lab: LabLayout) -> None:
        lab.component_dir(COMPONENT_NAME).mkdir(parents=True, exist_ok=True)
        self.daemon(lab).start(ready=lambda: all(_leader_answers(lab, n) for n in lab.nodes))

    def restart(self, lab: LabLayout) -> None:
        """Stop and start the agents as a reboot does: the catalog and the KV store are kept,
        as Consul's servers and agents keep them in their data directories."""
        self.daemon(lab).stop()
        self.up(lab)

    def down(self, lab: LabLayout) -> None:
        self.daemon(lab).stop()
        shutil.rmtree(lab.component_dir(COMPONENT_NAME), ignore_errors=True)

    def status(self, lab: LabLayout) -> list[PartStatus]:
        if not self.daemon(lab).running():
            return [PartStatus(self.name, None, False, None,
                               "not running (run 'weavenomad lab up')")]
        token = security.token(lab, COMPONENT_NAME)
        return [self._node_status(lab, node, token) for node in lab.nodes]

    def _node_status(self, lab: LabLayout, node: NodeLayout, token: str | None) -> PartStatus:
        address = node.url(COMPONENT_NAME) if COMPONENT_NAME in node.ports else None
        try:
            status, body = _get(lab, node, "/v1/agent/checks", token)
        except (OSError, KeyError) as exc:
            return PartStatus(self.name, node.name, False, address, f"no answer: {exc}")
        if status != 200:
            return PartStatus(self.name, node.name, False, address,
                              f"agent/checks answered {status}: {body[:80]!r}")
        checks = json.loads(body)
        critical = sum(1 for c in checks.values() if c.get("Status") == "critical")
        return PartStatus(self.name, node.name, True, address,
                          f"agent {node.name}: {len(checks)} checks, {critical} critical")


COMPONENT = ConsulComponent()

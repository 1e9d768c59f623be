"""The lab component "nomad": writes each node's default agent config, runs the simulated
Nomad process, reports on it, and takes it down with every task container it started."""

from __future__ import annotations

import shutil

from weavenomad.errors import LabError
from weavenomad.lab.layout import LabLayout, NodeLayout
from weavenomad.lab.nomad import agentconfig
from weavenomad.lab.nomad.agent import remove_labelled_containers
from weavenomad.lab.process import Daemon, python_module_argv

MODULE = "weavenomad.lab.nomad"
READY_TIMEOUT = 30.0
HTTP_TIMEOUT = 2.0


def daemon(lab: LabLayout, *extra: str) -> Daemon:
    home = lab.component_dir("nomad")
    return Daemon(
        name="simulated Nomad",
        argv=python_module_argv(MODULE, "--state-dir", str(lab.state_dir), *extra),
        pid_file=home / "nomad.pid",
        log_file=home / "nomad.log",
        marker=f"{MODULE} --state-dir {lab.state_dir}",
    )


def write_default_config(node: NodeLayout) -> bool:
    """Write ``agent.hcl`` unless the node already has an agent config; True when written."""
    directory = node.nomad_config_dir
    directory.mkdir(parents=True, exist_ok=True)
    if any(p.suffix in (".hcl", ".json") for p in directory.iterdir()):
        return False
    (directory / agentconfig.DEFAULT_FILE).write_text(agentconfig.default_text(node))
    return True


def _agent_answers(node: NodeLayout) -> bool:
    import requests

    try:
        return requests.get(node.url("nomad") + "/v1/agent/self", timeout=HTTP_TIMEOUT).ok
    except requests.RequestException:
        return False


class NomadComponent:
    name = "nomad"

    def up(self, lab: LabLayout) -> None:
        for node in lab.nodes:
            if "nomad" not in node.ports:
                raise LabError(f"node {node.name} has no Nomad port in {lab.lab_file}")
            write_default_config(node)
        lab.component_dir("nomad").mkdir(parents=True, exist_ok=True)
        daemon(lab).start(lambda: all(_agent_answers(n) for n in lab.nodes),
                          timeout=READY_TIMEOUT)

    def down(self, lab: LabLayout) -> None:
        daemon(lab).stop(timeout=60.0)
        for node in lab.nodes:
            if node.docker_sock.exists():
                remove_labelled_containers(node)
            shutil.rmtree(node.nomad_config_dir, ignore_errors=True)
        shutil.rmtree(lab.component_dir("nomad"), ignore_errors=True)

    def status(self, lab: LabLayout) -> list:
        import requests

        from weavenomad.lab.core import PartStatus

        running = daemon(lab).running()
        parts = []
        for node in lab.nodes:
            address = node.url("nomad") if "nomad" in node.ports else None
            if not running or address is None:
                parts.append(PartStatus("nomad", node.name, False, address, "not running"))
                continue
            try:
                nodes = requests.get(address + "/v1/nodes", timeout=HTTP_TIMEOUT).json()
            except (requests.RequestException, ValueError) as exc:
                parts.append(PartStatus("nomad", node.name, False, address, f"no answer: {exc}"))
                continue
            mine = next((n for n in nodes if n["Address"] == node.host_ip), None)
            docker = ((mine or {}).get("Drivers") or {}).get("docker") or {}
            detail = "docker driver " + ("healthy" if docker.get("Healthy")
                                         else f"unhealthy: {docker.get('HealthDescription')}")
            parts.append(PartStatus("nomad", node.name, mine is not None, address, detail))
        return parts


COMPONENT = NomadComponent()


def restart_agent(lab: LabLayout, node: str) -> None:
    """What the lead wires to ``weavenomad lab nomad-restart NODE``."""
    from weavenomad.lab.nomad.control import restart_agent as restart

    restart(lab, node)

"""The lab component "nomad": writes each node's default agent config, runs the simulated
Nomad process, reports on it, and takes it down with every task container it started.

With the lab's security the agent config carries what a secured node's has (``acl``, ``tls``
and the Consul token and TLS files in the ``consul`` block) and is written with mode 0600,
since it holds a token; readiness and status checks present the token and the client
certificate like any other client."""

from __future__ import annotations

import os
import shutil

from weavenomad_lab import security
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout, NodeLayout
from weavenomad_lab.nomad import agentconfig
from weavenomad_lab.nomad.agent import remove_labelled_containers
from weavenomad_lab.process import Daemon, python_module_argv

MODULE = "weavenomad_lab.nomad"
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


def agent_security(lab: LabLayout) -> dict:
    """The secured parts of a node's agent config, for :func:`agentconfig.default_text`."""
    files, wanted = lab.security_files, lab.security
    settings: dict = {"acl": wanted.acl, "consul": {}}
    if wanted.acl:
        settings["consul"]["token"] = security.token(lab, "consul") or ""
    if wanted.tls:
        tls_files = {"ca_file": str(files.ca_cert), "cert_file": str(files.server_cert),
                     "key_file": str(files.server_key)}
        settings["tls"] = {**tls_files, "verify_https_client": wanted.verify_client}
        settings["consul"].update(ssl=True, ca_file=str(files.ca_cert),
                                  cert_file=str(files.client_cert),
                                  key_file=str(files.client_key))
    return settings


def write_default_config(node: NodeLayout, lab: LabLayout | None = None) -> bool:
    """Write ``agent.hcl`` unless the node already has an agent config; True when written."""
    directory = node.nomad_config_dir
    directory.mkdir(parents=True, exist_ok=True)
    if any(p.suffix in (".hcl", ".json") for p in directory.iterdir()):
        return False
    secured = lab is not None and lab.security.enabled
    text = agentconfig.default_text(node, agent_security(lab) if secured else None)
    path = directory / agentconfig.DEFAULT_FILE
    # a file with a token is created private, never readable by others even for a moment
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secured else 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def request_options(lab: LabLayout) -> dict:
    """Token and TLS for a requests call of lab code to the lab's Nomad."""
    return {"headers": security.auth_headers(lab, "nomad"), **security.requests_options(lab)}


def _agent_answers(lab: LabLayout, node: NodeLayout) -> bool:
    import requests

    try:
        return requests.get(node.url("nomad") + "/v1/agent/self", timeout=HTTP_TIMEOUT,
                            **request_options(lab)).ok
    except requests.RequestException:
        return False


class NomadComponent:
    name = "nomad"

    def up(self, lab: LabLayout) -> None:
        for node in lab.nodes:
            if "nomad" not in node.ports:
                raise LabError(f"node {node.name} has no Nomad port in {lab.lab_file}")
            write_default_config(node, lab)
        lab.component_dir("nomad").mkdir(parents=True, exist_ok=True)
        daemon(lab).start(lambda: all(_agent_answers(lab, n) for n in lab.nodes),
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

        from weavenomad_lab.core import PartStatus

        running = daemon(lab).running()
        parts = []
        for node in lab.nodes:
            address = node.url("nomad") if "nomad" in node.ports else None
            if not running or address is None:
                parts.append(PartStatus("nomad", node.name, False, address, "not running"))
                continue
            try:
                nodes = requests.get(address + "/v1/nodes", timeout=HTTP_TIMEOUT,
                                     **request_options(lab)).json()
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
    from weavenomad_lab.nomad.control import restart_agent as restart

    restart(lab, node)

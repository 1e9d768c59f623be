"""One lab node's Nomad agent: its config (re-read on restart), its Docker driver fingerprint,
its Consul service syncer, and the runners of the allocations placed on it."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from weavenomad.errors import ConfigError
from weavenomad_lab.layout import LabLayout, NodeLayout
from weavenomad_lab.nomad import agentconfig, agentself, fingerprint, scheduler
from weavenomad_lab.nomad.client import AllocRunner, ClientContext
from weavenomad_lab.nomad.consul_client import ConsulAgentAPI, ServiceSyncer, tls_context
from weavenomad_lab.nomad.dockergate import DockerGate
from weavenomad_lab.nomad.gostyle import now_ns
from weavenomad_lab.nomad.state import NomadState

log = logging.getLogger(__name__)

FINGERPRINT_INTERVAL = 10.0
#: Nomad's Docker driver gives each Docker call 5 minutes (dockerTimeout)
DOCKER_TIMEOUT = 300
#: removals at shutdown: one slow answer means dockerd is stuck, not busy
SHUTDOWN_TIMEOUT = 30


class NodeAgent:
    def __init__(self, lab: LabLayout, node: NodeLayout, state: NomadState, *,
                 sync_interval: float, probation: float, netns: str | None = "node",
                 stop: threading.Event | None = None):  # fmt: skip
        self.lab = lab
        self.node = node
        self.state = state
        self.netns = node.netns if netns == "node" else netns
        self.stop = stop or threading.Event()
        self.home = lab.component_dir("nomad") / "nodes" / node.name
        self.home.mkdir(parents=True, exist_ok=True)
        self.node_id = self._load_node_id()
        self.config = agentconfig.AgentConfig()
        self.config_error: str | None = None
        self.docker_seen = False
        self._docker: tuple[str, Any] | None = None
        self._lock = threading.RLock()
        self._refingerprint = threading.Event()
        self.runners: dict[str, AllocRunner] = {}
        self.syncer = ServiceSyncer(ConsulAgentAPI(self.config.consul_address, self.netns),
                                    sync_interval, probation)  # fmt: skip
        self._load_config()
        self.ctx = ClientContext(
            state=state, syncer=lambda: self.syncer, docker=self.docker,
            node=self.node_document_now, alloc_root=self.home / "data" / "alloc", stop=self.stop,
        )  # fmt: skip

    def _load_node_id(self) -> str:
        path = self.home / "node-id"
        if path.exists():
            return path.read_text().strip()
        node_id = fingerprint.node_id_for(self.lab.name, self.node.name, str(now_ns()))
        path.write_text(node_id + "\n")
        return node_id

    # -- config and Docker --------------------------------------------------------------------

    def _load_config(self) -> None:
        try:
            config = agentconfig.load_dir(self.node.nomad_config_dir)
            consul_api = _consul_api(config, self.netns)
        except ConfigError as exc:
            self.config_error = exc.one_line()
            log.error("node %s: %s", self.node.name, self.config_error)
            return
        self.config_error = None
        with self._lock:
            self.config = config
            self._docker = None
        self.syncer.api = consul_api

    def set_semantics(self, semantics) -> None:
        """Register services as ``semantics`` (a :class:`~.versions.NomadSemantics`) says."""
        self.semantics = semantics
        self.syncer.semantics = semantics

    def docker_socket(self) -> Path | None:
        return agentconfig.lab_socket(self.config.docker_endpoint, self.node, self.lab.state_dir)

    def docker(self) -> Any:
        """A Docker client for the configured endpoint (cached until the config changes)."""
        import docker

        with self._lock:
            socket = self.docker_socket()
            if socket is None:
                raise ConfigError(f"{fingerprint.OUTSIDE_LAB} ({self.config.docker_endpoint})")
            url = f"unix://{socket}"
            if self._docker is None or self._docker[0] != url:
                self._docker = (url, docker.DockerClient(base_url=url, timeout=DOCKER_TIMEOUT))
            return self._docker[1]

    def _docker_or_none(self) -> Any | None:
        try:
            return self.docker()
        except Exception:  # a dockerd that does not answer the version negotiation
            return None

    def _forget_docker_client(self, client: Any) -> None:
        """Negotiate again on the next call. docker-py pins the API version it negotiated
        first (1.45 with Docker 26), which an older dockerd refuses after a downgrade, while
        Nomad's go-dockerclient sends unversioned paths that any dockerd answers."""
        with self._lock:
            if self._docker is not None and self._docker[1] is client:
                self._docker = None
                with contextlib.suppress(Exception):
                    client.close()

    def restart(self) -> str | None:
        """``systemctl restart nomad`` on this node: re-read the config, fingerprint again and
        restart the Consul syncer's probation; running allocations are kept (reattached).
        Returns the config error that would stop a real agent, or None."""
        self._load_config()
        self.syncer.set_timing(probation=self.syncer.probation)
        self.fingerprint_now()
        return self.config_error

    # -- the node document --------------------------------------------------------------------

    def node_document_now(self) -> dict:
        return self.state.nodes.get(self.node_id) or self._node_document()

    def _node_document(self) -> dict:
        socket = self.docker_socket()
        client = None
        refusal = fingerprint.CONNECT_FAILED
        if socket is None:
            refusal = fingerprint.OUTSIDE_LAB
        else:
            client = self._docker_or_none()
        driver = fingerprint.docker_driver(client, self.docker_seen, now_ns(), refusal)
        if client is not None and not driver["Healthy"]:
            # the cached client may only hold an API version this dockerd refuses: ask again
            # with a fresh one, as Nomad's unversioned client would get its answer at once
            self._forget_docker_client(client)
            fresh = self._docker_or_none()
            if fresh is not None:
                driver = fingerprint.docker_driver(fresh, self.docker_seen, now_ns(), refusal)
        self.docker_seen = self.docker_seen or driver["Healthy"]
        status = "down" if self.config_error else "ready"
        return fingerprint.node_document(
            node_id=self.node_id, name=self.config.name or self.node.name, ip=self.node.host_ip,
            datacenter=self.config.datacenter, docker=driver, meta=self.config.meta,
            now=now_ns(), status=status, status_description=self.config_error or "",
        )  # fmt: skip

    def fingerprint_now(self) -> None:
        document = self._node_document()
        current = self.state.nodes.get(self.node_id)
        if current is None or _fingerprint_changed(current, document):
            self.state.upsert_node(document)

    # -- agent self ---------------------------------------------------------------------------

    def agent_self(self) -> dict:
        return agentself.agent_self(
            node_name=self.config.name or self.node.name, node_ip=self.node.host_ip,
            node_id=self.node_id, config=self.config, data_dir=str(self.home / "data"),
            allocations=sum(1 for r in self.runners.values() if not r.finished.is_set()),
            server=self.node.index == 1, version=self.syncer.semantics.version,
        )  # fmt: skip

    # -- threads ------------------------------------------------------------------------------

    def start(self) -> list[threading.Thread]:
        self.fingerprint_now()
        threads = [
            threading.Thread(target=self._fingerprint_loop, name=f"fp-{self.node.name}",
                             daemon=True),
            threading.Thread(target=self._alloc_loop, name=f"allocs-{self.node.name}",
                             daemon=True),
            threading.Thread(target=self.syncer.run, args=(self.stop,),
                             name=f"consul-{self.node.name}", daemon=True),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        return threads

    def wake(self) -> None:
        self._refingerprint.set()
        self.syncer.wake()

    def _fingerprint_loop(self) -> None:
        while not self.stop.is_set():
            self._refingerprint.wait(FINGERPRINT_INTERVAL)
            self._refingerprint.clear()
            if not self.stop.is_set():
                self.fingerprint_now()

    def _alloc_loop(self) -> None:
        index = 0

        def mine() -> tuple[int, list[dict]]:
            allocs = self.state.allocs_of(lambda a: a["NodeID"] == self.node_id)
            return self.state.table_index["allocs"], allocs

        while not self.stop.is_set():
            index, allocs = self.state.read(mine, index, wait=1.0)
            for alloc in allocs:
                runner = self.runners.get(alloc["ID"])
                if runner is not None:
                    runner.update(alloc)
                elif scheduler.is_live(alloc):
                    runner = AllocRunner(self.ctx, alloc)
                    self.runners[alloc["ID"]] = runner
                    runner.start()

    def crash(self) -> None:
        """Die as a rebooting node's agent does: threads stop, nothing is synced or removed."""
        self.syncer.killed = True
        self.shutdown(remove_containers=False)

    def shutdown(self, remove_containers: bool) -> None:
        """Stop the agent's threads; with ``remove_containers`` also every task container."""
        self.stop.set()
        self.wake()
        if not remove_containers:
            return
        for runner in self.runners.values():
            runner.alloc = dict(runner.alloc, DesiredStatus="stop")
        remove_labelled_containers(self.node, self.ctx.gate)


def _consul_api(config: agentconfig.AgentConfig, netns: str | None) -> ConsulAgentAPI:
    """The agent's Consul client from its ``consul`` block; unreadable TLS files are a config
    error, as they stop a real agent."""
    try:
        tls = tls_context(config.consul_ssl, config.consul_verify_ssl, config.consul_ca_file,
                          config.consul_cert_file, config.consul_key_file)
    except OSError as exc:
        raise ConfigError(f"consul TLS files: {exc}",
                          hint="fix ca_file/cert_file/key_file in the consul block") from None
    return ConsulAgentAPI(config.consul_address, netns, token=config.consul_token, tls=tls)


def _fingerprint_changed(current: dict, new: dict) -> bool:
    def essence(node: dict) -> tuple:
        docker = node["Drivers"]["docker"]
        return (docker["Detected"], docker["Healthy"], docker["HealthDescription"],
                node["Status"], node["StatusDescription"], node["Name"], node["Datacenter"],
                node["Meta"], docker.get("Attributes"))  # fmt: skip

    return essence(current) != essence(new)


def remove_labelled_containers(node: NodeLayout, gate: DockerGate | None = None) -> int:
    """Remove every container of the node's own dockerd that a Nomad task created (never
    through a proxy, so it works whatever the agent config says), one at a time and, given
    the agent's ``gate``, never beside its task runners' own removals."""
    import docker

    from weavenomad_lab.nomad.dockertask import ALLOC_LABEL

    try:
        client = docker.DockerClient(base_url=node.docker_host, timeout=SHUTDOWN_TIMEOUT)
        containers = client.api.containers(all=True, filters={"label": ALLOC_LABEL})
    except Exception as exc:
        log.warning("node %s: cannot list task containers: %s", node.name, exc)
        return 0
    import requests

    for container in containers:
        try:
            with gate.removing() if gate is not None else contextlib.nullcontext():
                client.api.remove_container(container["Id"], force=True)
        except docker.errors.NotFound:
            pass  # its task runner removed it meanwhile: gone is what we want
        except requests.exceptions.RequestException as exc:
            # a dockerd that stopped answering would cost the timeout once per container; its
            # own shutdown takes the containers down with it
            log.warning("node %s: dockerd does not answer (%s); leaving its containers to its "
                        "shutdown", node.name, exc)
            break
        except Exception as exc:
            log.warning("node %s: cannot remove %s: %s", node.name, container["Id"], exc)
    return len(containers)

"""Observe a node: every fact ``bootstrap``, ``reset`` and ``doctor`` decide on, read once.

Nothing here changes anything, and nothing raises for a backend that is down: each probe
records its answer or, in ``errors``, why there is none, so the preflight and doctor can report
every problem at once. The decisions are made elsewhere, on this plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from typing import Any, TypeVar

from weavenomad.bootstrap import leftovers, packages, system
from weavenomad.bootstrap.checks import WEAVE_BRIDGE, Failure
from weavenomad.bootstrap.leftovers import WeaveContainer
from weavenomad.bootstrap.packages import AptFacts
from weavenomad.errors import WeavenomadError
from weavenomad.nodeconfig.edit import ConfigFile

T = TypeVar("T")
#: the Docker bridge's name when Docker does not say (Weave's DOCKER_BRIDGE default)
DEFAULT_DOCKER_BRIDGE = "docker0"
#: the weave router container on a real node; its Args show the launch flags
WEAVE_CONTAINER = "weave"


@dataclass
class NodeFacts:
    euid: int = 0
    kernel: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    #: the same failures with their parts, for checks that word them by kind
    failures: dict[str, Failure] = field(default_factory=dict)
    # Docker
    docker_version: dict | None = None
    docker_bridge: str | None = None
    docker_subnets: list[IPv4Network] = field(default_factory=list)
    #: Weave's containers in any state (a stopped or crashed router, weavedb, weavevolumes)
    weave_containers: list[WeaveContainer] = field(default_factory=list)
    #: the running router's ``Args`` (its launch flags), None when it does not run
    weave_container_args: list[str] | None = None
    #: the last line a router that does not run logged (``FATA: ...``)
    router_last_words: str | None = None
    #: Docker's ``DockerRootDir`` (a snap's lies under /var/snap)
    docker_root: str | None = None
    #: what the package manager says about the Docker packages (None: not asked)
    apt: AptFacts | None = None
    # Weave
    weave_versions: dict[str, str] | None = None
    weave_report: dict | None = None
    proxy_addrs: list[str] = field(default_factory=list)
    #: the host's exposed addresses: given to it by Weave's IPAM (``weave:expose``) and on its
    #: weave bridge (after a reboot the IPAM still owns addresses the new bridge lacks)
    exposed: list[IPv4Interface] | None = None
    #: what Weave's IPAM owns for ``weave:expose`` (None: Weave did not answer)
    ipam_exposed: list[IPv4Interface] | None = None
    #: addresses on the weave bridge that Weave's IPAM did not give the host
    foreign_bridge: list[IPv4Interface] = field(default_factory=list)
    weave_bridge: bool = False
    # kernel and init
    #: ``iptables -S`` of the filter table (every chain), and of the nat table
    iptables_rules: list[str] | None = None
    nat_rules: list[str] | None = None
    #: net.bridge.bridge-nf-call-iptables (None: br_netfilter not loaded)
    bridge_filtering: bool | None = None
    ip_forward: bool | None = None
    listeners: set[tuple[str, int]] = field(default_factory=set)
    host_addresses: list[tuple[str, IPv4Interface]] = field(default_factory=list)
    systemd: bool = False
    nomad_unit_active: bool | None = None
    # Nomad, Consul and the registry
    nomad_self: dict | None = None
    nomad_node: dict | None = None
    consul_self: dict | None = None
    cluster: Any = None  # tenancy.model.Cluster | None
    registry: Any = None  # tenancy.model.Registry | None
    # the agent config
    config_source: str | None = None
    config_files: list[ConfigFile] | None = None
    backups: dict[str, str] = field(default_factory=dict)

    @property
    def weave_running(self) -> bool:
        return self.weave_report is not None

    @property
    def weave_router(self) -> WeaveContainer | None:
        """Weave's router container, in whatever state."""
        return next((c for c in self.weave_containers if c.name == WEAVE_CONTAINER), None)

    @property
    def proxy_endpoints(self) -> list[str]:
        """Every address of Weave's Docker API proxy here: what a running Weave reports, the
        sockets its router container's ``-H`` flags name (known while it crashes too), and
        Weave's default socket."""
        from weavenomad.nodeconfig.edit import WEAVE_PROXY_ENDPOINT

        router = self.weave_router
        named = [f"unix://{path}" for path in leftovers.proxy_sockets(router.args)] \
            if router is not None else []
        return list(dict.fromkeys([*self.proxy_addrs, *named, WEAVE_PROXY_ENDPOINT]))

    @property
    def weave_launched(self) -> bool:
        """Weave was launched here (its router or its IPAM's data container exists)."""
        return self.weave_running or any(c.name in (WEAVE_CONTAINER, "weavedb")
                                         for c in self.weave_containers)

    @property
    def node_id(self) -> str | None:
        return ((self.nomad_self or {}).get("stats", {}).get("client") or {}).get("node_id")

    def tenant_subnets(self) -> list[IPv4Network]:
        if self.registry is None:
            return []
        return [t.subnet for _, t in sorted(self.registry.tenants.items())]


def probe(facts: NodeFacts, name: str, read: Callable[[], T]) -> T | None:
    """``read()``, or None with the reason in ``facts.errors[name]``."""
    try:
        return read()
    except WeavenomadError as exc:
        facts.errors[name] = exc.one_line()
        answered = getattr(exc, "status", None) is not None
        facts.failures[name] = Failure(" ".join(exc.message.split()), exc.hint, answered)
    except OSError as exc:
        facts.errors[name] = str(exc)
        facts.failures[name] = Failure(str(exc))
    return None


def observe(clients) -> NodeFacts:
    """Read the node through ``clients`` (a :class:`Clients`). The agent config is read by the
    commands themselves, which must refuse a broken one (see ``commands.observe_node``)."""
    facts = NodeFacts(euid=system.euid(), kernel=system.kernel_release())
    _docker(facts, clients.docker)
    facts.weave_versions = probe(facts, "weave-command", clients.weave_command.version)
    facts.weave_report = probe(facts, "weave-api", clients.weave.report)
    if facts.weave_report is not None:
        facts.proxy_addrs = probe(facts, "weave-proxy", clients.weave.proxy_addrs) or []
        owned = probe(facts, "weave-ip", clients.weave.owned)
        if owned is not None:  # an unreadable IPAM answer says nothing about exposure
            facts.ipam_exposed = list(owned.get("weave:expose", []))
    facts.weave_bridge = system.link_exists(WEAVE_BRIDGE)
    facts.iptables_rules, error = system.iptables_rules("filter")
    if error:
        facts.errors["iptables"] = error
    facts.nat_rules, error = system.iptables_rules("nat")
    if error:
        facts.errors["iptables-nat"] = error
    facts.bridge_filtering = system.bridge_filtering()
    facts.ip_forward = system.ip_forward()
    facts.listeners = system.listening_ports()
    facts.host_addresses = system.host_addresses()
    if facts.ipam_exposed is not None:
        bridge = [a for name, a in facts.host_addresses if name == WEAVE_BRIDGE]
        facts.exposed, facts.foreign_bridge = bridge_exposure(facts.ipam_exposed, bridge)
    facts.systemd = system.systemd_running()
    facts.nomad_unit_active = system.unit_active(system.NOMAD_UNIT)
    facts.nomad_self = probe(facts, "nomad", clients.nomad.agent_self)
    if facts.node_id:
        facts.nomad_node = probe(facts, "nomad-node", lambda: clients.nomad.node(facts.node_id))
    facts.consul_self = probe(facts, "consul", clients.consul.agent_self)
    if facts.consul_self is not None:
        facts.cluster = probe(facts, "registry", clients.registry.cluster)
        facts.registry = probe(facts, "registry", clients.registry.load)
    if facts.docker_version is not None:
        facts.apt = read_apt()
    return facts


def _docker(facts: NodeFacts, docker) -> None:
    facts.docker_version = probe(facts, "docker", docker.version)
    if facts.docker_version is None:
        return

    network = probe(facts, "docker-bridge", lambda: docker_bridge_network(docker)) or {}
    facts.docker_bridge = bridge_name(network)
    for entry in (network.get("IPAM") or {}).get("Config") or []:
        if entry.get("Subnet") and ":" not in entry["Subnet"]:
            facts.docker_subnets.append(IPv4Network(entry["Subnet"], strict=False))

    facts.weave_containers = probe(facts, "weave-container",
                                   lambda: leftovers.weave_containers(docker)) or []
    router = next((c for c in facts.weave_containers
                   if c.name == WEAVE_CONTAINER and c.state == "running"), None)
    facts.weave_container_args = list(router.args) if router is not None else None
    router = facts.weave_router
    # a running router that has restarted may be crash-looping: its last line says why
    if router is not None and (router.state != "running" or router.restarts):
        facts.router_last_words = leftovers.last_words(docker)
    info = probe(facts, "docker-info", docker.info) or {}
    facts.docker_root = info.get("DockerRootDir")


def read_apt() -> AptFacts:
    """The package manager's answers about the Docker packages (I/O)."""
    text, error = system.apt_policy(packages.ASKED)
    if text is None:
        return AptFacts(error=error)
    holds, error = system.apt_holds()
    if holds is None:
        return AptFacts(error=error)
    return AptFacts(packages.parse_policy(text), frozenset(packages.parse_showhold(holds)))


def docker_bridge_network(docker) -> dict:
    """Docker's default ``bridge`` network as ``docker network inspect`` shows it."""
    with docker.mapped():
        return docker.sdk.api.inspect_network("bridge")


def bridge_name(network: dict) -> str:
    """The Linux bridge behind Docker's default network (``docker0`` unless configured)."""
    options = network.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or DEFAULT_DOCKER_BRIDGE


def agent_endpoint(agent_self: dict | None) -> str | None:
    """The Docker endpoint the running agent uses, from ``/v1/agent/self``."""
    if not agent_self:
        return None
    from weavenomad.nodeconfig.edit import DEFAULT_DOCKER_ENDPOINT

    config = agent_self.get("config") or {}
    for plugin in config.get("Plugins") or []:
        if plugin.get("Name") == "docker":
            return (plugin.get("Config") or {}).get("endpoint") or DEFAULT_DOCKER_ENDPOINT
    options = (config.get("Client") or {}).get("Options") or {}
    return options.get("docker.endpoint") or DEFAULT_DOCKER_ENDPOINT


def docker_driver(node: dict | None) -> dict:
    return ((node or {}).get("Drivers") or {}).get("docker") or {}


@dataclass
class Clients:
    """The backends of one node, built once from the settings (tests pass fakes)."""

    nomad: Any
    consul: Any
    docker: Any
    weave: Any
    weave_command: Any
    registry: Any

    @classmethod
    def from_settings(cls, settings, weave_env: dict[str, str] | None = None) -> Clients:
        from weavenomad.clients import (
            consul_client,
            docker_client,
            nomad_client,
            weave_client,
            weave_command,
        )
        from weavenomad.tenancy.registry import TenantRegistry

        consul = consul_client(settings)
        return cls(nomad_client(settings), consul, docker_client(settings),
                   weave_client(settings), weave_command(settings, env=weave_env),
                   TenantRegistry(consul, settings.kv_prefix))


def bridge_exposure(ipam: Sequence[IPv4Interface], bridge: Sequence[IPv4Interface]
                    ) -> tuple[list[IPv4Interface], list[IPv4Interface]]:
    """(exposed: on the bridge and the IPAM's, foreign: on the bridge only). Pure."""
    given = {address.ip for address in ipam}
    return ([a for a in bridge if a.ip in given], [a for a in bridge if a.ip not in given])


def exposed_specs(subnets: Sequence[IPv4Network], default: IPv4Network) -> list[str]:
    """``weave expose``/``hide`` arguments for subnets: ``net:default`` for the default one."""
    return ["net:default" if s == default else f"net:{s}" for s in subnets]

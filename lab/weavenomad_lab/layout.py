"""Where everything of one lab lives: names, paths and addresses. Pure data, no I/O but load/save.

A lab called ``NAME`` with state directory ``S`` and nodes ``n1..nN``::

    S/lab.json                  this layout, written by ``lab up`` (ownership of S)
    S/lock                      flock held while ``lab up``/``down`` change things
    S/image/bb.tar              the busybox rootfs imported as ``bb:local``
    S/nodes/n1/docker.sock      the node's private dockerd (its own data-root and exec-root)
    S/nodes/n1/docker/          data-root ``data/``, exec-root ``exec/``, pid file, log
    S/nodes/n1/weave.sock       the emulated Weave proxy socket (after ``weave launch``)
    S/nodes/n1/bin/weave        the ``weave`` command shim for this node (``lab env`` PATH)
    S/nodes/n1/nomad.d/         the node's Nomad agent config (HCL), read by the Nomad client
    S/weave/  S/consul/  S/nomad/   state, pid and log files of the lab daemons
    S/security/                 with ``lab up --acl``/``--tls``: the ACL tokens (files, mode
                                0600) and the lab's CA, server and client certificates

Network namespaces (``ip netns``): ``NAME-n1`` … one per node (its "host"), and ``NAME-fab``,
which holds the two shared segments: the underlay bridge (the nodes' ``eth0``, addresses
192.168.56.3, .4, … as the recorded cluster's u1, u2, u3) and the Weave fabric bridge that
joins every node's ``weave`` bridge into one L2, as Weave's router does. The root namespace
gets no interface at all, so nothing of the host's network is touched.

Each simulated agent listens twice per node: inside the node's namespace on its usual port
(127.0.0.1:6784 Weave, :4646 Nomad, :8500 Consul), where a real node has it, and on a free port
of the host's loopback (``ports``), which is what ``lab env --node nX`` exports.

Security (``lab up --acl --tls [--require-client-cert]``, :class:`LabSecurity`, kept in
``lab.json``): with ACLs, the simulated Nomad and Consul each want their own management token
(``S/security/nomad.token``, ``consul.token``); with TLS, both serve HTTPS only, with a server
certificate from the lab's own CA, and may require a client certificate signed by it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weavenomad.errors import ConfigError
from weavenomad_lab.errors import LabError

LAB_FILE_VERSION = 1
DEFAULT_LAB_NAME = "wn"
UNDERLAY_CIDR = "192.168.56.0/24"
#: node n1 gets 192.168.56.3, as u1 of the recorded cluster (tests/fixtures/recorded)
UNDERLAY_FIRST_HOST = 3
FABRIC_BRIDGE = "wfab"
UNDERLAY_BRIDGE = "ufab"
WEAVE_BRIDGE = "weave"
#: the node's Docker bridge, inside the node's namespace: its own name and subnet
DOCKER_BRIDGE = "docker0"
DOCKER_BRIDGE_CIDR = "172.17.0.1/16"
LAB_IMAGE = "bb:local"

#: the ports agents have on a real node; the lab binds them inside each node's namespace
WEAVE_API_PORT = 6784
NOMAD_PORT = 4646
CONSUL_PORT = 8500
SERVICES = ("weave_api", "nomad", "consul")

#: sun_path is 108 bytes; leave room for containerd's ".ttrpc" suffix
_MAX_SOCKET_PATH = 100
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("weavenomad")) / "lab"


def validate_lab_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid lab name {name!r}: 1-8 lowercase letters or digits, starting with a letter",
            hint="--name",
        )
    return name


#: the services that serve HTTPS when the lab's TLS is on (Weave's API stays plain HTTP)
TLS_SERVICES = ("nomad", "consul")


@dataclass(frozen=True)
class LabSecurity:
    """How the lab's Nomad and Consul protect their HTTP APIs."""

    #: both require an ACL token (a management token of their own)
    acl: bool = False
    #: both serve HTTPS only (certificates from the lab's CA)
    tls: bool = False
    #: with ``tls``: the TLS handshake also needs a client certificate signed by the lab's CA
    verify_client: bool = False

    def __post_init__(self) -> None:
        if self.verify_client and not self.tls:
            raise ConfigError("a required client certificate needs TLS", hint="add --tls")

    @property
    def enabled(self) -> bool:
        return self.acl or self.tls

    def describe(self) -> str:
        parts = [f"ACLs {'on' if self.acl else 'off'}", f"TLS {'on' if self.tls else 'off'}"]
        if self.verify_client:
            parts.append("client certificates required")
        return ", ".join(parts)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> LabSecurity:
        data = data or {}
        return cls(bool(data.get("acl")), bool(data.get("tls")), bool(data.get("verify_client")))


@dataclass(frozen=True)
class SecurityFiles:
    """Where the lab keeps its tokens and certificates (``S/security``). Pure paths."""

    dir: Path

    def token(self, service: str) -> Path:
        return self.dir / f"{service}.token"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.tls_dir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.tls_dir / "client-key.pem"


@dataclass(frozen=True)
class NodeLayout:
    name: str
    index: int
    netns: str
    host_ip: str
    dir: Path
    #: host-loopback ports of this node's agents, by service ("weave_api", "nomad", "consul")
    ports: dict[str, int] = field(default_factory=dict)
    #: Nomad and Consul serve HTTPS (the lab's TLS is on)
    https: bool = False

    @property
    def docker_sock(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_sock}"

    @property
    def docker_dir(self) -> Path:
        return self.dir / "docker"

    @property
    def weave_sock(self) -> Path:
        return self.dir / "weave.sock"

    @property
    def bin_dir(self) -> Path:
        return self.dir / "bin"

    @property
    def machine_id_file(self) -> Path:
        """The node's /etc/machine-id, which its Weave peer name derives from (two nodes
        given the same one are clones)."""
        return self.dir / "etc" / "machine-id"

    @property
    def nomad_config_dir(self) -> Path:
        return self.dir / "nomad.d"

    def scheme(self, service: str) -> str:
        return "https" if self.https and service in TLS_SERVICES else "http"

    def url(self, service: str) -> str:
        """The host-loopback URL of one of this node's agents."""
        return f"{self.scheme(service)}://127.0.0.1:{self.ports[service]}"


@dataclass(frozen=True)
class LabLayout:
    name: str
    state_dir: Path
    nodes: tuple[NodeLayout, ...]
    security: LabSecurity = LabSecurity()

    @classmethod
    def plan(cls, name: str, state_dir: Path, node_count: int,
             security: LabSecurity | None = None) -> LabLayout:
        """The layout of a new lab (ports are assigned later, when they are known free)."""
        validate_lab_name(name)
        if not 1 <= node_count <= 16:
            raise ConfigError(f"--nodes must be between 1 and 16, got {node_count}")
        state_dir = Path(os.path.abspath(state_dir))
        nodes = tuple(
            NodeLayout(
                name=f"n{i}",
                index=i,
                netns=f"{name}-n{i}",
                host_ip=f"192.168.56.{UNDERLAY_FIRST_HOST + i - 1}",
                dir=state_dir / "nodes" / f"n{i}",
                https=bool(security and security.tls),
            )
            for i in range(1, node_count + 1)
        )
        layout = cls(name, state_dir, nodes, security or LabSecurity())
        layout.check_socket_paths()
        return layout

    @property
    def fabric_netns(self) -> str:
        return f"{self.name}-fab"

    @property
    def lab_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "lock"

    @property
    def image_tar(self) -> Path:
        return self.state_dir / "image" / "bb.tar"

    def component_dir(self, component: str) -> Path:
        return self.state_dir / component

    @property
    def security_files(self) -> SecurityFiles:
        return SecurityFiles(self.state_dir / "security")

    def node(self, name: str) -> NodeLayout:
        for node in self.nodes:
            if node.name == name or str(node.index) == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise LabError(f"no node {name!r} in lab {self.name!r} (nodes: {known})")

    def namespaces(self) -> list[str]:
        return [n.netns for n in self.nodes] + [self.fabric_netns]

    def check_socket_paths(self) -> None:
        longest = max(
            len(str(n.docker_dir / "exec" / "containerd" / "containerd.sock")) for n in self.nodes
        )
        if longest > _MAX_SOCKET_PATH:
            raise ConfigError(
                f"state directory {self.state_dir} is too long for unix socket paths "
                f"({longest} > {_MAX_SOCKET_PATH} bytes)",
                hint="use --state-dir with a shorter path",
            )

    def with_ports(self, ports: dict[str, dict[str, int]]) -> LabLayout:
        nodes = tuple(
            NodeLayout(n.name, n.index, n.netns, n.host_ip, n.dir, dict(ports[n.name]), n.https)
            for n in self.nodes
        )
        return LabLayout(self.name, self.state_dir, nodes, self.security)

    # -- persistence ------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "version": LAB_FILE_VERSION,
            "name": self.name,
            "state_dir": str(self.state_dir),
            "nodes": [
                {key: value for key, value in {**asdict(n), "dir": str(n.dir)}.items()
                 if key != "https"}  # derived from the lab's security
                for n in self.nodes
            ],
            "security": self.security.to_json(),
        }

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.lab_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, self.lab_file)

    @classmethod
    def load(cls, state_dir: Path) -> LabLayout:
        path = Path(state_dir) / "lab.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(
                f"no lab in {state_dir}", hint="run 'weavenomad lab up' or pass --state-dir"
            ) from None
        except (OSError, ValueError) as exc:
            raise LabError(f"{path}: unreadable lab file: {exc}") from None
        if data.get("version") != LAB_FILE_VERSION:
            raise LabError(f"{path}: lab file version {data.get('version')} is not supported")
        try:
            security = LabSecurity.from_json(data.get("security"))
        except ConfigError as exc:
            raise LabError(f"{path}: {exc.one_line()}") from None
        nodes = tuple(
            NodeLayout(
                name=n["name"],
                index=n["index"],
                netns=n["netns"],
                host_ip=n["host_ip"],
                dir=Path(n["dir"]),
                ports={k: int(v) for k, v in n.get("ports", {}).items()},
                https=security.tls,
            )
            for n in data["nodes"]
        )
        return cls(data["name"], Path(data["state_dir"]), nodes, security)

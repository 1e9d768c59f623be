"""The Nomad agent configuration of a lab node: HCL or JSON files in ``node.nomad_config_dir``.

Nomad 1.0 reads its agent config with HCL *1* (not the HCL2 of job files), so we parse with
``pyhcl``: it accepts both the documented ``client { options { "docker.endpoint" = … } }``
form, whose quoted keys python-hcl2 rejects, and ``plugin "docker" { config { … } }``.
Files are read in name order and merged, later files winning, as ``nomad agent -config DIR``.

The Docker endpoint follows ``helper/pluginutils/loader/init.go``: a ``plugin "docker"`` block
replaces the options-derived config entirely (``endpoint`` from its ``config``, else the
default socket); only without it does ``client.options["docker.endpoint"]`` count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weavenomad.errors import ConfigError
from weavenomad.lab.layout import NodeLayout

DEFAULT_DOCKER_ENDPOINT = "unix:///var/run/docker.sock"
DEFAULT_CONSUL_ADDRESS = "127.0.0.1:8500"
#: the file ``lab up`` writes; operators (and ``bootstrap``) may edit it or add others
DEFAULT_FILE = "agent.hcl"
#: on a real node these paths hold the node's sockets; in the lab each node has its own
WELL_KNOWN_SOCKETS = {
    "/var/run/docker.sock": "docker_sock",
    "/run/docker.sock": "docker_sock",
    "/var/run/weave/weave.sock": "weave_sock",
    "/run/weave/weave.sock": "weave_sock",
}


@dataclass(frozen=True)
class AgentConfig:
    files: tuple[str, ...] = ()
    datacenter: str = "dc1"
    region: str = "global"
    name: str = ""
    client_enabled: bool = True
    client_options: dict[str, str] = field(default_factory=dict)
    #: plugin name -> its ``config`` block
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    consul_address: str = DEFAULT_CONSUL_ADDRESS
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def docker_endpoint(self) -> str:
        if "docker" in self.plugins:
            return str(self.plugins["docker"].get("endpoint") or DEFAULT_DOCKER_ENDPOINT)
        return self.client_options.get("docker.endpoint") or DEFAULT_DOCKER_ENDPOINT


def parse_text(text: str, name: str) -> dict[str, Any]:
    """One config file as plain data; ConfigError naming the file when it does not parse."""
    import hcl  # pyhcl: HCL1 and JSON, as Nomad 1.0's agent config loader

    if name.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}: invalid JSON: {exc}") from None
    else:
        try:
            data = hcl.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}", hint="fix the Nomad agent config file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the agent config must be an object")
    return data


def _blocks(value: Any) -> list[dict]:
    """pyhcl gives one block as a dict and repeated blocks as a list of dicts."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


def _plugins(value: Any) -> dict[str, dict]:
    plugins: dict[str, dict] = {}
    for block in _blocks(value):
        for name, body in block.items():
            for item in _blocks(body):
                config: dict = {}
                for part in _blocks(item.get("config")):
                    config.update(part)
                plugins[name] = config
    return plugins


def merge(documents: list[tuple[str, dict[str, Any]]]) -> AgentConfig:
    """Merge parsed files in order, later ones overriding, as Nomad's ``Config.Merge``."""
    values: dict[str, Any] = {"files": tuple(name for name, _ in documents)}
    options: dict[str, str] = {}
    meta: dict[str, str] = {}
    plugins: dict[str, dict] = {}
    for _, data in documents:
        for key, attr in (("datacenter", "datacenter"), ("region", "region"), ("name", "name")):
            if isinstance(data.get(key), str):
                values[attr] = data[key]
        for client in _blocks(data.get("client")):
            if "enabled" in client:
                values["client_enabled"] = bool(client["enabled"])
            for block in _blocks(client.get("options")):
                options.update({str(k): str(v) for k, v in block.items()})
            for block in _blocks(client.get("meta")):
                meta.update({str(k): str(v) for k, v in block.items()})
        for consul in _blocks(data.get("consul")):
            if consul.get("address"):
                values["consul_address"] = str(consul["address"])
        plugins.update(_plugins(data.get("plugin")))
    return AgentConfig(client_options=options, meta=meta, plugins=plugins, **values)


def load_dir(path: Path) -> AgentConfig:
    """Every ``*.hcl``/``*.json`` file of ``path`` in name order, merged."""
    try:
        names = sorted(p for p in Path(path).iterdir() if p.suffix in (".hcl", ".json"))
    except FileNotFoundError:
        raise ConfigError(f"no Nomad agent config directory {path}") from None
    return merge([(str(p), parse_text(p.read_text(), str(p))) for p in names if p.is_file()])


def default_text(node: NodeLayout) -> str:
    """What ``lab up`` writes for a node: a client that talks to its own dockerd."""
    return (
        "# Nomad agent configuration of lab node "
        f"{node.name} (HCL1, read like 'nomad agent -config {node.nomad_config_dir}').\n"
        f'name       = "{node.name}"\n'
        'datacenter = "dc1"\n'
        "\n"
        "client {\n"
        "  enabled = true\n"
        "}\n"
        "\n"
        'plugin "docker" {\n'
        "  config {\n"
        f'    endpoint = "unix://{node.docker_sock}"\n'
        "  }\n"
        "}\n"
        "\n"
        "consul {\n"
        f'  address = "{DEFAULT_CONSUL_ADDRESS}"\n'
        "}\n"
    )


def lab_socket(endpoint: str, node: NodeLayout, lab_root: Path) -> Path | None:
    """The socket file the lab uses for a configured Docker endpoint, or None when the
    endpoint leads outside the lab (the host's own Docker, a TCP daemon): the lab never
    talks to those, and the driver then reports unhealthy."""
    if not endpoint.startswith("unix://"):
        return None
    path = endpoint[len("unix://"):]
    if path in WELL_KNOWN_SOCKETS:
        return Path(getattr(node, WELL_KNOWN_SOCKETS[path]))
    resolved = Path(path)
    try:
        resolved.relative_to(lab_root)
    except ValueError:
        return None
    return resolved

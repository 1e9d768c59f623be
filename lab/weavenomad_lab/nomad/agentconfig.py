"""The Nomad agent configuration of a lab node: HCL or JSON files in ``node.nomad_config_dir``.

Nomad 1.0 reads its agent config with HCL *1* (not the HCL2 of job files), so we parse with
``pyhcl``: it accepts both the documented ``client { options { "docker.endpoint" = … } }``
form, whose quoted keys python-hcl2 rejects, and ``plugin "docker" { config { … } }``.
Files are read in name order and merged, later files winning, as ``nomad agent -config DIR``.

The Docker endpoint follows ``helper/pluginutils/loader/init.go``: a ``plugin "docker"`` block
replaces the options-derived config entirely (``endpoint`` from its ``config``, else the
default socket); only without it does ``client.options["docker.endpoint"]`` count.

The ``consul`` block's ``token``, ``ssl``, ``verify_ssl``, ``ca_file``, ``cert_file`` and
``key_file`` are how the agent's Consul client talks to its Consul agent, as in Nomad. The
``acl`` and ``tls`` blocks are read for ``agent/self`` only: the simulated Nomad's own listeners
follow the lab's security (``lab up --acl --tls``), which writes matching blocks here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weavenomad.errors import ConfigError
from weavenomad_lab.layout import NodeLayout

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
    consul_token: str | None = field(default=None, repr=False)
    consul_ssl: bool = False
    consul_verify_ssl: bool = True
    consul_ca_file: str | None = None
    consul_cert_file: str | None = None
    consul_key_file: str | None = None
    acl_enabled: bool = False
    #: the ``tls`` block: http, ca_file, cert_file, key_file, verify_https_client
    tls: dict[str, Any] = field(default_factory=dict)

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
            for key in ("token", "ca_file", "cert_file", "key_file"):
                if consul.get(key):
                    values[f"consul_{key}"] = str(consul[key])
            for key in ("ssl", "verify_ssl"):
                if key in consul:
                    values[f"consul_{key}"] = _flag(consul[key])
        for block in _blocks(data.get("acl")):
            if "enabled" in block:
                values["acl_enabled"] = _flag(block["enabled"])
        for block in _blocks(data.get("tls")):
            values["tls"] = {**values.get("tls", {}), **block}
        plugins.update(_plugins(data.get("plugin")))
    return AgentConfig(client_options=options, meta=meta, plugins=plugins, **values)


def _flag(value: Any) -> bool:
    """An HCL1 boolean: true/false, or the strings Nomad's mapstructure decoding accepts."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true")
    return bool(value)


def load_dir(path: Path) -> AgentConfig:
    """Every ``*.hcl``/``*.json`` file of ``path`` in name order, merged."""
    try:
        names = sorted(p for p in Path(path).iterdir() if p.suffix in (".hcl", ".json"))
    except FileNotFoundError:
        raise ConfigError(f"no Nomad agent config directory {path}") from None
    return merge([(str(p), parse_text(p.read_text(), str(p))) for p in names if p.is_file()])


def default_text(node: NodeLayout, security: dict[str, Any] | None = None) -> str:
    """What ``lab up`` writes for a node: a client that talks to its own dockerd. ``security``
    adds what a secured node has: ``acl`` (bool), ``tls`` (dict of ca_file, cert_file,
    key_file, verify_https_client) and ``consul`` (token, ssl, ca_file, cert_file, key_file)."""
    security = security or {}
    consul = {"address": DEFAULT_CONSUL_ADDRESS, **security.get("consul", {})}
    blocks = ""
    if security.get("acl"):
        blocks += "\nacl {\n  enabled = true\n}\n"
    if security.get("tls"):
        blocks += "\ntls {\n  http = true\n" + "".join(
            f"  {key} = {_hcl_value(value)}\n" for key, value in security["tls"].items()) + "}\n"
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
        + "".join(f"  {key} = {_hcl_value(value)}\n" for key, value in consul.items())
        + "}\n"
        + blocks
    )


def _hcl_value(value: Any) -> str:
    return json.dumps(value)  # HCL1 strings and booleans are JSON's


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

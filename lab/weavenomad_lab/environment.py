"""What a shell or a command on a lab node sees: the exports of ``lab env`` (from the host)
and the environment and argv of ``lab exec`` (inside the node's namespace). Pure: the layout
in, strings out (but for reading the lab's token files)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from weavenomad_lab.layout import (
    CONSUL_PORT,
    NOMAD_PORT,
    WEAVE_API_PORT,
    LabLayout,
    NodeLayout,
)
from weavenomad_lab.netns import nsenter_argv


def _as_node(layout: LabLayout, node: NodeLayout | str) -> NodeLayout:
    return layout.node(node) if isinstance(node, str) else node


def _addresses(node: NodeLayout, ports: Mapping[str, int]) -> dict[str, str]:
    """NOMAD_ADDR, CONSUL_HTTP_ADDR, WEAVE_HTTP_ADDR for the given ports. The last two are
    host:port, the form those tools document, unless the agent speaks HTTPS."""
    values = {}
    for variable, service in (("NOMAD_ADDR", "nomad"), ("CONSUL_HTTP_ADDR", "consul"),
                              ("WEAVE_HTTP_ADDR", "weave_api")):
        if service in ports:
            scheme = node.scheme(service)
            prefix = "" if scheme == "http" and service != "nomad" else f"{scheme}://"
            values[variable] = f"{prefix}127.0.0.1:{ports[service]}"
    return values


def env_lines(layout: LabLayout, node: NodeLayout | str) -> list[str]:
    """``export`` lines that point docker, nomad, consul and weave at one node, from the host.

    With the lab's ACLs the tokens are read from their files when the lines are evaluated
    (``$(cat FILE)``), so they are never printed; with TLS the CA and client certificate
    variables name the lab's files."""
    import shlex

    from weavenomad_lab import security

    node = _as_node(layout, node)
    values = {"DOCKER_HOST": node.docker_host, **_addresses(node, node.ports),
              **security.tls_environment(layout)}
    values.update(node_tooling(layout, node))
    lines = [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    lines += [f'export {key}="$(cat {shlex.quote(path)})"'
              for key, path in security.token_environment(layout).items()]
    lines.append(f'export PATH={shlex.quote(str(node.bin_dir))}:"$PATH"')
    return lines


def client_environment(layout: LabLayout, node: NodeLayout | str,
                       in_node: bool = False) -> dict[str, str]:
    """What a client of one node needs, tokens included (for code; ``lab env`` prints the
    token files instead): the agents' addresses from the host, or inside the node."""
    from weavenomad_lab import security

    node = _as_node(layout, node)
    ports = ({"nomad": NOMAD_PORT, "consul": CONSUL_PORT, "weave_api": WEAVE_API_PORT}
             if in_node else node.ports)
    env = {"DOCKER_HOST": node.docker_host, **_addresses(node, ports),
           **security.tls_environment(layout)}
    for variable, path in security.token_environment(layout).items():
        with suppress(OSError):
            env[variable] = Path(path).read_text().strip()
    return env


def node_tooling(layout: LabLayout, node: NodeLayout) -> dict[str, str]:
    """Where this node's Nomad agent config lives and how to restart that agent: what a real
    node has in /etc/nomad.d and ``systemctl restart nomad``, given through weavenomad's own
    settings (WEAVENOMAD_NOMAD_CONFIG, WEAVENOMAD_NOMAD_RESTART_COMMAND); and its own state
    directory (WEAVENOMAD_STATE_DIR, /var/lib/weavenomad on a real node): lab nodes share the
    host's filesystem."""
    import shlex

    restart = [sys.executable, "-m", "weavenomad", "lab", "nomad-restart",
               "--state-dir", str(layout.state_dir), node.name]
    return {
        "WEAVENOMAD_LAB_STATE_DIR": str(layout.state_dir),
        "WEAVENOMAD_NOMAD_CONFIG": str(node.nomad_config_dir),
        "WEAVENOMAD_NOMAD_RESTART_COMMAND": shlex.join(restart),
        "WEAVENOMAD_STATE_DIR": str(node.dir / "state"),
    }


def exec_argv(layout: LabLayout, node: NodeLayout | str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside the node's namespace (pair it with exec_env)."""
    return nsenter_argv(_as_node(layout, node).netns, list(argv))


def exec_env(layout: LabLayout, node: NodeLayout | str, environ: Mapping[str, str]) -> dict:
    """The environment of a command run inside a node: the agents at their in-node addresses."""
    node = _as_node(layout, node)
    env = dict(environ)
    env.update(client_environment(layout, node, in_node=True))
    env.update(node_tooling(layout, node))
    env["PATH"] = f"{node.bin_dir}:{environ.get('PATH', os.defpath)}"
    return env

"""``weavenomad lab`` and ``weavenomad demo``: a local lab of private dockerd nodes with emulated
Weave, Consul and Nomad, and the whole story told on it. The weavenomad-lab distribution adds
them to the ``weavenomad`` command through the ``weavenomad.commands`` entry points.

Thin: each command parses its options, makes one call into :mod:`weavenomad_lab.core` and
prints the answer. The heavy modules are imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from weavenomad.cli.options import app_context, output_options
from weavenomad.errors import ExitCode
from weavenomad_lab.errors import LabError

STATE_DIR_VARIABLE = "WEAVENOMAD_LAB_STATE_DIR"

class LabUnhealthy(LabError):
    """Some part of the lab is not healthy: the answer is printed, but needs attention."""

    exit_code = ExitCode.ATTENTION


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"The lab's state directory [env {STATE_DIR_VARIABLE}; default: the user's state "
         "directory, e.g. ~/.local/state/weavenomad/lab].",
)


def _state_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    from_env = app_context().environ.get(STATE_DIR_VARIABLE)
    if from_env:
        return Path(from_env)
    from weavenomad_lab.layout import default_state_dir

    return default_state_dir()


@click.group()
def lab() -> None:
    """Run a local lab: private dockerd nodes, emulated Weave, simulated Consul and Nomad.

    Needs root (network namespaces, dockerd). Nothing of the host's own Docker or network is
    touched: every process, interface and file lives in the lab's namespaces and state dir.
    """


@lab.command()
@click.option("--nodes", type=click.IntRange(1, 16), default=None,
              help="Number of nodes [default: 1, or the existing lab's].")
@click.option("--name", default=None,
              help="Lab name, the prefix of its namespaces [default: wn, or the existing lab's].")
@click.option("--acl", is_flag=True, default=False,
              help="Nomad and Consul require an ACL token (lab env exports it from its file).")
@click.option("--tls", is_flag=True, default=False,
              help="Nomad and Consul serve HTTPS only, with certificates of the lab's own CA.")
@click.option("--require-client-cert", is_flag=True, default=False,
              help="With --tls: the TLS handshake also needs the lab's client certificate.")
@click.option("--docker", "docker_engine", type=click.Choice(["20.10", "26"]), default=None,
              help="The nodes' Docker Engine: 20.10 (Debian 12's docker.io, the host's) or 26 "
                   "(Debian 13's docker.io, fetched from deb.debian.org, checked and cached) "
                   "[default: 20.10, or what each node of an existing lab runs].")
@state_dir_option
@output_options
def up(nodes: int | None, name: str | None, acl: bool, tls: bool, require_client_cert: bool,
       docker_engine: str | None, state_dir: Path | None) -> None:
    """Bring the lab up; on a running lab, restart whatever is missing.

    --acl, --tls and --require-client-cert choose how the lab's Nomad and Consul are secured;
    a running lab keeps its choice (change it with 'lab down' first).
    """
    from weavenomad_lab import core
    from weavenomad_lab.layout import LabSecurity

    security = None
    if acl or tls or require_client_cert:
        security = LabSecurity(acl=acl, tls=tls, verify_client=require_client_cert)
    app = app_context()
    layout = core.up(_state_dir(state_dir), name, nodes, security=security, say=app.tell,
                     docker=docker_engine)

    def human(data: dict) -> str:
        lines = [f"lab {data['name']!r} is up: {len(data['nodes'])} node(s), "
                 f"state in {data['state_dir']}"]
        for node in data["nodes"]:
            lines.append(f"  {node['name']}  {node['host_ip']:<14} netns {node['netns']}")
        return "\n".join(lines)

    data = layout.to_json()
    app.emit(data, human)
    if not app.flags.get("json_output"):
        app.tell(f"use a node from this shell: eval \"$(weavenomad lab env --node n1 "
                 f"--state-dir {data['state_dir']})\"")


@lab.command()
@state_dir_option
@output_options
def down(state_dir: Path | None) -> None:
    """Remove every process, namespace, mount and file of the lab."""
    from weavenomad_lab import core

    where = _state_dir(state_dir)
    removed = core.down(where)

    def human(data: dict) -> str:
        if data["removed"]:
            return f"lab in {data['state_dir']} removed"
        return f"no lab in {data['state_dir']}: nothing to remove"

    app_context().emit({"removed": removed, "state_dir": str(where)}, human)


def format_table(rows: list[dict], paint=None) -> str:
    """The parts under a header row; ``paint(text, style)`` colours STATE on a terminal."""
    headers = ("PART", "NODE", "STATE", "ADDRESS", "DETAIL")
    cells = [
        (r["part"], r["node"] or "-", "ok" if r["healthy"] else "FAIL", r["address"] or "-",
         r["detail"])
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [headers, *cells]) for i in range(len(headers) - 1)]
    lines = []
    for number, row in enumerate([headers, *cells]):
        padded = [str(value).ljust(width) for value, width in zip(row, widths, strict=False)]
        if paint is not None and number:
            padded[2] = paint(padded[2], "green" if row[2] == "ok" else "red")
        lines.append("  ".join([*padded, str(row[-1])]))
    return "\n".join(lines)


@lab.command()
@state_dir_option
@output_options
def status(state_dir: Path | None) -> None:
    """Show every part of the lab and whether it is healthy (exit 2 when one is not)."""
    from weavenomad_lab import core

    _, parts = core.status(_state_dir(state_dir))
    rows = [part.to_json() for part in parts]
    app = app_context()
    app.emit(rows, lambda data: format_table(data, app.paint_out))
    failing = [row for row in rows if not row["healthy"]]
    if failing:
        raise LabUnhealthy(f"{len(failing)} of {len(rows)} lab parts are not healthy",
                           hint="'weavenomad lab up' restarts what is missing")


@lab.command()
@click.option("--node", default="n1", show_default=True, help="The node to point at.")
@state_dir_option
def env(node: str, state_dir: Path | None) -> None:
    """Print export lines that point docker, nomad, consul and weave at one node.

    \b
    eval "$(weavenomad lab env --node n2)"

    For a lab with --acl the token variables read the token files when evaluated
    (NOMAD_TOKEN="$(cat FILE)"), so no token is ever printed; with --tls the CA and client
    certificate variables (NOMAD_CACERT, CONSUL_CLIENT_CERT, ...) name the lab's files.
    """
    from weavenomad_lab import core

    for line in core.env_lines(core.load(_state_dir(state_dir)), node):
        click.echo(line)


@lab.command(context_settings={"ignore_unknown_options": True,
                               "allow_interspersed_args": False})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@state_dir_option
def exec(node: str, command: tuple[str, ...], state_dir: Path | None) -> None:  # noqa: A001
    """Run COMMAND inside NODE's network namespace, as if logged in on that node.

    \b
    weavenomad lab exec n1 -- docker ps
    weavenomad lab exec n2 -- sh -c 'curl -s $NOMAD_ADDR/v1/nodes'

    The agents are at their usual in-node addresses (NOMAD_ADDR=http://127.0.0.1:4646,
    CONSUL_HTTP_ADDR=127.0.0.1:8500, WEAVE_HTTP_ADDR=127.0.0.1:6784; https with the lab's TLS,
    and its tokens and certificates in the usual variables), DOCKER_HOST is the node's
    dockerd and the node's ``weave`` comes first on PATH. The exit code is COMMAND's.
    """
    import os

    from weavenomad_lab import core

    if command[:1] == ("--",):  # click hands the separator through after NODE
        command = command[1:]
    if not command:
        raise click.UsageError("no COMMAND given after NODE")
    argv, environment = core.exec_command(_state_dir(state_dir), node, command,
                                          app_context().environ)
    try:
        os.execvpe(argv[0], argv, environment)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed", hint="apt-get install util-linux") from None


@lab.command("nomad-restart")
@click.argument("node")
@state_dir_option
def nomad_restart(node: str, state_dir: Path | None) -> None:
    """Restart NODE's Nomad agent: it re-reads its config, as 'systemctl restart nomad' would.

    Running allocations keep running, as real Nomad reattaches them. This is the lab's value of
    WEAVENOMAD_NOMAD_RESTART_COMMAND (see 'lab env'), which 'weavenomad bootstrap' runs.
    """
    from weavenomad_lab.layout import LabLayout
    from weavenomad_lab.nomad.component import restart_agent

    layout = LabLayout.load(_state_dir(state_dir))
    name = layout.node(node).name
    restart_agent(layout, name)
    click.echo(f"restarted the Nomad agent of {name}")


@lab.command("docker-engine")
@click.argument("node")
@click.argument("engine", type=click.Choice(["20.10", "26"]))
@state_dir_option
def docker_engine(node: str, engine: str, state_dir: Path | None) -> None:
    """Replace NODE's Docker Engine by ENGINE (20.10: Debian 12's docker.io; 26: Debian 13's),
    as upgrading or downgrading the Docker packages does: dockerd stops with its containers,
    the new one starts on the same data, and containers with a restart policy (Weave's router)
    come back under it. Nomad's tasks die with the old dockerd.
    """
    from weavenomad_lab.dockerd import switch_engine
    from weavenomad_lab.layout import LabLayout

    layout = LabLayout.load(_state_dir(state_dir))
    target = layout.node(node)
    chosen = switch_engine(layout, target, engine)
    click.echo(f"{target.name} runs Docker Engine {chosen.name} ("
               + ", ".join(f"{p} {v}" for p, v in sorted(chosen.packages.items())) + ")")


@lab.command("apt-source")
@click.argument("node")
@click.argument("suite", type=click.Choice(["bookworm", "trixie"]))
@state_dir_option
def apt_source(node: str, suite: str, state_dir: Path | None) -> None:
    """Add Debian SUITE to NODE's apt sources, as editing sources.list and 'apt update' do:
    with trixie, apt on the node offers Docker 26 (docker.io 26.1.5) over the installed 20.10,
    and 'apt-get upgrade' on the node installs it unless the packages are held. A lab node's
    apt-cache, apt-mark and apt-get know the Docker packages only, and never touch the host's.
    """
    from weavenomad_lab.apt import add_source
    from weavenomad_lab.layout import LabLayout

    layout = LabLayout.load(_state_dir(state_dir))
    target = layout.node(node)
    state = add_source(layout, target, suite)
    click.echo(f"{target.name}'s apt sources: {', '.join(state.suites)}")


@lab.command("weave-images")
@click.argument("node")
@click.argument("owner")
@click.argument("version")
@state_dir_option
def weave_images(node: str, owner: str, version: str, state_dir: Path | None) -> None:
    """Put Weave release OWNER/VERSION's images on NODE, as 'docker pull' from Docker Hub
    would (the lab has no registry): OWNER/weave:VERSION, OWNER/weaveexec:VERSION (with that
    release's weave script at /home/weave/weave) and OWNER/weavedb:latest. For the maintained
    fork: weavenomad lab weave-images n1 rajchaudhuri 2.9.0.
    """
    from weavenomad_lab.layout import LabLayout
    from weavenomad_lab.weave.images import put_images

    layout = LabLayout.load(_state_dir(state_dir))
    target = layout.node(node)
    flavour = put_images(layout, target, owner, version)
    click.echo(f"{target.name} has {', '.join(flavour.images)}")


@click.command()
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards (weavenomad lab down "
              "--state-dir DIR removes it).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's lab lives [default: the user's state directory, "
                   "e.g. ~/.local/state/weavenomad/demo].")
def demo(keep: bool, state_dir: Path | None) -> None:
    """Show Consul answering with Weave addresses and tenants isolated, on a 3-node lab
    (root needed).

    Bootstraps every node with the other two as Weave peers, creates tenants acme and globex,
    runs the httpbackend job (jobs/httpbackend.nomad of the checkout) in each, shows Consul
    advertising Docker-bridge addresses, starts the reconciler on every node and shows Consul
    answering with Weave addresses only, then proves isolation: same-tenant traffic passes,
    cross-tenant traffic fails. Exit code 0 only if every check held.
    """
    from weavenomad.cli.style import painter
    from weavenomad_lab.demo import run_demo
    from weavenomad_lab.layout import default_state_dir

    state_dir = state_dir or default_state_dir().parent / "demo"
    held = run_demo(state_dir, keep, click.echo, painter(sys.stdout, app_context().environ))
    click.get_current_context().exit(0 if held else 1)

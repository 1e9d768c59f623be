"""``weavenomad bootstrap``, ``reset`` and ``doctor``: set up, undo and check a node.

Thin: options in, one call into :mod:`weavenomad.bootstrap.commands`, the answer out. The
checks, the plan and each step's outcome are the commands' result and go to stdout as they
happen (PASS/WARN/FAIL coloured on a terminal); with ``--json`` only the final document is
printed there.
"""

from __future__ import annotations

import click

from weavenomad.cli.options import app_context, connection_options, output_options


def _say():
    """Progress printer: nothing with --json; lines quote config diffs, so secrets are hidden
    (the Nomad agent's own Consul token is no token we were given)."""
    app = app_context()
    if app.flags.get("json_output"):
        return lambda line: None
    return app.say


def _node_options(**values):
    from weavenomad.bootstrap.commands import NodeOptions

    settings = app_context().settings
    return NodeOptions(
        peers=tuple(values.get("peers") or settings.bootstrap.peers),
        ipalloc_range=values.get("ipalloc_range") or settings.bootstrap.ipalloc_range,
        default_subnet=values.get("default_subnet") or settings.bootstrap.default_subnet,
        nomad_config=values.get("nomad_config") or settings.nomad.config_path,
        restart=values.get("restart", True),
        dry_run=values.get("dry_run", False),
        purge=values.get("purge", False),
        hold_docker=bool(values.get("hold_docker") if values.get("hold_docker") is not None
                         else settings.bootstrap.hold_docker),
    )


def _finish(result: dict, code) -> None:
    app = app_context()
    if app.flags.get("json_output"):
        app.emit(result)
    if code:
        click.get_current_context().exit(int(code))


nomad_config_option = click.option(
    "--nomad-config", metavar="PATH",
    help="The Nomad agent's config file or directory [env WEAVENOMAD_NOMAD_CONFIG; default: "
         "the files the running agent reports, then /etc/nomad.d, /etc/nomad].")
restart_option = click.option(
    "--restart/--no-restart", default=True, show_default=True,
    help="Restart Nomad after changing its config (WEAVENOMAD_NOMAD_RESTART_COMMAND, else "
         "systemd when it runs Nomad; otherwise the command to run is printed).")
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Print the preflight and the plan; change nothing.")


@click.command()
@click.option("--peer", "peers", multiple=True, metavar="ADDR",
              help="Another node's Weave peer address, HOST[:PORT] (repeatable) "
                   "[env WEAVENOMAD_PEERS; config bootstrap.peers].")
@click.option("--ipalloc-range", metavar="CIDR",
              help="Weave's allocation range, the same on every node; the default subnet and "
                   "every tenant subnet lie inside it [default: 10.32.0.0/16].")
@click.option("--default-subnet", metavar="CIDR",
              help="Weave's default subnet, inside the range [default: 10.32.0.0/24].")
@click.option("--hold-docker", is_flag=True, default=None,
              help="Also hold the Docker packages (apt-mark hold docker.io containerd …), so "
                   "that no 'apt upgrade' brings Docker past the API version Weave speaks; "
                   "recorded, and released by 'weavenomad reset' [config bootstrap.hold_docker].")
@nomad_config_option
@restart_option
@dry_run_option
@connection_options
@output_options
def bootstrap(peers, ipalloc_range, default_subnet, hold_docker, nomad_config, restart,
              dry_run) -> None:
    """Set up this node: Weave peer, exposed subnets, Nomad's Docker endpoint.

    Checks the node first, prints every command and a diff of every file it will change,
    then applies them in order (--dry-run stops after the plan). Weave is launched with
    --no-dns and --no-default-ipalloc; the default subnet and every tenant subnet are
    exposed; Nomad's Docker driver is pointed at the Weave proxy socket, Nomad restarted and
    checked. A failure rolls back what this run changed. A second run changes nothing.
    Exit codes: 0 done, 2 done but Nomad must be restarted by hand, 1 error (rolled back),
    64 bad flags.
    """
    from weavenomad.bootstrap.commands import run_bootstrap

    app = app_context()
    options = _node_options(peers=peers, ipalloc_range=ipalloc_range,
                            default_subnet=default_subnet, nomad_config=nomad_config,
                            restart=restart, dry_run=dry_run, hold_docker=hold_docker)
    result, code = run_bootstrap(app.settings, options, app.environ, _say(),
                                 paint=app.paint_out)
    _finish(result, code)


@click.command()
@nomad_config_option
@restart_option
@click.option("--purge", is_flag=True,
              help="Retire weavenomad from this node: also stop and remove the reconciler's "
                   "and the guard keeper's units and remove the reconciler's twins and masks "
                   "from the local Consul agent, so Nomad's own registrations answer again.")
@dry_run_option
@connection_options
@output_options
def reset(nomad_config, restart, purge, dry_run) -> None:
    """Undo bootstrap on this node: restore the Nomad config from its backup and restart
    Nomad, hide the exposed subnets, 'weave reset', remove the guard rules bootstrap added.

    The reconciler's twins and masks stay in Consul (answers survive a restart of the
    daemon); --purge takes them away too, with the units: first the units stop, then the
    masks go (Nomad's instances answer again), then the twins and the unit files. Services
    of 'weavenomad run' jobs stay under Nomad's private names until their jobs are run again.
    On a failure everything is put back (the reconciler, started again, registers its twins).

    Prints the plan first; --dry-run stops there.
    """
    from weavenomad.bootstrap.commands import run_reset

    app = app_context()
    options = _node_options(nomad_config=nomad_config, restart=restart, dry_run=dry_run,
                            purge=purge)
    result, code = run_reset(app.settings, options, _say())
    _finish(result, code)


@click.command()
@connection_options
@output_options
def doctor() -> None:
    """Check this node and the cluster, read-only: one PASS/WARN/FAIL line per check, with
    the fix for each failure, then the counts. --json prints {"checks": [{name, status,
    detail, fix}], "summary": {pass, warn, fail}}. Exit codes: 0 nothing failed (warnings
    allowed), 1 a check failed, 64 bad flags.

    Checks the bootstrap preflight items, Weave's peers, IPAM and exposed subnets, the
    isolation guards and IP forwarding, Nomad's Docker endpoint, the tenant registry, the
    reconciler and guard services and Consul entries that answer non-Weave addresses. The
    kernel checks read the network namespace doctor runs in.
    """
    from weavenomad.bootstrap.commands import doctor_verdict, run_doctor

    app = app_context()
    result = run_doctor(app.settings, app.environ, _say(), paint=app.paint_out)
    _finish(result, None)
    doctor_verdict(result)


@click.command("weave-upgrade")
@click.option("--version", "version", default="2.9.0", show_default=True, metavar="X.Y.Z",
              help="The Weave release to move to (later than 2.8.1: the maintained fork "
                   "rajch/weave).")
@click.option("--image-owner", metavar="USER",
              help="Whose images (Docker Hub user) [default: rajchaudhuri for the fork, "
                   "weaveworks for 2.8.1 and earlier].")
@click.option("--docker-api-version", metavar="1.N",
              help="DOCKER_API_VERSION for the fork (Docker 29 wants 1.44) [default: its pin, "
                   "1.24].")
@click.option("--peer", "peers", multiple=True, metavar="ADDR",
              help="Launch with these peers instead of the old router's (repeatable).")
@dry_run_option
@connection_options
@output_options
def weave_upgrade(version, image_owner, docker_api_version, peers, dry_run) -> None:
    """Move this node's Weave to a release that speaks the installed Docker's API (by
    default the maintained fork rajch/weave 2.9.0, images rajchaudhuri/*): the way back for a
    node whose Docker was upgraded past what Weave 2.8.1 speaks (its router crash-looping on
    "client version 1.18 is too old"), and the way to move before upgrading Docker.

    Pulls the release's images, removes the old router container (weavedb, Weave's IPAM data,
    stays: every task keeps its address, the host its exposed ones), installs the release's
    weave script from its weaveexec image over the old one (kept as .weavenomad.bak),
    launches it with the old router's flags, exposes the subnets, puts the isolation guards
    back and checks Nomad's Docker driver on the same proxy socket. The plan says what
    survives and what restarts; a failure rolls back what ran. Exit codes: 0 done (or nothing
    to do), 1 error (rolled back), 64 bad flags.
    """
    from weavenomad.bootstrap.recover import UpgradeOptions, run_weave_upgrade

    app = app_context()
    options = UpgradeOptions(version, image_owner,
                             docker_api_version or app.settings.weave.docker_api_version,
                             tuple(peers) if peers else None, dry_run)
    result, code = run_weave_upgrade(app.settings, options, _say())
    _finish(result, code)


@click.command("docker-hold")
@click.option("--downgrade", is_flag=True,
              help="First go back to the newest Docker below 25 that apt offers (Weave 2.8.1's "
                   "API 1.18 works there), then hold it.")
@click.option("--version", "version", metavar="VERSION",
              help="With --downgrade: this version of the Docker package (as apt-cache policy "
                   "lists it).")
@click.option("--release", is_flag=True,
              help="Release the holds weavenomad made (bootstrap --hold-docker, docker-hold).")
@dry_run_option
@connection_options
@output_options
def docker_hold(downgrade, version, release, dry_run) -> None:
    """Hold this node's Docker packages (apt-mark hold docker.io containerd …) so that no apt
    run moves Docker past the API version its Weave speaks; with --downgrade, first go back
    to a Docker that accepts it (apt-get install --allow-downgrades), wait for Weave to come
    back with dockerd, and check Nomad's Docker driver. The holds made are recorded in
    WEAVENOMAD_STATE_DIR (default /var/lib/weavenomad); reset and --release undo exactly those.
    Debian and Ubuntu (apt) only. Exit codes: 0 done, 1 error (rolled back), 64 bad flags.
    """
    from weavenomad.bootstrap.recover import HoldOptions, run_docker_hold

    if release and downgrade:
        raise click.UsageError("--release and --downgrade do not go together")
    result, code = run_docker_hold(app_context().settings,
                                   HoldOptions(downgrade, version, release, dry_run), _say())
    _finish(result, code)

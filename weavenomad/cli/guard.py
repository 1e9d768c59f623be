"""``weavenomad guard ensure|install``: keep the isolation guards bootstrap adds in place after
a reboot or a restart of Docker or Weave (see :mod:`weavenomad.bootstrap.keeper`)."""

from __future__ import annotations

import click

from weavenomad.cli.options import app_context, connection_options, output_options
from weavenomad.cli.units import install_options, install_unit


@click.group()
def guard() -> None:
    """Keep the iptables rules that stop a node from carrying traffic between tenants."""


@guard.command("ensure")
@click.option("--every", type=click.FloatRange(min=1.0), metavar="SECONDS",
              help="Keep looking every SECONDS until SIGTERM or SIGINT [default: look once].")
@connection_options
@output_options
def ensure(every) -> None:
    """Put back every isolation guard that is missing or shadowed by an earlier rule, at the
    top of its chain, as bootstrap does. Nothing is added while the node has no 'weave' bridge
    (Weave not launched, or the node reset). Needs root. Docker is asked for its bridge's name.
    """
    import signal

    from weavenomad.bootstrap import system
    from weavenomad.bootstrap.keeper import Keeper, Round, docker_bridge_of
    from weavenomad.clients import docker_client
    from weavenomad.errors import PrivilegeError

    app = app_context()
    if system.euid() != 0:
        raise PrivilegeError("weavenomad guard ensure must run as root (it changes iptables)",
                             hint="sudo weavenomad guard ensure")
    keeper = Keeper(docker_bridge_of(docker_client(app.settings)))

    def said(look: Round) -> dict:
        return {"weave": look.weave_present, "added": [g.name for g in look.added]}

    def human(look: Round) -> str:
        if not look.weave_present:
            return "no 'weave' bridge on this node: nothing to guard"
        if not look.added:
            return "every isolation guard is in place"
        return "\n".join(f"put back the isolation guard against {g.closes}: "
                         f"iptables {g.text()}" for g in look.added)

    if every is None:
        look = keeper.look()
        app.emit(said(look), lambda _: human(look))
        return

    def report(look: Round) -> None:
        if look.added:
            app.emit(said(look), lambda _: human(look))

    from weavenomad.runtime import logs

    logs.configure(app.settings.reconciler.log_format, app.settings.debug)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: keeper.stop.set())
    app.say(f"keeping the isolation guards, a look every {every:g} s")
    keeper.keep(every, report)


@guard.command("install")
@install_options("weavenomad-guards.service")
@output_options
def install(unit_dir, executable, no_enable, no_start, print_only) -> None:
    """Write the systemd unit that runs 'weavenomad guard ensure --every 10' (only NET_ADMIN
    and NET_RAW), then enable and start it (systemctl)."""
    from weavenomad.bootstrap import keeper

    install_unit(keeper.render_unit, keeper.UNIT_NAME, install_command="weavenomad guard install",
                 run_command=f"weavenomad guard ensure --every {keeper.UNIT_EVERY}",
                 unit_dir=unit_dir, executable=executable, no_enable=no_enable,
                 no_start=no_start, print_only=print_only)

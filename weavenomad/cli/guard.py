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
    # With --every it is a daemon like the reconciler (see _keep): it logs as the reconciler
    # does (JSON lines with --json or WEAVENOMAD_LOG_FORMAT=json) and, under systemd, is ready
    # after its first look and feeds the watchdog.
    from weavenomad.bootstrap import system
    from weavenomad.bootstrap.keeper import Keeper, docker_bridge_of
    from weavenomad.clients import docker_client
    from weavenomad.errors import PrivilegeError

    app = app_context()
    if system.euid() != 0:
        raise PrivilegeError("weavenomad guard ensure must run as root (it changes iptables)",
                             hint="sudo weavenomad guard ensure")
    bridge = docker_bridge_of(docker_client(app.settings))
    if every is None:
        look = Keeper(bridge).look()
        app.emit({"weave": look.weave_present, "added": [g.name for g in look.added]},
                 lambda _: _human(look))
        return
    _keep(app, bridge, every)


def _human(look) -> str:
    if not look.weave_present:
        return "no 'weave' bridge on this node: nothing to guard"
    if not look.added:
        return "every isolation guard is in place"
    return "\n".join(_put_back(g) for g in look.added)


def _put_back(guard) -> str:
    return f"put back the isolation guard against {guard.closes}: iptables {guard.text()}"


def _keep(app, bridge, every: float) -> None:
    """``guard ensure --every``: the keeper daemon, until SIGTERM or SIGINT."""
    import logging
    import signal

    from weavenomad.bootstrap.keeper import Keeper
    from weavenomad.runtime import logs
    from weavenomad.runtime.notify import Notifier, Supervised

    log_format = "json" if app.flags.get("json_output") else app.settings.reconciler.log_format
    logs.configure(log_format, app.settings.debug, environ=app.environ)
    log = logging.getLogger("weavenomad.guards")
    keeper = Keeper(bridge, supervised=Supervised(Notifier.from_environ(app.environ)))

    def report(look) -> None:
        # a guard that had to be put back was removed or shadowed by someone: worth a warning
        for guard in look.added:
            log.warning("%s", _put_back(guard), extra={"fields": {"guard": guard.name}})

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: keeper.stop.set())
    log.info("keeping the isolation guards, a look every %g s", every)
    keeper.keep(every, report)


@guard.command("install")
@install_options("weavenomad-guards.service")
@output_options
def install(unit_dir, executable, no_enable, no_start, print_only) -> None:
    """Write the systemd unit that runs 'weavenomad guard ensure --every 10' (only NET_ADMIN
    and NET_RAW), then enable and start it (systemctl)."""
    from weavenomad.bootstrap import keeper

    install_unit(keeper.SPEC, run_command=f"weavenomad guard ensure --every {keeper.UNIT_EVERY}",
                 unit_dir=unit_dir, executable=executable, no_enable=no_enable,
                 no_start=no_start, print_only=print_only)

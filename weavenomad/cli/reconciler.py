"""``weavenomad reconciler run|install``: the per-node daemon that makes Consul answer with
Weave addresses, and its systemd unit."""

from __future__ import annotations

import click

from weavenomad.cli.options import app_context, connection_options, output_options
from weavenomad.cli.units import install_options, install_unit

#: seconds the start-up access check waits for each agent
PREFLIGHT_TIMEOUT = 1.0


@click.group()
def reconciler() -> None:
    """Run or install the per-node daemon that makes Consul answer with Weave addresses."""


@reconciler.command("run")
@click.option("--node-id", metavar="ID",
              help="The Nomad node to serve [default: the local agent's client node].")
@click.option("--resync", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Seconds between full resyncs, above 0 [default: 60].")
@click.option("--once", is_flag=True,
              help="One converging pass, then exit: 0 converged, 2 not converged.")
@click.option("--metrics-addr", metavar="HOST:PORT", help="Serve Prometheus metrics here.")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines as text or JSON [env WEAVENOMAD_LOG_FORMAT; default text].")
@connection_options
@output_options
def run(node_id, resync, once, metrics_addr, log_format) -> None:
    """Keep a twin of every Nomad service of a Weave task in the local Consul agent, with the
    task's Weave address and container port, and mask Nomad's wrong-address instance.

    Event driven (Nomad blocking queries, Docker events, Consul watches) with a full resync;
    SIGTERM or SIGINT finish the current pass and exit. Runs under systemd as Type=notify with
    a watchdog (see 'weavenomad reconciler install').
    """
    from weavenomad.reconcile.runner import serve

    app = app_context()
    given = {"node_id": node_id, "resync": resync, "metrics_addr": metrics_addr,
             "log_format": log_format}
    app.flags.update({key: value for key, value in given.items() if value is not None})
    check_access(app.settings)
    code = serve(app.settings, app.environ, once=once)
    click.get_current_context().exit(int(code))


def check_access(settings) -> None:
    """Refuse to start with a token that cannot do the job, rather than run blind: under
    Consul's ACLs an anonymous or weak token reads empty service lists (Consul filters them, it
    does not refuse), so the daemon would see nothing to do and report itself converged.
    ``agent/self`` needs agent:read on both, so a missing token fails here with the variable to
    set. An agent that is down is no reason to refuse: the daemon waits for it."""
    from dataclasses import replace

    from weavenomad.clients import consul_client, nomad_client
    from weavenomad.errors import BackendAuthError, BackendUnavailable

    # a slow agent must not hold the start-up: the daemon copes with it
    quick = replace(settings, http_timeout=min(settings.http_timeout, PREFLIGHT_TIMEOUT))
    for client in (nomad_client(quick), consul_client(quick)):
        try:
            client.agent_self()
        except BackendAuthError:
            raise
        except BackendUnavailable as exc:
            if not exc.temporary:  # TLS that will never verify, a bad address
                raise


@reconciler.command("install")
@install_options("weavenomad-reconciler.service")
@output_options
def install(unit_dir, executable, no_enable, no_start, print_only) -> None:
    """Write the hardened systemd unit, then enable and start it (systemctl)."""
    # Returns once systemd has started the daemon, which is ready even while Nomad or Consul is
    # down (it waits for them, and the output says what for); a unit that does not start is an
    # error naming why. A unit edited by hand is replaced, with a warning naming the change.
    from weavenomad.reconcile import systemd

    install_unit(systemd.SPEC, run_command="weavenomad reconciler run", unit_dir=unit_dir,
                 executable=executable, no_enable=no_enable, no_start=no_start,
                 print_only=print_only)

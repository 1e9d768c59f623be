"""``weavenomad status``: per tenant and service, each allocation's Weave address and whether
Consul advertises it correctly."""

from __future__ import annotations

import click

from weavenomad.cli.options import app_context, connection_options, output_options


@click.command()
@click.option("--tenant", metavar="NAME", help="Only this tenant's allocations.")
@connection_options
@output_options
def status(tenant) -> None:
    """Show each tenant's allocations and how Consul advertises them.

    Exit codes: 0 when every service instance is advertised with its Weave address only,
    2 when some are not (the state column says why), 1 on error.
    """
    from weavenomad.clients import consul_client, nomad_client
    from weavenomad.reconcile import status as report
    from weavenomad.reconcile.consul import ConsulAgent
    from weavenomad.tenancy.operations import registry_for

    app = app_context()
    found = report.gather(nomad_client(app.settings), ConsulAgent(consul_client(app.settings)),
                          registry_for(app.settings), tenant)
    app.emit([r.to_json() for r in found], lambda _: report.render(found))
    if any(not r.correct for r in found):
        click.get_current_context().exit(2)

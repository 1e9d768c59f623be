"""``weavenomad status``: per tenant and service, each allocation's Weave address and whether
Consul advertises it correctly."""

from __future__ import annotations

import click

from weavenomad.cli.options import app_context, connection_options, output_options

#: seconds the look at this machine's Weave may take (status runs from any machine)
WEAVE_LOOK_TIMEOUT = 2.0


@click.command()
@click.option("--tenant", metavar="NAME", help="Only this tenant's allocations (a tenant name, "
              "or the net:CIDR a job was run with).")
@connection_options
@output_options
def status(tenant) -> None:
    """Show every running service instance of the overlay and what Consul answers for it.

    One row per service of each running allocation: tenant, job, group, service, allocation,
    node, the Weave address the reconciler found (its twin's), what Consul's health API and
    DNS answer for it (only registrations whose checks pass), and STATE: ok when that is the
    Weave address only, else what is wrong (an explanation of each follows on stderr). The
    last line counts the correct ones. --json prints the rows.

    A task whose WEAVE_CIDR puts it into a subnet that is not its job's (another tenant's, or
    a deleted tenant's quarantined one, e.g. a job run around weavenomad) shows as "tenant
    violation"; a task of a deleted tenant, whose subnet stays quarantined while it runs, as
    "tenant deleted". Such tasks are listed even without services, and --tenant NAME lists
    the tasks in the tenant's subnet that are not its own too.

    On a node whose Weave waits for peers (set up before enough of the peers named at its
    launch), a line on stderr says so and names the peers not connected yet.

    Exit codes: 0 every instance is answered with its Weave address only, 2 some are not (or
    are in violation, or a deleted tenant's), 1 error (an unknown --tenant included), 64 bad
    flags.
    """
    from dataclasses import replace

    from weavenomad.clients import consul_client, nomad_client, weave_client
    from weavenomad.reconcile import status as report
    from weavenomad.reconcile.consul import ConsulAgent
    from weavenomad.tenancy.operations import registry_for

    app = app_context()
    found = report.gather(nomad_client(app.settings), ConsulAgent(consul_client(app.settings)),
                          registry_for(app.settings), tenant)
    app.emit([r.to_json() for r in found], lambda _: report.render(found, app.paint_out))
    if not app.flags.get("json_output"):
        for line in report.explanations(found):
            app.tell(line)
    # this machine's Weave, if it runs one: a quick local look
    waiting = report.local_peer_wait(weave_client(replace(app.settings, http_timeout=min(
        app.settings.http_timeout, WEAVE_LOOK_TIMEOUT))))
    if waiting is not None:
        app.warn(report.peer_wait_line(waiting))
    if any(not r.correct for r in found):
        click.get_current_context().exit(2)

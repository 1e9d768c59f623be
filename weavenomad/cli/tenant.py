"""``weavenomad tenant``: tenants and their Weave subnets, kept in Consul KV."""

from __future__ import annotations

import click

from weavenomad.cli.options import (
    app_context,
    connection_options,
    key_value_pairs,
    output_options,
)


@click.group()
def tenant() -> None:
    """Create, list, show and delete tenants (one Weave subnet each)."""


@tenant.command("create")
@click.argument("name")
@click.option("--cidr", help="Use this subnet (must be free, inside the Weave range).")
@click.option("--prefix-len", type=int, default=24, show_default=True,
              help="Size of the subnet to allocate when --cidr is not given.")
@click.option("--description", default="", help="Free text kept with the tenant.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              callback=key_value_pairs, help="A label kept with the tenant (repeatable).")
@click.option("--ipalloc-range", metavar="CIDR",
              help="Record the Weave range when bootstrap has not (with --default-subnet).")
@click.option("--default-subnet", metavar="CIDR", help="Record Weave's default subnet.")
@connection_options
@output_options
def create(name, cidr, prefix_len, description, labels, ipalloc_range, default_subnet) -> None:
    """Create tenant NAME with the lowest free subnet (or --cidr).

    A deleted tenant's subnet is quarantined while Nomad shows tasks with addresses in it (see
    'tenant delete'); create asks Nomad about every quarantined subnet first, frees those no
    task holds any more, and never hands out one that is still held (--cidr asking for it is
    refused, naming the jobs). When Nomad cannot be asked, the quarantine stays.
    """
    from weavenomad.clients import nomad_client
    from weavenomad.tenancy import operations as ops
    from weavenomad.tenancy.model import check_tenant_name
    from weavenomad.tenancy.weavecidr import parse_subnet

    app = app_context()
    if cidr and prefix_len != 24:
        raise click.UsageError("--cidr and --prefix-len exclude each other")
    check_tenant_name(name)  # bad input is refused before Consul is asked
    if cidr:
        parse_subnet(cidr, what="--cidr")
    created = ops.create_tenant(
        ops.registry_for(app.settings), name, cidr=cidr, prefix_len=prefix_len,
        description=description, labels=labels,
        cluster=ops.cluster_from_flags(ipalloc_range, default_subnet),
        connect_nomad=lambda: nomad_client(app.settings), warn=app.warn,
    )
    app.emit(ops.describe_tenant(created), lambda t: f"created tenant {t['name']}: {t['subnet']}")


@tenant.command("list")
@connection_options
@output_options
def list_() -> None:
    """List tenants and their subnets, then the quarantined subnets of deleted tenants (not
    handed out while tasks hold addresses in them; --json lists the tenants only)."""
    from weavenomad.tenancy import operations as ops

    app = app_context()
    registry = ops.registry_for(app.settings).load()
    rows = [ops.describe_tenant(t) for _, t in sorted(registry.tenants.items())]

    def table(rows: list[dict]) -> str:
        lines = ["no tenants"]
        if rows:
            width = max(len(r["name"]) for r in rows + [{"name": "NAME"}])
            lines = [f"{'NAME':<{width}}  {'SUBNET':<18}  {'CREATED':<20}  DESCRIPTION"]
            lines += [f"{r['name']:<{width}}  {r['subnet']:<18}  {r['created']:<20}  "
                      f"{r['description']}" for r in rows]
        return "\n".join(lines + ops.quarantine_lines(registry))

    app.emit(rows, table)


@tenant.command("show")
@click.argument("name")
@connection_options
@output_options
def show(name) -> None:
    """Show tenant NAME with its running allocations."""
    from weavenomad.clients import nomad_client
    from weavenomad.tenancy import operations as ops

    app = app_context()
    found = ops.registry_for(app.settings).load().get(name)
    data = {**ops.describe_tenant(found),
            "allocations": ops.tenant_allocations(nomad_client(app.settings), found)}

    def human(d: dict) -> str:
        lines = [f"{key}: {d[key]}" for key in ("name", "subnet", "created", "description")]
        lines += [f"labels: {', '.join(f'{k}={v}' for k, v in d['labels'].items()) or '-'}"]
        lines += [f"allocations: {len(d['allocations'])}"]
        lines += [f"  {a['ID'][:8]}  {a['JobID']}  {a['TaskGroup']}  {a['ClientStatus']}"
                  for a in d["allocations"]]
        return "\n".join(lines)

    app.emit(data, human)


@tenant.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even while its allocations run; the subnet "
              "stays quarantined until they stop.")
@connection_options
@output_options
def delete(name, force) -> None:
    """Delete tenant NAME (refused while its allocations run, unless --force).

    The subnet is quarantined, then freed at once when Nomad shows no task with an address in
    it: no allocation of any job (the tenant's, or one run around weavenomad) pending or
    running there, none lost on a node that is down, no job waiting to place tasks there.
    Otherwise it stays quarantined, and 'tenant create' frees it once they are gone; until
    then no new tenant gets it, 'tenant list' shows it and 'status' shows its tasks.
    """
    from weavenomad.clients import nomad_client
    from weavenomad.tenancy import operations as ops

    app = app_context()
    removed = ops.delete_tenant(ops.registry_for(app.settings), nomad_client(app.settings),
                                name, force=force)
    app.emit(removed.to_json(), lambda _: removed.text())

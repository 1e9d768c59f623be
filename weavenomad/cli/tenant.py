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
    """Create tenant NAME with the lowest free subnet (or --cidr)."""
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
    )
    app.emit(ops.describe_tenant(created), lambda t: f"created tenant {t['name']}: {t['subnet']}")


@tenant.command("list")
@connection_options
@output_options
def list_() -> None:
    """List tenants and their subnets."""
    from weavenomad.tenancy import operations as ops

    app = app_context()
    registry = ops.registry_for(app.settings).load()
    rows = [ops.describe_tenant(t) for _, t in sorted(registry.tenants.items())]

    def table(rows: list[dict]) -> str:
        if not rows:
            return "no tenants"
        width = max(len(r["name"]) for r in rows + [{"name": "NAME"}])
        lines = [f"{'NAME':<{width}}  {'SUBNET':<18}  {'CREATED':<20}  DESCRIPTION"]
        lines += [f"{r['name']:<{width}}  {r['subnet']:<18}  {r['created']:<20}  "
                  f"{r['description']}" for r in rows]
        return "\n".join(lines)

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
@click.option("--force", is_flag=True, help="Delete even while its allocations run.")
@connection_options
@output_options
def delete(name, force) -> None:
    """Delete tenant NAME (refused while its allocations run, unless --force)."""
    from weavenomad.clients import nomad_client
    from weavenomad.tenancy import operations as ops

    app = app_context()
    removed = ops.delete_tenant(ops.registry_for(app.settings), nomad_client(app.settings),
                                name, force=force)
    app.emit(ops.describe_tenant(removed), lambda t: f"deleted tenant {t['name']} "
             f"({t['subnet']})")

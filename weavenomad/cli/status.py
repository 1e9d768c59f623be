"""``weavenomad status`` (being written for issue 5)."""

import click


@click.command()
def status() -> None:
    """Show each tenant's allocations and how Consul advertises them (in progress)."""
    raise click.ClickException("status is not available yet")

"""``weavenomad bootstrap``, ``reset`` and ``doctor`` (being written for issue 6)."""

import click


@click.command()
def bootstrap() -> None:
    """Set up this node: Weave peer, exposed subnets, Nomad's Docker endpoint (in progress)."""
    raise click.ClickException("bootstrap is not available yet")


@click.command()
def reset() -> None:
    """Undo bootstrap on this node (in progress)."""
    raise click.ClickException("reset is not available yet")


@click.command()
def doctor() -> None:
    """Check this node and the cluster (in progress)."""
    raise click.ClickException("doctor is not available yet")

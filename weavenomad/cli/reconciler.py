"""``weavenomad reconciler`` (being written for issue 5)."""

import click


@click.group()
def reconciler() -> None:
    """Make Consul answer with Weave addresses (in progress)."""

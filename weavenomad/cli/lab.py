"""``weavenomad lab``: the local lab (filled in by the lab work)."""

import click


@click.group()
def lab() -> None:
    """Run a local lab: private dockerd nodes, emulated Weave, simulated Consul and Nomad."""

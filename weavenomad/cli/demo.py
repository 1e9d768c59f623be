"""``weavenomad demo``: the whole story on the local lab, narrated and checked."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards (weavenomad lab down "
              "--state-dir DIR removes it).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's lab lives [default: the user's state directory, "
                   "e.g. ~/.local/state/weavenomad/demo].")
def demo(keep: bool, state_dir: Path | None) -> None:
    """Replay the seed's story on a 3-node local lab (root needed).

    Bootstraps every node with the other two as Weave peers, creates tenants acme and globex,
    runs the seed's httpbackend job in each, shows Consul advertising Docker-bridge addresses,
    starts the reconciler on every node and shows Consul answering with Weave addresses only,
    then proves isolation: same-tenant traffic passes, cross-tenant traffic fails. Exit code 0
    only if every check held.
    """
    from weavenomad.lab.demo import run_demo
    from weavenomad.lab.layout import default_state_dir

    state_dir = state_dir or default_state_dir().parent / "demo"
    held = run_demo(state_dir, keep, click.echo)
    click.get_current_context().exit(0 if held else 1)

"""What ``weavenomad reconciler install`` and ``weavenomad guard install`` share: the options
and the steps of writing a systemd unit, enabling and starting it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

from weavenomad.cli.options import app_context


def install_options(unit: str):
    """The options of a command that installs ``unit``."""
    options = (
        click.option("--unit-dir", type=click.Path(file_okay=False),
                     default="/etc/systemd/system", show_default=True,
                     help=f"Where to write {unit}."),
        click.option("--executable", metavar="PATH",
                     help="The weavenomad command for ExecStart [default: the one on PATH]."),
        click.option("--no-enable", is_flag=True, help="Write the unit only; do not enable it."),
        click.option("--no-start", is_flag=True,
                     help="Enable the unit without starting it now."),
        click.option("--print", "print_only", is_flag=True,
                     help="Print the unit and change nothing."),
    )

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def install_unit(render: Callable[[Sequence[str]], str], unit: str, *, install_command: str,
                 run_command: str, unit_dir: str, executable: str | None, no_enable: bool,
                 no_start: bool, print_only: bool) -> None:
    """Render the unit for ``executable``, then print it, or write, enable and start it."""
    from pathlib import Path

    from weavenomad.runtime import units

    app = app_context()
    text = render(units.command_prefix(executable))
    if print_only:
        click.echo(text, nl=False)
        return
    path = units.write_unit(Path(unit_dir), text, unit, install_command)
    if not no_enable:
        units.enable(unit, run_command, start=not no_start)
    state = "written" if no_enable else ("enabled" if no_start else "enabled and started")
    app.emit({"unit": str(path), "state": state}, lambda d: f"{d['unit']}: {d['state']}")

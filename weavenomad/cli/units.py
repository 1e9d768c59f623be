"""What ``weavenomad reconciler install`` and ``weavenomad guard install`` share: the options
and the steps of writing a systemd unit, enabling and starting it."""

from __future__ import annotations

import os
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


#: present when systemd is the init system (its documented test, sd_booted(3))
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"


def systemd_runs() -> bool:
    return os.path.isdir(SYSTEMD_RUNTIME_DIR)


def install_unit(render: Callable[[Sequence[str]], str], unit: str, *, install_command: str,
                 run_command: str, unit_dir: str, executable: str | None, no_enable: bool,
                 no_start: bool, print_only: bool) -> None:
    """Render the unit for ``executable``, then print it, or write, enable and start it.
    Nothing is left half-done: without systemd nothing is written (unless --no-enable asks
    for the file only), and a unit systemctl refuses is taken back."""
    from pathlib import Path

    from weavenomad.errors import ConfigError, WeavenomadError
    from weavenomad.runtime import units

    app = app_context()
    text = render(units.command_prefix(executable))
    if print_only:
        click.echo(text, nl=False)
        return
    if not no_enable and not systemd_runs():
        raise ConfigError(f"systemd is not running on this node (no {SYSTEMD_RUNTIME_DIR}): "
                          f"{unit} was not written",
                          hint=f"start '{run_command}' with your service manager, or write "
                               "the file only with --no-enable")
    before = _current_text(Path(unit_dir) / unit)
    path = units.write_unit(Path(unit_dir), text, unit, install_command)
    if not no_enable:
        try:
            units.enable(unit, run_command, start=not no_start)
        except WeavenomadError as exc:
            _take_back(path, before)
            raise WeavenomadError(f"{exc.message}; {path} was put back as it was",
                                  hint=exc.hint) from None
    state = "written" if no_enable else ("enabled" if no_start else "enabled and started")
    app.emit({"unit": str(path), "state": state}, lambda d: f"{d['unit']}: {d['state']}")


def _current_text(path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # none yet (or unreadable: then write_unit says why)
        return None


def _take_back(path, before: str | None) -> None:
    """The unit file as it was before this install: removed, or its old text."""
    import contextlib

    with contextlib.suppress(OSError):
        if before is None:
            path.unlink()
        else:
            path.write_text(before)

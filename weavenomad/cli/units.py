"""What ``weavenomad reconciler install`` and ``weavenomad guard install`` share: the options
and the steps of writing a systemd unit, enabling and starting it, and saying how it went."""

from __future__ import annotations

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


#: seconds before the install whose journal lines may tell why the unit does not start
START_MARGIN = 10


def _warn(line: str) -> None:
    click.echo(f"weavenomad: warning: {line}", err=True)


def install_unit(spec, *, run_command: str, unit_dir: str, executable: str | None,
                 no_enable: bool, no_start: bool, print_only: bool) -> None:
    """Render ``spec`` (a :class:`~weavenomad.runtime.unitcheck.UnitSpec`) for
    ``executable``, then print it, or write, enable and start it. Returns once systemd has
    started the unit (the daemons say READY=1 even while an agent is down), and says what the
    daemon waits for; a unit that does not start is an error naming why and the fix. Nothing is
    left half-done: a unit that systemctl refuses (or a node without systemctl) is taken back,
    unless --no-enable asked for the file only."""
    import time
    from pathlib import Path

    from weavenomad.errors import ConfigError, WeavenomadError
    from weavenomad.runtime import unitcheck, units

    app = app_context()
    prefix = units.command_prefix(executable)
    text = spec.render(prefix)
    if print_only:
        click.echo(text, nl=False)
        return
    problem = units.executable_problem(prefix, spec.install_command)
    if problem is not None:
        if problem.severe and not no_enable:
            raise ConfigError(problem.message, hint=problem.fix)
        _warn(problem.one_line())
    before = units.read_unit_file(Path(unit_dir) / spec.name)
    replaced = before.text is not None and before.text != text
    edit = unitcheck.hand_edit(spec, before.text) if replaced else None
    if edit is not None:  # said before the edit is gone
        _warn(f"replacing {unitcheck.edit_message(spec, before.path, edit)}; keep local "
              f"changes in a drop-in (systemctl edit {spec.short})")
    was_running = replaced and not no_enable and not no_start and units.is_active(spec.name)
    path = units.write_unit(Path(unit_dir), text, spec.name, spec.install_command)
    for found in unitcheck.env_problems(spec, units.read_unit_file(path)):
        _warn(found.one_line())
    status = ""
    if not no_enable:
        # a unit that was already starting may have said why before this install began
        started = time.time() - START_MARGIN
        try:
            units.enable(spec.name, run_command, start=not no_start)
            if was_running:  # enable --now leaves a running unit as it is: run the new one
                units.restart(spec.name, run_command)
        except units.UnitStartError as exc:
            raise _not_started(spec, exc, started) from None
        except WeavenomadError as exc:  # systemctl refused the unit: it goes as it came
            _take_back(path, before.text)
            raise WeavenomadError(f"{exc.message}; {path} was put back as it was",
                                  hint=exc.hint) from None
        if not no_start:
            status = _started(spec, started)
    state = "written" if no_enable else ("enabled" if no_start else "enabled and started")
    app.emit({"unit": str(path), "state": state, "status": status},
             lambda d: f"{d['unit']}: {d['state']}" + (f"; {status}" if status else ""))


def _started(spec, since: float) -> str:
    """The unit's status once started; an error when systemd says it does not run."""
    from weavenomad.errors import WeavenomadError
    from weavenomad.runtime import unitcheck, units

    state = units.read_state(spec.name)
    if state is None:  # systemctl said nothing more: trust its exit code
        return ""
    problem = unitcheck.state_problem(spec, state, units.telling_warning(spec.name, since))
    if problem is not None and problem.severe:
        raise WeavenomadError(problem.message, hint=problem.fix)
    return state.status_text


def _not_started(spec, exc, since: float):
    """The error for a start that failed: systemd's view of why, else systemctl's words."""
    from weavenomad.errors import WeavenomadError
    from weavenomad.runtime import unitcheck, units

    state = units.read_state(spec.name)
    problem = None if state is None else unitcheck.state_problem(
        spec, state, units.telling_warning(spec.name, since))
    if problem is None:
        return exc
    return WeavenomadError(problem.message, hint=problem.fix)


def _take_back(path, before: str | None) -> None:
    """The unit file as it was before this install: removed, or its old text."""
    import contextlib

    with contextlib.suppress(OSError):
        if before is None:
            path.unlink()
        else:
            path.write_text(before)

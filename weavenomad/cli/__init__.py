"""The ``weavenomad`` command. Commands live in sibling modules and are imported on first use,
so ``weavenomad --help`` does not pay for docker, requests or hcl2."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import traceback

import click

from weavenomad import __version__
from weavenomad.cli import redaction
from weavenomad.cli.options import AppContext, connection_options, is_debug, output_options
from weavenomad.errors import ExitCode, WeavenomadError
from weavenomad.runtime import logs

#: command name -> "module:attribute", loaded lazily
COMMANDS: dict[str, str] = {
    "bootstrap": "weavenomad.cli.node:bootstrap",
    "config": "weavenomad.cli.config_cmd:config",
    "docker-hold": "weavenomad.cli.node:docker_hold",
    "doctor": "weavenomad.cli.node:doctor",
    "guard": "weavenomad.cli.guard:guard",
    "plan": "weavenomad.cli.run:plan",
    "reconciler": "weavenomad.cli.reconciler:reconciler",
    "render": "weavenomad.cli.run:render",
    "reset": "weavenomad.cli.node:reset",
    "run": "weavenomad.cli.run:run",
    "status": "weavenomad.cli.status:status",
    "tenant": "weavenomad.cli.tenant:tenant",
    "weave-upgrade": "weavenomad.cli.node:weave_upgrade",
}


#: entry point group through which other distributions add commands (weavenomad-lab adds
#: ``lab`` and ``demo``); the product never imports them by name
PLUGIN_GROUP = "weavenomad.commands"
#: commands that only the lab distribution provides, and how to get them
LAB_COMMANDS = ("demo", "lab")
LAB_HINT = ("install the local lab to get them: scripts/install-deps in a checkout of "
            "weavenomad, or pip install ./lab")


class CommandNotInstalled(WeavenomadError):
    """A command another distribution provides is missing: as good as no such command."""

    exit_code = ExitCode.USAGE


@functools.cache
def _installed_plugins() -> tuple[tuple[str, str], ...]:
    from importlib.metadata import entry_points

    return tuple((entry.name, entry.value) for entry in entry_points(group=PLUGIN_GROUP))


def plugin_commands() -> dict[str, str]:
    """Commands that installed distributions add through :data:`PLUGIN_GROUP` (scanned once
    a process)."""
    return dict(_installed_plugins())


def _unloadable(name: str, target: str, error: Exception) -> click.Command:
    """Stands in for a plugin command whose module fails to import: ``--help`` still lists the
    others, and running it says why in one line."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())

    def refuse() -> None:
        raise WeavenomadError(
            f"'weavenomad {name}' is installed ({target}) but cannot be loaded: {reason}",
            hint=f"reinstall it; {LAB_HINT}" if name in LAB_COMMANDS else None,
        )

    return click.Command(
        name, callback=refuse, add_help_option=False, help=f"Cannot be loaded: {reason}",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they run or are listed. Besides its
    own, it offers those of :data:`PLUGIN_GROUP`, looked up only when a name is not its own
    (so ``weavenomad reconciler run`` never scans the installed distributions)."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    @property
    def plugins(self) -> dict[str, str]:
        return {name: target for name, target in plugin_commands().items()
                if name not in self.lazy}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy) | set(self.plugins))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            return _load(self.lazy[name])
        if name in self.commands:
            return super().get_command(ctx, name)
        target = self.plugins.get(name)
        if target is None:
            return None
        try:
            return _load(target)
        except Exception as exc:  # a broken plugin must not break the rest of the command
            return _unloadable(name, target, exc)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] in LAB_COMMANDS and self.get_command(ctx, args[0]) is None:
            raise CommandNotInstalled(
                f"'weavenomad {args[0]}' comes with the local lab, which is not installed",
                hint=LAB_HINT,
            )
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing needs each command's short help, hence its module. The modules import only
        # click at the top, so this stays cheap.
        super().format_commands(ctx, formatter)
        missing = [name for name in LAB_COMMANDS if name not in self.list_commands(ctx)]
        if missing:
            with formatter.section("Not installed"):
                formatter.write_text(f"{', '.join(missing)}: the local lab and its demo; "
                                     f"{LAB_HINT}.")


def _load(target: str) -> click.Command:
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="weavenomad")
@connection_options
@output_options
def cli() -> None:
    """Multi-tenant Weave Net overlay for Nomad, with Consul answering Weave addresses.

    Connection settings come from flags, then the ecosystem's environment variables
    (NOMAD_ADDR, NOMAD_TOKEN, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, DOCKER_HOST, ...), then the
    config file, then defaults ('weavenomad config show' says which). Tokens are never printed.

    Results go to stdout, progress, warnings and hints to stderr; --json makes stdout JSON.
    Colour on a terminal only, off when piped or when NO_COLOR is set.

    Exit codes: 0 success; 1 error (an error changes nothing, or nothing more); 2 done, but it
    needs attention (placement failures, a failed deployment, wrong Consul answers, Nomad to
    restart by hand); 64 bad flags or arguments; 130 interrupted. 'plan' and 'run --dry-run'
    use nomad job plan's: 0 no changes, 1 changes, 255 error.

    Shell completion (bash, zsh or fish) comes from click; add one line to your shell's rc:

    \b
    eval "$(_WEAVENOMAD_COMPLETE=bash_source weavenomad)"   # ~/.bashrc
    eval "$(_WEAVENOMAD_COMPLETE=zsh_source weavenomad)"    # ~/.zshrc
    _WEAVENOMAD_COMPLETE=fish_source weavenomad | source    # ~/.config/fish/config.fish
    """


def _print_error(message: str, environ: dict[str, str] | None = None,
                 journal: bool = False) -> None:
    """The one line of a failure: coloured on a terminal; with ``journal`` (stderr is
    journald's: a daemon under systemd) it carries its priority instead, so a daemon that ends
    on it shows under 'journalctl -p err'."""
    if journal:
        line = f"weavenomad: error: {redaction.hide(message)}"
        click.echo(logs.with_priority(line, logging.ERROR), err=True)
        return
    from weavenomad.cli.style import painter

    prefix = painter(sys.stderr, environ or {})("weavenomad: error:", "red")
    click.echo(f"{prefix} {redaction.hide(message)}", err=True)


def _print_traceback(journal: bool = False) -> None:
    text = redaction.hide(traceback.format_exc().rstrip("\n"))
    click.echo(logs.with_priority(text, logging.ERROR) if journal else text, err=True)


def usage_line(exc: click.UsageError) -> str:
    """click's usage error as one line: the problem, then where the command's flags are."""
    message = " ".join(exc.format_message().split())
    where = exc.ctx.command_path if exc.ctx is not None else "weavenomad"
    return f"{message} (see '{where} --help')"


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> None:
    """Entry point: run the command and turn every known failure into one line and an exit
    code from :class:`ExitCode`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ if environ is None else environ)
    journal = logs.is_journal(environ, sys.stderr)
    debug = is_debug(argv, environ)
    redaction.remember([environ.get("NOMAD_TOKEN"), environ.get("CONSUL_HTTP_TOKEN")])
    redaction.install_log_redaction()
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = AppContext(environ)
    try:
        # without standalone mode click returns ctx.exit(n)'s code instead of exiting
        returned = cli.main(args=argv, prog_name="weavenomad", standalone_mode=False, obj=app)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _print_error("interrupted", environ, journal)
        sys.exit(ExitCode.INTERRUPTED)
    except click.UsageError as exc:
        _print_error(usage_line(exc), environ, journal)
        sys.exit(ExitCode.USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.ERROR)
    except WeavenomadError as exc:
        if debug:
            _print_traceback(journal)
        _print_error(exc.one_line(), environ, journal)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # stdout closed early (| head): not an error worth a traceback
        sys.exit(ExitCode.OK)
    except Exception as exc:  # a bug: show it, but never a token in it
        _print_traceback(journal)
        _print_error(f"unexpected {type(exc).__name__}; the traceback above shows where "
                     "(please report it)", environ, journal)
        sys.exit(ExitCode.ERROR)
    sys.exit(returned if isinstance(returned, int) else ExitCode.OK)

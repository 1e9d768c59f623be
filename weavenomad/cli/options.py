"""Options shared by many commands, spelled once (sqlite-utils' ``output_options`` habit).

The connection options can be given before the command (``weavenomad --nomad-addr X run``)
or after it (``weavenomad run --nomad-addr X``); both land in the same :class:`AppContext`.
Only ``click`` and our own light modules are imported here: ``--help`` must stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from weavenomad.cli import redaction

#: flags whose value is a secret: remembered for redaction, and warned about (argv is public)
TOKEN_FLAGS = {"nomad_token": "NOMAD_TOKEN", "consul_token": "CONSUL_HTTP_TOKEN"}


class AppContext:
    """What every command gets: the flags given, the environment, and the settings built once."""

    def __init__(self, environ: dict[str, str] | None = None):
        self.flags: dict[str, Any] = {}
        self.environ = dict(os.environ if environ is None else environ)
        self.config_path: str | None = None
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            from weavenomad.config import load_settings

            self._settings = load_settings(self.flags, self.environ, self.config_path)
            redaction.remember(self._settings.secrets())
        return self._settings

    def emit(self, data: Any, human: Callable[[Any], str] | None = None) -> None:
        """Print ``data`` as JSON with ``--json``, else through ``human`` (or as JSON)."""
        if self.flags.get("json_output") or human is None:
            text = json.dumps(data, indent=2, sort_keys=True, default=str)
        else:
            text = human(data)
        redaction.remember(self.settings.secrets())
        click.echo(redaction.hide_config_secrets(redaction.hide(text)))

    def say(self, line: str) -> None:
        """Print a line of the result (which may quote config text) with every secret hidden."""
        click.echo(redaction.hide_config_secrets(redaction.hide(line)))

    def tell(self, line: str) -> None:
        """Print progress or a hint on stderr, every secret hidden."""
        click.echo(redaction.hide_config_secrets(redaction.hide(line)), err=True)

    def warn(self, text: str) -> None:
        """A warning on stderr: ``warning: …``, the word in yellow on a terminal."""
        self.tell(f"{self.paint_err('warning:', 'yellow')} {text}")

    def paint_out(self, text: str, style: str) -> str:
        from weavenomad.cli.style import painter

        return painter(sys.stdout, self.environ)(text, style)

    def paint_err(self, text: str, style: str) -> str:
        from weavenomad.cli.style import painter

        return painter(sys.stderr, self.environ)(text, style)


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None or (param.name in ("json_output", "debug") and not value):
        return value
    app = ctx.ensure_object(AppContext)
    if param.name == "config_path":
        app.config_path = value
    else:
        app.flags[param.name] = value
    if param.name in TOKEN_FLAGS:
        redaction.remember([value])
        click.echo(f"weavenomad: warning: --{param.name.replace('_', '-')} puts the token in "
                   f"this process's command line, which every user can read (ps); set "
                   f"{TOKEN_FLAGS[param.name]} or the config file instead", err=True)
    return value


def _option(*decls: str, **kwargs: Any) -> Callable:
    return click.option(*decls, callback=_store, expose_value=False, **kwargs)


CONNECTION_OPTIONS = (
    _option("--config", "config_path", metavar="PATH",
            help="TOML config file [default: /etc/weavenomad/config.toml when present; "
                 "env WEAVENOMAD_CONFIG]"),
    _option("--nomad-addr", metavar="URL",
            help="Nomad HTTP API [env NOMAD_ADDR; default http://127.0.0.1:4646]"),
    _option("--nomad-token", metavar="TOKEN",
            help="Nomad ACL token [env NOMAD_TOKEN]; prefer the environment over the flag"),
    _option("--consul-addr", metavar="ADDR",
            help="Consul HTTP API [env CONSUL_HTTP_ADDR; default 127.0.0.1:8500]"),
    _option("--consul-token", metavar="TOKEN",
            help="Consul ACL token [env CONSUL_HTTP_TOKEN]; prefer the environment"),
    _option("--docker-host", metavar="URL",
            help="Docker Engine API [env DOCKER_HOST; default unix:///var/run/docker.sock]"),
    _option("--weave-api", metavar="URL",
            help="Weave HTTP API [env WEAVE_HTTP_ADDR; default http://127.0.0.1:6784]"),
)

OUTPUT_OPTIONS = (
    _option("--json", "json_output", is_flag=True, default=None,
            help="Print machine-readable JSON."),
    _option("--debug", is_flag=True, default=None,
            help="Show tracebacks and debug logs."),
)


def _apply(decorators: tuple[Callable, ...]) -> Callable:
    def decorate(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


connection_options = _apply(CONNECTION_OPTIONS)
output_options = _apply(OUTPUT_OPTIONS)


def key_value_pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """Callback for repeatable ``KEY=VALUE`` options (``--var``, ``--label``): a dict."""
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", ctx=ctx, param=param)
        pairs[key] = value
    return pairs


def app_context() -> AppContext:
    return click.get_current_context().ensure_object(AppContext)


def is_debug(argv: list[str], environ: dict[str, str]) -> bool:
    """Whether to show tracebacks; read before parsing so parse-time errors honour it too."""
    return "--debug" in argv or environ.get("WEAVENOMAD_DEBUG", "") not in ("", "0")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()

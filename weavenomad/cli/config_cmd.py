"""``weavenomad config``: show the settings in effect and where they came from."""

from __future__ import annotations

import click

from weavenomad.cli.options import app_context, connection_options, output_options


@click.group()
def config() -> None:
    """Inspect the settings in effect."""


@config.command("show")
@connection_options
@output_options
def show() -> None:
    """Print every key the config file takes, with the value in effect and where it came from.

    The text reads like the TOML config file, one [section] per table, each key followed by
    its source: a flag (--nomad-addr), the environment (env NOMAD_ADDR), the config file
    (file PATH) or the default; keys nothing sets are commented out. Tokens show as <set>.
    --json prints {"config_file", "settings": {section: {key: value}}, "sources":
    {"section.key": source}}.
    """
    from weavenomad.config import describe, describe_text

    app = app_context()
    app.emit(describe(app.settings), describe_text)

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
    """Print the resolved settings (flag > env > config file > default); tokens are masked."""
    from weavenomad.config import describe

    app = app_context()

    def human(data: dict) -> str:
        lines = []
        for section, value in data.items():
            if isinstance(value, dict):
                for key, inner in value.items():
                    if isinstance(inner, dict):
                        for k2, v2 in inner.items():
                            lines.append(f"{section}.{key}.{k2} = {v2}")
                    else:
                        lines.append(f"{section}.{key} = {inner}")
            else:
                lines.append(f"{section} = {value}")
        return "\n".join(lines)

    app.emit(describe(app.settings), human)

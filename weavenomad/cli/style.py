"""Colour on a terminal, none anywhere else: off when the stream is not a TTY, when ``NO_COLOR``
is set to anything (no-color.org) and for ``TERM=dumb``. Commands paint their own words
(PASS green, FAIL red, a plan's ``+`` green and ``-`` red) through :func:`painter`, so what is
piped or saved is the same text without escape codes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TextIO

#: SGR codes of the styles the commands use
CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
         "cyan": "36"}

Paint = Callable[[str, str], str]


def colour_on(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def plain(text: str, _style: str) -> str:
    return text


def ansi(text: str, style: str) -> str:
    code = CODES.get(style)
    return f"\033[{code}m{text}\033[0m" if code and text else text


def painter(stream: TextIO, environ: Mapping[str, str]) -> Paint:
    return ansi if colour_on(stream, environ) else plain


"""The commands the example jobs' header comments show (``#   weavenomad …``): the unit tests
check they parse and render, the lab test runs the ones that need a cluster."""

from __future__ import annotations

import shlex
from pathlib import Path


def header_commands(path: Path) -> list[list[str]]:
    """The commands a job file's header comment shows, as argv (their comments dropped)."""
    found = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith(("weavenomad ", "nomad ")):
            found.append(shlex.split(text.split(" # ")[0], comments=False))
    return found

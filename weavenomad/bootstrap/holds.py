"""The record of the package holds weavenomad made: ``<state dir>/docker-hold.json``, a JSON
``{"packages": [...]}``. ``bootstrap --hold-docker`` and ``weavenomad docker-hold`` add the
packages they held (not those held before), ``reset`` and ``docker-hold --release`` release
exactly those. The state directory is ``WEAVENOMAD_STATE_DIR`` (default /var/lib/weavenomad)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from weavenomad.errors import ValidationError

RECORD = "docker-hold.json"


def record_path(state_dir: str) -> str:
    return str(Path(state_dir) / RECORD)


def read_record(path: str) -> list[str]:
    """The packages weavenomad held, from ``path`` (none when it does not exist); a record that
    is not ours is one clear line."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: unreadable record of the Docker package holds: {exc}",
                              hint="remove it after checking 'apt-mark showhold'") from None
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise ValidationError(f"{path}: 'packages' must be a list of package names",
                              hint="remove it after checking 'apt-mark showhold'")
    return packages


def write_record(path: str, packages: list[str]) -> None:
    """Replace the record atomically; an empty one is removed."""
    target = Path(path)
    if not packages:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    partial = target.with_name(target.name + ".tmp")
    partial.write_text(json.dumps({"packages": sorted(set(packages))}, indent=1) + "\n")
    os.replace(partial, target)

"""The Nomad agent config on disk: find it, read it, back it up, write it atomically, validate it.

Where the config is, in this order: ``--nomad-config`` / ``WEAVENOMAD_NOMAD_CONFIG`` (a file or a
directory), the files the running agent reports (``/v1/agent/self`` ``config.Files``), then the
usual places ``/etc/nomad.d`` and ``/etc/nomad``. A directory means every ``*.hcl``/``*.json``
file in it, in name order, as ``nomad agent -config DIR`` reads them (editor leftovers skipped).

A changed file keeps its owner and mode; it is written to a temporary file next to it, flushed,
and renamed over the original, so a crash leaves either the old or the new text, never half.
The original goes to ``FILE.weavenomad.bak`` first (Nomad ignores that name); an existing backup
is kept, because it holds the text from before the first bootstrap, which ``reset`` restores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from weavenomad.errors import ConfigError, ValidationError
from weavenomad.nodeconfig.edit import ConfigFile

USUAL_PLACES = ("/etc/nomad.d", "/etc/nomad")
BACKUP_SUFFIX = ".weavenomad.bak"
VALIDATE_TIMEOUT = 60.0
CONFIG_HINT = "pass --nomad-config FILE_OR_DIR or set WEAVENOMAD_NOMAD_CONFIG"


@dataclass(frozen=True)
class ConfigLocation:
    #: what was found and how ("--nomad-config", "the running agent", "/etc/nomad.d")
    source: str
    paths: tuple[str, ...]


def backup_path(path: str) -> str:
    return path + BACKUP_SUFFIX


def _is_config_name(name: str) -> bool:
    temporary = name.endswith("~") or name.startswith((".#", ".")) or (
        name.startswith("#") and name.endswith("#"))
    return name.endswith((".hcl", ".json")) and not temporary


def _dir_files(directory: Path) -> list[str]:
    try:
        names = sorted(entry.name for entry in directory.iterdir() if entry.is_file())
    except OSError as exc:
        raise ConfigError(f"cannot read the Nomad config directory {directory}: "
                          f"{exc.strerror}", hint=CONFIG_HINT) from None
    return [str(directory / name) for name in names if _is_config_name(name)]


def locate(explicit: str | None, agent_files: Sequence[str] = ()) -> ConfigLocation:
    """Find the agent's config files (see the module docstring for the order)."""
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            found = _dir_files(path)
            if not found:
                raise ConfigError(f"no *.hcl or *.json files in {path}", hint=CONFIG_HINT)
            return ConfigLocation(f"--nomad-config {path}", tuple(found))
        if not path.exists():
            raise ConfigError(f"the Nomad config {path} does not exist", hint=CONFIG_HINT)
        return ConfigLocation(f"--nomad-config {path}", (str(path),))
    reported = [f for f in agent_files if f and Path(f).is_file()]
    if reported:
        return ConfigLocation("the running Nomad agent (config.Files)", tuple(reported))
    for place in USUAL_PLACES:
        if Path(place).is_dir() and _dir_files(Path(place)):
            return ConfigLocation(place, tuple(_dir_files(Path(place))))
    raise ConfigError("cannot find the Nomad agent config (the agent reports no files and "
                      f"{' and '.join(USUAL_PLACES)} hold none)", hint=CONFIG_HINT)


def read_text(path: str) -> str:
    """The file's text, decoded losslessly (line endings kept), or ConfigError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the Nomad config {path}: {exc.strerror}",
                          hint="run as root, or fix the file's permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"invalid Nomad agent config {path}: not UTF-8 text "
                              f"(byte {exc.start})") from None


def read_files(location: ConfigLocation) -> list[ConfigFile]:
    return [ConfigFile(path, read_text(path)) for path in location.paths]


def read_backups(paths: Sequence[str]) -> dict[str, str]:
    """``{config path: backup text}`` for the files that have a backup."""
    return {p: read_text(backup_path(p)) for p in paths if os.path.isfile(backup_path(p))}


def write_atomic(path: str, text: str, like: str | None = None) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync of the directory. Owner
    and mode come from ``like`` (default: ``path`` itself when it exists). A symlinked ``path``
    stays a link: its target gets the text (config managers often link /etc/nomad.d files)."""
    target = Path(os.path.realpath(path))
    reference = Path(like) if like else target
    stat = reference.stat() if reference.exists() else None
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".weavenomad-tmp",
                                dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if stat is not None:
            os.chmod(temp, stat.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(temp, stat.st_uid, stat.st_gid)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_backup(path: str, original: str) -> bool:
    """Save ``original`` as the file's backup unless one exists; True when written now."""
    backup = backup_path(path)
    if os.path.exists(backup):
        return False
    write_atomic(backup, original, like=path)
    return True


def remove_backup(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(backup_path(path))
    _fsync_dir(Path(path).parent)


def validate_with_nomad(paths: Sequence[str]) -> str | None:
    """Run ``nomad config validate`` on the files when the binary is here; its complaint as a
    ValidationError. The note says how the files were checked; None when there is no
    ``nomad`` on PATH (our own parser has checked the text already)."""
    nomad = shutil.which("nomad")
    if nomad is None:
        return None
    try:
        done = subprocess.run([nomad, "config", "validate", *paths], capture_output=True,
                              text=True, timeout=VALIDATE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValidationError(f"'nomad config validate' did not run: {exc}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode == 0:
        return "nomad config validate: " + (output.splitlines()[-1] if output else "ok")
    if done.returncode == 127 or output.startswith("Usage: nomad ["):
        # a Nomad without 'config validate' (1.0 and older) prints its general usage
        return f"checked with pyhcl ({nomad} has no 'config validate': Nomad 1.0 or older)"
    detail = " ".join(output.split())[:300] or f"exit {done.returncode}"
    raise ValidationError(f"nomad config validate rejects the edited config: {detail}")

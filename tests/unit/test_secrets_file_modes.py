"""Files bootstrap writes keep their owner and mode: the Nomad agent config (it may hold the
agent's Consul token, so it is often 0600 or 0640 root:nomad), its backup, and the restore.

These run the real writing code (:mod:`weavenomad.nodeconfig.files`) on real files; they need
root to give the files a foreign owner, as on a node.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from weavenomad.nodeconfig import files

TEXT = 'consul {\n  token = "agent-consul-token"\n}\n'
NEW_TEXT = TEXT + ('plugin "docker" {\n  config {\n'
                   '    endpoint = "unix:///var/run/weave/weave.sock"\n  }\n}\n')

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files another owner needs root")


def _config(tmp_path: Path, mode: int, uid: int = 0, gid: int = 4242) -> Path:
    path = tmp_path / "nomad.hcl"
    path.write_text(TEXT)
    os.chmod(path, mode)
    os.chown(path, uid, gid)
    return path


def _owner_mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400])
def test_an_edit_keeps_owner_and_mode(tmp_path, mode):
    path = _config(tmp_path, mode, uid=4243, gid=4242)
    files.write_atomic(str(path), NEW_TEXT)
    assert path.read_text() == NEW_TEXT
    assert _owner_mode(path) == (4243, 4242, mode)


def test_the_backup_has_the_originals_owner_and_mode(tmp_path):
    path = _config(tmp_path, 0o640)
    assert files.make_backup(str(path), TEXT) is True
    backup = Path(files.backup_path(str(path)))
    assert backup.read_text() == TEXT
    assert _owner_mode(backup) == (0, 4242, 0o640)


def test_a_restore_keeps_owner_and_mode(tmp_path):
    path = _config(tmp_path, 0o600, gid=4242)
    files.make_backup(str(path), TEXT)
    files.write_atomic(str(path), NEW_TEXT)
    files.write_atomic(str(path), TEXT)  # what reset and a rollback do
    assert path.read_text() == TEXT
    assert _owner_mode(path) == (0, 4242, 0o600)


def test_the_new_text_is_never_readable_by_others_while_written(tmp_path, monkeypatch):
    """The temporary file is private from its creation until it takes the final mode, so a
    0600 file's token is never in a world-readable file, not even for a moment."""
    path = _config(tmp_path, 0o600)
    seen = []
    real_fsync = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            seen.append(stat.S_IMODE(st.st_mode))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.write_atomic(str(path), NEW_TEXT)
    assert seen and all(mode & 0o077 == 0 for mode in seen), [oct(m) for m in seen]


def test_no_temporary_file_is_left_behind(tmp_path):
    path = _config(tmp_path, 0o600)
    files.write_atomic(str(path), NEW_TEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nomad.hcl"]


def test_a_symlinked_config_stays_a_symlink_and_its_target_gets_the_edit(tmp_path):
    real_dir, etc = tmp_path / "real", tmp_path / "etc"
    real_dir.mkdir()
    etc.mkdir()
    target = _config(real_dir, 0o640)
    link = etc / "nomad.hcl"
    link.symlink_to(target)
    files.write_atomic(str(link), NEW_TEXT)
    assert link.is_symlink()
    assert target.read_text() == NEW_TEXT
    assert _owner_mode(target) == (0, 4242, 0o640)

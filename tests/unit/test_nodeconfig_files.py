"""The Nomad config on disk: where it is found, atomic writes that keep owner and mode, backups."""

import os
import stat

import pytest

from weavenomad.errors import ConfigError, ValidationError
from weavenomad.nodeconfig import files


def test_explicit_directory_lists_config_files_in_name_order(tmp_path):
    for name in ("20-client.hcl", "10-base.hcl", "30.json", "notes.txt", "a.hcl~", ".#b.hcl",
                 "client.hcl.weavenomad.bak"):
        (tmp_path / name).write_text("")
    location = files.locate(str(tmp_path))
    assert [os.path.basename(p) for p in location.paths] == ["10-base.hcl", "20-client.hcl",
                                                             "30.json"]


def test_explicit_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        files.locate(str(tmp_path / "missing.hcl"))
    with pytest.raises(ConfigError, match=r"no \*.hcl"):
        files.locate(str(tmp_path))


def test_agent_reported_files_come_before_the_usual_places(tmp_path):
    reported = tmp_path / "agent.hcl"
    reported.write_text("client {}\n")
    location = files.locate(None, [str(reported), str(tmp_path / "gone.hcl")])
    assert location.paths == (str(reported),)
    assert "running Nomad agent" in location.source


def test_write_atomic_keeps_mode_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "agent.hcl"
    path.write_text("old\n")
    path.chmod(0o640)
    files.write_atomic(str(path), "new\r\nline\n")
    assert path.read_bytes() == b"new\r\nline\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.hcl"]


def test_backup_is_made_once_and_removed_on_request(tmp_path):
    path = tmp_path / "agent.hcl"
    path.write_text("original\n")
    assert files.make_backup(str(path), "original\n") is True
    assert files.make_backup(str(path), "second\n") is False  # the first original wins
    assert files.read_backups([str(path)]) == {str(path): "original\n"}
    files.remove_backup(str(path))
    assert files.read_backups([str(path)]) == {}


def test_unreadable_and_binary_files_are_clear_errors(tmp_path):
    path = tmp_path / "agent.hcl"
    path.write_bytes(b"\xff\xfe client")
    with pytest.raises(ValidationError, match="not UTF-8"):
        files.read_text(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        files.read_text(str(tmp_path / "nope.hcl"))


def test_validate_with_nomad_is_skipped_without_the_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert files.validate_with_nomad([str(tmp_path / "a.hcl")]) is None


def fake_nomad(tmp_path, monkeypatch, stderr: str, code: int):
    """A ``nomad`` first on PATH that prints ``stderr`` and exits ``code``."""
    fake = tmp_path / "nomad"
    fake.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit {code}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    return fake


def test_a_nomad_without_config_validate_is_named_in_the_note(tmp_path, monkeypatch):
    """Nomad 1.0 has no 'config validate': it prints its usage (docs/design.md)."""
    fake = fake_nomad(tmp_path, monkeypatch,
                      "Usage: nomad [-version] [-help] <command> [args]", 127)
    note = files.validate_with_nomad([str(tmp_path / "a.hcl")])
    assert note == (f"checked with pyhcl ({fake} has no 'config validate': Nomad 1.0 or "
                    "older)")


def test_validate_with_nomad_reports_its_complaint(tmp_path, monkeypatch):
    fake = tmp_path / "nomad"
    fake.write_text("#!/bin/sh\necho 'Error loading configuration from a.hcl: bad key' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValidationError, match="bad key"):
        files.validate_with_nomad([str(tmp_path / "a.hcl")])

"""Tests for sbil.files: atomic writes with ordinary permissions, and provenance."""

from __future__ import annotations

import json
import os
import stat

import pytest

from sbil import files


def test_write_json_atomic_replaces_whole_files_only(tmp_path):
    target = tmp_path / "sub" / "r.json"
    files.write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        files.write_json_atomic(target, {"x": float("nan")})  # NaN is not JSON
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(target.parent) == ["r.json"]  # no temporary file left behind
    files.write_json_atomic(target, {"x": float("nan")}, allow_nan=True)
    assert "NaN" in target.read_text()


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.write_atomic(target, broken)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_files_get_the_umask_default_mode_not_tempfiles_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        path = files.write_bytes_atomic(tmp_path / "w.bin", b"\x00\x01")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert files.umask() == old


def test_git_commit_is_a_hash_or_none():
    commit = files.git_commit()
    if commit is not None:
        sha = commit.removesuffix("-dirty")
        assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha)

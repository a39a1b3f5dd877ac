"""Tests for sbil.experiments.io: atomic writes and provenance."""

import json
import os

import pytest

from sbil.experiments import io


def test_atomic_json_and_text_leave_no_temporaries(tmp_path):
    path = io.write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1.5})
    assert json.loads(path.read_text()) == {"a": 1.5}
    io.write_text_atomic(tmp_path / "sub" / "r.json", "replaced")
    assert (tmp_path / "sub" / "r.json").read_text() == "replaced"
    assert sorted(os.listdir(tmp_path / "sub")) == ["r.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(ValueError):
        io.write_json_atomic(target, {"x": float("nan")})  # NaN is not valid JSON
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_git_commit_is_a_string():
    commit = io.git_commit()
    assert isinstance(commit, str) and commit

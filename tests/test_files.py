"""Tests for sbil.files: atomic writes with ordinary permissions, and provenance."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

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


# --- provenance -------------------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess:
    package = Path(files.__file__).resolve().parent
    return subprocess.run(["git", *args], cwd=package, capture_output=True, text=True)


def test_git_commit_names_this_checkout_and_its_state():
    head = _git("rev-parse", "HEAD")
    if head.returncode != 0:
        pytest.skip("sbil is not imported from a git checkout here")
    status = _git("status", "--porcelain", "--untracked-files=no")
    expected = head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")
    assert files.git_commit() == expected


def test_git_commit_is_none_for_an_installed_package_or_without_git(monkeypatch):
    monkeypatch.setattr(files, "__file__", "/usr/lib/python3/site-packages/sbil/files.py")
    assert files.git_commit() is None
    monkeypatch.undo()

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(files.subprocess, "run", no_git)
    assert files.git_commit() is None


def test_provenance_records_installed_versions_and_the_commit():
    import importlib.metadata

    import numpy

    record = files.provenance(["numpy", "sbil", "surely-not-installed-pkg"])
    assert record["git_commit"] == files.git_commit()
    assert record["versions"] == {
        "numpy": numpy.__version__,
        "sbil": importlib.metadata.version("sbil"),
        "surely-not-installed-pkg": None,
    }
    assert set(files.provenance()["versions"]) == {"gymnasium", "numpy", "sbil", "torch"}


def test_provenance_does_not_import_torch():
    code = "import sys, sbil.files; sbil.files.provenance(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- writability probes -----------------------------------------------------------------------


def test_check_writable_file_probes_the_folder_and_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "out.json"
    assert files.check_writable_file(target, what="--output") == target
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(files.NotWritableError, match=r"Cannot write --output .*a-file/x\.json"):
        files.check_writable_file(blocker / "x.json", what="--output")
    with pytest.raises(ValueError, match="it is a folder"):
        files.check_writable_file(tmp_path, what="--output")
    with pytest.raises(files.NotWritableError) as caught:
        files.check_writable_folder(blocker / "sub")
    assert caught.value.reason == "Not a directory"


# --- staged folders ---------------------------------------------------------------------------


def _folder(path: Path, **content: str) -> Path:
    path.mkdir(parents=True)
    for name, text in content.items():
        (path / name).write_text(text)
    return path


def test_replace_folder_into_a_missing_or_empty_target(tmp_path):
    target = tmp_path / "t"
    files.replace_folder(_folder(tmp_path / "n1", a="1"), target)
    assert (target / "a").read_text() == "1" and not (tmp_path / "n1").exists()
    empty = _folder(tmp_path / "e")
    files.replace_folder(_folder(tmp_path / "n2", b="2"), empty, overwrite=False)
    assert (empty / "b").read_text() == "2"


def test_replace_folder_swaps_a_full_target_only_with_overwrite(tmp_path):
    target = _folder(tmp_path / "t", old="x")
    new = _folder(tmp_path / "n", new="y")
    with pytest.raises(FileExistsError):
        files.replace_folder(new, target, overwrite=False)
    assert sorted(p.name for p in target.iterdir()) == ["old"] and new.is_dir()
    files.replace_folder(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # the old one is gone


def test_replace_folder_puts_the_old_folder_back_when_the_rename_fails(tmp_path):
    target = _folder(tmp_path / "t", old="x")
    with pytest.raises(FileNotFoundError):
        files.replace_folder(tmp_path / "missing", target)
    assert (target / "old").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    file_target = tmp_path / "f"
    file_target.write_text("")
    with pytest.raises(FileExistsError):
        files.replace_folder(_folder(tmp_path / "n"), file_target)


def test_staged_folder_swaps_in_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "run"
    old = os.umask(0o022)
    try:
        with files.staged_folder(target) as staging:
            assert staging.parent == tmp_path and staging.name.startswith(".sbil-tmp-")
            (staging / "a").write_text("1")
    finally:
        os.umask(old)
    assert (target / "a").read_text() == "1"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not mkdtemp's private 0700
    with pytest.raises(KeyboardInterrupt), files.staged_folder(target) as staging:
        (staging / "b").write_text("2")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in target.iterdir()) == ["a"]


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_remove_stale_staging_touches_only_what_dead_sbil_writers_left(tmp_path):
    host, dead, alive = files._host(), _dead_pid(), os.getpid()
    stale_tmp = _folder(tmp_path / f".sbil-tmp-{dead}-{host}-abcd1234", part="x")
    live_tmp = _folder(tmp_path / f".sbil-tmp-{alive}-{host}-abcd1234")
    other_host = _folder(tmp_path / f".sbil-tmp-{dead}-elsewhere-abcd1234")
    # Killed between moving "ds" aside and moving its replacement in: "ds" comes back.
    _folder(tmp_path / f".sbil-old-{dead}-{host}-efgh5678" / "ds", data="old")
    # Killed after the swap but before deleting the old copy: the copy is deleted.
    _folder(tmp_path / "kept", data="new")
    _folder(tmp_path / f".sbil-old-{dead}-{host}-ijkl9012" / "kept", data="old")
    unrelated = [_folder(tmp_path / ".sbil-tmp-notours"), _folder(tmp_path / ".hidden")]
    (tmp_path / ".x.sbil-lock").write_text("123 host\n")  # nobody holds it
    removed = files.remove_stale_staging(tmp_path)
    assert not stale_tmp.exists() and stale_tmp in removed
    assert live_tmp.is_dir() and other_host.is_dir() and all(p.is_dir() for p in unrelated)
    assert (tmp_path / "ds" / "data").read_text() == "old"
    assert (tmp_path / "kept" / "data").read_text() == "new"
    assert not (tmp_path / ".x.sbil-lock").exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any(n.startswith(f".sbil-old-{dead}") for n in names), names


def test_a_staging_folder_left_by_a_killed_writer_is_removed_by_the_next_one(tmp_path):
    code = (
        "import os, signal, sys; from sbil import files; "
        f"s = files.staging_folder({str(tmp_path / 'ds')!r}); (s / 'half').write_text('x'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", code])
    assert killed.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".sbil-tmp-")
    with files.staged_folder(tmp_path / "ds") as staging:
        (staging / "whole").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# --- locks ------------------------------------------------------------------------------------


def test_lock_excludes_a_second_writer_and_is_removed_on_release(tmp_path):
    target = tmp_path / "ds"
    with files.lock(target):
        assert files.lock_path(target).read_text().split()[0] == str(os.getpid())
        with pytest.raises(files.LockHeldError, match=f"process {os.getpid()} on") as caught:
            with files.lock(target):
                pass
        assert caught.value.holder.startswith(f"process {os.getpid()}")
    assert list(tmp_path.iterdir()) == []
    with files.lock(target):  # free again
        pass


def test_a_lock_held_by_another_process_and_freed_by_its_death(tmp_path):
    target = tmp_path / "ds"
    code = (
        "import sys, time; from sbil import files; "
        f"l = files.lock({str(target)!r}); l.__enter__(); print('held', flush=True); "
        "time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.LockHeldError, match=f"process {holder.pid} on"):
            with files.lock(target):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs
        holder.wait()
    assert files.lock_path(target).exists()  # left behind, but not held by anyone
    with files.lock(target):
        pass
    assert not files.lock_path(target).exists()


def _holder_that_dies_leaving_its_lock_to_a_child(target: Path) -> int:
    """Take the lock in a process that forks (the child inherits the descriptor, and with it
    the flock, as a fork of a worker or a vector env would) and then dies; return the child's
    pid. The lock file names the dead process."""
    code = (
        "import os, sys, time; from sbil import files; "
        f"l = files.lock({str(target)!r}); l.__enter__(); "
        "child = os.fork()\n"
        "if child == 0:\n"
        "    null = os.open(os.devnull, os.O_RDWR)\n"
        "    for fd in (0, 1, 2): os.dup2(null, fd)\n"
        "    time.sleep(60); os._exit(0)\n"
        "print(child, flush=True); os._exit(0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[0])


def test_a_lock_whose_holder_died_is_taken_over_from_a_child_that_inherited_it(tmp_path):
    target = tmp_path / "ds"
    child = _holder_that_dies_leaving_its_lock_to_a_child(target)
    try:
        dead = files.lock_path(target).read_text().split()[0]
        assert not files._pid_alive(int(dead))
        with files.lock(target):  # the flock is still held (by the child), its holder is dead
            assert files.lock_path(target).read_text().split()[0] == str(os.getpid())
            with pytest.raises(files.LockHeldError, match=f"process {os.getpid()} on"):
                with files.lock(target):  # and the new holder excludes others again
                    pass
    finally:
        os.kill(child, 9)
    assert not files.lock_path(target).exists()


def test_lock_waits_for_a_live_holder_when_asked(tmp_path):
    import time

    target = tmp_path / "ds"
    code = (
        "import sys, time; from sbil import files; "
        f"l = files.lock({str(target)!r}); l.__enter__(); print('held', flush=True); "
        "time.sleep(1.5); l.__exit__(None, None, None)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.LockHeldError):  # no wait: refused at once
            with files.lock(target):
                pass
        with pytest.raises(files.LockHeldError, match="in use by process"):
            with files.lock(target, wait=0.3):  # waits, but not long enough
                pass
        started = time.monotonic()
        with files.lock(target, wait=30):
            assert time.monotonic() - started < 20  # taken when the holder let it go
    finally:
        holder.kill()
        holder.wait()

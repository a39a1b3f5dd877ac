"""Atomic file writes and provenance, shared by every part of sbil (standard library only).

Every result, checkpoint and report file is written to a temporary file in its destination
folder and moved into place with ``os.replace``, so a crash never leaves a half-written file
behind, and it gets the permissions a plain ``open`` would give (``tempfile`` makes files
private, which would hide results from the other users of a shared folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's file-mode creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary sibling, then renaming it.

    Args:
        path: the destination; its folder is created if needed.
        write: writes the whole content to the temporary path it is given.

    Returns:
        The destination path. On any error the temporary file is removed and ``path`` is left
        as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return write_atomic(path, write)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, allow_nan: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically.

    NaN and infinity are not JSON and are refused unless ``allow_nan`` (then written as
    JavaScript's ``NaN``/``Infinity``, which Python's json reads back), e.g. for a training
    record whose loss diverged: better a record than lost work.
    """
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=allow_nan) + "\n")


def git_commit() -> str | None:
    """The git commit of the checkout holding this sbil package, ``-dirty`` appended when that
    checkout has uncommitted changes; None for an installed wheel or without git."""
    package = Path(__file__).resolve().parent
    if "site-packages" in package.parts or "dist-packages" in package.parts:
        return None

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=package, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or len(head.stdout.strip()) != 40:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = status is not None and status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")

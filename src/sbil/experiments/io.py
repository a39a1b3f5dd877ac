"""Provenance and atomic file writes for experiment outputs.

Every result file is written to a temporary file in the destination folder and then moved
into place with ``os.replace``, so a crash never leaves a half-written report behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """The current git commit (``git describe --always --dirty``), or "unknown" outside git.

    Args:
        cwd: directory to ask; default this source file's directory, so the answer describes
            the sbil code that ran rather than the user's working directory.
    """
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return _atomic(Path(path), write)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (NaN and infinity are refused)."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def save_figure_atomic(figure: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix)."""
    suffix = Path(path).suffix.lstrip(".") or "png"

    def write(tmp: str) -> None:
        figure.savefig(tmp, format=suffix, **kwargs)

    return _atomic(Path(path), write)


def write_csv_atomic(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a pandas DataFrame to CSV atomically (no index)."""

    def write(tmp: str) -> None:
        frame.to_csv(tmp, index=False)

    return _atomic(Path(path), write)

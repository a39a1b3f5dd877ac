"""Provenance and atomic file writes for experiment outputs.

Every result file is written to a temporary file in the destination folder and then moved
into place with ``os.replace``, so a crash never leaves a half-written report behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sbil import files
from sbil.files import write_atomic, write_json_atomic, write_text_atomic

__all__ = [
    "git_commit",
    "save_figure_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def git_commit() -> str:
    """The git commit of sbil's checkout (see :func:`sbil.files.git_commit`), or "unknown"."""
    return files.git_commit() or "unknown"


def save_figure_atomic(figure: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix)."""
    suffix = Path(path).suffix.lstrip(".") or "png"

    def write(tmp: str) -> None:
        figure.savefig(tmp, format=suffix, **kwargs)

    return write_atomic(path, write)


def write_csv_atomic(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a pandas DataFrame to CSV atomically (no index)."""

    def write(tmp: str) -> None:
        frame.to_csv(tmp, index=False)

    return write_atomic(path, write)

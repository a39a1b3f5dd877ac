"""Atomic writers for the experiments' own file types: figures and CSV tables.

They build on :func:`sbil.files.write_atomic`: the file is written to a temporary sibling and
moved into place with ``os.replace``, so a crash never leaves a half-written figure or table.
JSON and text go through :func:`sbil.files.write_json_atomic` and
:func:`sbil.files.write_text_atomic`, and provenance through :func:`sbil.files.git_commit`
(None outside a git checkout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sbil.files import write_atomic

__all__ = ["save_figure_atomic", "write_csv_atomic"]


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

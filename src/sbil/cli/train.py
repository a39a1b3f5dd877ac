"""Training command: ``sbil train``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the training command to ``app``."""

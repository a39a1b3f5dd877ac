"""Deep-learning commands: ``sbil collect``, ``sbil expert``, ``sbil train``, ``sbil evaluate``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the deep commands to ``app``."""

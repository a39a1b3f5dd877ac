"""Tabular commands: ``sbil reproduce``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the tabular commands to ``app``."""

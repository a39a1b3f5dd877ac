"""Helpers shared by the ``sbil`` commands: one-line errors, progress bars, option checks."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# soft_wrap: long paths and messages stay on one line when piped or copied.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show a progress bar on stderr (default: when stderr is a terminal).",
        show_default=False,
    ),
]
ExpertsDirOption = Annotated[
    Path | None, typer.Option("--experts-dir", help="Cache of trained experts.")
]


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def require(option: str, value: int, minimum: int) -> None:
    """Check a count option before the library sees it, so the message names the option."""
    if value < minimum:
        raise ValueError(f"{option} must be at least {minimum}, got {value}.")


@contextlib.contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn the library's clear errors into one red line and exit status 1."""
    try:
        yield
    except ModuleNotFoundError:
        raise  # a missing optional dependency: sbil.cli.main names the extra to install
    except (ValueError, ImportError, FileNotFoundError) as error:
        from rich.markup import escape

        err_console.print(f"[bold red]Error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(code=1) from None


@contextlib.contextmanager
def progress_bar(
    enabled: bool | None, description: str
) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar, or None when disabled.

    ``enabled=None`` (no flag given) shows the bar only when stderr is a terminal.
    """
    if enabled is None:
        enabled = stderr_is_terminal()
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update

"""Tabular commands: ``sbil reproduce``."""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer

OutOption = Annotated[
    str,
    typer.Option(
        "--out",
        help="Folder for REPORT.md, results.json, figures and tables (created if missing; "
        "~ is expanded).",
    ),
]
QuickOption = Annotated[
    bool,
    typer.Option(
        "--quick",
        help="Reduced run (fewer random MDPs, coarser grids) for smoke tests; the note's four "
        "claims are computed in full either way.",
    ),
]
SeedOption = Annotated[
    int, typer.Option("--seed", help="Root seed of random MDPs and data (a non-negative integer).")
]


def _single_threaded_blas() -> None:
    """Use one BLAS thread unless the user chose otherwise.

    The tabular work is many tiny (batched) matrix problems; BLAS threads only add overhead
    there, and on a loaded 2-core machine OpenBLAS's spinning threads made one batched
    eigendecomposition 15x slower (8 s instead of 0.5 s). The variables are read when numpy
    loads, so this only acts if numpy is not imported yet (true for a ``sbil`` process).
    """
    if "numpy" in sys.modules:
        return
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _fail(message: str) -> NoReturn:
    """Print one error line to stderr and exit with status 2 (bad usage)."""
    from rich.markup import escape

    from sbil.cli._common import err_console

    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=2)


def reproduce(out: OutOption = "report", quick: QuickOption = False, seed: SeedOption = 0) -> None:
    """Recompute the EDM critique's claims and the studies beyond it; write a report folder."""
    _single_threaded_blas()
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sbil.experiments.reproduce import (
        ReportPathError,
        ReproduceConfig,
        check_out_dir,
        run_reproduce,
    )

    console = Console()
    try:
        config = ReproduceConfig(out=out, quick=quick, seed=seed)
        check_out_dir(config.out_dir)  # before the progress display, so errors stay one line
    except ValueError as exc:  # ReportPathError included
        _fail(str(exc))
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("starting", total=None)
            result = run_reproduce(config, progress=lambda msg: bar.update(task, description=msg))
    except ReportPathError as exc:
        _fail(str(exc))

    table = Table(title=f"sbil reproduce ({result.runtime_s:.1f} s)")
    table.add_column("claim")
    table.add_column("note", justify="right")
    table.add_column("sbil", justify="right")
    table.add_column("verdict")
    for c in result.claims:
        note = "—" if c.note_value is None else f"{c.note_value:.4g}"
        table.add_row(
            c.id, note, f"{c.sbil_value:.4g}", "[green]agrees" if c.agrees else "[red]disagrees"
        )
    console.print(table)
    console.print(f"Report written to [bold]{result.out / 'REPORT.md'}[/] (and results.json).")


def register(app: typer.Typer) -> None:
    """Add the tabular commands to ``app``."""
    app.command("reproduce")(reproduce)

"""Tabular commands: ``sbil reproduce`` and ``sbil consistency``."""

from __future__ import annotations

import os
import sys
from typing import Annotated

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
    int, typer.Option("--seed", help="Root seed of random MDPs and data (0 .. 2**32 - 1).")
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


DeepOption = Annotated[
    bool,
    typer.Option(
        "--deep",
        help="Also run the deep studies of the critique (sbil.experiments.deep_critique; needs "
        "the 'deep' extra, i.e. torch) and add their section to the report.",
    ),
]


def reproduce(
    out: OutOption = "report",
    quick: QuickOption = False,
    seed: SeedOption = 0,
    deep: DeepOption = False,
) -> None:
    """Recompute the EDM critique's claims and the studies beyond it; write a report folder.

    Exit codes follow sbil's rule (sbil.cli._common): 2 for a bad command line (--seed, an
    empty --out), 1 when the report cannot be written (--out is a file, holds other files, is
    not writable, or another run is writing it), 130 on Ctrl-C (the previous report is left
    as it was).
    """
    _single_threaded_blas()
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sbil.cli._common import UsageError, errors_as_messages
    from sbil.experiments.reproduce import (
        DEEP_STAGE,
        STAGES,
        ReproduceConfig,
        check_out_dir,
        deep_entry,
        run_reproduce,
    )

    console = Console()
    with errors_as_messages():
        try:
            config = ReproduceConfig(out=out, quick=quick, seed=seed, deep=deep)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if deep:
            deep_entry()  # says at once when the deep studies are missing
        check_out_dir(config.out_dir)  # before the progress display, so errors stay one line
        stages = (*STAGES, DEEP_STAGE) if deep else STAGES
        progress_console = Console(stderr=True)  # progress on stderr: stdout is the table alone
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=progress_console,
            transient=True,
            disable=not progress_console.is_terminal,  # a spinner only where it can spin
        ) as bar:
            task = bar.add_task(stages[0], total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, description=stages[min(done, len(stages) - 1)])

            def log(line: str) -> None:  # each claim as it is decided, above the spinner
                bar.console.print(line, markup=False, highlight=False)

            result = run_reproduce(config, progress=progress, log=log)

    table = Table(title=f"sbil reproduce ({result.runtime_s:.1f} s)")
    table.add_column("claim")
    table.add_column("note", justify="right")
    table.add_column("sbil", justify="right")
    table.add_column("verdict")
    for c in result.claims:
        table.add_row(
            c.id,
            "—" if c.note_value is None else c.note_value,
            f"{c.value:.4g}",
            "[green]agrees" if c.agrees else "[red]disagrees",
        )
    console.print(table)
    console.print(f"Report written to [bold]{result.out / 'REPORT.md'}[/] (and results.json).")


def consistency(
    out: Annotated[
        str, typer.Option("--out", help="Folder for README.md, rows.csv, summary.csv.")
    ] = "learner-consistency",
    n_mdps: Annotated[
        int,
        typer.Option(help="Random MDPs (the consistency study's); at most 10000 (SBIL_MAX_MDPS)."),
    ] = 200,
    seed: SeedOption = 0,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes (rows do not depend on it); at most 4 per CPU, at least 8 "
            "(SBIL_MAX_WORKERS)."
        ),
    ] = 1,
) -> None:
    """Is each strictly batch learner consistent where BC is? (exact optima, random MDPs)

    The exact infinite-data optima of BC, ValueDICE, IQ-Learn and AVRIL on random MDPs with
    shared features.

    Exit codes follow sbil's rule (sbil.cli._common): 2 for a bad command line (a size past
    its limit included: the message says how to go past it), 1 when the study cannot be
    written (--out is a file, or a folder holding anything but an earlier study, which is
    replaced whole), 130 on Ctrl-C (the workers stop with it; an earlier study is kept).
    """
    _single_threaded_blas()
    from sbil.cli._common import (
        MAX_MDPS,
        MAX_WORKERS,
        UsageError,
        check_seed,
        console,
        errors_as_messages,
        require,
    )

    with errors_as_messages():
        from sbil.experiments.learner_consistency import (
            LearnerConsistencyConfig,
            check_out_folder,
            run_learner_consistency,
            summarise_learners,
            write_learner_consistency,
        )

        if not out.strip():
            raise UsageError("--out is empty; pass a folder path, e.g. --out learner-consistency.")
        require("--workers", workers, 1, limit=MAX_WORKERS)
        require("--n-mdps", n_mdps, 1, limit=MAX_MDPS)
        check_seed("--seed", seed)
        try:
            config = LearnerConsistencyConfig(n_mdps=n_mdps, seed=seed)
        except ValueError as error:
            raise UsageError(str(error)) from None
        check_out_folder(out)  # before the work: a folder it may not replace is refused now
        result = run_learner_consistency(config, workers=workers)
        path = write_learner_consistency(result, out)
    summary = summarise_learners(result)
    for row in summary.to_dict("records"):
        console.print(f"{row['data']:>10} {row['learner']:<28} {row['verdict']}", highlight=False)
    console.print(f"Report written to {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the tabular commands to ``app``."""
    app.command("reproduce")(reproduce)
    app.command("consistency")(consistency)

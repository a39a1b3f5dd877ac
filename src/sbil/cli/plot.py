"""``sbil plot RUN_DIR``: the training curves of a run as a PNG.

One panel per loss term, one line per seed, titled with the learner, the task and ``k``
(:mod:`sbil.experiments.training_plots`). Needs neither torch nor a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import console


def plot_command(
    run: Annotated[
        Path,
        typer.Argument(help="A training run folder written by `sbil train`.", metavar="RUN_DIR"),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="The figure's file, e.g. curves.png (default: RUN_DIR/curves.png); the "
            "suffix picks the format (png, pdf, svg).",
            metavar="FILE",
        ),
    ] = None,
    dpi: Annotated[int, typer.Option(help="Resolution of a PNG.")] = 120,
) -> None:
    """Draw a run's training curves (every loss term, every seed) to an image."""
    from sbil.cli._common import UsageError, errors_as_messages, require

    with errors_as_messages():
        require("--dpi", dpi, 10)
        if not run.is_dir():
            raise UsageError(f"RUN_DIR {run} is not a folder; give a run folder of `sbil train`.")
        from sbil.experiments.runs import CURVES_FIGURE

        target = out if out is not None else run / CURVES_FIGURE
        suffix = target.suffix.lower().lstrip(".")
        if suffix not in ("png", "pdf", "svg"):
            raise UsageError(f"--out {target} must end in .png, .pdf or .svg.")
        from sbil.files import check_writable_file

        check_writable_file(target, what="--out")
        import matplotlib

        matplotlib.use("Agg")
        from sbil.experiments.io import save_figure_atomic
        from sbil.experiments.training_plots import plot_run

        save_figure_atomic(plot_run(run), target, dpi=dpi)
    console.print(f"Training curves of {run} -> {target}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the plot command to ``app``."""
    app.command("plot")(plot_command)

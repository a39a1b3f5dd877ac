"""``sbil export``: a training run's policies as TorchScript or ONNX files with JSON sidecars.

The command checks its options (a wrong command line exits with status 2), calls
:func:`sbil.experiments.export.export_run` and prints where each learner went; a missing or
unfinished run, or a missing ONNX package, is one line with status 1. ``docs/export.md``
describes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import UsageError, console, errors_as_messages, parse_seeds

_FORMATS = ("torchscript", "onnx")  # sbil.deep.export.FORMATS, without importing torch


def export_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="A training run folder written by `sbil train` (every finished seed is "
            "exported) or one of its seed-<s>/ checkpoints.",
            metavar="RUN_DIR",
        ),
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="torchscript (needs only torch) or onnx (needs the export extra).",
            metavar="FORMAT",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Export folder (default: <RUN_DIR>-<FORMAT> beside the run)."),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Export only these seeds of the run, e.g. 0,1 or 0-4 (default: all)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out.")] = False,
) -> None:
    """Export each learner of a run as policy and logits files with a JSON sidecar.

    Per learner: a policy file (obs -> actions), a logits file (obs -> logits) and a JSON
    sidecar (spaces, normalisation, training provenance).
    """
    with errors_as_messages():
        if format not in _FORMATS:
            raise UsageError(f"--format must be torchscript or onnx, got {format!r}.")
        selected = parse_seeds(seeds) if seeds is not None else None
        from sbil.experiments.export import export_run

        result = export_run(run, format, out=out, seeds=selected, overwrite=overwrite)
    for seed, written in result.learners.items():
        console.print(
            f"seed {seed}: {written.policy.name} (actions), {written.logits.name} (logits), "
            f"{written.sidecar.name} -> {written.folder}",
            highlight=False,
        )
    for seed, why in result.skipped.items():
        console.print(f"seed {seed}: not exported ({why})", highlight=False)
    console.print(
        f"Exported {len(result.learners)} learner(s) of {result.source} as {format} to "
        f"{result.folder}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``sbil export`` to ``app``."""
    app.command("export")(export_command)

"""``sbil select``: the strictly batch model-selection study (:mod:`sbil.experiments.selection`)
and ``sbil select report DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import console
from sbil.cli.sweep import _csv, _log

select_app = typer.Typer(
    help="Model selection without an environment: every learner's configurations and "
    "checkpoints picked by held-out NLL (offline), by return (oracle) or left at published "
    "values, then fresh seeds at each pick; resumable. Then `sbil select report DIR`.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@select_app.callback()
def select_command(
    ctx: typer.Context,
    preset: Annotated[
        str,
        typer.Option(
            help="small (CartPole and Acrobot, k = 1 and 3), edm-paper (the faithful sweep's "
            "4 tasks x 5 k) or tiny (a smoke test)."
        ),
    ] = "small",
    out: Annotated[
        Path | None,
        typer.Option(help="Study folder (default studies/<preset>); the same folder resumes."),
    ] = None,
    envs: Annotated[str | None, typer.Option(help="Override: tasks, comma-separated.")] = None,
    ks: Annotated[str | None, typer.Option(help="Override: trajectories, e.g. 1,3.")] = None,
    algos: Annotated[str | None, typer.Option(help="Override: learners, comma-separated.")] = None,
    workers: Annotated[int, typer.Option(help="Units trained at once (processes).")] = 1,
) -> None:
    """Run or resume a model-selection study and write its report."""
    if ctx.invoked_subcommand is not None:
        return
    from sbil.cli._common import UsageError, errors_as_messages, exit_interrupted

    with errors_as_messages():
        from sbil.experiments.selection import SelectionError, run_study, selection_preset
        from sbil.experiments.selection_report import write_study_report
        from sbil.experiments.sweep import max_local_workers

        overrides = {
            key: value
            for key, value in (
                ("envs", _csv("--envs", envs)),
                ("ks", _csv("--ks", ks, int)),
                ("algos", _csv("--algos", algos)),
            )
            if value is not None
        }
        try:
            spec = selection_preset(preset, **overrides)
        except SelectionError as error:
            raise UsageError(str(error)) from None
        if not 1 <= workers <= max_local_workers():
            raise UsageError(f"--workers must be in 1..{max_local_workers()}, got {workers}.")
        folder = out if out is not None else Path("studies") / preset
        try:
            seconds = run_study(spec, folder, workers=workers, log=_log)
        except KeyboardInterrupt:
            exit_interrupted("finished units are saved; re-run the same command to resume")
        report = write_study_report(folder)
    console.print(
        f"Study {folder} finished this time in {seconds:.0f} s. Report: {report}",
        highlight=False,
        markup=False,
    )


@select_app.command("report")
def report_command(
    study_dir: Annotated[Path, typer.Argument(help="The study folder.", metavar="STUDY_DIR")],
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default STUDY_DIR itself).")
    ] = None,
) -> None:
    """Write the study's REPORT.md, summary.json and figures from its finished units."""
    from sbil.cli._common import UsageError, errors_as_messages

    with errors_as_messages():
        from sbil.experiments.selection import STUDY_FILE
        from sbil.experiments.selection_report import write_study_report

        if not (study_dir / STUDY_FILE).is_file():
            raise UsageError(f"{study_dir} is not a model-selection study (no {STUDY_FILE}).")
        path = write_study_report(study_dir, out)
    console.print(f"Wrote {path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``sbil select`` to ``app``."""
    app.add_typer(select_app, name="select")

"""``sbil sweep``: run (or resume) a grid of runs, and ``sbil sweep report DIR``.

Thin: parses options into a :class:`sbil.experiments.sweep.SweepSpec`, calls
:func:`sbil.experiments.sweep.run_sweep` and prints one line per event, with a time stamp, so a
log shows progress with or without a terminal.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import console, err_console
from sbil.deep.learners.registry import ALGOS

sweep_app = typer.Typer(
    help="Run a grid of learners (tasks x algos x k x seeds), resumable; then `sbil sweep "
    "report DIR`.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _csv(option: str, text: str | None, cast=str) -> list | None:
    from sbil.cli._common import UsageError

    if text is None:
        return None
    try:
        return [cast(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option} must be comma-separated values, got {text!r}.") from None


def _log(line: str) -> None:
    err_console.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False)


@sweep_app.callback()
def sweep_command(
    ctx: typer.Context,
    preset: Annotated[
        str | None,
        typer.Option(
            help="edm-paper (the EDM paper's comparison on PPO-sampled data), "
            "edm-paper-scripted, edm-paper-epsilon or quick (a smoke test)."
        ),
    ] = None,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="A TOML sweep file (keys: docs/sweeps.md).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Sweep folder (default sweeps/<preset>); the same folder resumes."),
    ] = None,
    envs: Annotated[str | None, typer.Option(help="Override: tasks, comma-separated.")] = None,
    algos: Annotated[
        str | None,
        typer.Option(help=f"Override, comma-separated: {', '.join(ALGOS)} (docs/learners.md)."),
    ] = None,
    ks: Annotated[str | None, typer.Option(help="Override: trajectories, e.g. 1,3,7.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Override: seeds, e.g. 0-9.")] = None,
    updates: Annotated[int | None, typer.Option(help="Override: Adam updates.")] = None,
    eval_episodes: Annotated[
        int | None, typer.Option(help="Override: evaluation episodes per learner.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Groups trained at once (processes).")] = 1,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --backend ray: an existing cluster's address (a cluster with token "
            "authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, docs/sweeps.md)."
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="Torch device of training and evaluation: cpu, cuda or cuda:N.")
    ] = "cpu",
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed/--no-retry-failed", help="Run failed cells again."),
    ] = False,
    stack_k: Annotated[
        bool,
        typer.Option(
            "--stack-k/--no-stack-k",
            help="Train the groups that differ only in k as one stacked model (every row "
            "equals the group alone, bit for bit; faster). --no-stack-k: one group at a time, "
            "smallest k first.",
        ),
    ] = True,
) -> None:
    """Run or resume a sweep; re-running the same command skips finished cells."""
    if ctx.invoked_subcommand is not None:
        return
    from sbil.cli._common import (
        UsageError,
        errors_as_messages,
        exit_interrupted,
        parse_seeds,
        print_error,
    )

    with errors_as_messages():
        from sbil.experiments.sweep import (
            PRESETS,
            SweepError,
            SweepSpec,
            check_backend,
            check_device,
            load_spec_file,
            run_sweep,
        )
        from sbil.experiments.sweep import (
            preset as make_preset,
        )

        if (preset is None) == (spec is None):
            raise UsageError(
                f"Give exactly one of --preset NAME ({', '.join(PRESETS)}) or --spec FILE."
            )
        overrides: dict = {}
        for key, value in (
            ("envs", _csv("--envs", envs)),
            ("algos", _csv("--algos", algos)),
            ("ks", _csv("--ks", ks, int)),
            ("seeds", None if seeds is None else parse_seeds(seeds)),
            ("eval_episodes", eval_episodes),
        ):
            if value is not None:
                overrides[key] = value
        try:  # a bad grid is a usage error, found before any work
            if preset is not None:
                sweep_spec = make_preset(preset, **overrides)
            else:
                base = load_spec_file(spec)
                sweep_spec = SweepSpec.from_dict({**base.to_dict(), **overrides})
            if updates is not None:
                sweep_spec = SweepSpec.from_dict(
                    {
                        **sweep_spec.to_dict(),
                        "options": {**sweep_spec.options, "n_updates": updates},
                    }
                )
            check_backend(workers, backend, address)
            check_device(device, backend, address)
        except SweepError as error:
            raise UsageError(str(error)) from None
        folder = out if out is not None else Path("sweeps") / (sweep_spec.preset or "sweep")
        saved = (
            "finished cells and training checkpoints are saved; re-run the same command to resume"
        )
        with _signals_seen() as arrived:
            try:
                summary = run_sweep(
                    sweep_spec,
                    folder,
                    workers=workers,
                    backend=backend,
                    address=address,
                    device=device,
                    retry_failed=retry_failed,
                    stack_k=stack_k,
                    log=_log,
                )
            except KeyboardInterrupt:
                if signal.SIGTERM in arrived():
                    err_console.print(f"Terminated (SIGTERM); {saved}.", markup=False)
                    raise typer.Exit(code=EXIT_TERMINATED) from None
                exit_interrupted(saved)
    console.print(
        f"Sweep {folder}: {summary.n_cells} cells, {summary.done} done and {summary.failed} "
        f"failed now, {summary.skipped} finished before ({summary.seconds:.0f} s). "
        f"Report: sbil sweep report {folder}",
        highlight=False,
        markup=False,
    )
    if summary.errors:
        print_error(_failures(summary))
        raise typer.Exit(code=1)


#: Exit status after SIGTERM (128 + 15, as a shell reports a process it ended).
EXIT_TERMINATED = 128 + signal.SIGTERM


def _failures(summary) -> str:
    """One line: how many cells failed, an example, and what a re-run will do about them."""
    from sbil.experiments.sweep import is_environmental

    errors = list(summary.errors.values())
    outside = sum(is_environmental(e) for e in errors)
    own = len(errors) - outside
    advice = []
    if outside:
        advice.append(
            f"re-running the same command retries the {outside} that failed for reasons "
            "outside them (files, disk, locks, lost workers)"
        )
    if own:
        advice.append(
            f"the {own} that failed on their own (e.g. a diverged learner) are results, run "
            "again only with --retry-failed"
        )
    return (
        f"{len(errors)} of {summary.n_cells} cells failed (e.g. {errors[0]}); "
        + "; ".join(advice)
        + "."
    )


@contextlib.contextmanager
def _signals_seen() -> Iterator[Callable[[], set[int]]]:
    """Turn SIGTERM into KeyboardInterrupt for the block (so the sweep stops its workers and
    says so), and yield ``arrived()``: the signals received so far, whichever handler ran.
    While training in this process, SIGINT and SIGTERM go to training's own handler, which
    saves a checkpoint and raises KeyboardInterrupt for both; ``signal.set_wakeup_fd`` sees
    every signal, so the two can still be told apart."""
    if threading.current_thread() is not threading.main_thread():
        yield set
        return
    seen: set[int] = set()
    reader, writer = socket.socketpair()
    for end in (reader, writer):
        end.setblocking(False)

    def arrived() -> set[int]:
        with contextlib.suppress(BlockingIOError):
            while data := reader.recv(4096):
                seen.update(data)
        return seen

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGTERM, terminate)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield arrived
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous_handler)
        reader.close()
        writer.close()


@sweep_app.command("report")
def report_command(
    sweep_dir: Annotated[Path, typer.Argument(help="The sweep folder.", metavar="SWEEP_DIR")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Report folder (default SWEEP_DIR/report): new, empty or an earlier report, "
            "which is replaced whole."
        ),
    ] = None,
) -> None:
    """Write the sweep's report: Markdown, figures, tidy CSV and aggregate JSON.

    Exit codes: 2 when SWEEP_DIR is not a sweep folder, 1 when a file in it is damaged or
    --out may not be replaced (it holds other files, or is inside the sweep's data), 130 on
    Ctrl-C (the previous report is left as it was).
    """
    import json

    from sbil.cli._common import UsageError, errors_as_messages, exit_interrupted

    with errors_as_messages():
        from sbil.experiments.sweeps import write_sweep_report

        if not (sweep_dir / "sweep.json").is_file():
            raise UsageError(f"{sweep_dir} is not a sweep folder (no sweep.json).")
        try:
            path = write_sweep_report(sweep_dir, out)
        except KeyboardInterrupt:
            exit_interrupted("the previous report, if any, is left as it was")
        outside = json.loads((path.parent / "aggregates.json").read_text())["outside_grid"]
    console.print(f"Wrote {path}", highlight=False, markup=False)
    if outside:
        err_console.print(
            f"Warning: {len(outside)} row file(s) in {sweep_dir / 'rows'} are outside the "
            "sweep's grid and were left out (listed in the report).",
            highlight=False,
            markup=False,
        )


@sweep_app.command("compare")
def compare_command(
    condition: Annotated[
        list[str],
        typer.Option(
            help="NAME=DIR or NAME=DIR,DIR,...: a data condition and its sweep or results "
            "folders (the first gives BC and EDM, the others may add regularised BC); repeat "
            "per condition."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder of REPORT.md, summary.json and figure.")],
    ks: Annotated[str, typer.Option(help="The k values pooled, e.g. 1,3.")] = "1,3",
) -> None:
    """P(EDM > BC) at few trajectories per data condition, with regularised BC beside."""
    import shlex

    from sbil.cli._common import UsageError, errors_as_messages

    with errors_as_messages():
        from sbil.experiments.conditions import parse_condition, write_conditions_report

        try:
            conditions = dict(parse_condition(text) for text in condition)
        except ValueError as error:
            raise UsageError(str(error)) from None
        values = _csv("--ks", ks, int)
        if not values:
            raise UsageError("--ks must name at least one k, e.g. 1,3.")
        words = ["sbil sweep compare", *(f"--condition {shlex.quote(c)}" for c in condition)]
        words += [f"--ks {','.join(map(str, values))}", f"--out {shlex.quote(str(out))}"]
        command = " ".join(words)
        path = write_conditions_report(conditions, out, command=command, ks=values)
    console.print(f"Wrote {path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``sbil sweep`` to ``app``."""
    app.add_typer(sweep_app, name="sweep")

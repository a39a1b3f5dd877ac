"""Writing a sweep report folder (:func:`write_sweep_report`): Markdown, figures, CSV and JSON,
staged and swapped in whole."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sbil.experiments.io import save_figure_atomic, write_csv_atomic
from sbil.experiments.sweeps.common import (
    _INTERVAL_FIGURE,
    _PROFILE_FIGURE,
    _PROFILE_LEARNER_FIGURE,
    _envs,
)
from sbil.experiments.sweeps.figures import (
    _MAX_BANDED_PROFILES,
    _plot_env,
    _plot_intervals,
    _plot_profiles,
    _plot_profiles_per_learner,
    _profile_variants,
)
from sbil.experiments.sweeps.load import _read_rows, load_spec
from sbil.experiments.sweeps.markdown import (
    _action_match_section,
    _aggregate_section,
    _beside_section,
    _has_learner_figures,
    _headline_note,
    _improvement_section,
    _learner_section,
    _per_env_section,
    _problems_section,
    _profile_section,
    _protocol_section,
    _references_section,
)
from sbil.experiments.sweeps.summary import _summarise
from sbil.files import lock, staged_folder, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_sweep_report(
    sweep_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    n_resamples: int = 2000,
) -> Path:
    """Write the sweep's Markdown report, its figures, a tidy CSV and the figures' JSON.

    Files (in the report's folder): ``REPORT.md``, ``rows.csv`` (one row per cell, without
    the per-episode returns), ``aggregates.json`` (every number the report quotes, from
    :func:`summarise_sweep`), ``interval-estimates.png`` (the per-learner table's intervals),
    ``return-vs-k-<env>.png`` per env, ``performance-profiles.png`` and, with more than three
    learners, ``performance-profiles-per-learner.png``. The folder is written whole into a
    hidden staging folder beside it and swapped in when complete
    (:func:`sbil.files.staged_folder`), so a crash or Ctrl-C leaves the previous report as it
    was, never a part of one.

    The folder must be new, empty or an earlier sweep report (its ``.md`` starts with
    ``# Sweep report`` and it holds nothing else than the files above), which is replaced
    whole; any other folder is refused, as is one inside the sweep's own data (the sweep
    folder itself, its ``rows/``, ``runs/``, ``datasets/``).

    Args:
        sweep_dir: the sweep folder.
        out: the report's folder (default ``sweep_dir/report``), or a path ending in ``.md``:
            the Markdown file to write, in its folder.
        seed: root seed of the bootstrap intervals.
        n_resamples: bootstrap resamples per interval.

    Returns:
        The path of the Markdown report.

    Raises:
        ValueError: a damaged sweep folder (naming the file), or an ``out`` that the report
            may not replace (saying why).
    """
    sweep_dir = Path(sweep_dir)
    report = Path(out) if out is not None else sweep_dir / "report"
    if report.suffix.lower() != ".md":
        report = report / "REPORT.md"
    folder = report.parent
    _check_report_folder(folder, sweep_dir)  # before the work, so a refusal comes at once
    from sbil.experiments.held_out_report import is_env_free, write_held_out_report

    if (sweep_dir / "sweep.json").is_file() and is_env_free(load_spec(sweep_dir)):
        return write_held_out_report(sweep_dir, report, seed=seed, n_resamples=n_resamples)
    rows, outside = _read_rows(sweep_dir)
    summary = _summarise(sweep_dir, rows, outside, seed=seed, n_resamples=n_resamples)
    with lock(folder):
        _check_report_folder(folder, sweep_dir)  # again: it may have changed meanwhile
        with staged_folder(folder) as staging:
            figures = {}
            for env in _envs(summary):
                name = f"return-vs-k-{_safe(env)}.png"
                _save(_plot_env(summary, env), staging / name)
                figures[env] = name
            interval_name = profile_name = per_learner_name = None
            if _has_learner_figures(summary["learners"]):
                interval_name = _INTERVAL_FIGURE
                _save(_plot_intervals(summary), staging / interval_name)
            if summary["profiles"]["curves"]:
                profile_name = _PROFILE_FIGURE
                _save(_plot_profiles(summary), staging / profile_name)
                per_learner = (
                    _plot_profiles_per_learner(summary)
                    if len(_profile_variants(summary)) > _MAX_BANDED_PROFILES
                    else None
                )
                if per_learner is not None:
                    per_learner_name = _PROFILE_LEARNER_FIGURE
                    _save(per_learner, staging / per_learner_name)
            write_csv_atomic(_tidy(rows), staging / "rows.csv")
            write_json_atomic(staging / "aggregates.json", summary)
            text = render_sweep_report(
                summary,
                figures=figures,
                profile_figure=profile_name,
                sweep_dir=sweep_dir,
                interval_figure=interval_name,
                profile_learner_figure=per_learner_name,
            )
            write_text_atomic(staging / report.name, text)
    return report


#: What ``sbil sweep`` writes in its folder: a report never goes there.
_SWEEP_DATA = ("rows", "runs", "datasets", "sweep.json", "references.json")

_REPORT_DATA = (
    "rows.csv",
    "aggregates.json",
    _INTERVAL_FIGURE,
    _PROFILE_FIGURE,
    _PROFILE_LEARNER_FIGURE,
)

_REPORT_TITLE = "# Sweep report"


def _check_report_folder(folder: Path, sweep_dir: Path) -> None:
    """Refuse a report folder that the report may not replace whole (see write_sweep_report)."""
    where, sweep = folder.resolve(), sweep_dir.resolve()  # through symbolic links too
    own = where == sweep or (
        where.is_relative_to(sweep) and where.relative_to(sweep).parts[0] in _SWEEP_DATA
    )
    if own:
        raise ValueError(
            f"--out {folder} is the sweep's own data, where a report would be read as rows or "
            f"mixed with the runs; pass a folder of its own (default {sweep_dir / 'report'})."
        )
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ValueError(f"--out {folder} exists and is not a folder; pass a new folder.")
    if not folder.is_dir():
        return
    entries = list(folder.iterdir())
    foreign = sorted(e.name for e in entries if not _is_report_file(e))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"--out {folder} already holds files that are not an sbil sweep report ({shown}); "
            "a new report replaces the whole folder, so pass a new or empty folder (default "
            f"{sweep_dir / 'report'})."
        )
    if entries and not any(_is_report_markdown(e) for e in entries):
        raise ValueError(
            f"--out {folder} holds report files but no REPORT.md (an interrupted report?); "
            "delete the folder or pass another one."
        )


def _is_report_file(path: Path) -> bool:
    """Whether ``path`` is a file that :func:`write_sweep_report` writes (or a temporary file
    of an atomic write that a killed report left)."""
    if path.is_symlink() or not path.is_file():
        return False
    name = path.name
    return (
        name in _REPORT_DATA
        or re.fullmatch(r"return-vs-k-[A-Za-z0-9_.-]+\.png", name) is not None
        or re.fullmatch(r"\..+\.tmp", name) is not None
        or _is_report_markdown(path)
    )


def _is_report_markdown(path: Path) -> bool:
    if path.suffix.lower() != ".md" or path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as file:
            return file.read(len(_REPORT_TITLE)) == _REPORT_TITLE
    except (OSError, UnicodeDecodeError):
        return False


def _save(figure: Figure, path: Path) -> None:
    save_figure_atomic(figure, path, dpi=120)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _tidy(rows: pd.DataFrame) -> pd.DataFrame:
    tidy = rows.drop(columns=["returns"], errors="ignore").copy()
    for column in ("options", "train_episodes", "held_out"):
        if column in tidy:
            tidy[column] = [json.dumps(v, sort_keys=True) for v in tidy[column]]
    return tidy


def render_sweep_report(
    summary: Mapping[str, Any],
    *,
    figures: Mapping[str, str],
    profile_figure: str | None,
    sweep_dir: str | os.PathLike[str] | None = None,
    interval_figure: str | None = None,
    profile_learner_figure: str | None = None,
) -> str:
    """The Markdown text of the report; it renders ``summary`` and computes nothing new.

    Args:
        summary: from :func:`summarise_sweep`.
        figures: per env, the file name of its return-against-k figure.
        profile_figure: file name of the performance-profile figure, if drawn.
        sweep_dir: shown in the heading.
        interval_figure: file name of the per-learner interval-estimate figure, if drawn.
        profile_learner_figure: file name of the per-learner performance profiles, if drawn.

    Returns:
        The report.
    """
    names = {v["variant"]: v["name"] for v in summary["variants"]}
    counts = summary["counts"]
    spec = summary["protocol"]["spec"]
    partial = counts["missing"] or counts["failed"]
    title = (
        f"# Sweep report{': ' + str(spec.get('preset')) + ' preset' if spec.get('preset') else ''}"
    )
    lines = [
        title,
        "",
        f"Sweep folder: `{sweep_dir}`. " if sweep_dir is not None else "",
        f"{counts['done']} finished cells, {counts['failed']} failed, {counts['missing']} "
        f"missing of {counts['expected']} in the grid"
        + (
            " — **this sweep is partial**; every figure covers only the cells present."
            if partial
            else "."
        ),
        "",
        "## The EDM paper's claim in this run",
        "",
        *_headline_note(summary),
        summary["claim"]["text"],
        "",
    ]
    lines += _learner_section(summary, names, interval_figure)
    lines += _beside_section(summary, names)
    lines += _protocol_section(summary)
    lines += _references_section(summary)
    lines += _per_env_section(summary, figures, names)
    lines += _aggregate_section(summary, names)
    lines += _improvement_section(summary, names)
    lines += _profile_section(summary, profile_figure, profile_learner_figure)
    lines += _action_match_section(summary, names)
    lines += _problems_section(summary, names)
    lines += [
        "## Files",
        "",
        "`rows.csv`: one tidy row per cell (the per-episode returns are in the sweep's "
        "`rows/*.json`). `aggregates.json`: every number above, with more digits.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"

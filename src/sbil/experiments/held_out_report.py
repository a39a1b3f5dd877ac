"""The report of an env-free sweep: no return measured, learners compared on held-out metrics.

An env-free sweep (``env_free = true``: logged decisions with no Gymnasium environment, as the
EDM paper's MIMIC-III experiment; :mod:`sbil.experiments.sweep_data`) plays no episode. Each
row instead holds ``held_out``: the learner's action match (ACC), NLL, AUC and APR on the
expert's held-out episodes (:mod:`sbil.deep.metrics`). This module computes the report's figures
from those (:func:`summarise_held_out_sweep`) with the statistics of
:mod:`sbil.experiments.sweeps` (IQM over runs with stratified bootstrap intervals, P(X > Y)
per task averaged over tasks, the EDM verdict of its ``judge_edm_claim``), applied to the
spec's ``held_out_metric`` (default the action match; NLL is ranked lower-first) in place of
the return, and renders them (:func:`render_held_out_report`). No figure is
normalised: there is no random-policy or expert return to anchor a score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sbil.deep.metrics import HIGHER_IS_BETTER, METRIC_NAMES, METRICS
from sbil.experiments.io import write_csv_atomic
from sbil.experiments.sweeps import claim as sweep_claim
from sbil.experiments.sweeps import common as sweep_common
from sbil.experiments.sweeps import load as sweep_load
from sbil.experiments.sweeps import markdown as sweep_markdown
from sbil.experiments.sweeps import report as sweep_folder
from sbil.experiments.sweeps import stats as sweep_stats
from sbil.experiments.sweeps import summary as sweep_summary
from sbil.files import lock, staged_folder, write_json_atomic, write_text_atomic

__all__ = [
    "is_env_free",
    "render_held_out_report",
    "summarise_held_out_sweep",
    "write_held_out_report",
]


def is_env_free(spec: Mapping[str, Any]) -> bool:
    """Whether a sweep's stored spec (``sweeps.load.load_spec``) is env-free."""
    return spec.get("env_free") is True


def _metric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with one float column per held-out metric, from each row's ``held_out``."""
    frame = frame.copy()
    held = frame["held_out"] if "held_out" in frame else pd.Series([None] * len(frame))
    for metric in METRICS:
        frame[metric] = [
            float(h[metric])
            if isinstance(h, Mapping) and isinstance(h.get(metric), (int, float))
            else np.nan
            for h in held
        ]
    return frame


def _scored(frame: pd.DataFrame, metric: str, *, as_normalised: bool) -> pd.DataFrame:
    """The rows with ``return_mean`` (what the report's statistics rank and average) set to the
    held-out ``metric``, negated where lower is better (NLL), and ``normalised_score`` set to
    the same (``as_normalised``) or NaN (so nothing is called a normalised score)."""
    scored = frame.copy()
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    score = sign * scored[metric].to_numpy(dtype=float)
    done = (scored["status"] == "done").to_numpy()
    scored["return_mean"] = np.where(done, score, np.nan)
    scored["normalised_score"] = scored["return_mean"] if as_normalised else np.nan
    return scored


def summarise_held_out_sweep(
    sweep_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_resamples: int = 2000,
    rows: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Every figure the env-free report quotes, as one JSON-ready dictionary.

    Args:
        sweep_dir: the sweep folder.
        seed: root seed of the bootstrap (as ``sweeps.summarise_sweep``'s).
        n_resamples: bootstrap resamples per interval.
        rows: the rows, if already loaded with :func:`~sbil.experiments.sweeps.load_rows`.

    Returns:
        ``metric`` (the statistics' metric and whether higher is better), ``protocol``,
        ``bootstrap``, ``variants``, ``counts``, ``cells`` (per task x variant x k: IQM and
        interval of every held-out metric), ``aggregate``, ``improvement`` and ``learners``
        (as the return report's, on the metric; a lower-is-better metric enters negated),
        ``failed``, ``missing``, ``duplicates``, ``excluded``, ``averaging`` and ``claim``.
    """
    sweep_dir = Path(sweep_dir)
    spec = sweep_load.load_spec(sweep_dir)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1; got {n_resamples}.")
    metric = spec.get("held_out_metric") or "action_match"
    if metric not in METRICS:
        raise ValueError(
            f"{sweep_dir / 'sweep.json'} has held_out_metric {metric!r}; it must be one of "
            f"{', '.join(METRICS)}."
        )
    read, outside = sweep_load._read_rows(sweep_dir)
    frame = _metric_columns(read if rows is None else rows)
    boot = sweep_stats._Bootstrap(seed=seed, n_resamples=n_resamples)
    scored = _scored(frame, metric, as_normalised=True)
    done, duplicates, excluded = sweep_stats.usable_rows(scored)
    variants = sweep_stats._ordered_variants(frame)
    keys = ["env_id", "variant", "k", "seed"]
    summary: dict[str, Any] = {
        "schema": sweep_common.SUMMARY_SCHEMA,
        "env_free": True,
        "metric": {
            "name": metric,
            "label": METRIC_NAMES[metric],
            "higher_is_better": HIGHER_IS_BETTER[metric],
        },
        "protocol": sweep_summary._protocol(spec, frame),
        "bootstrap": {
            "n_resamples": n_resamples,
            "confidence": sweep_common.CONFIDENCE,
            "seed": seed,
            "method": "stratified bootstrap (runs resampled within each task), percentile "
            "interval with linear interpolation (rliable 1.2.0)",
        },
        "variants": variants,
        "cells": _cells(frame, done, variants, boot),
        "aggregate": sweep_stats._aggregates(done, variants, boot),
        "improvement": sweep_stats._improvements(done, variants, boot),
        "learners": sweep_stats._learners(done, variants, boot),
        "failed": sweep_stats._records(
            frame[frame["status"] == "failed"], ["cell_id", *keys, "algo", "error"]
        ),
        "missing": sweep_load._missing_cells(spec, frame),
        "duplicates": duplicates,
        "excluded": [{**e, "reason": f"status done but no {metric}"} for e in excluded],
        "outside_grid": outside,
        "averaging": sorted(
            {
                str(h["averaging"])
                for h in frame.get("held_out", [])
                if isinstance(h, Mapping) and h.get("averaging")
            }
        ),
    }
    summary["counts"] = {
        "rows": len(frame),
        "done": int((frame["status"] == "done").sum()),
        "failed": len(summary["failed"]),
        "missing": sum(len(m["seeds"]) for m in summary["missing"]),
        "expected": sweep_load._expected_count(spec, frame),
    }
    summary["claim"] = sweep_claim.judge_edm_claim(
        _scored(frame, metric, as_normalised=False),
        counts=summary["counts"],
        seed=seed,
        n_resamples=n_resamples,
        smoke_test=sweep_common.smoke_test(spec),
    )
    return summary


def _cells(
    frame: pd.DataFrame, done: pd.DataFrame, variants: list[dict[str, str]], boot: Any
) -> list[dict[str, Any]]:
    """Per (task, variant, k): the IQM of every held-out metric over seeds, with intervals."""
    order = [v["variant"] for v in variants]
    finished = frame.loc[done.index]
    cells = []
    for (task, variant, k), group in sorted(
        finished.groupby(["env_id", "variant", "k"]),
        key=lambda item: (item[0][0], order.index(item[0][1]), item[0][2]),
    ):
        cell: dict[str, Any] = {
            "env_id": task,
            "variant": variant,
            "algo": str(group["algo"].iloc[0]),
            "k": int(k),
            "seeds": sorted(int(s) for s in group["seed"]),
            "held_out_states": sorted(
                {int(h["n_states"]) for h in group["held_out"] if isinstance(h, Mapping)}
            ),
        }
        for metric in METRICS:
            values = group[metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            cell[metric] = (
                sweep_stats._interval(
                    boot.iqm(values, "held_out", metric, task, variant, k), n=len(values)
                )
                if len(values)
                else None
            )
        cells.append(cell)
    return cells


# ----------------------------------------------------------------------------- rendering


def _shown(entry: Mapping[str, Any] | None, higher: bool, digits: int = 3) -> str:
    """An interval of the statistics' score, shown in the metric's own sign."""
    if not entry or entry.get("iqm") is None:
        return "—"
    if higher:
        return sweep_markdown._ci(entry, digits)
    flipped = {"iqm": -entry["iqm"], "low": -entry["high"], "high": -entry["low"]}
    return sweep_markdown._ci(flipped, digits)


def render_held_out_report(
    summary: Mapping[str, Any], *, sweep_dir: str | os.PathLike[str] | None = None
) -> str:
    """The Markdown text of an env-free sweep's report; it renders ``summary`` only."""
    names = {v["variant"]: v["name"] for v in summary["variants"]}
    counts = summary["counts"]
    metric = summary["metric"]
    label, higher = metric["label"], metric["higher_is_better"]
    partial = counts["missing"] or counts["failed"]
    lines = [
        "# Sweep report: env-free data (held-out metrics)",
        "",
        f"Sweep folder: `{sweep_dir}`. " if sweep_dir is not None else None,
        f"{counts['done']} finished cells, {counts['failed']} failed, {counts['missing']} "
        f"missing of {counts['expected']} in the grid"
        + (
            " — **this sweep is partial**; every figure covers only the cells present."
            if partial
            else "."
        ),
        "",
        "**No return was measured.** This sweep's data has no environment (`env_free = true`), "
        "so no learner was played and there is no return or normalised score. Every learner is "
        "judged on the dataset's held-out episodes, which no learner trained on: the action "
        "match (ACC: the greedy action is the expert's), the NLL of the expert's actions under "
        "the learner's pi(a|s) (nats, lower is better), and the AUC and APR of pi(a|s) "
        f"({'; '.join(summary['averaging']) or '—'}). The statistics below (IQM, intervals, "
        f"P(X > Y), the EDM verdict) are computed on the **{label}**"
        + ("" if higher else ", ranked lower-is-better")
        + ".",
        "",
        "## The EDM paper's claim in this run",
        "",
        f"Judged on the held-out {label} in place of the return. " + summary["claim"]["text"],
        "",
    ]
    lines += _learner_section(summary, names)
    lines += _protocol_section(summary)
    lines += _per_task_section(summary, names)
    lines += _aggregate_section(summary, names)
    lines += _improvement_section(summary, names)
    lines += sweep_markdown._problems_section(summary, names)
    lines += [
        "## Files",
        "",
        "`rows.csv`: one tidy row per cell (`held_out` holds each learner's metrics). "
        "`aggregates.json`: every number above, with more digits.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _learner_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    data, metric = summary["learners"], summary["metric"]
    higher = metric["higher_is_better"]
    lines = ["## Per learner", ""]
    if not data["scopes"]:
        return [*lines, f"No finished cell has a held-out {metric['label']} yet.", ""]
    baseline = sweep_common.ALGO_NAMES.get(data["baseline"], data["baseline"])
    short = {"action_match": "ACC", "nll": "NLL", "auc": "AUC", "apr": "APR"}[metric["name"]]
    _, headers, rows = sweep_markdown.learner_table(
        data,
        names,
        all_label="all (task, k)",
        value=f"IQM {short}",
        shown=lambda e: _shown(e, higher),
    )
    return [
        *lines,
        f"One row per learner: the IQM of the held-out {metric['label']} over seeds and tasks, "
        f"and P(X > {baseline}), the probability that a run of the learner does better on it "
        f"than a {baseline} run on the same task (0.5: no difference), each with its 95% "
        "stratified bootstrap interval; (tasks×seeds) in brackets.",
        "",
        *sweep_markdown._table(headers, rows),
    ]


def _protocol_section(summary: Mapping[str, Any]) -> list[str]:
    spec = summary["protocol"]["spec"]
    boot = summary["bootstrap"]
    rows = [[key, f"`{sweep_markdown._json_text(spec[key])}`"] for key in spec if key != "options"]
    for key, value in (spec.get("options") or {}).items():
        rows.append([f"options.{key}", f"`{sweep_markdown._json_text(value)}`"])
    commits = summary["protocol"]["git_commits"]
    rows.append(["git commit(s) of the rows", ", ".join(f"`{c}`" for c in commits) or "—"])
    rows.append(["sbil version(s)", ", ".join(summary["protocol"]["sbil_versions"]) or "—"])
    return [
        "## Protocol",
        "",
        "From `sweep.json` and the rows. Each learner trains on `k` episodes of the dataset and "
        f"is measured on its last {spec.get('holdout')} episodes (every step), which no learner "
        "trained on. Intervals are 95% stratified bootstrap percentile intervals "
        f"({boot['n_resamples']} resamples, seed {boot['seed']}; runs resampled within each "
        "task, as rliable does); point estimates are interquartile means (IQM).",
        "",
        *sweep_markdown._table(["setting", "value"], rows),
    ]


def _per_task_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    lines = ["## Held-out metrics against k", ""]
    if not summary["cells"]:
        return [*lines, "No finished cells yet.", ""]
    tasks = list(dict.fromkeys(c["env_id"] for c in summary["cells"]))
    for task in tasks:
        cells = [c for c in summary["cells"] if c["env_id"] == task]
        states = sorted({n for c in cells for n in c["held_out_states"]})
        lines += [
            f"### {task}",
            "",
            f"Held-out states per learner: {', '.join(map(str, states)) or '—'}. IQM over "
            "seeds [95% CI].",
            "",
        ]
        lines += sweep_markdown._table(
            ["algorithm", "k", "seeds", "action match (ACC)", "NLL (nats)", "AUC", "APR"],
            [
                [
                    names[c["variant"]],
                    str(c["k"]),
                    str(len(c["seeds"])),
                    *(sweep_markdown._ci(c[m], 3) for m in METRICS),
                ]
                for c in cells
            ],
        )
    return lines


def _aggregate_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    entries, metric = summary["aggregate"], summary["metric"]
    lines = [f"## Aggregate held-out {metric['label']}", ""]
    if not entries:
        return [*lines, "No finished cell has the metric.", ""]
    scopes = sweep_common._scope_labels(entries)
    rows = []
    for variant in [v for v in names if any(e["variant"] == v for e in entries)]:
        row = [names[variant]]
        for key in scopes:
            e = next(
                (x for x in entries if x["variant"] == variant and sweep_common._key(x) == key),
                None,
            )
            shown = _shown(e, metric["higher_is_better"])
            row.append(f"{shown} ({e['n_tasks']}×{len(e['seeds'])})" if e else "—")
        rows.append(row)
    return [
        *lines,
        f"IQM of the held-out {metric['label']} over seeds and tasks at each k, and over all "
        "(task, k), with 95% stratified bootstrap intervals; (tasks×seeds) in brackets.",
        "",
        *sweep_markdown._table(["algorithm", *scopes.values()], rows),
    ]


def _improvement_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    entries, metric = summary["improvement"], summary["metric"]
    lines = ["## Probability of improvement", ""]
    if not entries:
        return [*lines, "Not computable: no finished runs of both sides of any comparison.", ""]
    scopes = sweep_common._scope_labels(entries)
    by_key = {(e["x"], e["y"], sweep_common._key(e)): e for e in entries}
    rows = []
    for x, y in dict.fromkeys((e["x"], e["y"]) for e in entries):
        row = [f"P({names[x]} > {names[y]})"]
        for key in scopes:
            e = by_key.get((x, y, key))
            row.append(
                f"{sweep_markdown._ci(e, 3, key='p')} ({e['n_tasks']}×{e['n_x']}/{e['n_y']})"
                if e
                else "—"
            )
        rows.append(row)
    better = "higher" if metric["higher_is_better"] else "lower"
    return [
        *lines,
        f"P(X > Y): the probability that a run of X has a {better} held-out {metric['label']} "
        "than a run of Y on the same task (ties count one half), averaged over tasks; 0.5 means "
        "no difference. In brackets: tasks × runs per task of X / of Y.",
        "",
        *sweep_markdown._table(["comparison", *scopes.values()], rows),
    ]


def write_held_out_report(
    sweep_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    n_resamples: int = 2000,
) -> Path:
    """Write an env-free sweep's ``REPORT.md``, ``rows.csv`` and ``aggregates.json`` (no
    figures), as :func:`~sbil.experiments.sweeps.write_sweep_report` writes a report
    (which calls this for such sweeps): into a staging folder swapped in whole, only over an
    earlier report. Returns the report's path."""
    sweep_dir = Path(sweep_dir)
    report = Path(out) if out is not None else sweep_dir / "report"
    if report.suffix.lower() != ".md":
        report = report / "REPORT.md"
    folder = report.parent
    sweep_folder._check_report_folder(folder, sweep_dir)
    rows = sweep_load.load_rows(sweep_dir)
    summary = summarise_held_out_sweep(sweep_dir, seed=seed, n_resamples=n_resamples, rows=rows)
    with lock(folder):
        sweep_folder._check_report_folder(folder, sweep_dir)
        with staged_folder(folder) as staging:
            write_csv_atomic(sweep_folder._tidy(rows), staging / "rows.csv")
            write_json_atomic(staging / "aggregates.json", summary)
            text = render_held_out_report(summary, sweep_dir=sweep_dir)
            write_text_atomic(staging / report.name, text)
    return report

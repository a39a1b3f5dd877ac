"""The report of a sweep folder: statistics over its tidy rows, figures, and the EDM verdict.

A sweep folder (written by :mod:`sbil.experiments.sweep`) holds ``sweep.json`` (the grid),
``references.json`` (per environment the random policy's and the expert's measured returns)
and ``rows/*.json`` (one tidy row per cell: env x algo x k x option-set x seed). This module
reads them, computes every figure the report quotes (:func:`summarise_sweep`), judges the EDM
paper's claim from those figures (:func:`judge_edm_claim`, the one home of that verdict and its
words), and renders Markdown and PNG figures that only show what the summary holds
(:func:`write_sweep_report`).

Statistics follow rliable (:mod:`sbil.experiments.stats`): a run's score is its mean return over
the evaluation episodes, normalised per environment so that the random policy scores 0 and the
expert 1; aggregates are interquartile means (IQM) of ``scores[seed, task]`` with 95% stratified
bootstrap percentile intervals, where a task is an environment (at one k) or an (environment, k)
pair (over all k). Probabilities of improvement P(X > Y) are Mann-Whitney statistics averaged
over tasks; they depend only on ranks within a task, so they need no normalisation.

Example:
    >>> from sbil.experiments.sweep_report import write_sweep_report
    >>> write_sweep_report("runs/sweep-quick")  # doctest: +SKIP
    PosixPath('runs/sweep-quick/report/REPORT.md')
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sbil.deep.learners.registry import ALGOS, DISPLAY_NAMES
from sbil.experiments.io import save_figure_atomic, write_csv_atomic
from sbil.experiments.stats import (
    Interval,
    normalised_score,
    performance_profile,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)
from sbil.files import lock, staged_folder, write_json_atomic, write_text_atomic
from sbil.seeds import MAX_SEED

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ALGO_NAMES",
    "ALGO_ORDER",
    "BASELINE",
    "COMPARISONS",
    "comparisons",
    "judge_edm_claim",
    "load_references",
    "load_rows",
    "load_spec",
    "render_sweep_report",
    "summarise_sweep",
    "write_sweep_report",
]

SUMMARY_SCHEMA = 1
CONFIDENCE = 0.95
ALGO_ORDER = ALGOS
"""The order of learners in every table and figure (the registry's); algorithms not listed
follow, by name."""
ALGO_NAMES = DISPLAY_NAMES
"""Display names (the registry's); an algorithm not listed is shown under its own name."""
BASELINE = "bc"
"""The learner every other one is compared with: P(X > BC) for each X present."""
COMPARISONS: tuple[tuple[str, str], ...] = (("edm", "bc"), ("edm-decoupled", "edm"))
"""(X, Y) pairs whose P(X > Y) the report gives whenever both are present, besides each
learner against :data:`BASELINE` (see :func:`comparisons`)."""

_REQUIRED_ROW_KEYS = ("env_id", "algo", "k", "seed", "status")
_ROW_DEFAULTS: dict[str, Any] = {
    "schema": None,
    "cell_id": None,
    "config_hash": None,
    "windows": None,
    "train_episodes": [],
    "options": {},
    "n_pairs": None,
    "error": None,
    "returns": [],
    "return_mean": None,
    "eval_episodes": None,
    "eval_seed": None,
    "action_match": None,
    "action_match_episodes": 0,
    "train_seconds": None,
    "eval_seconds": None,
    "wall_seconds": None,
    "git_commit": None,
    "sbil_version": None,
    "run_dir": None,
}
# Ten distinct colours and markers (one per learner up to ten, then they repeat), so eight
# learners stay apart in colour and, where lines overlap or print in grey, in marker. Grey comes
# last: the per-learner profiles draw the other learners in grey.
_COLOURS = (
    "tab:blue",
    "tab:red",
    "tab:orange",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", "-.", ":")


def comparisons(algos: Iterable[str]) -> list[tuple[str, str]]:
    """The (X, Y) algorithm pairs whose P(X > Y) the report gives, in learner order.

    Every algorithm present against :data:`BASELINE` (BC), and the :data:`COMPARISONS` pairs
    whose both sides are present.

    Example:
        >>> comparisons(["avril", "bc", "edm", "edm-decoupled"])
        [('edm', 'bc'), ('edm-decoupled', 'bc'), ('edm-decoupled', 'edm'), ('avril', 'bc')]
    """
    present = set(algos)
    pairs = {(a, BASELINE) for a in present if a != BASELINE and BASELINE in present}
    pairs |= {(x, y) for x, y in COMPARISONS if x in present and y in present}
    return sorted(pairs, key=lambda p: (_algo_rank(p[0]), _algo_rank(p[1])))


def _algo_rank(algo: str) -> tuple[int, str]:
    """Sort key of an algorithm: its place in :data:`ALGO_ORDER`, unknown ones after, by name."""
    return (ALGO_ORDER.index(algo) if algo in ALGO_ORDER else len(ALGO_ORDER), str(algo))


# ----------------------------------------------------------------------------- loading


def load_spec(sweep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The sweep's description from ``sweep.json`` (the grid it was asked to run), flat.

    Both ``{"schema": 1, "spec": {...}}`` (as :mod:`sbil.experiments.sweep` writes it) and a
    flat object are read; the result is ``{"schema": ..., "envs": ..., "ks": ..., ...}``.
    """
    path = Path(sweep_dir) / "sweep.json"
    if not Path(sweep_dir).is_dir():
        raise ValueError(f"no sweep folder at {sweep_dir}; pass the folder `sbil sweep` wrote.")
    if not path.is_file():
        raise ValueError(
            f"{sweep_dir} has no sweep.json, so it is not a sweep folder; pass the folder "
            "`sbil sweep` wrote."
        )
    stored = _read_json(path)
    if not isinstance(stored, dict):
        raise ValueError(f"{path} must hold a JSON object; it holds {type(stored).__name__}.")
    if "spec" in stored:  # {"schema": 1, "spec": SweepSpec.to_dict()}
        if not isinstance(stored["spec"], dict):
            raise ValueError(f"{path}: its spec must be a JSON object{_FIX_SPEC}")
        stored = {"schema": stored.get("schema"), **stored["spec"]}
    _check_spec(path, stored)
    return stored


_FIX_SPEC = "; it is damaged: restore it, or re-run the sweep's `sbil sweep` command to rewrite it."
# The fields of sweep.json the report reads, and the JSON type each must have.
_SPEC_LISTS = {"envs": str, "algos": str, "ks": int, "seeds": int}


def _check_spec(path: Path, spec: Mapping[str, Any]) -> None:
    """Refuse a ``sweep.json`` whose fields the report reads have the wrong JSON types."""
    for key, kind in _SPEC_LISTS.items():
        values = spec.get(key, [])
        if not isinstance(values, list) or not all(_is(v, kind) for v in values):
            raise ValueError(
                f"{path}: {key} must be a list of {'strings' if kind is str else 'integers'}, "
                f"got {_short(values)}{_FIX_SPEC}"
            )
    for key in ("options", "grid"):
        if not isinstance(spec.get(key) or {}, dict):
            raise ValueError(
                f"{path}: {key} must be a JSON object, got {_short(spec[key])}{_FIX_SPEC}"
            )
    for name, values in (spec.get("grid") or {}).items():
        if not isinstance(values, list):
            raise ValueError(
                f"{path}: grid.{name} must be a list of values, got {_short(values)}{_FIX_SPEC}"
            )
    if spec.get("preset") is not None and not isinstance(spec["preset"], str):
        raise ValueError(f"{path}: preset must be a name, got {_short(spec['preset'])}{_FIX_SPEC}")


def _is(value: Any, kind: type) -> bool:
    """Whether a JSON value is a ``kind`` (a bool is no integer)."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_references(sweep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The sweep's ``references.json`` (random and expert returns per env); {} when absent."""
    path = Path(sweep_dir) / "references.json"
    if not path.is_file():
        return {}
    refs = _read_json(path)
    if not isinstance(refs, dict):
        raise ValueError(f"{path} must hold a JSON object keyed by env id.")
    return refs


def load_rows(sweep_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The rows of the sweep's grid, one per cell, failed ones kept with their status and error.

    A row file whose cell is not in the grid of ``sweep.json`` (another env, learner, k, seed
    or option-set: left over from an earlier grid, or copied in) is left out;
    :func:`summarise_sweep` lists those under ``outside_grid``. Without a ``sweep.json``
    every row is read.

    Args:
        sweep_dir: the sweep folder (its ``rows/*.json`` are read).

    Returns:
        One row per file with the schema's fields (absent optional fields filled with None),
        plus ``variant``: the algorithm's name, followed by the learner options that differ
        between that algorithm's rows when the sweep varies them (e.g. ``edm (lr=0.001)``), and
        ``normalised_score``: ``return_mean`` normalised by ``references.json`` (NaN where the
        cell failed or the env has no usable reference). Sorted by env, algorithm, k, seed.
    """
    return _read_rows(sweep_dir)[0]


_GRID_AXES = (("envs", "env_id", "env"), ("algos", "algo", "learner"), ("ks", "k", "k"))
_GRID_AXES += (("seeds", "seed", "seed"),)


def _read_rows(sweep_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """:func:`load_rows`'s frame, and a record (file, cell, reason) per row outside the grid."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"no sweep folder at {sweep_dir}; pass the folder `sbil sweep` wrote.")
    spec = load_spec(sweep_dir) if (sweep_dir / "sweep.json").is_file() else {}
    records, outside = [], []
    for path, row in _row_files(sweep_dir):
        _check_row(path, row)
        record = {**_ROW_DEFAULTS, **row, "row_file": path.name}
        reason = next(
            (
                f"its {what} {record[field]} is not among the grid's {axis}"
                for axis, field, what in _GRID_AXES
                if axis in spec and record[field] not in spec[axis]
            ),
            None,
        )
        if reason is None:
            records.append(record)
        else:
            outside.append(_outside_record(record, reason))
    columns = [*_REQUIRED_ROW_KEYS, *_ROW_DEFAULTS, "row_file", "variant", "normalised_score"]
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), outside
    frame = pd.DataFrame.from_records(records)
    frame["k"] = frame["k"].astype(int)
    frame["seed"] = frame["seed"].astype(int)
    frame["return_mean"] = pd.to_numeric(frame["return_mean"], errors="coerce").astype(float)
    frame["action_match"] = pd.to_numeric(frame["action_match"], errors="coerce").astype(float)
    grid = spec.get("grid") or {}
    frame["variant"] = _variant_labels(frame, grid)
    if grid:  # the option-sets the grid asks for; any other one is outside it
        expected = {(env, variant, k) for env, _, variant, k in _expected_grid(spec, frame)}
        inside = [
            (e, v, k) in expected
            for e, v, k in zip(frame["env_id"], frame["variant"], frame["k"], strict=True)
        ]
        outside += [
            _outside_record(r, f"its learner options ({r['variant']}) are not in the grid")
            for r in frame[[not i for i in inside]].to_dict("records")
        ]
        frame = frame[inside].reset_index(drop=True)
        if not len(frame):
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), outside
        frame["variant"] = _variant_labels(frame, grid)  # without the others' options
    anchors = _anchors(load_references(sweep_dir))
    frame["normalised_score"] = [
        float(normalised_score(r, random_return=anchors[e][0], expert_return=anchors[e][1]))
        if s == "done" and e in anchors and np.isfinite(r)
        else math.nan
        for e, r, s in zip(frame["env_id"], frame["return_mean"], frame["status"], strict=True)
    ]
    frame["_algo_order"] = frame["algo"].map(lambda a: _algo_rank(str(a))[0])
    frame = frame.sort_values(["env_id", "_algo_order", "variant", "k", "seed", "row_file"])
    frame = frame.drop(columns="_algo_order").reset_index(drop=True)[
        [*columns, *[c for c in frame.columns if c not in columns and c != "_algo_order"]]
    ]
    return frame, sorted(outside, key=lambda r: r["row_file"])


#: A committed results folder's rows, one JSON object per line (``docs/results/*/``).
ROWS_ARCHIVE = "rows.jsonl.gz"


def _row_files(sweep_dir: Path) -> Iterator[tuple[Path, Any]]:
    """``(path, row)`` of every row file in ``rows/``; a folder without ``rows/`` that holds
    :data:`ROWS_ARCHIVE` (a committed results folder) gives its lines, each named as the file
    it was (``rows/<cell_id>.json``)."""
    archive = sweep_dir / ROWS_ARCHIVE
    if not (sweep_dir / "rows").is_dir() and archive.is_file():
        try:
            with gzip.open(archive, "rt", encoding="utf-8") as lines:
                rows = [json.loads(line) for line in lines if line.strip()]
        except (OSError, UnicodeDecodeError, EOFError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read {archive} ({err}); restore it from git.") from None
        for number, row in enumerate(rows, 1):
            name = row.get("cell_id") if isinstance(row, dict) else None
            yield sweep_dir / "rows" / f"{name or f'line-{number}'}.json", row
        return
    for path in sorted((sweep_dir / "rows").glob("*.json")):
        yield path, _read_json(path)


def _outside_record(row: Mapping[str, Any], reason: str) -> dict[str, Any]:
    keys = ("row_file", "cell_id", "env_id", "algo", "k", "seed")
    return {**{key: _plain(row[key]) for key in keys}, "reason": reason}


_FIX_ROW = " (delete the file, or re-run the sweep to rewrite it)."


def _check_row(path: Path, row: Any) -> None:
    """Refuse a row file that is not a sweep row as :mod:`sbil.experiments.sweep` writes it:
    the fields the report groups, sorts and normalises by must be there, with their types."""
    if not isinstance(row, dict):
        raise ValueError(
            f"{path} must hold one JSON object (a sweep row), not {type(row).__name__}{_FIX_ROW}"
        )
    missing = [key for key in (*_REQUIRED_ROW_KEYS, "cell_id") if key not in row]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is not a sweep row{_FIX_ROW}")
    for key in ("cell_id", "env_id", "algo"):
        if not isinstance(row[key], str) or not row[key]:
            raise ValueError(f"{path} has {key} = {_short(row[key])}, not a name{_FIX_ROW}")
    if not _is(row["k"], int) or row["k"] < 1:
        raise ValueError(f"{path} has k = {_short(row['k'])}, not an integer >= 1{_FIX_ROW}")
    if not _is(row["seed"], int) or not 0 <= row["seed"] <= MAX_SEED:
        raise ValueError(
            f"{path} has seed = {_short(row['seed'])}, not an integer in 0..{MAX_SEED}{_FIX_ROW}"
        )
    if row["status"] not in ("done", "failed"):
        raise ValueError(f"{path} has status {_short(row['status'])}, not 'done' or 'failed'.")
    if not isinstance(row.get("options") or {}, dict):
        raise ValueError(
            f"{path} has options = {_short(row['options'])}, not a JSON object of learner "
            f"options{_FIX_ROW}"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path} as JSON ({err}); delete or rewrite it.") from None


def _variant_keys(frame: pd.DataFrame, grid: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per algorithm, the learner options that tell its option-sets apart: the spec's grid
    options with more than one value, and any option whose value differs between its rows."""
    swept = {k for k, values in grid.items() if isinstance(values, list) and len(values) > 1}
    out = {}
    for algo, group in frame.groupby("algo", sort=False):
        keys = sorted({k for opts in group["options"] for k in (opts or {})} | swept)
        out[str(algo)] = [
            k
            for k in keys
            if k in swept
            or len({json.dumps((o or {}).get(k), sort_keys=True) for o in group["options"]}) > 1
        ]
    return out


def _variant_label(algo: str, options: Mapping[str, Any] | None, keys: Sequence[str]) -> str:
    shown = [f"{k}={_option_text((options or {}).get(k))}" for k in keys]
    return f"{algo} ({', '.join(shown)})" if shown else str(algo)


def _variant_labels(frame: pd.DataFrame, grid: Mapping[str, Any]) -> list[str]:
    """Algorithm name plus the options that tell its option-sets apart (see _variant_keys)."""
    keys = _variant_keys(frame, grid)
    return [
        _variant_label(algo, opts, keys[algo])
        for algo, opts in zip(frame["algo"], frame["options"], strict=True)
    ]


def _option_text(value: Any) -> str:
    return (
        "default" if value is None else json.dumps(value) if not isinstance(value, str) else value
    )


def _anchors(references: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """(random mean, expert mean) of each env whose references allow a normalised score."""
    out = {}
    for env, ref in references.items():
        if _reference_problem(ref) is None:
            out[env] = (float(ref["random"]["mean"]), float(ref["expert"]["mean"]))
    return out


def _reference_problem(ref: Any) -> str | None:
    """Why an env's references give no normalised score, or None when they do."""
    if (
        isinstance(ref, dict)
        and isinstance(ref.get("expert"), dict)
        and ref["expert"].get("problem")
    ):
        return str(ref["expert"]["problem"])  # own data that records no returns (sweep_data)
    try:
        random_mean = float(ref["random"]["mean"])
        expert_mean = float(ref["expert"]["mean"])
    except (KeyError, TypeError, ValueError):
        return "references.json lacks its random or expert mean"
    if not (np.isfinite(random_mean) and np.isfinite(expert_mean)):
        return "a reference mean is not finite"
    if expert_mean == random_mean:
        return "the expert's mean return equals the random policy's"
    return None


# ----------------------------------------------------------------------------- statistics


def summarise_sweep(
    sweep_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_resamples: int = 2000,
    rows: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Every figure the report quotes, as one JSON-ready dictionary.

    Args:
        sweep_dir: the sweep folder.
        seed: root seed of the bootstrap; each interval derives its own seed from it and the
            interval's name, so adding a cell to a sweep leaves the other intervals unchanged.
        n_resamples: bootstrap resamples per interval.
        rows: the rows, if already loaded with :func:`load_rows`.

    Returns:
        A dictionary with keys ``protocol``, ``bootstrap``, ``counts``, ``references``, ``cells``
        (per env x variant x k: IQM over seeds of return, normalised score and action match,
        with intervals), ``aggregate`` (per variant, IQM normalised score over envs at each k
        and over all (env, k)), ``improvement`` (P(X > Y) for the pairs of :func:`comparisons`
        at each k and over all k), ``learners`` (per variant, IQM normalised score and
        P(X > BC) at few k and over all k: the report's per-learner table), ``profiles``,
        ``failed``, ``missing``, ``duplicates``, ``excluded``, ``outside_grid`` (the row files
        :func:`load_rows` left out, each with its reason) and ``claim``
        (:func:`judge_edm_claim`).
    """
    read, outside = _read_rows(sweep_dir)
    return _summarise(
        sweep_dir, read if rows is None else rows, outside, seed=seed, n_resamples=n_resamples
    )


def _summarise(
    sweep_dir: str | os.PathLike[str],
    frame: pd.DataFrame,
    outside: list[dict[str, Any]],
    *,
    seed: int,
    n_resamples: int,
) -> dict[str, Any]:
    """:func:`summarise_sweep` of rows already read (the report reads them once)."""
    sweep_dir = Path(sweep_dir)
    spec = load_spec(sweep_dir)
    references = load_references(sweep_dir)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1; got {n_resamples}.")
    boot = _Bootstrap(seed=seed, n_resamples=n_resamples)
    done, duplicates, excluded = _finished(frame)
    variants = _ordered_variants(frame)
    keys = ["env_id", "variant", "k", "seed"]
    headline = headline_envs(spec)
    beside = [e for e in spec.get("envs", []) if e not in headline]
    pooled = done[~done["env_id"].isin(beside)]  # the verdict's tasks (and any stray env's)

    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "protocol": _protocol(spec, frame),
        "bootstrap": {
            "n_resamples": n_resamples,
            "confidence": CONFIDENCE,
            "seed": seed,
            "method": "stratified bootstrap (runs resampled within each task), percentile "
            "interval with linear interpolation (rliable 1.2.0)",
        },
        "variants": variants,
        "references": _reference_summary(spec, references),
        "cells": _cell_summaries(done, variants, boot),
        "headline_envs": headline,
        "aggregate": _aggregates(pooled, variants, boot),
        "improvement": _improvements(pooled, variants, boot),
        "learners": _learners(pooled, variants, boot),
        "profiles": _profiles(pooled, variants, boot),
        "failed": _records(frame[frame["status"] == "failed"], ["cell_id", *keys, "algo", "error"]),
        "missing": _missing_cells(spec, frame),
        "duplicates": duplicates,
        "excluded": excluded,
        "outside_grid": outside,
    }
    summary["counts"] = {
        "rows": len(frame),
        "done": int((frame["status"] == "done").sum()),
        "failed": len(summary["failed"]),
        "missing": sum(len(m["seeds"]) for m in summary["missing"]),
        "expected": _expected_count(spec, frame),
    }
    summary["claim"] = judge_edm_claim(
        frame[~frame["env_id"].isin(beside)],
        counts=summary["counts"],
        seed=seed,
        n_resamples=n_resamples,
        smoke_test=smoke_test(spec),
    )
    # Tasks beside the verdict: the same figures, each task alone, never pooled with the rest.
    summary["beside"] = [
        {
            "env_id": env,
            "learners": _learners(done[done["env_id"] == env], variants, boot),
            "claim": judge_edm_claim(
                frame[frame["env_id"] == env],
                seed=seed,
                n_resamples=n_resamples,
                smoke_test=smoke_test(spec),
            ),
        }
        for env in beside
    ]
    return summary


#: Presets that check the pipeline at a tiny budget: their reports state no verdict.
SMOKE_TEST_PRESETS = ("quick",)

#: The EDM paper's control tasks (Jarrett et al., 2020, section 5): in the ``edm-paper*``
#: presets' reports the verdict and every pooled figure are over these; the presets' other
#: tasks (MountainCar-v0, which the paper did not run) are reported beside them, not pooled.
PAPER_TASKS = ("CartPole-v1", "Acrobot-v1", "LunarLander-v3")
PAPER_PRESETS = ("edm-paper", "edm-paper-scripted", "edm-paper-epsilon")


def headline_envs(spec: Mapping[str, Any]) -> list[str]:
    """The tasks a sweep's verdict and pooled figures are over: for the ``edm-paper*`` presets
    the paper's control tasks among the spec's (:data:`PAPER_TASKS`), else every task."""
    envs = [str(e) for e in spec.get("envs", [])]
    if spec.get("preset") in PAPER_PRESETS:
        paper = [e for e in envs if e in PAPER_TASKS]
        if paper:
            return paper
    return envs


def smoke_test(spec: Mapping[str, Any]) -> str | None:
    """Why a sweep (its flat ``sweep.json``) is a smoke test whose report states no verdict
    about the paper (e.g. "the quick preset: 300 updates, 3 seeds, 10 evaluation episodes"),
    or None."""
    name = spec.get("preset")
    if name not in SMOKE_TEST_PRESETS:
        return None
    options = spec.get("options") if isinstance(spec.get("options"), dict) else {}
    budget = [
        f"{options['n_updates']} updates" if "n_updates" in options else None,
        f"{len(spec['seeds'])} seeds" if isinstance(spec.get("seeds"), list) else None,
        f"{spec['eval_episodes']} evaluation episodes" if "eval_episodes" in spec else None,
    ]
    shown = ", ".join(b for b in budget if b)
    return f"the {name} preset" + (f": {shown}" if shown else "")


_CELL_KEYS = ["env_id", "variant", "k", "seed"]


def _finished(
    frame: pd.DataFrame,
) -> tuple[pd.DataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished rows the statistics use, the duplicate rows and the unusable ones."""
    duplicated = frame.duplicated(_CELL_KEYS, keep="first")
    duplicates = _records(frame[duplicated], ["cell_id", "row_file", *_CELL_KEYS])
    done = frame[(frame["status"] == "done") & ~duplicated]
    bad = ~np.isfinite(done["return_mean"].to_numpy(dtype=float))
    excluded = [
        {**r, "reason": "status done but no finite return_mean"}
        for r in _records(done[bad], ["cell_id", *_CELL_KEYS])
    ]
    return done[~bad].copy(), duplicates, excluded


class _Bootstrap:
    """Bootstrap settings with a seed per named interval (stable under added cells)."""

    def __init__(self, *, seed: int, n_resamples: int) -> None:
        self.seed = int(seed)
        self.n_resamples = n_resamples

    def seed_for(self, *name: Any) -> int:
        text = json.dumps([self.seed, *map(str, name)])
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")

    def iqm(self, matrix: np.ndarray, *name: Any) -> Interval:
        return stratified_bootstrap_ci(
            matrix,
            n_resamples=self.n_resamples,
            confidence=CONFIDENCE,
            seed=self.seed_for("iqm", *name),
            quantiles="linear",
        )

    def improvement(self, x: np.ndarray, y: np.ndarray, *name: Any) -> Interval:
        return probability_of_improvement_ci(
            x,
            y,
            n_resamples=self.n_resamples,
            confidence=CONFIDENCE,
            seed=self.seed_for("poi", *name),
        )


def _ordered_variants(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Every variant in the rows, in learner order (:data:`ALGO_ORDER`), then by name."""
    seen: dict[str, str] = {}
    for variant, algo in zip(frame["variant"], frame["algo"], strict=True):
        seen.setdefault(str(variant), str(algo))
    ordered = sorted(seen.items(), key=lambda va: (_algo_rank(va[1]), va[0]))
    return [{"variant": v, "algo": a, "name": _display(v, a)} for v, a in ordered]


def _display(variant: str, algo: str) -> str:
    return ALGO_NAMES.get(algo, algo) + variant[len(algo) :]


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {c: _plain(row[c]) for c in columns if c in frame.columns}
        for row in frame.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    """JSON-ready scalars: numpy numbers to Python, NaN to None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _protocol(spec: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    def distinct(column: str) -> list[Any]:
        values = frame[column].dropna().tolist() if column in frame else []
        return sorted({str(v) for v in values})

    options_by_algo: dict[str, dict[str, Any]] = {}
    for algo, group in frame.groupby("algo", sort=False):
        merged: dict[str, set[str]] = {}
        for opts in group["options"]:
            for key, value in (opts or {}).items():
                merged.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
        options_by_algo[str(algo)] = {
            key: json.loads(next(iter(vals))) if len(vals) == 1 else "varies"
            for key, vals in sorted(merged.items())
        }
    return {
        "spec": dict(spec),
        "row_options_by_algo": options_by_algo,
        "git_commits": distinct("git_commit"),
        "sbil_versions": distinct("sbil_version"),
        "windows_in_rows": distinct("windows"),
    }


def _reference_summary(spec: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for env in [*spec.get("envs", []), *[e for e in references if e not in spec.get("envs", [])]]:
        ref = references.get(env)
        if ref is None:
            out[env] = {"usable": False, "problem": "no entry in references.json"}
            continue
        problem = _reference_problem(ref)
        entry: dict[str, Any] = {"usable": problem is None, "problem": problem}
        for side in ("random", "expert"):
            part = ref.get(side) if isinstance(ref, dict) else None
            if isinstance(part, dict):
                entry[side] = {
                    k: _plain(part.get(k))
                    for k in ("mean", "episodes", "seed", "name")
                    if k in part
                }
        out[env] = entry
    return out


def _cell_summaries(
    done: pd.DataFrame, variants: Sequence[Mapping[str, str]], boot: _Bootstrap
) -> list[dict[str, Any]]:
    cells = []
    order = [v["variant"] for v in variants]
    for (env, variant, k), group in sorted(
        done.groupby(["env_id", "variant", "k"]),
        key=lambda item: (item[0][0], order.index(item[0][1]), item[0][2]),
    ):
        cell: dict[str, Any] = {
            "env_id": env,
            "variant": variant,
            "algo": str(group["algo"].iloc[0]),
            "k": int(k),
            "seeds": sorted(int(s) for s in group["seed"]),
        }
        for column, name in (
            ("return_mean", "return"),
            ("normalised_score", "normalised"),
            ("action_match", "action_match"),
        ):
            values = group[column].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            cell[name] = (
                _interval(boot.iqm(values, name, env, variant, k), n=len(values))
                if len(values)
                else None
            )
        matched = group["action_match_episodes"].dropna()
        cell["action_match_episodes"] = sorted({int(n) for n in matched})
        cells.append(cell)
    return cells


def _interval(ci: Interval, **extra: Any) -> dict[str, Any]:
    return {"iqm": ci.estimate, "low": ci.low, "high": ci.high, **extra}


def _score_matrix(
    runs: pd.DataFrame, value: str, tasks: Sequence[tuple[str, int]]
) -> tuple[np.ndarray, list[int], int]:
    """``scores[seed, task]`` over the seeds present on every task, and how many runs it drops.

    rliable's statistics take a rectangular matrix; a seed that is missing (or failed) on one
    of the tasks is left out of all of them, and the count of runs so dropped is reported.
    """
    values = {
        ((e, int(k)), int(s)): float(v)
        for e, k, s, v in zip(runs["env_id"], runs["k"], runs["seed"], runs[value], strict=True)
        if np.isfinite(v)
    }
    task_set = set(tasks)
    per_task = [{s for (t, s) in values if t == task} for task in tasks]
    seeds = sorted(set.intersection(*per_task)) if per_task else []
    n_runs = sum(1 for (t, _) in values if t in task_set)
    matrix = np.array([[values[(t, s)] for t in tasks] for s in seeds], dtype=float)
    return matrix.reshape(len(seeds), len(tasks)), seeds, n_runs - len(seeds) * len(tasks)


def _tasks(runs: pd.DataFrame, value: str, ks: Iterable[int] | None) -> list[tuple[str, int]]:
    """The (env, k) tasks on which ``runs`` have at least one finite ``value``."""
    ok = runs[np.isfinite(runs[value].to_numpy(dtype=float))]
    if ks is not None:
        ok = ok[ok["k"].isin(list(ks))]
    return sorted({(str(e), int(k)) for e, k in zip(ok["env_id"], ok["k"], strict=True)})


def _scopes(done: pd.DataFrame) -> list[tuple[str, int | None, list[int]]]:
    """("k", k, [k]) for every k present, then ("all", None, all ks)."""
    ks = sorted({int(k) for k in done["k"]})
    return [("k", k, [k]) for k in ks] + ([("all", None, ks)] if ks else [])


def _aggregates(
    done: pd.DataFrame, variants: Sequence[Mapping[str, str]], boot: _Bootstrap
) -> list[dict[str, Any]]:
    out = []
    for scope, k, ks in _scopes(done):
        for v in variants:
            entry = _aggregate_iqm(done, v["variant"], ks, boot, scope, k)
            if entry is not None:
                out.append({"variant": v["variant"], "scope": scope, "k": k, **entry})
    return out


def _aggregate_iqm(
    done: pd.DataFrame, variant: str, ks: Sequence[int], boot: _Bootstrap, *scope: Any
) -> dict[str, Any] | None:
    """IQM normalised score of ``variant`` over its (env, k) tasks with k in ``ks``.

    ``scope`` names the bootstrap draw: the same name gives the same interval wherever the
    report quotes the figure. None when the variant has no normalised score on those tasks.
    """
    runs = done[done["variant"] == variant]
    tasks = _tasks(runs, "normalised_score", ks)
    if not tasks:
        return None
    matrix, seeds, dropped = _score_matrix(runs, "normalised_score", tasks)
    entry: dict[str, Any] = {
        "envs": sorted({e for e, _ in tasks}),
        "n_tasks": len(tasks),
        "seeds": seeds,
        "runs_dropped": dropped,
    }
    if matrix.size:
        ci = boot.iqm(matrix, "aggregate", variant, *scope)
        entry.update(iqm=ci.estimate, low=ci.low, high=ci.high)
    else:
        entry.update(iqm=None, low=None, high=None)
    return entry


def _few_ks(ks: Iterable[int]) -> list[int]:
    """The k values that count as "few" expert trajectories, the EDM claim's scope: the smaller
    half of the distinct ks (at least the smallest one)."""
    distinct = sorted({int(k) for k in ks})
    return distinct[: max(1, len(distinct) // 2)]


def _learners(
    done: pd.DataFrame, variants: Sequence[Mapping[str, str]], boot: _Bootstrap
) -> dict[str, Any]:
    """Per learner (variant): IQM normalised score and P(X > BC), at few k and over all k.

    "Few" is :func:`_few_ks` of the ks with finished runs (k <= 3 in the ``edm-paper`` preset);
    that scope is left out when it is every k. Each figure is drawn under the bootstrap name of
    the same figure elsewhere (the aggregate and improvement tables, the claim's paragraph), so
    the report quotes one interval per figure.
    """
    all_ks = sorted({int(k) for k in done["k"]})
    few = _few_ks(all_ks) if all_ks else []
    scopes: list[tuple[str, list[int], tuple[Any, ...]]] = []
    if few and few != all_ks:
        scopes.append(("few", few, _scope_of(few, done)))
    if all_ks:
        scopes.append(("all", all_ks, ("all", None)))
    baselines = [v["variant"] for v in variants if v["algo"] == BASELINE]
    rows = []
    for v in variants:
        row: dict[str, Any] = {"variant": v["variant"], "algo": v["algo"], "name": v["name"]}
        for label, ks, scope in scopes:
            versus = []
            if v["algo"] != BASELINE:
                for b in baselines:
                    entry = _improvement(done, v["variant"], b, ks, boot, *scope)
                    if entry is not None:
                        versus.append(entry)
            row[label] = {
                "normalised": _aggregate_iqm(done, v["variant"], ks, boot, *scope),
                "vs_baseline": versus,
            }
        rows.append(row)
    return {
        "baseline": BASELINE,
        "baseline_variants": baselines,
        "scopes": [{"name": label, "ks": ks} for label, ks, _ in scopes],
        "rows": rows,
    }


def _pairs(
    variants: Sequence[Mapping[str, str]], x_algo: str, y_algo: str
) -> list[tuple[str, str]]:
    xs = [v["variant"] for v in variants if v["algo"] == x_algo]
    ys = [v["variant"] for v in variants if v["algo"] == y_algo]
    return [(x, y) for x in xs for y in ys]


def _improvement(
    done: pd.DataFrame, x: str, y: str, ks: Sequence[int], boot: _Bootstrap, *name: Any
) -> dict[str, Any] | None:
    """P(x > y) over the (env, k) tasks with k in ``ks`` on which both have runs."""
    runs_x, runs_y = done[done["variant"] == x], done[done["variant"] == y]
    shared = sorted(set(_tasks(runs_x, "return_mean", ks)) & set(_tasks(runs_y, "return_mean", ks)))
    if not shared:
        return None
    # Ranks within a task are all P(X > Y) uses, so raw returns give the normalised answer.
    mx, seeds_x, drop_x = _score_matrix(runs_x, "return_mean", shared)
    my, seeds_y, drop_y = _score_matrix(runs_y, "return_mean", shared)
    entry: dict[str, Any] = {
        "x": x,
        "y": y,
        "ks": sorted(set(ks) & {k for _, k in shared}),
        "envs": sorted({e for e, _ in shared}),
        "n_tasks": len(shared),
        "n_x": len(seeds_x),
        "n_y": len(seeds_y),
        "runs_dropped": drop_x + drop_y,
    }
    if mx.size and my.size:
        ci = boot.improvement(mx, my, x, y, *name)
        entry.update(p=ci.estimate, low=ci.low, high=ci.high)
    else:
        entry.update(p=None, low=None, high=None)
    return entry


def _improvements(
    done: pd.DataFrame, variants: Sequence[Mapping[str, str]], boot: _Bootstrap
) -> list[dict[str, Any]]:
    out = []
    for x_algo, y_algo in comparisons(v["algo"] for v in variants):
        for x, y in _pairs(variants, x_algo, y_algo):
            for scope, k, ks in _scopes(done):
                entry = _improvement(done, x, y, ks, boot, scope, k)
                if entry is not None:
                    out.append({"scope": scope, "k": k, **entry})
    return out


def _profiles(
    done: pd.DataFrame, variants: Sequence[Mapping[str, str]], boot: _Bootstrap
) -> dict[str, Any]:
    scores = done["normalised_score"].to_numpy(dtype=float)
    scores = scores[np.isfinite(scores)]
    if not scores.size:
        return {"taus": [], "curves": []}
    taus = np.linspace(min(0.0, float(scores.min())), max(1.0, float(scores.max())), 101)
    curves = []
    for scope, k, ks in _scopes(done):
        for v in variants:
            runs = done[done["variant"] == v["variant"]]
            tasks = _tasks(runs, "normalised_score", ks)
            if not tasks:
                continue
            matrix, seeds, _ = _score_matrix(runs, "normalised_score", tasks)
            if not matrix.size:
                continue
            profile = performance_profile(
                matrix,
                taus,
                n_resamples=boot.n_resamples,
                confidence=CONFIDENCE,
                seed=boot.seed_for("profile", v["variant"], scope, k),
            )
            curves.append(
                {
                    "variant": v["variant"],
                    "scope": scope,
                    "k": k,
                    "n_tasks": len(tasks),
                    "n_seeds": len(seeds),
                    "fraction": profile.fraction.tolist(),
                    "low": profile.low.tolist(),
                    "high": profile.high.tolist(),
                }
            )
    return {"taus": taus.tolist(), "curves": curves}


def _expected_grid(spec: Mapping[str, Any], frame: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """(env, algo, variant, k) combinations the spec asks for: envs x algos x option-sets x ks.

    A variant is one option-set of an algorithm: one per combination of the spec's ``grid``
    values, named as :func:`load_rows` names rows; without a grid, the variants the rows show
    (an algorithm with no row yet counts as one variant named after it).
    """
    grid = {k: v for k, v in (spec.get("grid") or {}).items() if isinstance(v, list) and v}
    names = sorted(grid)
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(grid[n] for n in names))
    ]
    keys = _variant_keys(frame, grid) if len(frame) else {}
    variants_of: dict[str, list[str]] = {}
    for variant, algo in zip(frame["variant"], frame["algo"], strict=True):
        variants_of.setdefault(algo, [])
        if variant not in variants_of[algo]:
            variants_of[algo].append(variant)
    swept = [n for n in names if len(grid[n]) > 1]
    out = []
    for env in spec.get("envs", []):
        for algo in spec.get("algos", []):
            if grid:
                algo_keys = keys.get(algo, swept)
                options = {**(spec.get("options") or {})}
                variants = list(
                    dict.fromkeys(_variant_label(algo, {**options, **c}, algo_keys) for c in combos)
                )
            else:
                variants = variants_of.get(algo, [algo])
            for variant in variants:
                for k in spec.get("ks", []):
                    out.append((str(env), str(algo), variant, int(k)))
    return out


def _expected_count(spec: Mapping[str, Any], frame: pd.DataFrame) -> int:
    return len(_expected_grid(spec, frame)) * len(spec.get("seeds", []))


def _missing_cells(spec: Mapping[str, Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Cells of the spec's grid with no row, grouped by (env, variant, k)."""
    present = {
        (str(e), v, int(k), int(s))
        for e, v, k, s in zip(
            frame["env_id"], frame["variant"], frame["k"], frame["seed"], strict=True
        )
    }
    seeds = [int(s) for s in spec.get("seeds", [])]
    out = []
    for env, algo, variant, k in _expected_grid(spec, frame):
        absent = [s for s in seeds if (env, variant, k, s) not in present]
        if absent:
            out.append({"env_id": env, "algo": algo, "variant": variant, "k": k, "seeds": absent})
    return out


# ----------------------------------------------------------------------------- the claim


def judge_edm_claim(
    rows: pd.DataFrame,
    *,
    counts: Mapping[str, int] | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    smoke_test: str | None = None,
) -> dict[str, Any]:
    """Whether this run supports the EDM paper's claim, judged and worded in one place.

    The claim (Jarrett et al., 2020): EDM is ahead of BC when few expert trajectories are
    available. "Few" is taken as the smaller half of the k values on which both EDM and BC have
    runs (at least the smallest one); the test statistic is P(EDM > BC) over the (env, k) tasks
    at those k, with its 95% stratified bootstrap interval. Verdict: "holds" if the whole
    interval lies above 0.5, "contradicted" if it lies below, "not resolved" otherwise, and
    "not testable" without runs of both.

    Args:
        rows: the sweep's rows, from :func:`load_rows` (failed ones are ignored here).
        counts: the summary's counts, to say when the sweep is partial.
        smoke_test: why this sweep is a smoke test (:func:`smoke_test`): then the statistic is
            computed but the verdict is "smoke test" and the text states none.
        seed: root seed of the bootstrap (as :func:`summarise_sweep`'s).
        n_resamples: bootstrap resamples per interval.

    Returns:
        ``{"verdicts": [one per (EDM variant, BC variant) pair with runs on a common task:
        {"verdict", "ks", "ks_in_sweep", "p", "low", "high", "per_k", "normalised", ...}],
        "text": the paragraph}``.
    """
    boot = _Bootstrap(seed=seed, n_resamples=n_resamples)
    variants = _ordered_variants(rows)
    done, _, _ = _finished(rows)
    counts = counts or {}
    pairs = _pairs(variants, "edm", "bc")
    verdicts = []
    for x, y in pairs:
        ks_both = sorted(
            {k for _, k in _tasks(done[done["variant"] == x], "return_mean", None)}
            & {k for _, k in _tasks(done[done["variant"] == y], "return_mean", None)}
        )
        if not ks_both:
            continue
        small = _few_ks(ks_both)
        scope = _scope_of(small, done)
        entry = _improvement(done, x, y, small, boot, *scope)
        if entry is None or entry["p"] is None:
            continue
        per_k = [_improvement(done, x, y, [k], boot, "k", k) for k in small]
        entry["verdict"] = (
            "smoke test"
            if smoke_test
            else "holds"
            if entry["low"] > 0.5
            else "contradicted"
            if entry["high"] < 0.5
            else "not resolved"
        )
        entry["ks_in_sweep"] = ks_both
        entry["per_k"] = [p for p in per_k if p is not None and p["p"] is not None]
        entry["normalised"] = {v: _small_k_iqm(done, v, small, boot, scope) for v in (x, y)}
        verdicts.append(entry)
    return {"verdicts": verdicts, "text": _claim_text(verdicts, variants, counts, smoke_test)}


def _small_k_iqm(
    done: pd.DataFrame, variant: str, ks: Sequence[int], boot: _Bootstrap, scope: tuple[Any, ...]
) -> dict[str, Any] | None:
    runs = done[done["variant"] == variant]
    tasks = _tasks(runs, "normalised_score", ks)
    if not tasks:
        return None
    matrix, _, _ = _score_matrix(runs, "normalised_score", tasks)
    if not matrix.size:
        return None
    return _interval(boot.iqm(matrix, "aggregate", variant, *scope), n_tasks=len(tasks))


def _scope_of(ks: Sequence[int], done: pd.DataFrame) -> tuple[Any, ...]:
    """The bootstrap name of a set of ks: that of the table's row for the same figure, so the
    paragraph and the tables quote the same interval."""
    if len(ks) == 1:
        return ("k", ks[0])
    if list(ks) == sorted({int(k) for k in done["k"]}):
        return ("all", None)
    return ("ks", *ks)


def _claim_text(
    verdicts: Sequence[Mapping[str, Any]],
    variants: Sequence[Mapping[str, str]],
    counts: Mapping[str, int],
    smoke_test: str | None = None,
) -> str:
    names = {v["variant"]: v["name"] for v in variants}
    intro = (
        "The EDM paper (Jarrett et al., 2020) reports EDM ahead of BC when few expert "
        "trajectories are available."
    )
    if not verdicts:
        have = {v["algo"] for v in variants}
        lacking = " and ".join(ALGO_NAMES[a] for a in ("edm", "bc") if a not in have)
        why = (
            f"this sweep has no finished {lacking} runs"
            if lacking
            else "EDM and BC have no finished runs on a common (environment, k)"
        )
        return f"{intro} **Not testable here**: {why}, so this run says nothing about the claim."
    parts = [intro]
    for v in verdicts:
        x, y = names[v["x"]], names[v["y"]]
        ks = ", ".join(str(k) for k in v["ks"])
        few = (
            f"the smaller half of this sweep's k values (k ∈ {{{ks}}} of "
            f"{{{', '.join(str(k) for k in v['ks_in_sweep'])}}})"
            if len(v["ks_in_sweep"]) > 1
            else f"the only k in this sweep (k = {ks}), so 'few' is whatever this sweep ran"
        )
        parts.append(
            f"Taking 'few' as {few}, over {v['n_tasks']} (environment, k) task"
            f"{'s' if v['n_tasks'] != 1 else ''} ({', '.join(v['envs'])}) with "
            f"{v['n_x']} {x} and {v['n_y']} {y} run{'s' if v['n_y'] != 1 else ''} per task, "
            f"the probability that {_a(x)} {x} run scores above {_a(y)} {y} run on the same "
            "task is "
            f"P({x} > {y}) = {_f(v['p'], 2)} (95% CI {_f(v['low'], 2)}–{_f(v['high'], 2)})."
        )
        if v["verdict"] == "smoke test":
            parts.append(
                f"This sweep is a smoke test ({smoke_test}), run to check that the pipeline "
                "works, so it states no verdict about the paper; "
                "`sbil sweep --preset edm-paper` runs the comparison."
            )
        elif v["verdict"] == "holds":
            parts.append(
                f"The claim **holds** in this run: the whole interval lies above 0.5, so {x} "
                f"is more likely than not to beat {y} at these k."
            )
        elif v["verdict"] == "contradicted":
            parts.append(
                f"The claim is **contradicted** in this run: the whole interval lies below 0.5, "
                f"so {y} is more likely than not to beat {x} at these k."
            )
        else:
            lean = (
                f"the point estimate leans towards {x}"
                if v["p"] > 0.5
                else f"the point estimate leans towards {y}"
                if v["p"] < 0.5
                else "the point estimate is exactly 0.5"
            )
            parts.append(
                "This run does **not resolve** the claim: the interval contains 0.5, so the "
                f"data are consistent with neither method being ahead ({lean})."
            )
        if len(v["per_k"]) > 1:
            parts.append(
                "Per k: "
                + "; ".join(
                    f"k = {p['ks'][0]}: {_f(p['p'], 2)} ({_f(p['low'], 2)}–{_f(p['high'], 2)})"
                    for p in v["per_k"]
                )
                + "."
            )
        norm = v["normalised"]
        if norm.get(v["x"]) and norm.get(v["y"]):
            a, b = norm[v["x"]], norm[v["y"]]
            parts.append(
                f"The IQM normalised score at these k is {_f(a['iqm'], 2)} "
                f"({_f(a['low'], 2)}–{_f(a['high'], 2)}) for {x} and {_f(b['iqm'], 2)} "
                f"({_f(b['low'], 2)}–{_f(b['high'], 2)}) for {y} (random policy 0, expert 1)."
            )
        seeds = min(v["n_x"], v["n_y"])
        if seeds < 5 and not smoke_test:
            parts.append(
                f"With {seeds} run{'s' if seeds != 1 else ''} per task, the interval is wide "
                "and the bootstrap itself is rough; read this as a smoke test, not evidence."
            )
    if counts.get("missing") or counts.get("failed"):
        parts.append(
            f"The sweep is partial ({counts.get('missing', 0)} cells missing, "
            f"{counts.get('failed', 0)} failed), so this covers only the cells present."
        )
    return " ".join(parts)


def _a(name: str) -> str:
    """The indefinite article before a method's name as it is read ("an EDM", "a BC")."""
    return "an" if name[:1] in "AEIOU" else "a"


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.{digits}f}"


# ----------------------------------------------------------------------------- rendering


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
_INTERVAL_FIGURE = "interval-estimates.png"
_PROFILE_FIGURE = "performance-profiles.png"
_PROFILE_LEARNER_FIGURE = "performance-profiles-per-learner.png"
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


def _envs(summary: Mapping[str, Any]) -> list[str]:
    spec_envs = [str(e) for e in summary["protocol"]["spec"].get("envs", [])]
    seen = {c["env_id"] for c in summary["cells"]}
    return [e for e in spec_envs if e in seen] + sorted(seen - set(spec_envs))


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


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell_text(c) for c in r) + " |" for r in rows]
    return [*out, ""]


def _cell_text(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ci(entry: Mapping[str, Any] | None, digits: int, key: str = "iqm") -> str:
    if not entry or entry.get(key) is None:
        return "—"
    return f"{_f(entry[key], digits)} [{_f(entry['low'], digits)}, {_f(entry['high'], digits)}]"


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _protocol_section(summary: Mapping[str, Any]) -> list[str]:
    spec = summary["protocol"]["spec"]
    boot = summary["bootstrap"]
    rows = [[key, f"`{_json_text(spec[key])}`"] for key in spec if key != "options"]
    for key, value in (spec.get("options") or {}).items():
        rows.append([f"options.{key}", f"`{_json_text(value)}`"])
    for algo, opts in summary["protocol"]["row_options_by_algo"].items():
        if opts:
            shown = ", ".join(f"{k}={_json_text(v)}" for k, v in opts.items())
            rows.append([f"learner options in {algo} rows", f"`{shown}`"])
    commits = summary["protocol"]["git_commits"]
    rows.append(["git commit(s) of the rows", ", ".join(f"`{c}`" for c in commits) or "—"])
    versions = summary["protocol"]["sbil_versions"]
    rows.append(["sbil version(s)", ", ".join(versions) or "—"])
    return [
        "## Protocol",
        "",
        "From `sweep.json` and the rows. A run's score is its mean undiscounted return over the "
        "evaluation episodes; the normalised score puts the random policy at 0 and the expert at "
        "1. Intervals are 95% stratified bootstrap percentile intervals "
        f"({boot['n_resamples']} resamples, seed {boot['seed']}; runs resampled within each "
        "task, as rliable does); point estimates are interquartile means (IQM).",
        "",
        *_table(["setting", "value"], rows),
    ]


def _references_section(summary: Mapping[str, Any]) -> list[str]:
    rows = []
    for env, ref in summary["references"].items():
        rnd, exp = ref.get("random", {}), ref.get("expert", {})
        rows.append(
            [
                env,
                f"{_f(rnd.get('mean'), 1)} ({rnd.get('episodes', '—')} ep.)" if rnd else "—",
                f"{_f(exp.get('mean'), 1)} ({exp.get('episodes', '—')} ep.)" if exp else "—",
                str(exp.get("name", "—")) if exp else "—",
                "yes" if ref["usable"] else f"no: {ref['problem']}",
            ]
        )
    if not rows:
        return []
    return [
        "## Normalisation references",
        "",
        *_table(["env", "random policy return", "expert return", "expert", "usable"], rows),
    ]


def _per_env_section(
    summary: Mapping[str, Any], figures: Mapping[str, str], names: Mapping[str, str]
) -> list[str]:
    lines = ["## Return and normalised score against k", ""]
    if not summary["cells"]:
        return [*lines, "No finished cells yet.", ""]
    if figures:
        lines += [
            "Each figure plots, per learner, the IQM over seeds at each k with its 95% "
            "stratified bootstrap interval (the numbers of the table under it). Its y-axis "
            "spans the IQMs and the reference lines (random policy, expert), so that one "
            "seed's extreme return cannot flatten it: an interval reaching more than a quarter "
            "of that span beyond is cut at the axis, its cut end marked with a triangle (the "
            "table gives its ends).",
            "",
        ]
    for env in _envs(summary):
        cells = [c for c in summary["cells"] if c["env_id"] == env]
        lines += [f"### {env}", ""]
        if env in figures:
            lines += [f"![return against k on {env}]({figures[env]})", ""]
        lines += _table(
            ["algorithm", "k", "seeds", "IQM return [95% CI]", "IQM normalised [95% CI]"],
            [
                [
                    names[c["variant"]],
                    str(c["k"]),
                    str(len(c["seeds"])),
                    _ci(c["return"], 1),
                    _ci(c["normalised"], 3),
                ]
                for c in cells
            ],
        )
    return lines


def _aggregate_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    entries = summary["aggregate"]
    lines = ["## Aggregate normalised score", ""]
    if not entries:
        return [
            *lines,
            "No finished cell has a normalised score (no finished cells, or no usable references).",
            "",
        ]
    scopes = _scope_labels(entries)
    variants = [v for v in names if any(e["variant"] == v for e in entries)]
    rows = []
    for variant in variants:
        row = [names[variant]]
        for key in scopes:
            e = next((x for x in entries if x["variant"] == variant and _key(x) == key), None)
            row.append(f"{_ci(e, 3)} ({e['n_tasks']}×{len(e['seeds'])})" if e else "—")
        rows.append(row)
    dropped = sum(e["runs_dropped"] for e in entries)
    note = (
        f" {dropped} run-entries were left out because their seed is missing on another task "
        "of the same aggregate (the matrices must be rectangular)."
        if dropped
        else ""
    )
    return [
        *lines,
        "IQM of the normalised score over seeds and environments (tasks) at each k, and over "
        "all (environment, k) tasks, with 95% stratified bootstrap intervals; "
        f"(tasks×seeds) in brackets.{note}",
        "",
        *_table(["algorithm", *scopes.values()], rows),
    ]


def _key(entry: Mapping[str, Any]) -> tuple[str, int | None]:
    return (entry["scope"], entry["k"])


def _scope_labels(entries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int | None], str]:
    keys = sorted({_key(e) for e in entries}, key=lambda k: (k[0] == "all", k[1] or 0))
    return {k: ("all k" if k[0] == "all" else f"k = {k[1]}") for k in keys}


def _improvement_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    entries = summary["improvement"]
    lines = ["## Probability of improvement", ""]
    if not entries:
        baseline = ALGO_NAMES[BASELINE]
        pairs = " or ".join(
            f"{ALGO_NAMES[x]} vs {ALGO_NAMES[y]}" for x, y in COMPARISONS if y != BASELINE
        )
        return [
            *lines,
            f"Not computable: no finished runs of both sides of any comparison (each learner "
            f"vs {baseline}, {pairs}).",
            "",
        ]
    scopes = _scope_labels(entries)
    pairs = list(dict.fromkeys((e["x"], e["y"]) for e in entries))
    by_key = {(e["x"], e["y"], _key(e)): e for e in entries}
    rows = []
    for x, y in pairs:
        row = [f"P({names[x]} > {names[y]})"]
        for key in scopes:
            e = by_key.get((x, y, key))
            row.append(f"{_ci(e, 3, key='p')} ({e['n_tasks']}×{e['n_x']}/{e['n_y']})" if e else "—")
        rows.append(row)
    return [
        *lines,
        "P(X > Y): the probability that a run of X scores above a run of Y on the same task "
        "(ties count one half), averaged over the tasks (environments at one k, or all "
        "(environment, k) pairs); 0.5 means no difference. 95% intervals resample each "
        "algorithm's runs independently within each task (rliable). In brackets: tasks × runs "
        "per task of X / of Y.",
        "",
        *_table(["comparison", *scopes.values()], rows),
    ]


def learner_table(
    data: Mapping[str, Any],
    names: Mapping[str, str],
    *,
    all_label: str,
    value: str,
    shown: Callable[[Mapping[str, Any]], str],
) -> tuple[dict[str, str], list[str], list[list[str]]]:
    """The per-learner table of a summary's ``learners`` (:func:`summarise_sweep`, or the
    held-out report's): per scope the IQM (``value`` names it, ``shown`` formats it) and
    P(X > baseline). Returns the scopes' labels, the headers and the rows."""
    baseline = ALGO_NAMES.get(data["baseline"], data["baseline"])
    several = len(data.get("baseline_variants", ())) > 1
    labels = _learner_scope_labels(data, all_label=all_label)
    headers = ["learner"]
    for s in data["scopes"]:
        headers += [f"{value}, {labels[s['name']]}", f"P(X > {baseline}), {labels[s['name']]}"]
    rows = []
    for row in data["rows"]:
        cells = [names.get(row["variant"], row["name"])]
        for s in data["scopes"]:
            part = row[s["name"]]
            norm = part["normalised"]
            cells.append(f"{shown(norm)} ({norm['n_tasks']}×{len(norm['seeds'])})" if norm else "—")
            if row["algo"] == data["baseline"]:
                cells.append("(the baseline)")
            elif not part["vs_baseline"]:
                cells.append("—")
            else:
                cells.append(
                    "; ".join(
                        _ci(e, 3, key="p") + (f" vs {names[e['y']]}" if several else "")
                        for e in part["vs_baseline"]
                    )
                )
        rows.append(cells)
    return labels, headers, rows


def _learner_scope_labels(data: Mapping[str, Any], *, all_label: str) -> dict[str, str]:
    """The label of each scope of a summary's ``learners``: ``all_label``, "k = 1", "k ≤ 3"."""
    return {
        s["name"]: all_label
        if s["name"] == "all"
        else f"k = {s['ks'][0]}"
        if len(s["ks"]) == 1
        else f"k ≤ {max(s['ks'])}"
        for s in data["scopes"]
    }


def _has_learner_figures(data: Mapping[str, Any]) -> bool:
    """Whether a summary's ``learners`` holds any IQM or P(X > BC) to tabulate and draw."""
    return bool(data["scopes"]) and any(
        row[s["name"]]["normalised"] or row[s["name"]]["vs_baseline"]
        for row in data["rows"]
        for s in data["scopes"]
    )


def _learner_section(
    summary: Mapping[str, Any], names: Mapping[str, str], figure: str | None = None
) -> list[str]:
    data = summary["learners"]
    lines = ["## Per learner", ""]
    if not _has_learner_figures(data):
        return [*lines, "No finished cell has a normalised score yet.", ""]
    baseline = ALGO_NAMES.get(data["baseline"], data["baseline"])
    labels, headers, rows = learner_table(
        data, names, all_label="all (env, k)", value="IQM normalised", shown=lambda e: _ci(e, 3)
    )
    few = next((s for s in data["scopes"] if s["name"] == "few"), None)
    listed = (
        f"k ∈ {{{', '.join(str(k) for k in few['ks'])}}}, " if few and len(few["ks"]) > 1 else ""
    )
    scope_text = (
        f"at {labels['few']} ({listed}the smaller half of this sweep's k values: the scope of "
        "the EDM claim above) and over all (environment, k) tasks"
        if few
        else "over all (environment, k) tasks"
    )
    return [
        *lines,
        "One row per learner: the IQM normalised score (random policy 0, expert 1) over seeds "
        f"and tasks, and P(X > {baseline}), the probability that a run of the learner scores "
        f"above a {baseline} run on the same task (0.5: no difference), each with its 95% "
        f"stratified bootstrap interval, {scope_text}; (tasks×seeds) in brackets. The same "
        "figures, per k, are in the aggregate and improvement tables below.",
        "",
        *_table(headers, rows),
        *_interval_figure_text(summary, figure, labels, baseline),
    ]


def _interval_figure_text(
    summary: Mapping[str, Any], figure: str | None, labels: Mapping[str, str], baseline: str
) -> list[str]:
    if figure is None:
        return []
    beside = [b["env_id"] for b in summary.get("beside", [])]
    pooled = (
        "pooled, as the table is, over the EDM paper's control tasks "
        f"({', '.join(summary['headline_envs'])}), not {', '.join(beside)}"
        if beside
        else "pooled over the tasks as the table is"
    )
    scopes = " and ".join(labels.values())
    return [
        f"The table's intervals in rliable's style: per learner, the IQM normalised score "
        f"(left) and P(X > {baseline}) (right) at {scopes}, {pooled}; the bar is the 95% "
        "stratified bootstrap interval, the black tick the point estimate, the dashed and "
        "dotted lines the random policy and the expert (left) and no difference (right).",
        "",
        f"![interval estimates per learner]({figure})",
        "",
    ]


def _headline_note(summary: Mapping[str, Any]) -> list[str]:
    beside = [b["env_id"] for b in summary.get("beside", [])]
    if not beside:
        return []
    head = ", ".join(summary["headline_envs"])
    return [
        f"The verdict, the per-learner table, the aggregates, the probabilities of improvement "
        f"and the performance profiles pool the EDM paper's control tasks ({head}); "
        f"{', '.join(beside)}, which the paper did not run, is reported beside them "
        '("Beside the verdict" below) and in the per-task tables, never pooled.',
        "",
    ]


def _beside_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    lines = []
    for entry in summary.get("beside", []):
        env = entry["env_id"]
        lines += [f"## Beside the verdict: {env}", ""]
        for v in entry["claim"]["verdicts"]:
            x, y = names[v["x"]], names[v["y"]]
            ks = ", ".join(str(k) for k in v["ks"])
            lines += [
                f"On {env} alone, at k ∈ {{{ks}}} ({v['n_x']} {x} and {v['n_y']} {y} runs per "
                f"k): P({x} > {y}) = {_f(v['p'], 2)} (95% CI {_f(v['low'], 2)}–"
                f"{_f(v['high'], 2)}). This figure is not part of the verdict above.",
                "",
            ]
        if entry["learners"]["scopes"]:
            _, headers, rows = learner_table(
                entry["learners"],
                names,
                all_label="all (env, k)",
                value="IQM normalised",
                shown=lambda e: _ci(e, 3),
            )
            lines += [f"Per learner on {env} alone (the columns of the table above):", ""]
            lines += _table(headers, rows)
    return lines


def _profile_section(
    summary: Mapping[str, Any], figure: str | None, per_learner: str | None = None
) -> list[str]:
    if figure is None:
        return []
    banded = len(_profile_variants(summary)) <= _MAX_BANDED_PROFILES
    bands = (
        "with pointwise 95% stratified bootstrap bands"
        if banded
        else f"without their bands, which would overlap with {len(_profile_variants(summary))} "
        "learners (the next figure draws those over all tasks, one learner per panel)"
    )
    lines = [
        "## Performance profiles",
        "",
        "Fraction of runs (pooled over the tasks) whose normalised score exceeds tau, over all "
        f"(environment, k) tasks and at each k, {bands}; a curve above another is better "
        "everywhere.",
        "",
        f"![performance profiles]({figure})",
        "",
    ]
    if per_learner is not None:
        baseline = ALGO_NAMES.get(summary["learners"]["baseline"], summary["learners"]["baseline"])
        lines += [
            "The profiles over all (environment, k) tasks again, one panel per learner: its "
            f"curve with its pointwise 95% band, {baseline}'s curve dashed in black for "
            "comparison and the other learners' in grey.",
            "",
            f"![performance profiles, one panel per learner]({per_learner})",
            "",
        ]
    return lines


def _action_match_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    cells = [c for c in summary["cells"] if c["action_match"] is not None]
    lines = ["## Action match on held-out episodes", ""]
    if not cells:
        return [
            *lines,
            "Not measured: no finished cell reports an action-match rate (the datasets had no "
            "held-out episodes).",
            "",
        ]
    variants = [v for v in names if any(c["variant"] == v for c in cells)]
    by_key = {(c["env_id"], c["k"], c["variant"]): c for c in cells}
    rows = []
    for env, k in sorted(
        {(c["env_id"], c["k"]) for c in cells}, key=lambda ek: (_envs(summary).index(ek[0]), ek[1])
    ):
        row = [env, str(k)]
        for variant in variants:
            c = by_key.get((env, k, variant))
            row.append(f"{_ci(c['action_match'], 3)} ({c['action_match']['n']})" if c else "—")
        rows.append(row)
    episodes = sorted({n for c in cells for n in c["action_match_episodes"]})
    return [
        *lines,
        "Fraction of the expert's actions the learner picks on dataset episodes it never "
        "trained on (held-out episodes per run: "
        f"{', '.join(str(n) for n in episodes) or '—'}); IQM over seeds [95% CI] (seeds).",
        "",
        *_table(["env", "k", *[names[v] for v in variants]], rows),
    ]


def _problems_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    lines = ["## Failed and missing cells", ""]
    failed, missing = summary["failed"], summary["missing"]
    outside = summary.get("outside_grid", [])
    if not (failed or missing or summary["duplicates"] or summary["excluded"] or outside):
        return [*lines, "None: every cell of the grid has a finished row.", ""]
    if failed:
        lines += [f"{len(failed)} failed cell{'s' if len(failed) != 1 else ''}:", ""]
        lines += _table(
            ["cell", "env", "algorithm", "k", "seed", "error"],
            [
                [
                    f"`{f.get('cell_id')}`",
                    f["env_id"],
                    names.get(f["variant"], f["variant"]),
                    str(f["k"]),
                    str(f["seed"]),
                    f.get("error") or "(no error recorded)",
                ]
                for f in failed
            ],
        )
    if missing:
        n = sum(len(m["seeds"]) for m in missing)
        lines += [f"{n} cell{'s' if n != 1 else ''} of the grid have no row yet:", ""]
        lines += _table(
            ["env", "algorithm", "k", "missing seeds"],
            [
                [
                    m["env_id"],
                    names.get(m["variant"], _display(m["variant"], m["algo"])),
                    str(m["k"]),
                    ", ".join(str(s) for s in m["seeds"]),
                ]
                for m in missing
            ],
        )
    if summary["duplicates"]:
        lines += [
            "Rows repeating an (env, algorithm, k, seed) already seen were ignored: "
            + ", ".join(f"`{d.get('row_file')}`" for d in summary["duplicates"])
            + ".",
            "",
        ]
    if summary["excluded"]:
        lines += [
            "Finished rows without a finite mean return were left out: "
            + ", ".join(f"`{d.get('cell_id')}`" for d in summary["excluded"])
            + ".",
            "",
        ]
    if outside:
        n = len(outside)
        lines += [
            f"{n} row file{'s' if n != 1 else ''} in `rows/` {'are' if n != 1 else 'is'} outside "
            "the sweep's grid (`sweep.json`) and left out of every figure (left over from an "
            "earlier grid, or copied in; move them out of `rows/` to silence this):",
            "",
            *_table(["row file", "reason"], [[f"`{r['row_file']}`", r["reason"]] for r in outside]),
        ]
    return lines


# ----------------------------------------------------------------------------- figures


def _styles(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant a colour, a marker and a line style of its own, fixed by its learner's place
    in the registry (so a learner looks the same in every report, whichever others are there);
    a learner's further option-sets, and learners outside the registry, take the places after."""
    counts: dict[str, int] = {}
    for v in summary["variants"]:
        counts[v["algo"]] = counts.get(v["algo"], 0) + 1
    known = [n for a, n in counts.items() if a in ALGO_ORDER]
    out, taken, extra = {}, {}, len(ALGO_ORDER) * max(known, default=1)
    for v in summary["variants"]:
        algo = v["algo"]
        if algo in ALGO_ORDER:
            place = ALGO_ORDER.index(algo) + len(ALGO_ORDER) * taken.get(algo, 0)
        else:
            place, extra = extra, extra + 1
        taken[algo] = taken.get(algo, 0) + 1
        out[v["variant"]] = {
            "color": _COLOURS[place % len(_COLOURS)],
            "marker": _MARKERS[place % len(_MARKERS)],
            "linestyle": _LINESTYLES[place % len(_LINESTYLES)],
        }
    return out


def _legend_below(fig: Figure, handles: Sequence[Any], labels: Sequence[str]) -> None:
    """One legend for the whole figure, under the panels, in at most two rows."""
    ncols = len(labels) if len(labels) <= 5 else math.ceil(len(labels) / 2)
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, ncols), fontsize=8)


#: How far (as a fraction of the span of the point estimates and the reference lines) an
#: interval may reach beyond that span before the return-against-k axis cuts it. The bootstrap
#: interval of an IQM over few seeds can reach one seed's extreme return (a resample that draws
#: it often enough keeps it inside the middle half); letting that set the axis would flatten
#: every other learner's curve.
_AXIS_MARGIN = 0.25


def _axis_limits(
    centres: Iterable[float], lows: Iterable[float], highs: Iterable[float]
) -> tuple[float, float, float, float]:
    """The y-range of a return-against-k panel: ``(clip_low, clip_high, y_low, y_high)``.

    ``centres`` are what must always show (the IQMs and the reference lines); intervals are cut
    at ``clip_low``/``clip_high``, :data:`_AXIS_MARGIN` of the centres' span beyond them;
    ``y_low``/``y_high`` are the axis limits, the drawn range with a small pad.

    Example:
        >>> _axis_limits([0.0, 1.0], [-0.1, -1e6], [1.1, 1.2])
        (-0.25, 1.25, -0.3225, 1.2725)
    """
    core = np.array([c for c in centres if np.isfinite(c)], dtype=float)
    lo, hi = (float(core.min()), float(core.max())) if core.size else (0.0, 1.0)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    clip_low, clip_high = lo - _AXIS_MARGIN * span, hi + _AXIS_MARGIN * span
    drawn_low = min(lo, max(clip_low, min((v for v in lows if np.isfinite(v)), default=lo)))
    drawn_high = max(hi, min(clip_high, max((v for v in highs if np.isfinite(v)), default=hi)))
    pad = 0.05 * ((drawn_high - drawn_low) or span)  # a flat panel (one value) still has height
    return clip_low, clip_high, drawn_low - pad, drawn_high + pad


def _plot_env(summary: Mapping[str, Any], env: str) -> Figure:
    """IQM return (and normalised score) against k per learner, with the summary's intervals.

    The y-axis spans the IQMs and the random and expert references (0 and 1 when normalised),
    and intervals up to :data:`_AXIS_MARGIN` of that span beyond; an interval reaching further
    is cut at the axis and its cut end marked by a triangle (gid ``"cut"``), so one seed's
    extreme return cannot flatten the figure. Each errorbar carries its variant as gid.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    cells = [c for c in summary["cells"] if c["env_id"] == env]
    has_norm = any(c["normalised"] is not None for c in cells)
    fig = Figure(figsize=(10.4 if has_norm else 6.4, 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 2 if has_norm else 1))
    panels = [("return", "IQM return")] + (
        [("normalised", "IQM normalised score")] if has_norm else []
    )
    n_variants = max(1, len(names))
    ks = sorted({c["k"] for c in cells})
    spread = (max(ks) - min(ks)) if len(ks) > 1 else 1.0
    ref = summary["references"].get(env, {})
    cut_any = False
    for ax, (key, label) in zip(axes, panels, strict=True):
        shown = [c[key] for c in cells if c[key] is not None]
        lines = [0.0, 1.0] if key == "normalised" else []
        if key == "return" and ref.get("usable"):
            lines = [ref["random"]["mean"], ref["expert"]["mean"]]
        clip_low, clip_high, y_low, y_high = _axis_limits(
            [*(e["iqm"] for e in shown), *lines],
            [e["low"] for e in shown],
            [e["high"] for e in shown],
        )
        for i, variant in enumerate(names):
            pts = [c for c in cells if c["variant"] == variant and c[key] is not None]
            if not pts:
                continue
            style = styles[variant]
            # Small horizontal offsets keep overlapping intervals readable.
            dx = (i - (n_variants - 1) / 2) * 0.012 * spread
            x = np.array([c["k"] for c in pts], dtype=float) + dx
            y = np.array([c[key]["iqm"] for c in pts])
            lo = np.clip([c[key]["low"] for c in pts], clip_low, None)
            hi = np.clip([c[key]["high"] for c in pts], None, clip_high)
            bars = ax.errorbar(
                x,
                y,
                yerr=np.vstack([y - lo, hi - y]),
                color=style["color"],
                marker=style["marker"],
                linestyle=style["linestyle"],
                markersize=5,
                lw=1.2,
                capsize=3,
                label=names[variant],
            )
            bars.lines[0].set_gid(variant)
            for ends, edge, marker in (
                ([c[key]["low"] for c in pts], clip_low, "v"),
                ([c[key]["high"] for c in pts], clip_high, "^"),
            ):
                cut = (np.array(ends) < edge) if marker == "v" else (np.array(ends) > edge)
                if cut.any():
                    cut_any = True
                    ax.plot(
                        x[cut],
                        np.full(int(cut.sum()), edge),
                        ls="none",
                        marker=marker,
                        markersize=7,
                        color=style["color"],
                        markeredgecolor="k",
                        markeredgewidth=0.6,
                        gid="cut",
                    )
        if key == "return" and ref.get("usable"):
            ax.axhline(ref["expert"]["mean"], color="k", ls=":", lw=1, label="expert")
            ax.axhline(ref["random"]["mean"], color="grey", ls="--", lw=1, label="random policy")
        if key == "normalised":
            ax.axhline(1.0, color="k", ls=":", lw=1)
            ax.axhline(0.0, color="grey", ls="--", lw=1)
        ax.set_ylim(y_low, y_high)
        ax.set_xticks(ks)
        ax.set_xlabel("k (expert trajectories)")
        ax.set_ylabel(f"{label} (95% CI over seeds)")
        ax.set_title(f"{env}: {label.split(' ', 1)[1]} against k")
    handles, labels = axes[0].get_legend_handles_labels()
    if cut_any:
        marker = Line2D([], [], ls="none", marker="v", color="w", markeredgecolor="k")
        handles, labels = [*handles, marker], [*labels, "interval cut at the axis"]
    _legend_below(fig, handles, labels)
    return fig


#: Above this many learners the overlaid performance profiles leave out their bands (they
#: would overlap into one grey mass); the per-learner figure draws each one's band instead.
_MAX_BANDED_PROFILES = 3


def _profile_variants(summary: Mapping[str, Any]) -> list[str]:
    """The variants with a performance profile, in learner order."""
    drawn = {c["variant"] for c in summary["profiles"]["curves"]}
    return [v["variant"] for v in summary["variants"] if v["variant"] in drawn]


def _plot_profiles(summary: Mapping[str, Any]) -> Figure:
    """Performance profiles overlaid, one panel per scope (all (env, k) tasks, then each k)."""
    from matplotlib.figure import Figure

    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    order_of = {v["variant"]: i for i, v in enumerate(summary["variants"])}
    taus = np.asarray(summary["profiles"]["taus"])
    curves = summary["profiles"]["curves"]
    scopes = _scope_labels(curves)
    # "all k" first, then each k.
    order = sorted(scopes, key=lambda k: (k[0] != "all", k[1] or 0))
    ncols = min(3, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    legend: dict[str, Any] = {}
    banded = len(_profile_variants(summary)) <= _MAX_BANDED_PROFILES
    for ax, key in zip(axes, order, strict=False):
        for c in curves:
            if _key(c) != key:
                continue
            style = styles[c["variant"]]
            i = order_of[c["variant"]]
            (line,) = ax.plot(
                taus,
                c["fraction"],
                **style,
                lw=1.3,
                markersize=4,
                # Markers every tenth tau, staggered so that coinciding curves show each one.
                markevery=(round(10 * i / len(names)) % 10, 10),
                label=names[c["variant"]],
                gid=c["variant"],
            )
            if banded:
                ax.fill_between(taus, c["low"], c["high"], color=style["color"], alpha=0.2, lw=0)
            legend.setdefault(c["variant"], line)
        ax.axvline(1.0, color="k", ls=":", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(r"normalised score $\tau$")
        ax.set_ylabel(r"fraction of runs with score $> \tau$")
        ax.set_title(scopes[key] if key[0] == "k" else "all (environment, k) tasks")
    for ax in axes[len(order) :]:
        ax.set_visible(False)
    ordered = sorted(legend, key=order_of.__getitem__)
    _legend_below(fig, [legend[v] for v in ordered], [names[v] for v in ordered])
    return fig


def _plot_profiles_per_learner(summary: Mapping[str, Any]) -> Figure | None:
    """Small multiples of the performance profiles over all (env, k) tasks: one panel per
    learner with its pointwise 95% band, the baseline's (BC's) curve dashed in black and the
    other learners' in light grey. None without a profile over all tasks."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    taus = np.asarray(summary["profiles"]["taus"])
    curves = {c["variant"]: c for c in summary["profiles"]["curves"] if c["scope"] == "all"}
    variants = [v for v in _profile_variants(summary) if v in curves]
    if not variants:
        return None
    baselines = [v for v in summary["learners"]["baseline_variants"] if v in curves]
    # Two rows of up to four: 6 learners as 2 x 3, 8 as 2 x 4.
    ncols = len(variants) if len(variants) <= 3 else min(4, math.ceil(len(variants) / 2))
    nrows = math.ceil(len(variants) / ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.9 * nrows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True))
    flat = axes.reshape(-1)
    for ax, variant in zip(flat, variants, strict=False):
        for other in variants:
            if other != variant and other not in baselines:
                ax.plot(taus, curves[other]["fraction"], color="0.78", lw=0.8, zorder=1)
        for base in baselines:
            if base != variant:
                ax.plot(taus, curves[base]["fraction"], color="k", ls="--", lw=1.0, zorder=2)
        c, style = curves[variant], styles[variant]
        ax.fill_between(taus, c["low"], c["high"], color=style["color"], alpha=0.3, lw=0)
        ax.plot(
            taus,
            c["fraction"],
            **style,
            lw=1.6,
            markersize=4,
            markevery=(0, 10),
            zorder=3,
            gid=variant,
        )
        ax.axvline(1.0, color="k", ls=":", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{names[variant]} ({c['n_tasks']} tasks × {c['n_seeds']} seeds)", fontsize=9)
        ax.grid(True, alpha=0.25)
    for ax in flat[len(variants) :]:
        ax.set_visible(False)
    for ax in flat[max(0, len(variants) - ncols) : len(variants)]:  # the lowest of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel(r"normalised score $\tau$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"fraction of runs $> \tau$")
    baseline = ALGO_NAMES.get(summary["learners"]["baseline"], summary["learners"]["baseline"])
    handles = [
        Patch(color="0.5", alpha=0.3, label="the panel's learner: 95% band"),
        Line2D([], [], color="k", ls="--", lw=1.0, label=baseline),
        Line2D([], [], color="0.78", lw=0.8, label="the other learners"),
    ]
    _legend_below(fig, handles, [h.get_label() for h in handles])
    fig.suptitle("Performance profiles over all (environment, k) tasks, one panel per learner")
    return fig


def _interval_rows(
    data: Mapping[str, Any], names: Mapping[str, str], scope: str
) -> tuple[list[tuple[str, str, Mapping[str, Any] | None]], list[tuple[str, str, Any]]]:
    """The rows of the interval figure at one scope of the summary's ``learners``: per
    variant its IQM normalised score, and per (variant, baseline variant) its P(X > BC)
    entry, or ``"baseline"`` for the baseline's own row; each as (label, variant, entry)."""
    several = len(data.get("baseline_variants", ())) > 1
    iqm_rows, p_rows = [], []
    for row in data["rows"]:
        name = names.get(row["variant"], row["name"])
        part = row[scope]
        norm = part["normalised"]
        iqm_rows.append((name, row["variant"], norm if norm and norm["iqm"] is not None else None))
        if row["algo"] == data["baseline"]:
            p_rows.append((name, row["variant"], "baseline"))
        elif not part["vs_baseline"]:
            p_rows.append((name, row["variant"], None))
        for e in part["vs_baseline"]:
            label = f"{name} vs {names.get(e['y'], e['y'])}" if several else name
            p_rows.append((label, row["variant"], e if e["p"] is not None else None))
    return iqm_rows, p_rows


def _plot_intervals(summary: Mapping[str, Any]) -> Figure:
    """rliable's interval estimates of the per-learner table: per scope (few k, all (env, k))
    a panel of IQM normalised scores and one of P(X > BC), a row per learner with its 95%
    stratified bootstrap interval (bar) and point estimate (black tick).

    Every number drawn is the summary's (``learners``, the same intervals as the aggregate and
    improvement tables); the bars (patches) and ticks (lines) carry their variant as gid, and
    each panel its (metric, scope) as gid, e.g. ``"iqm:few"``, ``"p:all"``.
    """
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    data = summary["learners"]
    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    baseline = ALGO_NAMES.get(data["baseline"], data["baseline"])
    labels = _learner_scope_labels(data, all_label="all (env, k)")
    rows = {s["name"]: _interval_rows(data, names, s["name"]) for s in data["scopes"]}
    height = max(max(len(i), len(p)) for i, p in rows.values())
    nrows = len(data["scopes"])
    fig = Figure(figsize=(10.4, nrows * (0.34 * height + 1.3) + 0.6), layout="constrained")
    # One x-axis per column, so that the scopes' panels read against each other.
    axes = fig.subplots(nrows, 2, squeeze=False, sharex="col")
    pooled = {
        env
        for row in data["rows"]
        for s in data["scopes"]
        for e in [row[s["name"]]["normalised"], *row[s["name"]]["vs_baseline"]]
        if e
        for env in e["envs"]
    }
    envs = [e for e in summary["headline_envs"] if e in pooled] + sorted(
        pooled - set(summary["headline_envs"])
    )
    for (ax_iqm, ax_p), scope in zip(axes, data["scopes"], strict=True):
        iqm_rows, p_rows = rows[scope["name"]]
        for ax, metric, entries in ((ax_iqm, "iqm", iqm_rows), (ax_p, "p", p_rows)):
            ax.set_gid(f"{metric}:{scope['name']}")
            note = blended_transform_factory(ax.transAxes, ax.transData)
            for y, (_, variant, entry) in enumerate(entries):
                if isinstance(entry, Mapping):
                    (bar,) = ax.barh(
                        y,
                        entry["high"] - entry["low"],
                        left=entry["low"],
                        height=0.6,
                        color=styles[variant]["color"],
                        alpha=0.75,
                    )
                    bar.set_gid(variant)
                    point = [entry[metric]] * 2
                    ax.plot(point, [y - 0.3, y + 0.3], color="k", lw=1.6, gid=variant)
                else:
                    text = (
                        "(the baseline)"
                        if entry == "baseline"
                        else "no normalised score"
                        if metric == "iqm"
                        else "no runs to compare"
                    )
                    ax.text(
                        0.5,
                        y,
                        text,
                        transform=note,
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="0.35",
                        style="italic",
                    )
            ax.set_yticks(range(len(entries)), [label for label, _, _ in entries], fontsize=9)
            ax.set_ylim(len(entries) - 0.5, -0.5)  # the first learner on top
            ax.grid(True, axis="x", alpha=0.3)
        ax_iqm.axvline(0.0, color="grey", ls="--", lw=1)
        ax_iqm.axvline(1.0, color="k", ls=":", lw=1)
        ax_iqm.set_title(f"IQM normalised score, {labels[scope['name']]}", fontsize=10)
        ax_p.axvline(0.5, color="k", ls=":", lw=1)
        ax_p.set_xlim(-0.03, 1.03)  # a P of exactly 0 or 1 stays in view
        ax_p.set_title(f"P(X > {baseline}), {labels[scope['name']]}", fontsize=10)
    axes[-1, 0].set_xlabel("normalised score (random policy 0, expert 1)")
    axes[-1, 1].set_xlabel(f"probability that a run of X beats a {baseline} run on the same task")
    fig.suptitle(
        f"Per learner over {', '.join(envs)}: point estimate (black) and 95% stratified "
        "bootstrap interval",
        fontsize=10,
    )
    return fig

"""Every figure a sweep report quotes, as one JSON-ready dictionary (:func:`summarise_sweep`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sbil.experiments.sweeps.claim import judge_edm_claim
from sbil.experiments.sweeps.common import (
    CONFIDENCE,
    SUMMARY_SCHEMA,
    _plain,
    headline_envs,
    smoke_test,
)
from sbil.experiments.sweeps.load import (
    _expected_count,
    _missing_cells,
    _read_rows,
    _reference_problem,
    load_references,
    load_spec,
)
from sbil.experiments.sweeps.stats import (
    _aggregates,
    _Bootstrap,
    _improvements,
    _interval,
    _learners,
    _ordered_variants,
    _profiles,
    _records,
    usable_rows,
)

if TYPE_CHECKING:
    pass


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
    done, duplicates, excluded = usable_rows(frame)
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
    out = {
        "spec": dict(spec),
        "row_options_by_algo": options_by_algo,
        "git_commits": distinct("git_commit"),
        "sbil_versions": distinct("sbil_version"),
        "windows_in_rows": distinct("windows"),
    }
    cpus = distinct("cpu")
    if cpus:  # rows from before the field have none; their summaries stay as they were
        out["cpus"] = cpus
    return out


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

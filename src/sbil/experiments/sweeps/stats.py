"""The sweep report's statistics: seeded stratified bootstrap intervals, score matrices over
tasks, IQM aggregates, probabilities of improvement and performance profiles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sbil.experiments.stats import (
    Interval,
    performance_profile,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)
from sbil.experiments.sweeps.common import (
    BASELINE,
    CONFIDENCE,
    _algo_rank,
    _display,
    _plain,
    comparisons,
)

if TYPE_CHECKING:
    pass


_CELL_KEYS = ["env_id", "variant", "k", "seed"]


def usable_rows(
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


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {c: _plain(row[c]) for c in columns if c in frame.columns}
        for row in frame.to_dict("records")
    ]


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


def _scope_of(ks: Sequence[int], done: pd.DataFrame) -> tuple[Any, ...]:
    """The bootstrap name of a set of ks: that of the table's row for the same figure, so the
    paragraph and the tables quote the same interval."""
    if len(ks) == 1:
        return ("k", ks[0])
    if list(ks) == sorted({int(k) for k in done["k"]}):
        return ("all", None)
    return ("ks", *ks)

"""The EDM paper's claim judged from a summary (:func:`judge_edm_claim`): the one home of that
verdict and its words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from sbil.experiments.sweeps.common import ALGO_NAMES, _a, _f
from sbil.experiments.sweeps.stats import (
    _Bootstrap,
    _few_ks,
    _improvement,
    _interval,
    _ordered_variants,
    _pairs,
    _scope_of,
    _score_matrix,
    _tasks,
    usable_rows,
)

if TYPE_CHECKING:
    pass


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
    done, _, _ = usable_rows(rows)
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

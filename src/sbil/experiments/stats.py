"""Aggregate statistics for sweeps: interquartile mean and stratified bootstrap intervals.

These follow rliable (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
NeurIPS 2021): scores are a matrix ``scores[run, task]``; the interquartile mean (IQM) is the
mean of the middle 50% of all entries, and a *stratified* bootstrap resamples runs with
replacement independently within each task (stratum), so every resample keeps every task.
Confidence intervals are percentile intervals. All randomness comes from an explicit seed.

Scores may contain ``+inf`` (e.g. the error of an estimator with no finite value): the IQM
stays finite while fewer than a quarter of the scores are infinite, and the interval ends use
the order statistics just below/above the nominal quantiles, so infinities never turn into NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        estimate: the statistic on the original scores.
        low: lower end of the interval.
        high: upper end of the interval.
        confidence: nominal coverage, e.g. 0.95.
    """

    estimate: float
    low: float
    high: float
    confidence: float


def _as_matrix(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(
            f"scores must be a non-empty array of shape [runs, tasks] (or [runs]); "
            f"got shape {scores.shape}."
        )
    if np.any(np.isnan(scores)) or np.any(scores == -np.inf):
        raise ValueError(
            "scores contain NaN or -infinity; drop or count those runs before aggregating "
            "(+infinity is allowed, e.g. for an estimator that does not exist)."
        )
    return scores


def iqm(scores: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% of the scores (25% trimmed each side).

    Args:
        scores: any array of finite scores.
        axis: axes to aggregate over; None (default) pools all entries, as rliable does.

    Returns:
        The IQM (a float when ``axis`` is None).

    Example:
        >>> float(iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, 4.0, 5.0, 6.0])))
        3.5
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("iqm of an empty array is undefined; pass at least one score.")
    if axis is None:
        return float(sps.trim_mean(scores.reshape(-1), proportiontocut=0.25))
    if isinstance(axis, tuple):
        # Move the aggregated axes to the end and flatten them.
        keep = [i for i in range(scores.ndim) if i not in {a % scores.ndim for a in axis}]
        moved = np.transpose(scores, [*keep, *[a % scores.ndim for a in axis]])
        flat = moved.reshape(*[scores.shape[i] for i in keep], -1)
        return sps.trim_mean(flat, proportiontocut=0.25, axis=-1)
    return sps.trim_mean(scores, proportiontocut=0.25, axis=axis)


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> Interval:
    """Percentile confidence interval of ``statistic`` under a stratified bootstrap.

    Each resample draws, for every task (column) independently, ``n_runs`` runs with
    replacement from that task's runs (rliable's ``StratifiedBootstrap``).

    Args:
        scores: ``scores[run, task]`` (a 1-D array is one task).
        statistic: maps a batch of score matrices ``[..., run, task]`` to ``[...]``; default
            the IQM over runs and tasks together.
        n_resamples: number of bootstrap resamples.
        confidence: nominal coverage in (0, 1).
        seed: integer seed or a numpy Generator.

    Returns:
        Interval with the statistic on ``scores`` and the percentile interval.
    """
    matrix = _as_matrix(scores)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1; got {n_resamples}.")
    if statistic is None:
        statistic = _iqm_over_last_two
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_runs, n_tasks = matrix.shape
    rows = rng.integers(0, n_runs, size=(n_resamples, n_runs, n_tasks))
    resampled = matrix[rows, np.arange(n_tasks)]  # [resample, run, task]
    values = np.asarray(statistic(resampled), dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    low = np.quantile(values, alpha, method="lower")
    high = np.quantile(values, 1.0 - alpha, method="higher")
    estimate = float(np.asarray(statistic(matrix[None]), dtype=np.float64).reshape(-1)[0])
    return Interval(estimate=estimate, low=float(low), high=float(high), confidence=confidence)


def _iqm_over_last_two(batch: np.ndarray) -> np.ndarray:
    return sps.trim_mean(batch.reshape(batch.shape[0], -1), proportiontocut=0.25, axis=1)


def mean_over_last_two(batch: np.ndarray) -> np.ndarray:
    """Plain mean over runs and tasks of a batch ``[..., run, task]`` (a ``statistic``)."""
    return batch.reshape(batch.shape[0], -1).mean(axis=1)


def wilson_interval(successes: int, trials: int, *, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion (e.g. a fraction of MDPs).

    Args:
        successes: number of successes, 0 <= successes <= trials.
        trials: number of trials, at least 1.
        confidence: nominal coverage in (0, 1).

    Returns:
        Interval around ``successes / trials``.
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(
            f"need 0 <= successes <= trials and trials >= 1; got {successes} of {trials}."
        )
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    p = successes / trials
    denom = 1.0 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    return Interval(
        estimate=p,
        low=float(max(0.0, centre - half)),
        high=float(min(1.0, centre + half)),
        confidence=confidence,
    )

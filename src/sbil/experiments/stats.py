"""Aggregate statistics for sweeps: IQM, stratified bootstrap intervals, probability of
improvement and performance profiles.

These follow rliable (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
NeurIPS 2021; ``rliable/metrics.py`` and ``rliable/library.py`` of release 1.2.0): scores are a
matrix ``scores[run, task]``; the interquartile mean (IQM) is the mean of the middle 50% of all
entries, and a *stratified* bootstrap resamples runs with replacement independently within each
task (stratum), so every resample keeps every task. Confidence intervals are percentile
intervals. All randomness comes from an explicit seed.

Two choices of interval end are offered (``quantiles``): ``"linear"`` is rliable's (arch's
percentile method, ``np.percentile`` with linear interpolation); ``"outward"`` takes the order
statistics just below/above the nominal quantiles. Scores may contain ``+inf`` (e.g. the error
of an estimator with no finite value): the IQM stays finite while fewer than a quarter of the
scores are infinite, and where a bootstrap distribution holds an infinity the interval ends are
always the outward order statistics, so infinities never turn into NaN.

Passing a :class:`numpy.random.RandomState` as ``seed`` draws the resamples in exactly the order
rliable 1.2.0 draws them from numpy's global generator (``np.random.choice`` per resample), so
``np.random.seed(s)`` before an rliable call and ``seed=np.random.RandomState(s)`` here give the
same resamples; a plain integer seeds a :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Quantiles = Literal["outward", "linear"]
"""How a percentile interval picks its ends from the bootstrap distribution (see module doc)."""

Seed = int | np.random.Generator | np.random.RandomState
"""An integer seed, a Generator, or a RandomState (rliable's resampling order)."""


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
    seed: Seed = 0,
    quantiles: Quantiles = "outward",
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
        seed: integer seed, a numpy Generator, or a RandomState (rliable's resampling order).
        quantiles: ``"outward"`` (default, order statistics) or ``"linear"`` (rliable's).

    Returns:
        Interval with the statistic on ``scores`` and the percentile interval.
    """
    matrix = _as_matrix(scores)
    _check_bootstrap_options(n_resamples, confidence, quantiles)
    if statistic is None:
        statistic = _iqm_over_last_two
    rng = _rng(seed)
    n_runs, n_tasks = matrix.shape
    rows = _run_indices(rng, n_resamples, n_runs, n_tasks)
    resampled = matrix[rows, np.arange(n_tasks)]  # [resample, run, task]
    values = np.asarray(statistic(resampled), dtype=np.float64)
    low, high = _percentile_interval(values, confidence, quantiles)
    estimate = float(np.asarray(statistic(matrix[None]), dtype=np.float64).reshape(-1)[0])
    return Interval(estimate=estimate, low=float(low), high=float(high), confidence=confidence)


def _check_bootstrap_options(n_resamples: int, confidence: float, quantiles: str) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1; got {n_resamples}.")
    if quantiles not in ("outward", "linear"):
        raise ValueError(f"quantiles must be 'outward' or 'linear'; got {quantiles!r}.")


def _rng(seed: Seed) -> np.random.Generator | np.random.RandomState:
    if isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    return np.random.default_rng(seed)


def _run_indices(
    rng: np.random.Generator | np.random.RandomState, n_resamples: int, n_runs: int, n_tasks: int
) -> np.ndarray:
    """Run indices ``[resample, run, task]``, drawn uniformly with replacement within each task.

    A RandomState draws them as rliable's ``StratifiedBootstrap.update_indices`` does
    (``np.random.choice(n_runs, (n_runs, n_tasks))`` per resample, which is ``randint`` and fills
    in C order, so one call for all resamples yields the same numbers).
    """
    if isinstance(rng, np.random.RandomState):
        return rng.randint(0, n_runs, size=(n_resamples, n_runs, n_tasks))
    return rng.integers(0, n_runs, size=(n_resamples, n_runs, n_tasks))


def _percentile_interval(
    values: np.ndarray, confidence: float, quantiles: Quantiles
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval ends of a bootstrap distribution ``values[resample, ...]``."""
    alpha = (1.0 - confidence) / 2.0
    outward_low = np.quantile(values, alpha, axis=0, method="lower")
    outward_high = np.quantile(values, 1.0 - alpha, axis=0, method="higher")
    if quantiles == "outward":
        return outward_low, outward_high
    finite = np.all(np.isfinite(values), axis=0)
    # arch's percentile method: np.percentile at 100 * alpha and 100 * (1 - alpha).
    with np.errstate(invalid="ignore"):
        low, high = np.percentile(values, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return np.where(finite, low, outward_low), np.where(finite, high, outward_high)


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


def normalised_score(
    returns: np.ndarray | float, *, random_return: float, expert_return: float
) -> np.ndarray:
    """Scores on the scale where the random policy is 0 and the expert is 1.

    ``(returns - random_return) / (expert_return - random_return)``, rliable's "human
    normalised" score with the expert in the human's place. Below 0 is worse than random, above
    1 better than the expert.

    Args:
        returns: returns of any shape.
        random_return: the random policy's mean return on the task.
        expert_return: the expert's mean return on the task.

    Returns:
        The normalised scores, same shape as ``returns``.

    Example:
        >>> normalised_score(np.array([20.0, 500.0]), random_return=20.0, expert_return=500.0)
        array([0., 1.])
    """
    if not (np.isfinite(random_return) and np.isfinite(expert_return)):
        raise ValueError(
            f"the normalisation anchors must be finite; got random {random_return}, "
            f"expert {expert_return}."
        )
    if expert_return == random_return:
        raise ValueError(
            f"the expert's and the random policy's mean returns are equal ({expert_return}), so "
            "no normalised score exists; re-measure the references with more episodes or a "
            "better expert."
        )
    returns = np.asarray(returns, dtype=np.float64)
    return (returns - random_return) / (expert_return - random_return)


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """Average probability of improvement P(X > Y) of algorithm X over algorithm Y.

    Per task m, the Mann-Whitney U statistic of X's runs against Y's runs divided by the
    number of pairs: P(X_m > Y_m) + P(X_m = Y_m) / 2 for a run of each drawn at random (ties
    count one half); then the mean over tasks (rliable's ``metrics.probability_of_improvement``).

    Args:
        scores_x: ``scores_x[run, task]`` of X (a 1-D array is one task).
        scores_y: ``scores_y[run, task]`` of Y; the same tasks, any number of runs.

    Returns:
        The probability, in [0, 1]; 0.5 when X and Y have the same scores.

    Example:
        >>> probability_of_improvement(np.array([2.0, 3.0]), np.array([1.0, 2.0]))
        0.875
    """
    x, y = _check_pair(scores_x, scores_y)
    return float(_improvement_batch(x[None], y[None])[0])


def probability_of_improvement_ci(
    scores_x: np.ndarray,
    scores_y: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: Seed = 0,
    quantiles: Quantiles = "linear",
) -> Interval:
    """:func:`probability_of_improvement` with a stratified bootstrap percentile interval.

    Each resample draws X's runs and Y's runs independently, with replacement, within each
    task (rliable's ``StratifiedIndependentBootstrap``; with a RandomState seed, in its order:
    per resample X's indices then Y's).

    Args:
        scores_x: ``scores_x[run, task]`` of X.
        scores_y: ``scores_y[run, task]`` of Y (same tasks).
        n_resamples: number of bootstrap resamples.
        confidence: nominal coverage in (0, 1).
        seed: integer seed, Generator, or RandomState (rliable's resampling order).
        quantiles: ``"linear"`` (default, rliable's) or ``"outward"``.

    Returns:
        Interval around P(X > Y).
    """
    x, y = _check_pair(scores_x, scores_y)
    _check_bootstrap_options(n_resamples, confidence, quantiles)
    rng = _rng(seed)
    (nx, n_tasks), ny = x.shape, y.shape[0]
    if isinstance(rng, np.random.RandomState):
        ix = np.empty((n_resamples, nx, n_tasks), dtype=np.int64)
        iy = np.empty((n_resamples, ny, n_tasks), dtype=np.int64)
        for r in range(n_resamples):
            ix[r] = rng.randint(0, nx, size=(nx, n_tasks))
            iy[r] = rng.randint(0, ny, size=(ny, n_tasks))
    else:
        ix = rng.integers(0, nx, size=(n_resamples, nx, n_tasks))
        iy = rng.integers(0, ny, size=(n_resamples, ny, n_tasks))
    tasks = np.arange(n_tasks)
    # Chunks keep the [resample, x-run, y-run, task] comparison small in memory.
    chunk = max(1, 4_000_000 // (nx * ny * n_tasks))
    values = np.concatenate(
        [
            _improvement_batch(x[ix[i : i + chunk], tasks], y[iy[i : i + chunk], tasks])
            for i in range(0, n_resamples, chunk)
        ]
    )
    low, high = _percentile_interval(values, confidence, quantiles)
    return Interval(
        estimate=probability_of_improvement(x, y),
        low=float(low),
        high=float(high),
        confidence=confidence,
    )


def _check_pair(scores_x: np.ndarray, scores_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_matrix(scores_x), _as_matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"X and Y must be scored on the same tasks; got {x.shape[1]} and {y.shape[1]} task "
            "columns."
        )
    return x, y


def _improvement_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of each batch entry: ``x[b, run_x, task]``, ``y[b, run_y, task]`` -> ``[b]``."""
    xs, ys = x[:, :, None, :], y[:, None, :, :]
    wins = np.sum(xs > ys, axis=(1, 2)) + 0.5 * np.sum(xs == ys, axis=(1, 2))  # [b, task]
    return np.mean(wins / (x.shape[1] * y.shape[1]), axis=-1)


@dataclass(frozen=True)
class PerformanceProfile:
    """A score distribution: the fraction of runs whose score exceeds each threshold.

    Attributes:
        taus: thresholds, shape ``[n_taus]``.
        fraction: fraction of all (run, task) scores strictly above each tau, ``[n_taus]``.
        low: lower ends of the pointwise confidence intervals, ``[n_taus]``.
        high: upper ends, ``[n_taus]``.
        confidence: nominal pointwise coverage, e.g. 0.95.
    """

    taus: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray
    confidence: float


def performance_profile(
    scores: np.ndarray,
    taus: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: Seed = 0,
    quantiles: Quantiles = "linear",
) -> PerformanceProfile:
    """Performance profile (score distribution) with stratified bootstrap intervals.

    The fraction of runs, pooled over tasks, with a score strictly above tau, for each tau
    (rliable's ``create_performance_profile`` with ``use_score_distribution=True``), and
    pointwise percentile intervals from the same stratified bootstrap as
    :func:`stratified_bootstrap_ci`.

    Args:
        scores: ``scores[run, task]`` (a 1-D array is one task).
        taus: thresholds, any 1-D array.
        n_resamples: number of bootstrap resamples.
        confidence: nominal pointwise coverage in (0, 1).
        seed: integer seed, Generator, or RandomState (rliable's resampling order).
        quantiles: ``"linear"`` (default, rliable's) or ``"outward"``.

    Returns:
        The profile and its intervals.
    """
    matrix = _as_matrix(scores)
    _check_bootstrap_options(n_resamples, confidence, quantiles)
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)
    if taus.size == 0 or not np.all(np.isfinite(taus)):
        raise ValueError("taus must be a non-empty array of finite thresholds.")
    n_runs, n_tasks = matrix.shape
    rows = _run_indices(_rng(seed), n_resamples, n_runs, n_tasks)
    # Sorting each resample once turns "how many exceed tau" into a binary search.
    flat = np.sort(matrix[rows, np.arange(n_tasks)].reshape(n_resamples, -1), axis=1)
    above = np.stack([flat.shape[1] - _count_at_most(f, taus) for f in flat]) / flat.shape[1]
    low, high = _percentile_interval(above, confidence, quantiles)
    fraction = np.mean(matrix.reshape(-1)[:, None] > taus[None, :], axis=0)
    return PerformanceProfile(
        taus=taus, fraction=fraction, low=low, high=high, confidence=confidence
    )


def _count_at_most(sorted_values: np.ndarray, taus: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_values, taus, side="right")

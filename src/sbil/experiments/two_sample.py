"""Two-sample statistics: are two sets of states drawn from the same distribution?

Three complementary measures of the difference between samples ``x[n, d]`` and ``y[m, d]``:

* :func:`mmd_test`: the maximum mean discrepancy (Gretton et al., JMLR 2012) with a Gaussian
  (RBF) kernel whose bandwidth is the median pairwise distance of the pooled sample (the
  "median heuristic"), with a permutation-test p-value.
* :func:`classifier_two_sample_test`: a classifier two-sample test (Lopez-Paz & Oquab, ICLR
  2017): a k-nearest-neighbour classifier is fitted on half of the (balanced) pooled sample
  and scored on the other half; held-out accuracy near 1/2 means the classifier cannot tell
  the samples apart. The accuracy comes with a Wilson interval and a one-sided binomial
  p-value against chance.
* :func:`wasserstein_per_dimension`: the Wasserstein-1 distance between the two samples'
  marginals, coordinate by coordinate (``scipy.stats.wasserstein_distance``), in the
  coordinates' own units.

All randomness (permutations, splits) comes from an explicit ``seed``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(200, 2)), rng.normal(1.0, size=(200, 2))
    >>> mmd_test(x, y, seed=0).p_value < 0.01
    True
    >>> wasserstein_per_dimension(np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]]))
    array([2.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from sbil.experiments.stats import Interval, wilson_interval


def _samples(x: np.ndarray, y: np.ndarray, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate two samples ``[n, d]`` and ``[m, d]`` (1-D arrays are one coordinate)."""
    out = []
    for name, value in (("x", x), ("y", y)):
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a sample of shape [n, d], got shape {arr.shape}.")
        if arr.shape[0] < min_rows or arr.shape[1] < 1:
            raise ValueError(
                f"{name} has {arr.shape[0]} rows of {arr.shape[1]} coordinates; a two-sample "
                f"test needs at least {min_rows} rows and one coordinate."
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values; drop those rows first.")
        out.append(arr)
    if out[0].shape[1] != out[1].shape[1]:
        raise ValueError(
            f"x and y must have the same number of coordinates, got {out[0].shape[1]} and "
            f"{out[1].shape[1]}."
        )
    return out[0], out[1]


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||^2``, ``[n, m]`` (clipped at 0 against rounding)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(sq, 0.0)


def median_bandwidth(pooled: np.ndarray, *, max_points: int = 2000, seed: int = 0) -> float:
    """The median heuristic: the median Euclidean distance between distinct pooled points.

    Above ``max_points`` rows a random subset of that size (from ``seed``) is used. When
    every distance is 0 (all points equal) the bandwidth is 1, so the kernel stays defined.

    Args:
        pooled: ``[n, d]`` the two samples stacked.
        max_points: subset size for large samples.
        seed: seed of that subset.

    Returns:
        The bandwidth ``sigma`` of ``k(u, v) = exp(-||u - v||^2 / (2 sigma^2))``.
    """
    pooled = np.asarray(pooled, dtype=np.float64)
    if len(pooled) > max_points:
        rows = np.random.default_rng(seed).choice(len(pooled), max_points, replace=False)
        pooled = pooled[rows]
    sq = _squared_distances(pooled, pooled)
    upper = sq[np.triu_indices(len(pooled), k=1)]
    positive = upper[upper > 0]
    return float(np.sqrt(np.median(positive))) if positive.size else 1.0


def rbf_kernel(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    """``exp(-||a_i - b_j||^2 / (2 bandwidth^2))``, ``[n, m]``."""
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth}.")
    return np.exp(-_squared_distances(a, b) / (2.0 * bandwidth**2))


@dataclass(frozen=True)
class MMDResult:
    """An MMD two-sample test.

    Attributes:
        mmd2: the unbiased estimate of the squared MMD (can be slightly negative when the
            distributions are equal).
        p_value: permutation p-value, ``(1 + #{permuted mmd2 >= mmd2}) / (1 + n_permutations)``.
        bandwidth: the RBF kernel's bandwidth (median heuristic unless given).
        n_permutations: number of label permutations.
        n_x, n_y: sample sizes.
    """

    mmd2: float
    p_value: float
    bandwidth: float
    n_permutations: int
    n_x: int
    n_y: int


def _unbiased_mmd2(kernel: np.ndarray, in_x: np.ndarray) -> np.ndarray:
    """Unbiased ``MMD^2`` for each labelling ``in_x[:, p]`` (bool ``[N, P]``) of ``kernel``.

    With ``S_xx = sum_{i != j in X} k``, etc.: ``S_xx / n(n-1) + S_yy / m(m-1) - 2 S_xy / nm``.
    One matrix product gives every block sum of every labelling.
    """
    a = in_x.astype(np.float64)
    n = a[:, 0].sum()
    m = len(a) - n
    diag = np.diag(kernel)
    ka = kernel @ a  # [N, P]
    total = kernel.sum()
    s_xx = (a * ka).sum(0) - (diag[:, None] * a).sum(0)
    s_xy = ((1.0 - a) * ka).sum(0)
    s_yy = total - 2.0 * s_xy - (a * ka).sum(0) - (diag[:, None] * (1.0 - a)).sum(0)
    return s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2.0 * s_xy / (n * m)


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int = 500,
    seed: int = 0,
    bandwidth: float | None = None,
) -> MMDResult:
    """MMD between samples ``x[n, d]`` and ``y[m, d]`` with an RBF kernel, and its p-value.

    The p-value comes from ``n_permutations`` random relabellings of the pooled sample (exact
    in finite samples under the null that both come from one distribution).

    Args:
        x: ``[n, d]`` first sample (``n >= 2``).
        y: ``[m, d]`` second sample (``m >= 2``).
        n_permutations: relabellings for the p-value (at least 1).
        seed: seed of the permutations (and of the median heuristic's subset).
        bandwidth: the kernel bandwidth; default the median heuristic on the pooled sample.

    Returns:
        :class:`MMDResult`.
    """
    x, y = _samples(x, y)
    n_permutations = _check_count("n_permutations", n_permutations, 1)
    pooled = np.concatenate([x, y])
    sigma = median_bandwidth(pooled, seed=seed) if bandwidth is None else float(bandwidth)
    kernel = rbf_kernel(pooled, pooled, sigma)
    n, total = len(x), len(pooled)
    rng = np.random.default_rng(seed)
    labels = np.zeros((total, n_permutations + 1), dtype=bool)
    labels[:n, 0] = True
    for p in range(1, n_permutations + 1):
        labels[rng.permutation(total)[:n], p] = True
    values = np.concatenate(
        [_unbiased_mmd2(kernel, labels[:, i : i + 200]) for i in range(0, labels.shape[1], 200)]
    )
    observed = values[0]
    # A small tolerance so that relabellings equal to the observed value up to rounding count.
    exceed = int(np.sum(values[1:] >= observed - 1e-12 * max(1.0, abs(observed))))
    return MMDResult(
        mmd2=float(observed),
        p_value=(1 + exceed) / (1 + n_permutations),
        bandwidth=sigma,
        n_permutations=n_permutations,
        n_x=len(x),
        n_y=len(y),
    )


@dataclass(frozen=True)
class C2STResult:
    """A classifier two-sample test.

    Attributes:
        accuracy: held-out accuracy of the classifier (chance is 1/2: classes are balanced).
        interval: Wilson interval of that accuracy (:class:`~sbil.experiments.stats.Interval`).
        p_value: one-sided binomial p-value of the held-out hits against chance (1/2).
        n_test: held-out points (half from each sample).
        k: neighbours used by the classifier.
    """

    accuracy: float
    interval: Interval
    p_value: float
    n_test: int
    k: int


def classifier_two_sample_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    k: int | None = None,
    confidence: float = 0.95,
) -> C2STResult:
    """Classifier two-sample test with a k-nearest-neighbour classifier.

    The larger sample is subsampled to the size ``n`` of the smaller one, so the classes are
    balanced; each sample is split in halves (train, test). Coordinates are scaled by the
    training half's standard deviation (the classifier then does not depend on units). The
    classifier is the majority vote of the ``k`` nearest training points (Euclidean), ``k``
    odd (default: the odd number nearest ``sqrt(n_train)``), so there are no ties.

    Args:
        x: ``[n, d]`` first sample (at least 4 rows).
        y: ``[m, d]`` second sample (at least 4 rows).
        seed: seed of the subsampling and split.
        k: neighbours (odd, positive); default as above.
        confidence: coverage of the accuracy's Wilson interval.

    Returns:
        :class:`C2STResult`.
    """
    x, y = _samples(x, y, min_rows=4)
    rng = np.random.default_rng(seed)
    size = min(len(x), len(y))
    x = x[rng.permutation(len(x))[:size]]
    y = y[rng.permutation(len(y))[:size]]
    half = size // 2
    train = np.concatenate([x[:half], y[:half]])
    train_labels = np.repeat([0, 1], half)
    test = np.concatenate([x[half:], y[half:]])
    test_labels = np.repeat([0, 1], size - half)
    if k is None:
        k = max(1, round(float(np.sqrt(len(train)))))
        k += 1 - k % 2
    k = _check_count("k", k, 1)
    if k % 2 == 0 or k > len(train):
        raise ValueError(f"k must be odd and at most the {len(train)} training points, got {k}.")
    scale = train.std(axis=0)
    scale[scale == 0] = 1.0
    distances = _squared_distances(test / scale, train / scale)
    nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
    predicted = (train_labels[nearest].sum(1) * 2 > k).astype(int)
    hits = int(np.sum(predicted == test_labels))
    n_test = len(test_labels)
    return C2STResult(
        accuracy=hits / n_test,
        interval=wilson_interval(hits, n_test, confidence=confidence),
        p_value=float(sps.binom.sf(hits - 1, n_test, 0.5)),
        n_test=n_test,
        k=k,
    )


def wasserstein_per_dimension(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the marginals of ``x[n, d]`` and ``y[m, d]``, ``[d]``.

    Each entry is ``scipy.stats.wasserstein_distance`` of one coordinate, in its units.
    """
    x, y = _samples(x, y, min_rows=1)
    return np.array([sps.wasserstein_distance(x[:, j], y[:, j]) for j in range(x.shape[1])])

"""Tests for sbil.experiments.two_sample: hand cases, power and size, determinism."""

import numpy as np
import pytest
from scipy import stats as sps

from sbil.experiments.two_sample import (
    _unbiased_mmd2,
    classifier_two_sample_test,
    median_bandwidth,
    mmd_test,
    rbf_kernel,
    wasserstein_per_dimension,
)


def test_wasserstein_hand_cases():
    # Shifting every point by 2 moves every unit of mass by 2.
    x = np.array([[0.0, 5.0], [1.0, 5.0]])
    y = np.array([[2.0, 5.0], [3.0, 5.0]])
    assert wasserstein_per_dimension(x, y) == pytest.approx([2.0, 0.0])
    # Mass 1/2 at 0 and 1/2 at 1 against all mass at 0: half the mass moves by 1.
    assert wasserstein_per_dimension(np.array([[0.0], [1.0]]), np.zeros((3, 1))) == pytest.approx(
        [0.5]
    )


def test_unbiased_mmd_matches_the_definition():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 2)), rng.normal(0.5, size=(5, 2))
    sigma = 1.3
    kxx, kyy, kxy = rbf_kernel(x, x, sigma), rbf_kernel(y, y, sigma), rbf_kernel(x, y, sigma)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (7 * 6)
        + (kyy.sum() - np.trace(kyy)) / (5 * 4)
        - 2 * kxy.mean()
    )
    pooled = np.concatenate([x, y])
    labels = np.zeros((12, 1), dtype=bool)
    labels[:7] = True
    assert _unbiased_mmd2(rbf_kernel(pooled, pooled, sigma), labels)[0] == pytest.approx(expected)
    assert mmd_test(x, y, bandwidth=sigma, n_permutations=5).mmd2 == pytest.approx(expected)


def test_median_bandwidth_hand_case():
    # Distances between 0, 1 and 3 on a line: 1, 2, 3; the median is 2.
    assert median_bandwidth(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
    assert median_bandwidth(np.zeros((4, 2))) == 1.0


def test_mmd_p_value_small_for_different_and_large_for_identical_distributions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 3))
    shifted = rng.normal(size=(150, 3)) + np.array([0.6, 0.0, 0.0])
    assert mmd_test(x, shifted, n_permutations=200, seed=0).p_value <= 1 / 201 + 1e-12
    wider = rng.normal(size=(150, 3)) * 2.0  # same mean, different spread
    assert mmd_test(x, wider, n_permutations=200, seed=0).p_value < 0.01
    # The same points: every relabelling is at least as extreme.
    assert mmd_test(x, x.copy(), n_permutations=200, seed=0).p_value > 0.5
    # Fresh draws of the same distribution: a level-1% test rejects one seed in a hundred.
    same = rng.normal(size=(150, 3))
    assert mmd_test(x, same, n_permutations=200, seed=0).p_value > 0.01


def test_mmd_permutation_test_has_its_nominal_size():
    # Under the null the p-value is (discretely) uniform: about 10% of p-values fall below 0.1.
    rng = np.random.default_rng(2)
    p = [
        mmd_test(
            rng.normal(size=(30, 2)), rng.normal(size=(30, 2)), n_permutations=99, seed=s
        ).p_value
        for s in range(60)
    ]
    assert 0.0 <= np.mean(np.array(p) <= 0.1) <= 0.25
    assert 0.3 < np.mean(p) < 0.7


def test_c2st_tells_different_samples_apart_and_not_identical_ones():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2))
    far = rng.normal(size=(400, 2)) * 0.05  # concentrated at the centre of x
    result = classifier_two_sample_test(x, far, seed=0)
    assert result.accuracy > 0.85
    assert result.interval.low <= result.accuracy <= result.interval.high
    assert result.p_value < 1e-10
    same = classifier_two_sample_test(x, rng.normal(size=(400, 2)), seed=0)
    assert same.interval.low < 0.5 < same.interval.high
    assert same.p_value > 0.01
    assert same.n_test == 400 and same.k % 2 == 1


def test_c2st_balances_unequal_samples_and_is_deterministic():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(300, 2))
    a = classifier_two_sample_test(x, y, seed=7)
    assert a == classifier_two_sample_test(x, y, seed=7)
    assert a.n_test == 50  # 25 held out from each sample
    # The p-value is the binomial tail of the hits.
    hits = round(a.accuracy * a.n_test)
    assert a.p_value == pytest.approx(sps.binom.sf(hits - 1, a.n_test, 0.5))


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="same number of coordinates"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        wasserstein_per_dimension(np.array([[np.nan]]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="at least 4 rows"):
        classifier_two_sample_test(np.zeros((3, 1)), np.zeros((8, 1)))
    with pytest.raises(ValueError, match="k must be odd"):
        classifier_two_sample_test(np.zeros((8, 1)), np.ones((8, 1)), k=2)
    with pytest.raises(ValueError, match="n_permutations"):
        mmd_test(np.zeros((5, 1)), np.ones((5, 1)), n_permutations=0)

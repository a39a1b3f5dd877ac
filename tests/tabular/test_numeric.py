"""Tests for sbil.tabular.numeric: the kernels against numpy and scipy on every axis length."""

import numpy as np
import pytest
import scipy.special

from sbil.tabular import numeric


@pytest.mark.parametrize("n", [1, 2, 3, 8, 9, 20])
def test_kernels_match_numpy_and_scipy(n):
    x = np.random.default_rng(n).normal(scale=30.0, size=(4, 5, n))
    np.testing.assert_array_equal(numeric.max_last(x), x.max(axis=-1))
    np.testing.assert_allclose(numeric.sum_last(x), x.sum(axis=-1), rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(
        numeric.logsumexp(x), scipy.special.logsumexp(x, axis=-1), rtol=1e-14
    )
    np.testing.assert_allclose(
        numeric.log_softmax(x, axis=1), scipy.special.log_softmax(x, axis=1), atol=1e-12
    )


def test_log_softmax_is_stable_for_huge_logits():
    out = numeric.log_softmax(np.array([1e308, 0.0]))
    assert out[0] == 0.0 and out[1] == -1e308


def test_total_variation():
    assert numeric.total_variation(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == 0.5
    assert numeric.total_variation(np.eye(3), np.eye(3), axis=(0, 1)) == 0.0
    p = np.array([[0.2, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(numeric.total_variation(p, p[::-1]), [0.8, 0.8])

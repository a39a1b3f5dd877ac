"""Tests for sbil.experiments.stats: exact small cases, invariants and determinism."""

import numpy as np
import pytest

from sbil.experiments.stats import (
    iqm,
    mean_over_last_two,
    stratified_bootstrap_ci,
    wilson_interval,
)


def test_iqm_trims_a_quarter_each_side():
    scores = np.array([0.0, 1.0, 2.0, 3.0, 100.0, 4.0, 5.0, 6.0])
    assert iqm(scores) == pytest.approx(3.5)
    # Outliers at either end do not move it.
    scores[4] = 1e9
    assert iqm(scores) == pytest.approx(3.5)


def test_iqm_axis_tuple_matches_pooled():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 4))
    per_first = iqm(x, axis=(1, 2))
    assert per_first.shape == (3,)
    for i in range(3):
        assert per_first[i] == pytest.approx(iqm(x[i]))


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    scores = rng.normal(loc=2.0, size=(10, 5))
    a = stratified_bootstrap_ci(scores, n_resamples=500, seed=3)
    b = stratified_bootstrap_ci(scores, n_resamples=500, seed=3)
    assert a == b
    assert a.low <= a.estimate <= a.high
    assert a.estimate == pytest.approx(iqm(scores))


def test_stratified_resamples_keep_each_task():
    # Task 0 is all zeros, task 1 all ones: every stratified resample has mean exactly 0.5,
    # whereas an unstratified one would not.
    scores = np.stack([np.zeros(6), np.ones(6)], axis=1)
    ci = stratified_bootstrap_ci(scores, mean_over_last_two, n_resamples=200, seed=0)
    assert ci.low == ci.high == ci.estimate == pytest.approx(0.5)


def test_bootstrap_rejects_nan_but_keeps_rare_infinities_finite():
    with pytest.raises(ValueError, match="NaN"):
        stratified_bootstrap_ci(np.array([1.0, np.nan]))
    scores = np.arange(20.0)
    scores[-1] = np.inf  # one of 20 estimators does not exist
    ci = stratified_bootstrap_ci(scores, n_resamples=300, seed=0)
    assert np.isfinite(ci.estimate)
    assert ci.estimate == pytest.approx(iqm(np.arange(20.0)))
    assert not np.isnan(ci.high)


def test_wilson_interval_known_value():
    # 5 of 10 at 95%: the textbook Wilson interval is (0.2366, 0.7634).
    ci = wilson_interval(5, 10)
    assert ci.estimate == 0.5
    assert ci.low == pytest.approx(0.2366, abs=1e-4)
    assert ci.high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 20).low == 0.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)

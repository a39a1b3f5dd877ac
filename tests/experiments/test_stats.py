"""Tests for sbil.experiments.stats: exact small cases, invariants, determinism, and the same
figures as rliable 1.2.0 on the same scores (resample for resample)."""

import contextlib

import numpy as np
import pytest

from sbil.experiments.stats import (
    iqm,
    mean_over_last_two,
    normalised_score,
    performance_profile,
    probability_of_improvement,
    probability_of_improvement_ci,
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


# --- probability of improvement, performance profiles, normalisation: hand-checked cases ---


def test_probability_of_improvement_hand_cases():
    # X dominates Y on every task: every pair is a win.
    x = np.array([[5.0, 9.0], [6.0, 8.0]])
    y = np.array([[1.0, 2.0], [2.0, 3.0], [4.0, 7.0]])
    assert probability_of_improvement(x, y) == 1.0
    assert probability_of_improvement(y, x) == 0.0
    # Identical scores: 1/2, whatever their spread.
    assert probability_of_improvement(x, x) == 0.5
    # All ties count one half each.
    assert probability_of_improvement(np.ones((3, 2)), np.ones((4, 2))) == 0.5
    # One task: x = (1, 2), y = (1, 0): pairs (1>1 tie, 1>0 win, 2>1 win, 2>0 win) -> 3.5 / 4.
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([1.0, 0.0])) == 0.875
    # The mean over tasks: task 0 all wins, task 1 all losses -> 1/2.
    xs = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert probability_of_improvement(xs, 1.0 - xs) == 0.5
    # P(X > Y) + P(Y > X) = 1.
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, size=(5, 3)), rng.integers(0, 4, size=(7, 3))
    assert probability_of_improvement(a, b) + probability_of_improvement(b, a) == pytest.approx(1)


def test_probability_of_improvement_rejects_different_tasks():
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.ones((3, 2)), np.ones((3, 3)))


def test_probability_of_improvement_interval():
    x = np.array([[5.0, 9.0], [6.0, 8.0], [7.0, 7.5]])
    y = np.array([[1.0, 2.0], [2.0, 3.0], [4.0, 7.0]])
    # Dominance survives every resample: the interval collapses onto 1.
    ci = probability_of_improvement_ci(x, y, n_resamples=200, seed=0)
    assert (ci.estimate, ci.low, ci.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 3)), rng.normal(loc=0.3, size=(10, 3))
    one = probability_of_improvement_ci(a, b, n_resamples=300, seed=4)
    assert one == probability_of_improvement_ci(a, b, n_resamples=300, seed=4)
    assert 0.0 <= one.low <= one.estimate <= one.high <= 1.0
    assert one.low < one.high


def test_performance_profile_hand_case():
    scores = np.array([[0.0, 0.5], [1.0, 2.0]])  # 4 runs pooled
    profile = performance_profile(scores, np.array([-1.0, 0.0, 0.5, 1.5, 2.0]), n_resamples=50)
    np.testing.assert_array_equal(profile.fraction, [1.0, 0.75, 0.5, 0.25, 0.0])
    assert np.all(profile.low <= profile.fraction) and np.all(profile.fraction <= profile.high)
    # Below every score and at or above the largest one, no resample can differ.
    assert (profile.low[0], profile.high[0]) == (1.0, 1.0)
    assert (profile.low[-1], profile.high[-1]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="taus"):
        performance_profile(scores, np.array([]))


def test_normalised_score():
    out = normalised_score(
        np.array([10.0, 20.0, 110.0, 0.0]), random_return=10.0, expert_return=110.0
    )
    np.testing.assert_allclose(out, [0.0, 0.1, 1.0, -0.1])
    with pytest.raises(ValueError, match="equal"):
        normalised_score(1.0, random_return=5.0, expert_return=5.0)


def test_linear_quantiles_are_numpy_percentiles_and_survive_infinities():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(8, 3))
    lin = stratified_bootstrap_ci(scores, n_resamples=400, seed=1, quantiles="linear")
    out = stratified_bootstrap_ci(scores, n_resamples=400, seed=1, quantiles="outward")
    # Same resamples: the outward order statistics bracket the interpolated ends.
    assert out.low <= lin.low and lin.high <= out.high
    assert lin.estimate == out.estimate
    scores = np.arange(20.0)
    scores[-1] = np.inf
    ci = stratified_bootstrap_ci(scores, n_resamples=300, seed=0, quantiles="linear")
    assert not np.isnan(ci.low) and not np.isnan(ci.high)
    with pytest.raises(ValueError, match="quantiles"):
        stratified_bootstrap_ci(scores, quantiles="nearest")


# --- against rliable 1.2.0 itself ---


def _rliable():
    """rliable 1.2.0's ``metrics`` and ``library`` modules, or skip saying why."""
    from importlib import metadata

    try:
        version = metadata.version("rliable")
    except metadata.PackageNotFoundError:
        pytest.skip("rliable is not installed; `pip install -e .[dev]` brings rliable==1.2.0")
    if version != "1.2.0":
        pytest.skip(f"these comparisons are against rliable 1.2.0; rliable {version} is installed")
    from rliable import metrics

    try:
        from rliable import library
    except TypeError:
        library = _import_rliable_library_on_pandas3()
    return metrics, library


def _import_rliable_library_on_pandas3():
    # rliable 1.2.0 pins arch<8, and arch 7.x decorates one ARCH-model plotting method with
    # pandas' private deprecate_kwarg in its pandas-2 signature; pandas 3 put a warning class
    # first, so `import arch` fails. Restore the old signature for the duration of the import
    # only (rliable's and arch's bootstrap code run unchanged).
    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg

    def pandas2_signature(*args, **kwargs):
        if args and isinstance(args[0], str):
            return original(FutureWarning, *args, **kwargs)
        return original(*args, **kwargs)

    decorators.deprecate_kwarg = pandas2_signature
    try:
        from rliable import library
    finally:
        decorators.deprecate_kwarg = original
    return library


@contextlib.contextmanager
def _numpy_global_seed(seed: int):
    """Seed numpy's global RNG (rliable 1.2.0 draws its resamples from it), then restore it."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _score_cases():
    rng = np.random.default_rng(11)
    yield rng.normal(size=(10, 4))
    yield rng.integers(0, 3, size=(7, 5)).astype(float)  # many ties
    yield rng.normal(size=(3, 1))


def test_iqm_and_probability_of_improvement_match_rliable():
    metrics, _ = _rliable()
    rng = np.random.default_rng(12)
    for scores in _score_cases():
        assert iqm(scores) == metrics.aggregate_iqm(scores)
        other = scores[::-1] + rng.integers(-1, 2, size=scores.shape)
        assert probability_of_improvement(scores, other) == pytest.approx(
            metrics.probability_of_improvement(scores, other), abs=1e-12
        )
        fewer = other[: max(1, len(other) - 2)]  # different numbers of runs
        assert probability_of_improvement(scores, fewer) == pytest.approx(
            metrics.probability_of_improvement(scores, fewer), abs=1e-12
        )
        assert probability_of_improvement(scores, scores) == metrics.probability_of_improvement(
            scores, scores
        )


def test_bootstrap_intervals_match_rliable_resample_for_resample():
    metrics, library = _rliable()
    reps = 300
    for i, scores in enumerate(_score_cases()):
        with _numpy_global_seed(100 + i):
            points, intervals = library.get_interval_estimates(
                {"x": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
            )
        ours = stratified_bootstrap_ci(
            scores,
            n_resamples=reps,
            seed=np.random.RandomState(100 + i),
            quantiles="linear",
        )
        assert ours.estimate == pytest.approx(float(points["x"][0]), abs=1e-12)
        np.testing.assert_allclose(
            [ours.low, ours.high], np.ravel(intervals["x"]), rtol=0, atol=1e-12
        )


def test_improvement_interval_matches_rliable_resample_for_resample():
    metrics, library = _rliable()
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(6, 3)), rng.normal(loc=0.4, size=(4, 3))
    reps = 300
    with _numpy_global_seed(7):
        points, intervals = library.get_interval_estimates(
            {"x>y": [x, y]}, metrics.probability_of_improvement, reps=reps
        )
    ours = probability_of_improvement_ci(x, y, n_resamples=reps, seed=np.random.RandomState(7))
    assert ours.estimate == pytest.approx(float(np.ravel(points["x>y"])[0]), abs=1e-12)
    np.testing.assert_allclose([ours.low, ours.high], np.ravel(intervals["x>y"]), atol=1e-12)


def test_performance_profile_matches_rliable_resample_for_resample():
    _, library = _rliable()
    for i, scores in enumerate(_score_cases()):
        taus = np.linspace(scores.min() - 0.5, scores.max() + 0.5, 17)
        with _numpy_global_seed(200 + i):
            profiles, cis = library.create_performance_profile({"x": scores}, taus, reps=250)
        ours = performance_profile(
            scores, taus, n_resamples=250, seed=np.random.RandomState(200 + i)
        )
        np.testing.assert_array_equal(ours.fraction, profiles["x"])
        np.testing.assert_allclose(ours.low, cis["x"][0], atol=1e-12)
        np.testing.assert_allclose(ours.high, cis["x"][1], atol=1e-12)


def test_default_generator_gives_rliables_interval_up_to_resampling_noise():
    # With sbil's own RNG the resamples differ, but with many of them the interval ends agree
    # with rliable's to within Monte Carlo error.
    metrics, library = _rliable()
    scores = np.random.default_rng(14).normal(size=(10, 4))
    with _numpy_global_seed(0):
        _, intervals = library.get_interval_estimates(
            {"x": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=4000
        )
    ours = stratified_bootstrap_ci(scores, n_resamples=4000, seed=0, quantiles="linear")
    width = ours.high - ours.low
    np.testing.assert_allclose([ours.low, ours.high], np.ravel(intervals["x"]), atol=0.05 * width)

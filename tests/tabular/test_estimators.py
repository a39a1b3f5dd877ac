"""Tests for sbil.tabular.estimators: exact recovery, invariances, divergence, validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.tabular.demos import Demonstrations, sample_visitation
from sbil.tabular.estimators import FitError, fit_bc, fit_edm
from sbil.tabular.mdp import random_mdp, two_state_mdp
from sbil.tabular.objectives import bc_objective, edm_objective
from sbil.tabular.policies import (
    example3_features,
    logits,
    policy_probs,
    random_features,
    state_shift_features,
    tabular_features,
)
from sbil.tabular.visitation import state_action_visitation


def _realisable(seed: int, n_s: int = 8, n_a: int = 3, n_k: int = 3):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(n_s, n_a, seed=rng, discount=0.9)
    features = random_features(n_s, n_a, n_k, seed=rng)
    theta = rng.normal(size=n_k)
    return features, theta, state_action_visitation(mdp, policy_probs(features, theta))


def _theorem1_d(k: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 0, 1] = p[0, 1, 1] = p[1, 1, 0] = 1.0  # stay / switch
    features = example3_features(k)
    pi = policy_probs(features, np.array([theta]))
    return features, state_action_visitation(two_state_mdp(transitions=p), pi)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31))
def test_bc_recovers_expert_from_exact_visitation(seed):
    features, theta, d_e = _realisable(seed)
    fit = fit_bc(features, d_e)
    assert fit.converged and fit.status == "converged"
    assert fit.grad_norm <= 1e-10
    np.testing.assert_allclose(fit.theta, theta, atol=1e-7)


def test_edm_reference_matches_feature_moments():
    features, _, d_e = _realisable(3)
    fit = fit_edm(features, d_e)
    f = logits(features, fit.theta)
    joint = np.exp(f - f.max())
    joint /= joint.sum()
    np.testing.assert_allclose(
        np.einsum("sa,sak->k", joint, features), np.einsum("sa,sak->k", d_e, features), atol=1e-10
    )


def test_one_hot_bc_and_edm_recover_conditional():
    """With one-hot features both fits give pi(a|s) = d(a|s) (the flat directions are skipped)."""
    rng = np.random.default_rng(0)
    d = rng.dirichlet(np.ones(12)).reshape(4, 3)
    features = tabular_features(4, 3)
    conditional = d / d.sum(-1, keepdims=True)
    for fit in (fit_bc(features, d), fit_edm(features, d)):
        assert fit.converged
        np.testing.assert_allclose(policy_probs(features, fit.theta), conditional, atol=1e-10)
    # EDM under the reference convention also matches the joint exactly.
    theta = fit_edm(features, d).theta
    joint = np.exp(theta - theta.max())
    np.testing.assert_allclose(joint / joint.sum(), d.ravel(), atol=1e-10)


def test_bc_leaves_unseen_states_at_theta0():
    d = np.zeros((3, 2))
    d[0] = [0.25, 0.25]
    d[1] = [0.4, 0.1]
    theta0 = np.arange(6.0)
    fit = fit_bc(tabular_features(3, 2), d, theta0=theta0)
    np.testing.assert_array_equal(fit.theta[4:], theta0[4:])  # state 2: no data


def test_example3_edm_inconsistent_bc_consistent():
    """Theorem 1 (k = 1/2, theta_E = 1): EDM's gradient is nonzero at the expert."""
    features, d_e = _theorem1_d(0.5, 1.0)
    assert bc_objective(np.ones(1), features, d_e).grad[0] == pytest.approx(0.0, abs=1e-15)
    assert abs(edm_objective(np.ones(1), features, d_e).grad[0]) > 0.05
    assert fit_bc(features, d_e).theta[0] == pytest.approx(1.0, abs=1e-9)
    assert abs(fit_edm(features, d_e).theta[0] - 1.0) > 0.05


def test_state_shift_params_are_invisible_to_bc():
    features, theta, d_e = _realisable(5)
    fit = fit_bc(state_shift_features(features), d_e)
    assert fit.converged
    np.testing.assert_allclose(fit.theta[:3], theta, atol=1e-7)
    np.testing.assert_array_equal(fit.theta[3:], 0.0)


@pytest.mark.parametrize("scale", [1e-5, 1e-8, 1e4])
def test_badly_scaled_feature_is_not_an_invariance(scale):
    """A feature in other units is a reparametrisation: fits must follow it, not freeze it."""
    features, theta, d_e = _realisable(0, n_s=6, n_k=3)
    scaled = features.copy()
    scaled[..., 2] *= scale
    bc = fit_bc(scaled, d_e)
    np.testing.assert_allclose(bc.theta * [1, 1, scale], theta, rtol=1e-7, atol=1e-9)
    edm, edm_scaled = fit_edm(features, d_e), fit_edm(scaled, d_e)
    assert edm_scaled.converged
    np.testing.assert_allclose(edm_scaled.theta * [1, 1, scale], edm.theta, rtol=1e-7)


def test_small_invariant_features_are_still_invariances():
    features, theta, d_e = _realisable(5)
    shifted = state_shift_features(features)
    shifted[..., 3:] *= 1e-6  # per-state shift columns in tiny units: still invisible to BC
    fit = fit_bc(shifted, d_e, theta0=np.r_[np.zeros(3), np.arange(1.0, 9.0)])
    np.testing.assert_allclose(fit.theta[:3], theta, atol=1e-7)
    np.testing.assert_array_equal(fit.theta[3:], np.arange(1.0, 9.0))


@pytest.mark.parametrize("fitter", [fit_bc, fit_edm])
def test_batched_equals_loop(fitter):
    problems = [_realisable(s) for s in range(5)]
    features = np.stack([p[0] for p in problems])
    d = np.stack([sample_visitation(p[2], 2000, seed=i) for i, p in enumerate(problems)])
    batched = fitter(features, d)
    assert batched.theta.shape == (5, 3) and batched.converged.shape == (5,)
    for b in range(5):
        single = fitter(features[b], d[b])
        np.testing.assert_allclose(batched.theta[b], single.theta, atol=1e-9)
    # Shared features with a batch of data, and a 2-D batch.
    shared = fitter(features[0], d[:2])
    np.testing.assert_allclose(shared.theta[1], fitter(features[0], d[1]).theta, atol=1e-9)
    grid = fitter(features[None].repeat(2, 0), np.stack([d, d]))
    assert grid.theta.shape == (2, 5, 3) and grid.n_iter.shape == (2, 5)


def test_separable_data_has_no_finite_minimiser():
    d = np.zeros((2, 2))
    d[0, 1] = d[1, 0] = 0.5  # in s1 only action 1, in s2 only action 0
    features = tabular_features(2, 2)
    with pytest.raises(FitError, match=r"no finite minimiser.*separable") as info:
        fit_bc(features, d)
    assert info.value.result.status == "no finite minimiser"
    fit = fit_bc(features, d, raise_on_failure=False)
    assert not fit.converged and fit.n_iter < 100
    # An explicit ridge makes the minimiser finite.
    assert fit_bc(features, d, ridge=1e-3).converged


def test_batch_failure_flags_per_problem():
    features = example3_features(0.5)
    good = _theorem1_d(0.5, 1.0)[1]
    bad = np.array([[0.5, 0.0], [0.5, 0.0]])  # action 0 always: theta -> -inf
    with pytest.raises(FitError, match=r"1 of 2 problems failed; problem \(1,\)"):
        fit_bc(features, np.stack([good, bad]))
    fit = fit_bc(features, np.stack([good, bad]), raise_on_failure=False)
    np.testing.assert_array_equal(fit.converged, [True, False])
    assert list(fit.status) == ["converged", "no finite minimiser"]


def test_max_iter_reported():
    features, _, d_e = _realisable(1)
    with pytest.raises(FitError, match="max_iter = 1"):
        fit_bc(features, d_e, max_iter=1)


def test_note_convention_converges_to_a_local_minimum():
    features, _, d_e = _realisable(2)
    fit = fit_edm(features, d_e, convention="note")
    assert fit.converged and fit.grad_norm <= 1e-10
    obj = edm_objective(fit.theta, features, d_e, convention="note")
    assert np.linalg.eigvalsh(obj.hess).min() > 0


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (np.full((2, 3), 1 / 6), r"\(S, A\) = \(2, 2\)"),
        (np.array([[0.5, 0.5], [0.5, -0.5]]), r"negative entry at index \(1, 1\)"),
        (np.array([[0.5, 0.5], [0.5, 0.5]]), "sums to 2.*not 1"),
        (np.array([[np.nan, 0.5], [0.25, 0.25]]), "NaN or inf"),
    ],
)
def test_data_validation(d, message):
    with pytest.raises(ValueError, match=message):
        fit_bc(example3_features(1.0), d)


def test_batch_sum_error_names_problem():
    d = np.full((3, 2, 2), 0.25)
    d[2, 0, 0] = 0.3
    with pytest.raises(ValueError, match=r"problem \(2,\)"):
        fit_edm(example3_features(1.0), d)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"tol": -1.0}, r"tol must be a finite number > 0; got -1\.0"),
        ({"tol": 0.0}, "tol must be a finite number > 0"),
        ({"tol": np.nan}, "tol must be a finite number > 0"),
        ({"step_tol": 0.0}, "step_tol must be a finite number > 0"),
        ({"max_iter": -1}, r"max_iter must be an integer >= 0; got -1"),
        ({"max_iter": 2.5}, r"max_iter must be an integer >= 0; got 2\.5"),
        ({"ridge": np.inf}, "ridge must be >= 0 and finite"),
    ],
)
@pytest.mark.parametrize("fitter", [fit_bc, fit_edm])
def test_fit_options_validated(fitter, option, message):
    with pytest.raises(ValueError, match=message):
        fitter(example3_features(1.0), np.full((2, 2), 0.25), **option)


def test_messages_print_plain_int_indices():
    d = np.full((2, 2), 0.25)
    d[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf entry at index \(1, 0\); pass finite"):
        fit_bc(example3_features(1.0), d)
    features = example3_features(1.0)
    features[0, 1, 0] = np.inf
    with pytest.raises(ValueError, match=r"features have a NaN or inf entry at index \(0, 1, 0\)"):
        fit_bc(features, np.full((2, 2), 0.25))


def test_fits_work_without_threadpoolctl(monkeypatch):
    """threadpoolctl is optional: without it the fit runs with the BLAS defaults."""
    import sbil.tabular.estimators as estimators

    features, theta, d_e = _realisable(1)
    monkeypatch.setattr(estimators, "_BLAS", None)
    np.testing.assert_allclose(fit_bc(features, d_e).theta, theta, atol=1e-7)
    assert fit_edm(features, d_e).converged


def test_module_imports_when_threadpoolctl_is_missing():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['threadpoolctl'] = None\n"  # makes the import fail
        "import numpy as np\n"
        "from sbil.tabular import estimators\n"
        "from sbil.tabular.policies import tabular_features\n"
        "assert estimators._BLAS is None\n"
        "fit = estimators.fit_bc(tabular_features(2, 2), np.full((2, 2), 0.25))\n"
        "assert fit.converged, fit\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_theta0_and_ridge_validation():
    d = np.full((2, 2), 0.25)
    with pytest.raises(ValueError, match="theta0 must be finite with last dimension K = 1"):
        fit_bc(example3_features(1.0), d, theta0=np.zeros(2))
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        fit_bc(example3_features(1.0), d, ridge=-1.0)
    with pytest.raises(ValueError, match="convention must be"):
        fit_edm(example3_features(1.0), d, convention="paper")


def test_accepts_demonstrations():
    demos = Demonstrations(np.array([[0, 1, 1, 0]]), np.array([[1, 0, 1, 0]]))
    fit = fit_bc(tabular_features(2, 2), demos)
    np.testing.assert_allclose(policy_probs(tabular_features(2, 2), fit.theta), 0.5, atol=1e-10)
    bad = Demonstrations(np.array([[0, 2]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match=r"states\[0, 1\] = 2 is out of range for S = 2"):
        fit_bc(tabular_features(2, 2), bad)


_FITS_IN_A_FRESH_PROCESS = """
import numpy as np
from sbil.tabular.demos import sample_visitation
from sbil.tabular.estimators import fit_bc, fit_edm
from sbil.tabular.mdp import random_mdp
from sbil.tabular.policies import policy_probs, random_features
from sbil.tabular.visitation import state_action_visitation
rng = np.random.default_rng(4)
features = random_features(8, 3, 3, seed=rng)
theta = rng.normal(size=3)
d_e = state_action_visitation(random_mdp(8, 3, seed=rng, discount=0.9),
                              policy_probs(features, theta))
d = np.stack([sample_visitation(d_e, n, seed=s) for n in (20, 50, 1000) for s in range(3)])
for fit in (fit_bc(features, d, raise_on_failure=False),
            fit_edm(features, d, raise_on_failure=False),
            fit_edm(features, d, convention="note", raise_on_failure=False)):
    print(" ".join(x.hex() for x in np.ravel(fit.theta)), " ".join(np.ravel(fit.status)))
"""


def test_same_numbers_in_another_process_with_other_thread_settings():
    """Bit for bit across processes, BLAS thread counts, hash seeds and threadpoolctl's
    presence (which decides whether the fit pins BLAS to one thread)."""
    import os
    import subprocess
    import sys

    def run(threads: str, hash_seed: str, hide_threadpoolctl: bool) -> str:
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "PYTHONHASHSEED": hash_seed,
        }
        prefix = "import sys; sys.modules['threadpoolctl'] = None\n" if hide_threadpoolctl else ""
        return subprocess.run(
            [sys.executable, "-c", prefix + _FITS_IN_A_FRESH_PROCESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    reference = run("1", "0", False)
    assert reference.count("\n") == 3 and "converged" in reference
    assert run("2", "777", True) == reference
    assert run("2", "31", False) == reference


def _separable(features: np.ndarray, d: np.ndarray, per_state: bool) -> bool:
    """Exact test: is there v with Phi(observed) . v >= Phi(other) . v everywhere, not all equal?

    BC compares actions within each observed state; EDM (reference) compares every observed
    (s, a) with every (s', a'). Then the objective decreases forever along v.
    """
    from scipy.optimize import linprog

    n_k = features.shape[-1]
    observed = np.argwhere(d > 0)
    rows = []
    for s, a in observed:
        others = features[s] if per_state else features.reshape(-1, n_k)
        rows.append(features[s, a] - others)
    m = np.concatenate(rows)
    res = linprog(-m.sum(0), A_ub=-m, b_ub=np.zeros(len(m)), bounds=[(-1, 1)] * n_k)
    return -res.fun > 1e-9


@pytest.mark.parametrize(("fitter", "per_state"), [(fit_bc, True), (fit_edm, False)])
def test_no_finite_minimiser_flag_matches_linear_programme(fitter, per_state):
    rng = np.random.default_rng(0)
    n_problems = 150
    features = rng.normal(size=(n_problems, 8, 3, 4))
    theta = 2 * rng.normal(size=(n_problems, 4))
    pi = policy_probs(features, theta)
    d_state = rng.dirichlet(np.ones(8), size=n_problems)
    d_e = d_state[..., None] * pi
    sizes = np.array([3, 5, 10, 30, 100])[np.arange(n_problems) % 5]
    d = np.stack([sample_visitation(d_e[i], sizes[i], seed=i) for i in range(n_problems)])
    fit = fitter(features, d, raise_on_failure=False)
    separable = np.array([_separable(features[i], d[i], per_state) for i in range(n_problems)])
    assert separable.any() and not separable.all()
    np.testing.assert_array_equal(fit.status == "no finite minimiser", separable)
    np.testing.assert_array_equal(fit.converged, ~separable)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_slow_divergence_is_not_mistaken_for_convergence(scale):
    """A small margin makes the gradient vanish only once the softmax saturates."""
    d = np.array([[0.0, 0.5], [0.0, 0.5]])  # only action 1: theta -> +infinity
    fit = fit_bc(scale * example3_features(0.7), d, raise_on_failure=False)
    assert fit.status == "no finite minimiser"


def test_note_convention_local_extrema():
    """Under the note's sign EDM can have two local minima and a maximum between them."""
    from scipy.optimize import brentq

    features = example3_features(0.24)
    d = np.array([[0.19, 0.004], [0.512, 0.294]])

    def grad(t: float) -> float:
        return edm_objective(np.array([t]), features, d, convention="note").grad[0]

    grid = np.linspace(-3.0, 0.0, 301)
    values = np.array([grad(t) for t in grid])
    i = int(np.flatnonzero((values[:-1] > 0) & (values[1:] < 0))[0])  # + to -: a maximum
    maximum = brentq(grad, grid[i], grid[i + 1], xtol=1e-14)
    at_max = fit_edm(
        features, d, convention="note", theta0=np.array([maximum]), raise_on_failure=False
    )
    assert at_max.status == "stationary point is not a minimum" and not at_max.converged
    with pytest.raises(FitError, match="saddle point or maximum"):
        fit_edm(features, d, convention="note", theta0=np.array([maximum]))
    right = fit_edm(features, d, convention="note", theta0=np.array([maximum + 0.5]))
    left = fit_edm(features, d, convention="note", theta0=np.array([maximum - 2.0]))
    assert right.theta[0] > maximum > left.theta[0]
    for fit in (left, right):
        hess = edm_objective(fit.theta, features, d, convention="note").hess
        assert hess[0, 0] > 0
    # The reference convention is convex: one minimiser from either start.
    a = fit_edm(features, d, theta0=np.array([maximum + 0.5])).theta
    b = fit_edm(features, d, theta0=np.array([maximum - 2.0])).theta
    np.testing.assert_allclose(a, b, atol=1e-10)

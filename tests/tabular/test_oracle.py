"""Tests for sbil.tabular.oracle: the KL gradient against finite differences, recovery."""

import numpy as np
import pytest

from sbil.tabular.estimators import FitError
from sbil.tabular.mdp import random_mdp, self_loop_mdp, two_state_mdp
from sbil.tabular.oracle import fit_occupancy_matching, occupancy_kl
from sbil.tabular.policies import (
    example3_features,
    policy_probs,
    random_features,
    tabular_features,
)
from sbil.tabular.visitation import state_action_visitation

VISITATION_KINDS = [{"discount": 0.9}, {"horizon": 7}, {}]


def _mdp(kind: dict, sparse: bool, seed: int = 1):
    return random_mdp(6, 3, seed=seed, successors=3 if kind else 6, sparse=sparse, **kind)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kind", VISITATION_KINDS)
def test_gradient_matches_finite_differences(kind, sparse):
    rng = np.random.default_rng(0)
    mdp = _mdp(kind, sparse)
    features = random_features(6, 3, 4, seed=2)
    d_e = rng.dirichlet(np.ones(18)).reshape(6, 3)
    theta = rng.normal(size=4)
    kl, grad = occupancy_kl(mdp, features, d_e, theta)
    assert kl > 0
    eps = 1e-6
    fd = [
        (
            occupancy_kl(mdp, features, d_e, theta + eps * e)[0]
            - occupancy_kl(mdp, features, d_e, theta - eps * e)[0]
        )
        / (2 * eps)
        for e in np.eye(4)
    ]
    np.testing.assert_allclose(grad, fd, atol=1e-8)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kind", VISITATION_KINDS)
def test_recovers_realisable_expert(kind, sparse):
    mdp = _mdp(kind, sparse)
    features = random_features(6, 3, 4, seed=2)
    theta_e = np.array([0.5, -1.0, 1.5, 0.3])
    d_e = state_action_visitation(mdp, policy_probs(features, theta_e))
    fit = fit_occupancy_matching(mdp, features, d_e)
    assert fit.converged and fit.grad_norm <= 1e-8
    np.testing.assert_allclose(fit.theta, theta_e, atol=1e-6)
    assert fit.value == pytest.approx(0.0, abs=1e-12)


def test_example3_oracle_is_consistent():
    """Where EDM is inconsistent (Theorem 1), occupancy matching recovers theta_E = 1."""
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 0, 1] = p[0, 1, 1] = p[1, 1, 0] = 1.0
    mdp = two_state_mdp(transitions=p)
    features = example3_features(0.5)
    d_e = state_action_visitation(mdp, policy_probs(features, np.ones(1)))
    assert fit_occupancy_matching(mdp, features, d_e).theta[0] == pytest.approx(1.0, abs=1e-7)


def test_tabular_features_match_policy_on_visited_states():
    mdp = self_loop_mdp(3, 2, discount=0.9)  # only state 0 is ever visited
    d_e = np.zeros((3, 2))
    d_e[0] = [0.3, 0.7]
    fit = fit_occupancy_matching(mdp, tabular_features(3, 2), d_e)
    np.testing.assert_allclose(policy_probs(tabular_features(3, 2), fit.theta)[0], [0.3, 0.7])


def test_errors():
    mdp = self_loop_mdp(3, 2, discount=0.9)
    d_e = np.zeros((3, 2))
    d_e[1] = 0.5  # state 1 is never reached from state 0
    with pytest.raises(ValueError, match="infinite"):
        fit_occupancy_matching(mdp, tabular_features(3, 2), d_e)
    with pytest.raises(ValueError, match=r"features have \(S, A\)"):
        fit_occupancy_matching(mdp, tabular_features(2, 2), np.full((2, 2), 0.25))
    with pytest.raises(ValueError, match="one problem"):
        fit_occupancy_matching(mdp, tabular_features(3, 2), np.full((2, 3, 2), 1 / 6))
    d_ok = np.zeros((3, 2))
    d_ok[0] = [0.3, 0.7]
    with pytest.raises(FitError, match="did not converge"):
        fit_occupancy_matching(mdp, tabular_features(3, 2), d_ok, max_iter=1)


def _never_taken_action():
    """The expert never takes action 1 in state 0; one-hot features reach that only in the limit."""
    mdp = random_mdp(3, 2, seed=0, discount=0.9)
    pi = np.full((3, 2), 0.5)
    pi[0] = [1.0, 0.0]
    return mdp, state_action_visitation(mdp, pi)


def test_no_finite_minimiser_is_not_reported_as_converged():
    mdp, d_e = _never_taken_action()
    fit = fit_occupancy_matching(mdp, tabular_features(3, 2), d_e, raise_on_failure=False)
    assert not fit.converged
    assert fit.status == "no finite minimiser"
    # The KL does go to zero, but only as theta runs off: no finite theta attains it.
    assert 0 < fit.value < 1e-6 and fit.theta[0] - fit.theta[1] > 10
    with pytest.raises(FitError, match=r"no finite minimiser.*keeps decreasing"):
        fit_occupancy_matching(mdp, tabular_features(3, 2), d_e)


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_saturation_below_hessian_resolution_is_caught(seed):
    """L-BFGS can run pi(1|0) down to ~1e-12, where the curvature is below round-off."""
    mdp = random_mdp(3, 2, seed=0, discount=0.9)
    d = np.random.default_rng(seed).dirichlet(np.ones(6)).reshape(3, 2)
    d[0, 1] = 0.0
    fit = fit_occupancy_matching(mdp, tabular_features(3, 2), d / d.sum(), raise_on_failure=False)
    assert fit.status == "no finite minimiser" and not fit.converged
    assert policy_probs(tabular_features(3, 2), fit.theta)[0, 1] < 1e-8


def test_zeros_the_features_cannot_single_out_still_converge():
    """Same zero in d_E, but a class that must give both actions the same logit in state 0."""
    mdp, d_e = _never_taken_action()
    features = tabular_features(3, 2)
    features[0, 1] = features[0, 0]  # state 0's actions share one logit: pi(.|0) = (1/2, 1/2)
    fit = fit_occupancy_matching(mdp, features, d_e)
    assert fit.converged and fit.status == "converged"
    np.testing.assert_allclose(policy_probs(features, fit.theta)[0], 0.5)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"tol": -1.0}, "tol must be a finite number > 0"),
        ({"step_tol": 0.0}, "step_tol must be a finite number > 0"),
        ({"max_iter": -1}, "max_iter must be an integer >= 0"),
    ],
)
def test_options_validated(option, message):
    mdp, d_e = _never_taken_action()
    with pytest.raises(ValueError, match=message):
        fit_occupancy_matching(mdp, tabular_features(3, 2), d_e, **option)


def test_lbfgsb_stopping_early_is_finished_by_newton(monkeypatch):
    """L-BFGS-B may stop on its relative-reduction test with the gradient just above tol (it
    did on 5 finite-data fits of `sbil reproduce` at seed 0, and on the limits at seeds 2 and
    3); the fit must still converge rather than report L-BFGS-B's message as a failure."""
    import scipy.optimize

    import sbil.tabular.oracle as oracle

    real = scipy.optimize.minimize
    messages = []

    def loose(*args, **kwargs):
        kwargs["options"] = {**kwargs["options"], "ftol": 1e-4}  # stops far from the optimum
        res = real(*args, **kwargs)
        messages.append(str(res.message))
        return res

    monkeypatch.setattr(oracle.scipy.optimize, "minimize", loose)
    mdp = _mdp({}, False)
    features = random_features(6, 3, 4, seed=2)
    theta_e = np.array([0.5, -1.0, 1.5, 0.3])
    d_e = state_action_visitation(mdp, policy_probs(features, theta_e))
    fit = fit_occupancy_matching(mdp, features, d_e)
    assert "RELATIVE REDUCTION" in messages[0]  # L-BFGS-B did stop early
    assert fit.converged and fit.status == "converged" and fit.grad_norm <= 1e-8
    np.testing.assert_allclose(fit.theta, theta_e, atol=1e-6)


def test_lbfgsb_iteration_limit_is_still_a_failure():
    mdp = _mdp({}, False)
    features = random_features(6, 3, 4, seed=2)
    d_e = state_action_visitation(mdp, policy_probs(features, np.array([0.5, -1.0, 1.5, 0.3])))
    fit = fit_occupancy_matching(mdp, features, d_e, max_iter=1, raise_on_failure=False)
    assert not fit.converged and fit.status == "max_iter reached"

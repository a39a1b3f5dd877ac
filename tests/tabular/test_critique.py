"""Tests for sbil.tabular.critique: the note's constructions, against independent formulas."""

import math

import numpy as np
import pytest

from sbil.tabular import critique
from sbil.tabular.estimators import fit_bc, fit_edm
from sbil.tabular.policies import (
    edm_state_log_prob,
    example3_features,
    logits,
    policy_probs,
    random_features,
    state_shift_features,
)
from sbil.tabular.visitation import state_action_visitation, state_visitation


@pytest.mark.parametrize("convention", ["reference", "note"])
def test_state_log_prob_gradient_matches_finite_differences(convention):
    features = random_features(5, 3, 4, seed=3)
    theta = np.random.default_rng(4).normal(size=4)
    eps = 1e-6
    for state in (0, 3):
        grad = critique.state_log_prob_gradient(features, theta, state, convention=convention)
        fd = np.empty(4)
        for i in range(4):
            e = np.zeros(4)
            e[i] = eps
            up = edm_state_log_prob(logits(features, theta + e), convention=convention)[state]
            down = edm_state_log_prob(logits(features, theta - e), convention=convention)[state]
            fd[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, fd, atol=1e-7)


@pytest.mark.parametrize("theta,k", [(0.3, 0.5), (-1.2, 2.0), (2.0, -0.7), (0.0, 0.25)])
def test_example3_closed_form_matches_core(theta, k):
    ours = critique.state_log_prob_gradient(example3_features(k), np.array([theta]), 1)[0]
    assert ours == pytest.approx(float(critique.example3_note_gradient(theta, k)), abs=1e-12)


def test_example3_closed_form_by_hand_at_theorem1():
    # log p(s2) = lse(0, k theta) - log(e^lse(0, theta) + e^lse(0, k theta)), differentiated by
    # hand: k sigma(k theta) - (e^theta + k e^(k theta)) / (2 + e^theta + e^(k theta)).
    theta, k = 1.0, 0.5
    by_hand = k / (1 + math.exp(-k * theta)) - (math.exp(theta) + k * math.exp(k * theta)) / (
        2 + math.exp(theta) + math.exp(k * theta)
    )
    assert float(critique.example3_note_gradient(theta, k)) == pytest.approx(by_hand, abs=1e-15)
    assert float(critique.example3_note_gradient(0.0, k)) == pytest.approx((k - 1) / 4, abs=1e-15)


def test_self_loop_from_start_visits_only_state_zero():
    mdp = critique.self_loop_from_start(4, 3)
    d = state_visitation(mdp, np.full((4, 3), 1 / 3))
    np.testing.assert_allclose(d, [1.0, 0.0, 0.0, 0.0], atol=1e-15)


def test_theorem1_mdp_stationary_visitation_by_hand():
    # Action 1 (prob sigma(theta) in s1, sigma(theta/2) in s2) switches states: the chain leaves
    # s1 w.p. a = sigma(1) and s2 w.p. b = sigma(1/2), so d(s1) = b / (a + b).
    mdp = critique.theorem1_mdp()
    pi = policy_probs(example3_features(0.5), np.array([1.0]))
    a, b = 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-0.5))
    assert state_visitation(mdp, pi)[0] == pytest.approx(b / (a + b), abs=1e-14)


def test_per_state_features_give_state_specific_logits():
    features = critique.per_state_features()
    f = logits(features, np.array([1.0, 0.5]))
    np.testing.assert_allclose(f, [[0.0, 1.0], [0.0, 0.5]])
    # That expert equals Theorem 1's (Example 3's class at theta = 1, k = 1/2).
    np.testing.assert_allclose(
        policy_probs(features, np.array([1.0, 0.5])),
        policy_probs(example3_features(0.5), np.array([1.0])),
        atol=1e-15,
    )


def test_per_state_parameters_do_not_make_edm_consistent_a_shift_does():
    """EDM's joint softmax matches one moment per parameter: in the per-state class that is
    E_p[Phi_k] = d_E(s_k, a=1), so both states' p(s, 1) equal d_E's, which on Theorem 1's MDP
    are equal (d(s1) pi(1|s1) = d(s2) pi(1|s2) for the switching action), hence theta1 = theta2."""
    mdp = critique.theorem1_mdp()
    features = critique.per_state_features()
    theta_e = np.array([1.0, 0.5])
    d_e = state_action_visitation(mdp, policy_probs(features, theta_e))
    assert d_e[0, 1] == pytest.approx(d_e[1, 1], abs=1e-15)
    edm = np.asarray(fit_edm(features, d_e).theta)
    assert edm[0] == pytest.approx(edm[1], abs=1e-9)  # equal, so not the expert's (1, 0.5)
    # Moment matching by hand: e^t / (2 + 2 e^t) = d_E(s1, 1)  =>  t = log(2m / (1 - 2m)).
    m = d_e[0, 1]
    assert edm[0] == pytest.approx(math.log(2 * m / (1 - 2 * m)), abs=1e-9)
    np.testing.assert_allclose(fit_bc(features, d_e).theta, theta_e, atol=1e-9)
    shifted = state_shift_features(features)
    fit = fit_edm(shifted, d_e)
    np.testing.assert_allclose(
        policy_probs(shifted, fit.theta), policy_probs(features, theta_e), atol=1e-12
    )

"""Tests for sbil.experiments.landing: EDM's limit against a direct root-find."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import expit

from sbil.experiments import landing


def _moment_root(q: float, k: float, theta_e: float = 1.0) -> float:
    """EDM's limit by moment matching, written independently of sbil's objectives.

    The joint softmax over (s1, a0), (s1, a1), (s2, a0), (s2, a1) has logits
    (0, theta, 0, k theta) and features (0, 1, 0, k); its mean feature must equal the
    expert's, q * sigmoid(theta_E) + (1 - q) * k * sigmoid(k theta_E).
    """
    target = q * expit(theta_e) + (1 - q) * k * expit(k * theta_e)

    def gap(t: float) -> float:
        return (np.exp(t) + k * np.exp(k * t)) / (2 + np.exp(t) + np.exp(k * t)) - target

    return brentq(gap, -40.0, 40.0, xtol=1e-14)


def test_landing_matches_direct_root_find():
    d1 = [0.05, 0.3, 0.6, 0.9]
    ks = [-1.5, -1.0, 0.0, 0.5, 1.0, 2.0]
    r = landing.edm_landing(d1, ks)
    assert r.theta.shape == (len(ks), len(d1))
    assert r.converged.all()
    for j, k in enumerate(ks):
        for i, q in enumerate(d1):
            assert r.theta[j, i] == pytest.approx(_moment_root(q, k), abs=1e-8)


def test_consistent_set_is_edm_state_model_at_expert():
    for k in (-2.0, -0.5, 0.0, 0.5, 1.5):
        q = landing.consistent_state_probability(k)
        closed = (1 + np.e) / (2 + np.e + np.exp(k))  # p_{theta_E}(s1) with theta_E = 1
        assert q == pytest.approx(closed, abs=1e-12)
        assert q == pytest.approx(landing.edm_state_model_s1(k), abs=1e-12)
        assert landing.edm_landing([q], [k]).theta[0, 0] == pytest.approx(1.0, abs=1e-8)
    # k = 1: the state term's gradient vanishes at the expert for every d_E.
    assert np.isnan(landing.consistent_state_probability(1.0))
    r = landing.edm_landing([0.1, 0.5, 0.9], [1.0])
    np.testing.assert_allclose(r.theta, 1.0, atol=1e-8)


def test_policy_flips_where_the_root_is_negative():
    d1 = [0.1, 0.2, 0.5]
    r = landing.edm_landing(d1, [-1.0, 0.5])
    expected = np.array([[_moment_root(q, k) < 0 for q in d1] for k in (-1.0, 0.5)])
    np.testing.assert_array_equal(r.flips, expected)
    assert r.flips[0, 0]  # k = -1, d_E(s1) = 0.1: EDM prefers the other action
    assert not r.flips[:, 2].any()


def test_landing_mdp_realises_d1_and_rejects_bad_q():
    d = landing.expert_visitation(0.3, 0.5)
    assert d.sum(axis=1)[0] == pytest.approx(0.3, abs=1e-12)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        landing.landing_mdp(1.0)
    with pytest.raises(ValueError, match="non-empty"):
        landing.edm_landing([], [0.5])


@settings(max_examples=30, deadline=None)
@given(q=st.floats(0.02, 0.98), k=st.floats(-2.5, 2.5))
def test_landing_matches_root_find_anywhere(q, k):
    assert landing.edm_landing([q], [k]).theta[0, 0] == pytest.approx(_moment_root(q, k), abs=1e-7)

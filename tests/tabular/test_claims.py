"""Tests for sbil.tabular.claims: the note's numbers, asserted exactly."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.tabular import claims
from sbil.tabular.policies import edm_state_log_prob, example3_features, logits, random_features


def test_example1_tv_is_one_minus_one_over_s_everywhere():
    c = claims.example1(n_states=(2, 3, 7, 20), n_actions=(1, 2, 5))
    assert c.agrees
    assert c.details["max_abs_deviation"] <= 1e-12
    assert c.note_value == pytest.approx(1 - 1 / 20, abs=1e-15)
    assert c.sbil_value == pytest.approx(1 - 1 / 20, abs=1e-12)
    assert c.details["n_cases"] == 4 * 3 * 2  # |S| x |A| x conventions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_example2_policy_unchanged_p_uniform_d_pi_not_under_both_conventions(seed):
    c = claims.example2(seed=seed)
    assert c.agrees
    d = c.details
    assert d["policy_max_abs_diff"] <= 1e-12
    # shift_logits agrees with the class extended by a per-state shift (sbil's policy code).
    assert d["shift_logits_vs_extended_class_max_abs_diff"] <= 1e-12
    for convention in ("reference", "note"):
        assert d[f"{convention}_p_max_abs_dev_from_uniform"] <= 1e-12
        # Before the shift p_theta was not uniform, after it d_pi is far from p_theta.
        assert d[f"{convention}_tv_p_before_shift_vs_uniform"] > 1e-3
        assert d[f"{convention}_tv_p_vs_d_pi"] > 1e-3
    assert d["tv_d_pi_vs_uniform"] == pytest.approx(d["reference_tv_p_vs_d_pi"], abs=1e-12)


def test_example3_gradient_is_k_minus_one_over_four_on_a_grid():
    ks = np.linspace(-3.0, 4.0, 29)
    c = claims.example3(ks=ks)
    assert c.agrees
    grads = np.asarray(c.details["reference_gradient"])
    grid = np.asarray(c.details["k_grid"])
    np.testing.assert_allclose(grads, (grid - 1) / 4, rtol=0, atol=1e-12)
    assert np.all(grads[grid < 1] < 0)
    assert c.note_value == -0.125
    assert c.sbil_value == pytest.approx(-0.125, abs=1e-12)


@pytest.mark.parametrize("convention", ["reference", "note"])
def test_state_log_prob_gradient_matches_finite_differences(convention):
    features = random_features(5, 3, 4, seed=3)
    theta = np.random.default_rng(4).normal(size=4)
    eps = 1e-6
    for state in (0, 3):
        grad = claims.state_log_prob_gradient(features, theta, state, convention=convention)
        fd = np.empty(4)
        for i in range(4):
            e = np.zeros(4)
            e[i] = eps
            up = edm_state_log_prob(logits(features, theta + e), convention=convention)[state]
            down = edm_state_log_prob(logits(features, theta - e), convention=convention)[state]
            fd[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, fd, atol=1e-7)


@pytest.mark.parametrize("theta,k", [(0.3, 0.5), (-1.2, 2.0), (2.0, -0.7)])
def test_example3_closed_form_matches_core(theta, k):
    ours = claims.state_log_prob_gradient(example3_features(k), np.array([theta]), 1)[0]
    assert ours == pytest.approx(float(claims.example3_note_gradient(theta, k)), abs=1e-12)


def test_theorem1_gradient_and_limits():
    c = claims.theorem1()
    assert c.agrees
    assert round(c.sbil_value, 4) == -0.2452
    assert c.note_value == -0.2452
    d = c.details
    assert d["closed_form_gradient"] == pytest.approx(c.sbil_value, abs=1e-12)
    assert abs(d["edm_gradient_at_expert"]) > 1e-3
    assert abs(d["bc_gradient_at_expert"]) < 1e-12
    assert abs(d["bc_limit_theta"] - 1.0) < 1e-8
    assert abs(d["edm_limit_theta"] - 1.0) > 1e-3


def test_claim_serialises_to_plain_json():
    c = claims.theorem1()
    data = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert set(data) >= {"id", "note_value", "sbil_value", "agrees", "tolerance"}
    assert data["id"] == "theorem1"
    assert isinstance(data["agrees"], bool)


def test_all_note_claims_ids_in_order():
    ids = [c.id for c in claims.all_note_claims()]
    assert ids == ["example1", "example2", "example3", "theorem1"]


def test_total_variation():
    assert claims.total_variation(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == 0.5
    assert claims.total_variation(np.eye(3), np.eye(3), axis=(0, 1)) == 0.0


@settings(max_examples=25, deadline=None)
@given(
    n_states=st.integers(2, 12),
    n_actions=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_example2_holds_for_random_mdps_and_logits(n_states, n_actions, seed):
    c = claims.example2(n_states, n_actions, n_params=3, seed=seed)
    d = c.details
    assert d["policy_max_abs_diff"] <= 1e-12
    assert d["reference_p_max_abs_dev_from_uniform"] <= 1e-12
    assert d["note_p_max_abs_dev_from_uniform"] <= 1e-12

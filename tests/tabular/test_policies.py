"""Tests for sbil.tabular.policies."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.tabular.policies import (
    edm_state_log_prob,
    example3_features,
    logits,
    policy_probs,
    random_features,
    shift_logits,
    state_shift_features,
    tabular_features,
)


def test_example3_logits():
    f = logits(example3_features(0.5), np.array([2.0]))
    np.testing.assert_allclose(f, [[0.0, 2.0], [0.0, 1.0]])
    pi = policy_probs(example3_features(0.5), np.array([2.0]))
    np.testing.assert_allclose(pi[0, 1], 1 / (1 + np.exp(-2.0)))


def test_tabular_features_identity():
    theta = np.arange(6.0)
    np.testing.assert_array_equal(logits(tabular_features(2, 3), theta), theta.reshape(2, 3))


def test_batched_broadcasting():
    features = random_features(4, 3, 2, seed=0)
    thetas = np.random.default_rng(1).normal(size=(5, 2))
    batched = logits(features, thetas)
    assert batched.shape == (5, 4, 3)
    for b in range(5):
        np.testing.assert_allclose(batched[b], logits(features, thetas[b]))
    stacked = np.stack([features] * 5)
    np.testing.assert_allclose(logits(stacked, thetas), batched)


def test_random_features_seeded():
    np.testing.assert_array_equal(
        random_features(3, 2, 4, seed=7), random_features(3, 2, 4, seed=7)
    )
    assert not np.array_equal(random_features(3, 2, 4, seed=7), random_features(3, 2, 4, seed=8))


@pytest.mark.parametrize("seed", [None, 0.5, "1"])
def test_random_features_need_an_explicit_seed(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative int or a np\.random\.Gen"):
        random_features(3, 2, 4, seed=seed)


def test_counts_are_whole_numbers():
    with pytest.raises(ValueError, match=r"n_params must be an integer >= 1; got 2\.5"):
        random_features(3, 2, 2.5, seed=0)
    with pytest.raises(ValueError, match=r"n_states must be an integer >= 1; got 1\.5"):
        tabular_features(1.5, 2)
    assert tabular_features(2.0, 3).shape == (2, 3, 6)


def test_ragged_input_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"theta must be a rectangular array of numbers.*ragged"):
        logits(example3_features(1.0), [[1.0], [1.0, 2.0]])


def test_shapes_checked():
    with pytest.raises(ValueError, match="last dimension K = 1"):
        logits(example3_features(1.0), np.zeros(2))
    with pytest.raises(ValueError, match="g must be"):
        shift_logits(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="convention must be"):
        edm_state_log_prob(np.zeros((3, 2)), convention="paper")


def test_shift_leaves_policy_and_moves_state_model():
    """Example 2: g(s) = -lse_a f(s) keeps pi and makes the reference p uniform."""
    f = logits(random_features(5, 3, 2, seed=0), np.array([1.0, -2.0]))
    g = -np.log(np.exp(f).sum(-1))
    shifted = shift_logits(f, g)
    np.testing.assert_allclose(
        np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True),
        np.exp(f) / np.exp(f).sum(-1, keepdims=True),
    )
    np.testing.assert_allclose(np.exp(edm_state_log_prob(shifted)), 0.2)
    np.testing.assert_allclose(np.exp(edm_state_log_prob(shifted, convention="note")), 0.2)


def test_state_shift_features():
    features = example3_features(0.5)
    ext = state_shift_features(features)
    assert ext.shape == (2, 2, 3)
    f = logits(ext, np.array([1.0, 3.0, -1.0]))
    np.testing.assert_allclose(f, [[3.0, 4.0], [-1.0, -0.5]])


def test_edm_state_log_prob_by_hand():
    f = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])  # lse = log 2, log 4
    np.testing.assert_allclose(np.exp(edm_state_log_prob(f)), [1 / 3, 2 / 3])
    np.testing.assert_allclose(np.exp(edm_state_log_prob(f, convention="note")), [2 / 3, 1 / 3])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 10**6), st.floats(0.1, 30.0))
def test_probabilities_normalised(n_s, n_a, seed, scale):
    f = scale * np.random.default_rng(seed).normal(size=(n_s, n_a))
    pi = policy_probs(f[..., None], np.ones(1))
    assert np.all(pi >= 0)
    np.testing.assert_allclose(pi.sum(-1), 1.0)
    for convention in ("reference", "note"):
        np.testing.assert_allclose(np.exp(edm_state_log_prob(f, convention=convention)).sum(), 1.0)

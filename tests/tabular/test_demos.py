"""Tests for sbil.tabular.demos: sampling, empirical and sampled visitation."""

import numpy as np
import pytest

from sbil.tabular.checks import validate_visitation
from sbil.tabular.demos import (
    Demonstrations,
    empirical_visitation,
    sample_demonstrations,
    sample_visitation,
)
from sbil.tabular.mdp import random_mdp
from sbil.tabular.visitation import state_action_visitation


def test_demonstrations_validation():
    with pytest.raises(ValueError, match=r"2-D array \[N trajectories, T steps\]"):
        Demonstrations(np.zeros(3, int), np.zeros(3, int))
    with pytest.raises(ValueError, match="same shape"):
        Demonstrations(np.zeros((2, 3), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"actions\[1, 0\] = -1 is negative"):
        Demonstrations(np.zeros((2, 2), int), np.array([[0, 0], [-1, 0]]))
    with pytest.raises(ValueError, match="integer indices"):
        Demonstrations(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"states must be a rectangular \[N, T\] array; got rag"):
        Demonstrations([[0, 1], [0]], [[0, 0], [0]])
    demos = Demonstrations(np.zeros((2, 3), np.int32), np.ones((2, 3), np.int32))
    assert demos.states.dtype == np.int64 and (demos.n_trajectories, demos.length) == (2, 3)
    with pytest.raises(ValueError):
        demos.states[0, 0] = 1


def test_empirical_visitation_by_hand_and_errors():
    demos = Demonstrations(np.array([[0, 1], [1, 1]]), np.array([[1, 0], [0, 0]]))
    np.testing.assert_allclose(empirical_visitation(demos, 2, 2), [[0, 0.25], [0.75, 0]])
    discounted = empirical_visitation(demos, 2, 2, discount=0.5)
    # weights 2/3, 1/3 per trajectory
    np.testing.assert_allclose(discounted, [[0, 1 / 3], [2 / 3, 0]])
    with pytest.raises(
        ValueError, match=r"actions\[0, 0\] = 1 is out of range for A = 1; pass the A of the MDP"
    ):
        empirical_visitation(demos, 2, 1)
    with pytest.raises(ValueError, match=r"states\[0, 1\] = 1 is out of range for S = 1; pass"):
        empirical_visitation(demos, 1, 2)
    with pytest.raises(ValueError, match=r"n_states must be an integer >= 1; got 2\.5"):
        empirical_visitation(demos, 2.5, 2)
    with pytest.raises(ValueError, match=r"discount must be a number in \[0, 1\); got 'x'"):
        empirical_visitation(demos, 2, 2, discount="x")


def _mdp_and_policy(sparse: bool):
    mdp = random_mdp(6, 3, seed=0, successors=3, horizon=5, sparse=sparse)
    pi = np.random.default_rng(1).dirichlet(np.ones(3), size=6)
    return mdp, pi


def test_sampling_deterministic_and_sparse_equals_dense():
    dense = sample_demonstrations(*_mdp_and_policy(False), n_trajectories=50, seed=3)
    again = sample_demonstrations(*_mdp_and_policy(False), n_trajectories=50, seed=3)
    sparse = sample_demonstrations(*_mdp_and_policy(True), n_trajectories=50, seed=3)
    other = sample_demonstrations(*_mdp_and_policy(False), n_trajectories=50, seed=4)
    assert dense.states.shape == (50, 5)
    np.testing.assert_array_equal(dense.states, again.states)
    np.testing.assert_array_equal(dense.actions, again.actions)
    np.testing.assert_array_equal(dense.states, sparse.states)
    np.testing.assert_array_equal(dense.actions, sparse.actions)
    assert not np.array_equal(dense.actions, other.actions)


def test_sampled_trajectories_follow_the_model():
    mdp, pi = _mdp_and_policy(False)
    demos = sample_demonstrations(mdp, pi, n_trajectories=40_000, seed=0)
    # Only possible transitions and actions appear.
    s, a, s_next = demos.states[:, :-1], demos.actions[:, :-1], demos.states[:, 1:]
    assert np.all(mdp.transitions[s, a, s_next] > 0)
    assert np.all(pi[demos.states, demos.actions] > 0)
    d_hat = empirical_visitation(demos, 6, 3)
    d = state_action_visitation(mdp, pi)
    # Standard error <= sqrt(d / (N T)) < 0.0012 here (steps within a trajectory are
    # correlated, but H = 5 keeps the inflation small); 0.008 is a > 5 sigma bound.
    assert np.abs(d_hat - d).max() < 0.008


def test_sampling_arguments_checked():
    mdp = random_mdp(3, 2, seed=0)
    pi = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="pass length"):
        sample_demonstrations(mdp, pi, n_trajectories=2, seed=0)
    with pytest.raises(ValueError, match="n_trajectories must be an integer >= 1"):
        sample_demonstrations(mdp, pi, n_trajectories=0, seed=0, length=3)
    # No silent truncation of a fractional count, no unseeded randomness.
    with pytest.raises(ValueError, match=r"n_trajectories must be an integer >= 1; got 2\.5"):
        sample_demonstrations(mdp, pi, n_trajectories=2.5, seed=0, length=3)
    with pytest.raises(ValueError, match=r"length must be an integer >= 1; got 3\.5"):
        sample_demonstrations(mdp, pi, n_trajectories=2, seed=0, length=3.5)
    with pytest.raises(ValueError, match=r"seed must be a non-negative int or a np\.random\.Gen"):
        sample_demonstrations(mdp, pi, n_trajectories=2, seed=None, length=3)
    assert sample_demonstrations(mdp, pi, n_trajectories=2.0, seed=0, length=3).states.shape == (
        2,
        3,
    )
    with pytest.raises(ValueError, match=r"pi\[0, :\] sums to"):
        sample_demonstrations(mdp, np.ones((3, 2)), n_trajectories=1, seed=0, length=3)


def test_sample_visitation():
    rng = np.random.default_rng(0)
    d = rng.dirichlet(np.ones(8), size=(4, 2)).reshape(4, 2, 4, 2)
    d_hat = sample_visitation(d, 1000, seed=1)
    assert d_hat.shape == d.shape
    np.testing.assert_allclose(d_hat.sum(axis=(-2, -1)), 1.0)
    np.testing.assert_allclose(d_hat * 1000, np.round(d_hat * 1000))  # counts / n
    np.testing.assert_array_equal(d_hat, sample_visitation(d, 1000, seed=1))
    big = sample_visitation(d[0, 0], 10**7, seed=2)
    np.testing.assert_allclose(big, d[0, 0], atol=1e-3)
    with pytest.raises(ValueError, match=r"problem \(0, 0\), not 1.*divide by its sum"):
        sample_visitation(d * 2, 10, seed=0)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        sample_visitation(d, 0, seed=0)
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1; got 2\.5"):
        sample_visitation(d, 2.5, seed=0)
    with pytest.raises(ValueError, match=r"negative entry at index \(0, 0, 0, 0\); .* >= 0"):
        sample_visitation(-d, 10, seed=0)
    with pytest.raises(ValueError, match=r"NaN or inf entry at index \(0, 0, 0, 1\)"):
        sample_visitation(np.where(np.arange(2) == 1, np.nan, d), 10, seed=0)
    with pytest.raises(ValueError, match="seed must be"):
        sample_visitation(d, 10, seed=None)


def test_validate_visitation_is_the_one_check_for_data():
    """sample_visitation and the estimators share validate_visitation's messages."""
    from sbil.tabular.estimators import fit_bc
    from sbil.tabular.policies import tabular_features

    d = np.array([[0.5, 0.25], [0.25, 0.1]])
    for call in (
        lambda: validate_visitation(d),
        lambda: sample_visitation(d, 3, seed=0),
        lambda: fit_bc(tabular_features(2, 2), d),
    ):
        with pytest.raises(ValueError, match=r"d sums to 1.1, not 1 \(tolerance 1e-08\); cast"):
            call()
    with pytest.raises(ValueError, match=r"rectangular array of numbers.*ragged"):
        validate_visitation([[0.5, 0.5], [0.0]])
    np.testing.assert_array_equal(validate_visitation(d / d.sum()), d / d.sum())


def test_demonstration_visitation_infinite_and_finite():
    from sbil.tabular.demos import demonstration_visitation

    mdp = random_mdp(5, 2, seed=0, discount=0.8)
    pi = np.full((5, 2), 0.5)
    exact = demonstration_visitation(mdp, pi)
    np.testing.assert_array_equal(exact, state_action_visitation(mdp, pi))
    finite = demonstration_visitation(mdp, pi, n_samples=200, seed=3)
    np.testing.assert_array_equal(finite, sample_visitation(exact, 200, seed=3))
    with pytest.raises(ValueError, match="explicit seed"):
        demonstration_visitation(mdp, pi, n_samples=200)

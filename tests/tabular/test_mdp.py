"""Tests for sbil.tabular.mdp: validation, constructors, toy-text conversion."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from sbil.tabular.mdp import (
    TabularMDP,
    from_toy_text,
    random_mdp,
    self_loop_mdp,
    two_state_mdp,
)


def _chain() -> np.ndarray:
    p = np.zeros((2, 1, 2))
    p[0, 0, 1] = 1.0
    p[1, 0, 1] = 1.0
    return p


def test_import_tabular_does_not_import_torch():
    # Every module of the package, so a new one cannot slip torch in.
    code = (
        "import importlib, pkgutil, sys; import sbil.tabular as t; "
        "names = [m.name for m in pkgutil.iter_modules(t.__path__)]; "
        "assert 'mdp' in names and 'visitation' in names, names; "
        "[importlib.import_module('sbil.tabular.' + n) for n in names]; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'gymnasium' not in sys.modules, 'gymnasium imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_properties_and_readonly():
    mdp = TabularMDP(_chain(), np.array([1.0, 0.0]), discount=0.5)
    assert (mdp.n_states, mdp.n_actions) == (2, 1)
    assert mdp.rho0 is mdp.initial
    with pytest.raises(ValueError):
        mdp.transitions[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        mdp.discount = 0.1  # frozen


def test_copies_input():
    p = _chain()
    mdp = TabularMDP(p, np.array([1.0, 0.0]))
    p[0, 0, 1] = 0.3
    assert mdp.transitions[0, 0, 1] == 1.0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[:, :, :1], r"\(S, A, S\)"),
        (
            lambda p: np.where(np.arange(2)[None, None, :] == 1, np.nan, p),
            r"NaN or inf .*P\[0, 0, 1\]",
        ),
        (lambda p: p * np.array([1.0, -1.0])[None, None, :], r"negative entry at P\[0, 0, 1\]"),
        (lambda p: p * 0.5, r"P\[0, 0, :\] sums to 0.5.*normalise"),
        (lambda p: np.zeros((0, 1, 0)), "no states"),
        (lambda p: np.zeros((2, 0, 2)), "no actions"),
    ],
)
def test_transition_validation(mutate, message):
    with pytest.raises(ValueError, match=message):
        TabularMDP(mutate(_chain()), np.array([1.0, 0.0]))


def test_row_sum_tolerance():
    p = _chain()
    p[1, 0, 1] += 1e-10  # within 1e-8
    TabularMDP(p, np.array([1.0, 0.0]))
    p[1, 0, 1] += 1e-6
    with pytest.raises(ValueError, match=r"P\[1, 0, :\]"):
        TabularMDP(p, np.array([1.0, 0.0]))


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        (np.array([1.0]), r"shape \(S,\) = \(2,\)"),
        (np.array([1.5, -0.5]), r"negative entry at initial\[1\]"),
        (np.array([0.5, 0.4]), "sums to 0.9"),
        (np.array([np.inf, 0.0]), r"NaN or inf entry at initial\[0\]"),
    ],
)
def test_initial_validation(initial, message):
    with pytest.raises(ValueError, match=message):
        TabularMDP(_chain(), initial)


@pytest.mark.parametrize(
    ("transitions", "message"),
    [
        ("abc", "transitions must be a rectangular array of numbers P.*non-numbers"),
        ([[[1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]], "transitions must be .*ragged nested"),
    ],
)
def test_non_arrays_get_a_clear_error(transitions, message):
    with pytest.raises(ValueError, match=message):
        TabularMDP(transitions, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"initial must be a rectangular array.*ragged"):
        TabularMDP(_chain(), [1.0, [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"policy pi must be a rectangular array.*ragged"):
        TabularMDP(_chain(), np.array([1.0, 0.0])).policy_transition([[1.0], [0.5, 0.5]])


def test_negative_entries_say_how_to_fix():
    p = _chain()
    p[0, 0] = [-0.5, 1.5]
    with pytest.raises(ValueError, match=r"P\[0, 0, 0\]; probabilities must be >= 0, so set"):
        TabularMDP(p, np.array([1.0, 0.0]))
    mdp = TabularMDP(_chain(), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"pi\[1, 0\] = -1; probabilities must be >= 0, so set"):
        mdp.policy_transition(np.array([[1.0], [-1.0]]))


@pytest.mark.parametrize("horizon", [np.nan, 2.5, True, "3", np.inf])
def test_horizon_must_be_a_whole_number(horizon):
    with pytest.raises(ValueError, match=r"horizon must be an integer >= 1; got .*; pass"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), horizon=horizon)


def test_whole_float_horizon_is_accepted():
    assert TabularMDP(_chain(), np.array([1.0, 0.0]), horizon=3.0).horizon == 3


def test_visitation_kind():
    assert TabularMDP(_chain(), np.array([1.0, 0.0]), horizon=3).visitation_kind == (
        "finite_horizon"
    )
    assert TabularMDP(_chain(), np.array([1.0, 0.0]), discount=0.5).visitation_kind == (
        "discounted"
    )
    assert TabularMDP(_chain(), np.array([1.0, 0.0])).visitation_kind == "stationary"


def test_visitation_kind_validation():
    with pytest.raises(ValueError, match="at most one of horizon and discount"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), horizon=3, discount=0.9)
    with pytest.raises(ValueError, match=r"discount must be a number in \[0, 1\); got 1\.0; for"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), discount=1.0)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), horizon=0)
    with pytest.raises(ValueError, match=r"discount must be a number in \[0, 1\); got 'x'"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), discount="x")


def test_sparse_validation_names_index():
    good = sp.csr_array(np.array([[0.0, 1.0], [0.0, 1.0]]))
    bad = sp.csr_array(np.array([[0.0, 1.0], [0.3, 0.3]]))
    with pytest.raises(ValueError, match=r"P\[1, 1, :\] sums to 0.6"):
        TabularMDP((good, bad), np.array([1.0, 0.0]))
    neg = sp.csr_array(np.array([[2.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"negative entry at P\[0, 0, 1\]"):
        TabularMDP((neg,), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="same"):
        TabularMDP((good, sp.csr_array(np.eye(3))), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="tuple of A sparse"):
        TabularMDP(good, np.array([1.0, 0.0]))


def test_random_mdp_deterministic_and_valid():
    a = random_mdp(7, 3, seed=4)
    b = random_mdp(7, 3, seed=4)
    c = random_mdp(7, 3, seed=5)
    np.testing.assert_array_equal(a.transitions, b.transitions)
    assert not np.array_equal(a.transitions, c.transitions)
    np.testing.assert_allclose(a.transitions.sum(-1), 1.0)
    np.testing.assert_allclose(a.initial, 1 / 7)


@pytest.mark.parametrize("n_states", [6, 50_000])
def test_random_mdp_successors(n_states):
    mdp = random_mdp(n_states, 2, seed=1, successors=5, sparse=True)
    assert mdp.is_sparse and mdp.n_actions == 2
    for p_a in mdp.transitions:
        counts = np.diff(p_a.indptr)
        assert np.all(counts == 5)  # five distinct successors per row
        np.testing.assert_allclose(p_a.sum(axis=1), 1.0)


def test_random_mdp_sparse_matches_dense():
    dense = random_mdp(9, 3, seed=2, successors=4)
    sparse = random_mdp(9, 3, seed=2, successors=4, sparse=True)
    np.testing.assert_array_equal(sparse.dense_transitions(), dense.transitions)
    assert np.all((dense.transitions > 0).sum(-1) == 4)


def test_random_mdp_argument_errors():
    with pytest.raises(ValueError, match="successors must lie"):
        random_mdp(3, 2, seed=0, successors=4)
    with pytest.raises(ValueError, match="sparse=True"):
        random_mdp(10**6, 4, seed=0, successors=5)
    # No silent truncation: 2.5 states is an error, not a 2-state MDP.
    with pytest.raises(ValueError, match=r"n_states must be an integer >= 1; got 2\.5"):
        random_mdp(2.5, 2, seed=0)
    with pytest.raises(ValueError, match=r"n_actions must be an integer >= 1; got 0"):
        random_mdp(2, 0, seed=0)
    with pytest.raises(ValueError, match=r"successors must be an integer >= 1; got 1\.5"):
        random_mdp(3, 2, seed=0, successors=1.5)
    with pytest.raises(ValueError, match=r"n_states must be an integer >= 1; got 2\.5"):
        self_loop_mdp(2.5, 2)
    assert random_mdp(3.0, 2, seed=0).n_states == 3


@pytest.mark.parametrize("seed", [None, 1.5, -1, "0"])
def test_random_mdp_needs_an_explicit_seed(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative int or a np\.random\.Gen"):
        random_mdp(3, 2, seed=seed)


def test_random_mdp_generator_seed_equals_int_seed():
    np.testing.assert_array_equal(
        random_mdp(4, 2, seed=np.random.default_rng(7)).transitions,
        random_mdp(4, 2, seed=7).transitions,
    )


def test_self_loop_and_two_state():
    mdp = self_loop_mdp(4, 3, discount=0.9)
    assert np.all(mdp.transitions[np.arange(4), :, np.arange(4)] == 1.0)
    np.testing.assert_array_equal(mdp.initial, [1, 0, 0, 0])
    two = two_state_mdp()
    np.testing.assert_array_equal(two.transitions, np.full((2, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        two_state_mdp(transitions=np.full((2, 2), 0.5))


def test_policy_transition_dense_and_sparse():
    mdp = random_mdp(5, 3, seed=3, successors=2)
    sparse = random_mdp(5, 3, seed=3, successors=2, sparse=True)
    pi = np.random.default_rng(0).dirichlet(np.ones(3), size=5)
    expected = np.einsum("sa,sat->st", pi, mdp.transitions)
    np.testing.assert_allclose(mdp.policy_transition(pi), expected)
    got = sparse.policy_transition(pi)
    assert sp.issparse(got)
    np.testing.assert_allclose(got.toarray(), expected)
    with pytest.raises(ValueError, match=r"pi\[0, :\] sums to"):
        mdp.policy_transition(np.ones((5, 3)))


def test_frozen_lake_conversion():
    mdp = from_toy_text("FrozenLake-v1", discount=0.95)
    assert (mdp.n_states, mdp.n_actions) == (16, 4)
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0)
    # Holes (5, 7, 11, 12) and the goal (15) are absorbing; the start is state 0.
    for s in (5, 7, 11, 12, 15):
        assert np.all(mdp.transitions[s, :, s] == 1.0)
    np.testing.assert_array_equal(mdp.initial, np.eye(16)[0])
    # Slippery: from 0, action 2 (right) goes to 1, 4 or stays, each 1/3.
    np.testing.assert_allclose(mdp.transitions[0, 2, [0, 1, 4]], [1 / 3, 1 / 3, 1 / 3])
    # Deterministic variant: duplicate next states merged into one probability-one entry.
    det = from_toy_text("FrozenLake-v1", is_slippery=False)
    assert det.transitions[0, 0, 0] == 1.0
    assert det.rewards[14, 2] == 1.0


@pytest.mark.parametrize(("env_id", "shape"), [("CliffWalking-v1", (48, 4)), ("Taxi-v4", (500, 6))])
def test_other_toy_text(env_id, shape):
    mdp = from_toy_text(env_id, discount=0.9)
    assert (mdp.n_states, mdp.n_actions) == shape
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0)


def test_toy_text_rejects_other_envs():
    with pytest.raises(ValueError, match="toy-text"):
        from_toy_text("CartPole-v1")


def test_toy_text_unknown_option_is_a_value_error():
    with pytest.raises(ValueError, match=r"cannot make 'FrozenLake-v1' with options \{'foo': 1\}"):
        from_toy_text("FrozenLake-v1", foo=1)


def test_rewards_validation():
    with pytest.raises(ValueError, match=r"rewards must have shape \(S, A\) = \(2, 1\)"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), rewards=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="rewards contain NaN or inf"):
        TabularMDP(_chain(), np.array([1.0, 0.0]), rewards=np.array([[np.nan], [0.0]]))


def test_toy_text_accepts_env_instance():
    import gymnasium

    env = gymnasium.make("FrozenLake-v1", map_name="8x8")
    mdp = from_toy_text(env, horizon=50)
    assert (mdp.n_states, mdp.n_actions, mdp.horizon) == (64, 4, 50)
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0)


def test_sparse_read_only_input_not_copied_but_writable_input_is():
    p_a = sp.csr_array(np.array([[0.0, 1.0], [0.0, 1.0]]))
    mdp = TabularMDP((p_a,), np.array([1.0, 0.0]))
    p_a.data[:] = 0.5  # the caller's array; the MDP holds its own copy
    assert mdp.transitions[0].toarray()[0, 1] == 1.0
    assert not mdp.transitions[0].data.flags.writeable

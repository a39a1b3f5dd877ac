"""Tests for sbil.tabular.visitation: hand-computed cases, properties, sparse == dense."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.tabular.mdp import TabularMDP, random_mdp, self_loop_mdp, two_state_mdp
from sbil.tabular.visitation import (
    VisitationError,
    discounted_visitation,
    finite_horizon_visitation,
    state_action_visitation,
    state_distributions,
    state_visitation,
    stationary_distribution,
)


def _chain(**kind) -> TabularMDP:
    """0 -> 1 with probability 1, 1 -> 1; start in 0."""
    p = np.zeros((2, 1, 2))
    p[0, 0, 1] = p[1, 0, 1] = 1.0
    return TabularMDP(p, np.array([1.0, 0.0]), **kind)


def test_chain_by_hand():
    pi = np.ones((2, 1))
    # Horizon 4: states 0, 1, 1, 1.
    np.testing.assert_allclose(state_visitation(_chain(horizon=4), pi), [0.25, 0.75])
    # Discounted: (1 - g) * (1, g + g^2 + ...) = (1 - g, g).
    np.testing.assert_allclose(state_visitation(_chain(discount=0.8), pi), [0.2, 0.8])
    # Stationary: everything ends in 1 (0 is transient).
    np.testing.assert_allclose(state_visitation(_chain(), pi), [0.0, 1.0])


def test_two_state_switching_by_hand():
    """Action 0 stays, action 1 switches; pi(switch) = q in both states."""
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 0, 1] = p[0, 1, 1] = p[1, 1, 0] = 1.0
    q = 0.3
    pi = np.array([[1 - q, q], [1 - q, q]])
    gamma = 0.5
    mdp = two_state_mdp(transitions=p, initial=(1.0, 0.0), discount=gamma)
    # d0 = (1-g) sum g^t Pr(s_t = 0), Pr(s_t=0) = (1 + (1-2q)^t) / 2.
    d0 = 0.5 * (1 + (1 - gamma) / (1 - gamma * (1 - 2 * q)))
    np.testing.assert_allclose(state_visitation(mdp, pi), [d0, 1 - d0])
    np.testing.assert_allclose(state_visitation(two_state_mdp(transitions=p), pi), [0.5, 0.5])
    d_sa = state_action_visitation(mdp, pi)
    np.testing.assert_allclose(d_sa, np.array([d0, 1 - d0])[:, None] * pi)


def test_self_loop_stationary_not_unique():
    mdp = self_loop_mdp(3, 2)
    with pytest.raises(VisitationError, match=r"not unique.*3 closed classes.*discount or a"):
        state_visitation(mdp, np.full((3, 2), 0.5))
    np.testing.assert_allclose(
        state_visitation(self_loop_mdp(3, 2, horizon=7), np.full((3, 2), 0.5)), [1, 0, 0]
    )


def test_periodic_chain_stationary():
    p = np.zeros((3, 1, 3))
    p[0, 0, 1] = p[1, 0, 2] = p[2, 0, 0] = 1.0
    mdp = TabularMDP(p, np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(stationary_distribution(mdp, np.ones((3, 1))), 1 / 3)


def test_state_distributions_by_hand_and_their_average():
    mdp = _chain()  # state 0 moves to 1, 1 stays
    steps = list(state_distributions(mdp, np.ones((2, 1)), horizon=3))
    np.testing.assert_array_equal(steps, [[1, 0], [0, 1], [0, 1]])
    np.testing.assert_allclose(
        finite_horizon_visitation(mdp, np.ones((2, 1)), horizon=3), np.mean(steps, axis=0)
    )


def test_explicit_visitation_kind_arguments_checked():
    mdp = _chain()
    pi = np.ones((2, 1))
    with pytest.raises(ValueError, match="needs a horizon; pass horizon="):
        finite_horizon_visitation(mdp, pi)
    with pytest.raises(ValueError, match=r"horizon must be an integer >= 1; got nan; pass"):
        finite_horizon_visitation(mdp, pi, horizon=np.nan)
    with pytest.raises(ValueError, match=r"horizon must be an integer >= 1; got 2\.5"):
        state_distributions(mdp, pi, horizon=2.5)
    with pytest.raises(ValueError, match="needs a discount"):
        discounted_visitation(mdp, pi)
    for bad in (np.nan, "0.5", 1.0):
        with pytest.raises(ValueError, match=r"discount must be a number in \[0, 1\); got"):
            discounted_visitation(mdp, pi, discount=bad)
    with pytest.raises(ValueError, match="method must be"):
        discounted_visitation(mdp, pi, discount=0.5, method="magic")
    with pytest.raises(ValueError, match=r"shape \(S, A\) = \(2, 1\)"):
        state_visitation(mdp, np.ones((2, 2)) / 2)


@pytest.mark.parametrize("kind", [{"horizon": 9}, {"discount": 0.95}, {}])
def test_sparse_equals_dense(kind):
    dense = random_mdp(30, 3, seed=11, successors=3, **kind)
    sparse = random_mdp(30, 3, seed=11, successors=3, sparse=True, **kind)
    pi = np.random.default_rng(2).dirichlet(np.ones(3), size=30)
    np.testing.assert_allclose(
        state_visitation(sparse, pi), state_visitation(dense, pi), rtol=1e-10, atol=1e-13
    )


def test_iterative_equals_direct(monkeypatch):
    import sbil.tabular.visitation as visitation

    def no_gmres(*args, **kwargs):
        raise AssertionError("a well-mixing chain should not need GMRES")

    monkeypatch.setattr(visitation, "gmres", no_gmres)
    mdp = random_mdp(200, 4, seed=3, successors=5, sparse=True, discount=0.99)
    pi = np.full((200, 4), 0.25)
    direct = discounted_visitation(mdp, pi, method="direct")
    iterative = discounted_visitation(mdp, pi, method="iterative")
    np.testing.assert_allclose(iterative, direct, rtol=1e-9, atol=1e-14)


_VISITATION_IN_A_FRESH_PROCESS = """
import numpy as np
from sbil.tabular.mdp import random_mdp
from sbil.tabular.visitation import state_visitation
for kwargs in ({"discount": 0.9}, {"horizon": 7}, {}, {"discount": 0.9, "sparse": True,
               "successors": 4}):
    mdp = random_mdp(40, 3, seed=0, **kwargs)
    pi = np.random.default_rng(1).dirichlet(np.ones(3), size=40)
    print(" ".join(x.hex() for x in state_visitation(mdp, pi)))
"""


def test_same_numbers_in_another_process_with_other_thread_settings():
    """Bit for bit: no dependence on process state (hash seed) or BLAS/OpenMP thread counts."""
    import os
    import subprocess
    import sys

    def run(threads: str, hash_seed: str) -> str:
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "PYTHONHASHSEED": hash_seed,
        }
        return subprocess.run(
            [sys.executable, "-c", _VISITATION_IN_A_FRESH_PROCESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    one = run("1", "0")
    assert one.count("\n") == 4
    assert run("2", "12345") == one


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(1, 4),
    st.integers(0, 2**31),
    st.sampled_from(["horizon", "discount", "stationary"]),
    st.floats(0.05, 5.0),
)
def test_visitation_properties(n_s, n_a, seed, kind, concentration):
    """Sums to one, is nonnegative, satisfies its defining equation."""
    rng = np.random.default_rng(seed)
    options = {"horizon": {"horizon": 6}, "discount": {"discount": 0.9}, "stationary": {}}[kind]
    mdp = random_mdp(
        n_s,
        n_a,
        seed=rng,
        concentration=concentration,
        initial=rng.dirichlet(np.ones(n_s)),
        **options,
    )
    pi = rng.dirichlet(np.ones(n_a), size=n_s)
    d = state_visitation(mdp, pi)
    assert np.all(d >= 0)
    np.testing.assert_allclose(d.sum(), 1.0)
    p_pi = mdp.policy_transition(pi)
    if kind == "discount":
        np.testing.assert_allclose(d, 0.1 * mdp.initial + 0.9 * p_pi.T @ d, atol=1e-12)
    elif kind == "stationary":
        np.testing.assert_allclose(d, p_pi.T @ d, atol=1e-10)
    else:
        rho, total = mdp.initial.copy(), np.zeros(n_s)
        for _ in range(6):
            total += rho
            rho = p_pi.T @ rho
        np.testing.assert_allclose(d, total / 6, atol=1e-12)
    d_sa = state_action_visitation(mdp, pi)
    np.testing.assert_allclose(d_sa.sum(-1), d, atol=1e-15)


def test_policy_transition_transposed_matches():
    from sbil.tabular.visitation import policy_transition_transposed

    sparse = random_mdp(40, 3, seed=5, successors=4, sparse=True)
    dense = random_mdp(40, 3, seed=5, successors=4)
    pi = np.random.default_rng(0).dirichlet(np.ones(3), size=40)
    expected = dense.policy_transition(pi).T
    np.testing.assert_allclose(policy_transition_transposed(dense, pi), expected, atol=1e-15)
    np.testing.assert_allclose(
        policy_transition_transposed(sparse, pi).toarray(), expected, atol=1e-15
    )
    np.testing.assert_allclose(sparse.policy_transition(pi).toarray().T, expected, atol=1e-15)


def test_gmres_reports_nonconvergence():
    from sbil.tabular.visitation import gmres

    matrix = np.diag(np.linspace(1e-6, 1.0, 200))
    x, residual = gmres(
        lambda v: matrix @ v, np.ones(200), x0=np.zeros(200), rtol=1e-12, restart=3, max_cycles=2
    )
    assert residual > 1e-12
    x, residual = gmres(lambda v: matrix[:20, :20] @ v, np.ones(20), x0=np.zeros(20), rtol=1e-10)
    assert residual <= 1e-10
    np.testing.assert_allclose(matrix[:20, :20] @ x, 1.0, atol=1e-8)


def test_iterative_on_slowly_mixing_chain_hands_over_to_gmres(monkeypatch):
    """Mostly self-loops: the fixed-point iteration contracts at ~gamma, so GMRES finishes."""
    import scipy.sparse as sp

    import sbil.tabular.visitation as visitation
    from sbil.tabular.mdp import TabularMDP

    calls = []
    real_gmres = visitation.gmres

    def counting_gmres(*args, **kwargs):
        calls.append(1)
        return real_gmres(*args, **kwargs)

    monkeypatch.setattr(visitation, "gmres", counting_gmres)

    n = 300
    rng = np.random.default_rng(0)
    mixing = random_mdp(n, 2, seed=1, successors=3, sparse=True)
    transitions = tuple(
        sp.csr_array(0.999 * sp.eye_array(n) + 0.001 * p_a) for p_a in mixing.transitions
    )
    mdp = TabularMDP(transitions, rng.dirichlet(np.ones(n)), discount=0.999)
    pi = rng.dirichlet(np.ones(2), size=n)
    iterative = discounted_visitation(mdp, pi, method="iterative")
    direct = discounted_visitation(mdp, pi, method="direct")
    np.testing.assert_allclose(iterative, direct, rtol=1e-8, atol=1e-14)
    assert calls == [1]

"""Tests for sbil.experiments.deep_critique: hand cases, diagnostics, determinism, a tiny run."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from sbil.deep.networks import StackedMLP
from sbil.experiments import deep_critique as dc
from sbil.experiments.deep_critique import mixing as dc_mixing
from sbil.experiments.deep_critique import networks as dc_networks


def hand_network(weights, biases) -> StackedMLP:
    """A K = 1 StackedMLP with the given per-layer ``[in, out]`` weights and ``[out]`` biases."""
    sizes = [np.shape(weights[0])[0], *(np.shape(w)[1] for w in weights)]
    net = StackedMLP(1, sizes[0], sizes[1:-1], sizes[-1])
    with torch.no_grad():
        for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
            net.weights[layer].copy_(torch.tensor(w, dtype=torch.float32)[None])
            net.biases[layer].copy_(torch.tensor(b, dtype=torch.float32).reshape(1, 1, -1))
    return net.eval().requires_grad_(False)


def laplace_network(a: float) -> StackedMLP:
    """``f(x) = -a (elu(x) + elu(-x))`` in 1-D: a Laplace-like density for a > 0, improper
    (growing like ``exp(|a| |x|)``) for a < 0."""
    return hand_network([[[1.0, -1.0]], [[-a], [-a]]], [[0.0, 0.0], [0.0]])


# --- Example 2: the shift ------------------------------------------------------------------------


def test_shift_leaves_the_policy_unchanged_and_reverses_or_erases_the_ranking():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(500, 4))
    policy = dc_networks._softmax(logits)
    lse = dc_networks._logsumexp(logits)
    assert lse == pytest.approx(np.log(np.exp(logits).sum(1)))
    flat_policy, flat_log_p = dc.shifted_model(logits, dc.SHIFTS["g = -lse f"])
    assert np.abs(flat_policy - policy).max() < 1e-12  # far below the claim's 1e-6
    assert np.ptp(flat_log_p) < 1e-12  # every state equally likely: the ranking is gone
    rev_policy, rev_log_p = dc.shifted_model(logits, dc.SHIFTS["g = -2 lse f"])
    assert np.abs(rev_policy - policy).max() < 1e-12
    assert sps.spearmanr(lse, rev_log_p)[0] == pytest.approx(-1.0)


# --- distances between policies -------------------------------------------------------------------


def test_policy_tv_hand_case():
    # Zero weights: the expert is uniform; a learner with last bias (b, 0) has p = sigmoid(b).
    zeros = [np.zeros((2, 3)), np.zeros((3, 2))]
    expert = hand_network(zeros, [np.zeros(3), np.zeros(2)])
    learner = hand_network(zeros, [np.zeros(3), np.array([1.5, 0.0])])
    states = np.random.default_rng(1).normal(size=(10, 2))
    expected = abs(1 / (1 + math.exp(-1.5)) - 0.5)
    assert dc.policy_tv(learner, expert, states) == pytest.approx([expected])
    assert dc.policy_tv(expert, expert, states) == pytest.approx([0.0])


def test_t_interval_hand_case():
    ci = dc.t_interval(np.array([1.0, 2.0, 3.0]))
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(dc.t_interval(np.array([4.0])).low)


def test_rho_summary_at_the_minimiser_of_rho_plus_rho_squared():
    rho = np.concatenate([np.zeros(900), np.full(100, -0.5)])
    summary = dc.rho_summary("CartPole-v1", "edm", rho)
    assert summary.final == pytest.approx(-0.5)
    assert summary.factor == pytest.approx(0.0)  # 1 + 2 rho: the state term's gradient factor
    assert summary.first == pytest.approx(0.0)


# --- mixing diagnostics and growth ----------------------------------------------------------------


def test_split_rhat_is_one_for_agreeing_chains_and_large_for_disagreeing_ones():
    rng = np.random.default_rng(2)
    assert dc.split_rhat(rng.normal(size=(200, 8))) < 1.01
    shifted = rng.normal(size=(200, 8)) + np.arange(8)  # chains stuck at different places
    assert dc.split_rhat(shifted) > 1.5
    trend = rng.normal(size=(200, 8)) + np.linspace(0, 5, 200)[:, None]  # not stationary
    assert dc.split_rhat(trend) > 1.2
    wide = rng.normal(size=(200, 8)) * np.array([1, 1, 1, 1, 5, 5, 5, 5])  # tails differ
    assert dc.split_rhat(wide) > 1.05
    nan = rng.normal(size=(20, 4))
    nan[3, 1] = np.inf
    assert dc.split_rhat(nan) == math.inf
    with pytest.raises(ValueError, match="n_draws >= 4"):
        dc.split_rhat(np.zeros((3, 2)))


def test_asymptotic_slopes_find_the_rays_along_which_the_density_does_not_decay():
    proper = dc.asymptotic_slopes(laplace_network(2.0), 50, seed=0)
    assert proper == pytest.approx(np.full(50, -2.0), abs=1e-6)  # lse f = -2|x| + 2
    improper = dc.asymptotic_slopes(laplace_network(-0.5), 50, seed=0)
    assert improper == pytest.approx(np.full(50, 0.5), abs=1e-6)
    # f = (elu(x), 0): lse grows like x to the right and is flat (not decaying) to the left.
    one_sided = hand_network([[[1.0]], [[1.0, 0.0]]], [[0.0], [0.0, 0.0]])
    slopes = dc.asymptotic_slopes(one_sided, 40, seed=0)
    assert set(np.round(slopes, 6)) == {0.0, 1.0}
    assert dc_mixing._share_growing(slopes) == 1.0  # flat counts as not decaying: improper


def test_chains_mix_on_a_proper_density_and_are_flagged_on_an_improper_one():
    data = np.random.default_rng(3).normal(size=(100, 1)).astype(np.float32)
    kwargs = dict(
        n_chains=256, n_steps=4_000, record_every=200, scale=np.ones(1), n_permutations=100
    )
    net = laplace_network(4.0)
    proper = dc.run_chains(net, data, temperature=1.0, seed=0, **kwargs)
    assert proper.rhat < dc.RHAT_THRESHOLD and proper.start_mmd.p_value >= dc.ALPHA
    assert proper.mixed and proper.n_nonfinite == 0
    # The variance of exp(f) by quadrature.
    grid = np.linspace(-20, 20, 40_001)
    density = np.exp(dc_networks._forward(net, grid[None, :, None])[0, :, 0].astype(np.float64))
    variance = (density * grid**2).sum() / density.sum()
    assert proper.at(4_000).var() == pytest.approx(variance, rel=0.2)
    cold = dc.run_chains(net, data, temperature=0.005, seed=0, **kwargs)
    assert cold.at(4_000).var() < 0.05 * variance  # concentrated at the mode, as p^200 is
    runaway = dc.run_chains(laplace_network(-0.5), data, temperature=1.0, seed=0, **kwargs)
    assert not runaway.mixed
    assert np.median(np.abs(runaway.at(4_000))) > 3 * np.median(np.abs(runaway.at(200)))


def test_chains_are_deterministic_given_the_seed():
    data = np.zeros((10, 1), np.float32)
    kwargs = dict(n_chains=8, n_steps=200, record_every=100, scale=np.ones(1), n_permutations=10)
    a = dc.run_chains(laplace_network(1.0), data, temperature=1.0, seed=5, **kwargs)
    b = dc.run_chains(laplace_network(1.0), data, temperature=1.0, seed=5, **kwargs)
    assert np.array_equal(a.states, b.states)
    assert a.from_data.sum() == 4


# --- rollouts -------------------------------------------------------------------------------------


def test_softmax_rollouts_record_every_step_and_repeat_with_the_seed():
    # Zero weights act uniformly at random; a large bias on action 1 pushes right every time.
    zeros = [np.zeros((4, 3)), np.zeros((3, 2))]
    nets = dc.stacked_network(
        [
            hand_network(zeros, [np.zeros(3), np.zeros(2)]).state_dict(),
            hand_network(zeros, [np.zeros(3), np.array([0.0, 50.0])]).state_dict(),
        ]
    )
    a = dc.softmax_rollouts(nets, "CartPole-v1", 3, seed=4, record=True)
    b = dc.softmax_rollouts(nets, "CartPole-v1", 3, seed=4, record=True)
    assert np.array_equal(a.returns, b.returns)
    assert a.returns.shape == a.lengths.shape == (2, 3)
    assert np.array_equal(a.returns, a.lengths)  # CartPole pays 1 per step
    for k in range(2):
        assert len(a.observations[k]) == len(a.actions[k]) == a.lengths[k].sum()
    assert set(a.actions[1]) == {1}  # always right: the pole falls within a few dozen steps
    assert a.lengths[1].max() < 30
    assert set(a.actions[0]) == {0, 1}


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"updates": 0}, "updates must be a positive integer"),
        ({"chain_lengths": (150,), "record_every": 100}, "multiples of record_every"),
        ({"consistency_sizes": (100, 10**7)}, "exceeds pool_pairs"),
        ({"tasks": ("Pendulum-v1",)}, "not supported"),
        ({"tasks": ()}, "tasks is empty"),
        ({"expert_action_noise": 1.0}, "expert_action_noise must be in"),
        ({"expert_action_noise": "0.1"}, "expert_action_noise must be in"),
    ],
)
def test_bad_configuration_is_a_one_line_error(change, message):
    with pytest.raises(ValueError, match=message):
        dc.DeepCritiqueConfig(**change)


def test_presets():
    full = dc.DeepCritiqueConfig.preset(quick=False)
    assert full.updates == 10_000 and full.pool_pairs == 1_000_000
    assert full.consistency_sizes == (100, 1_000, 10_000, 100_000, 1_000_000)
    assert dc.DeepCritiqueConfig.preset(quick=True, seed=3).seed == 3
    with pytest.raises(ValueError, match="quick must be True or False"):
        dc.deep_claims(".", seed=0, quick="yes")


# --- a tiny end-to-end run ----------------------------------------------------------------------


TINY = dict(
    tasks=("CartPole-v1",),
    demo_episodes=1,
    updates=30,
    rollout_episodes=2,
    n_states=40,
    n_chains=16,
    chain_lengths=(20, 40),
    record_every=20,
    n_permutations=20,
    n_directions=50,
    n_shift_states=300,
    expert_bc_episodes=2,
    expert_bc_updates=100,
    pool_pairs=1_000,
    drift_updates=20,
    drift_seeds=2,
    drift_snapshots=2,
    sharp_drift_updates=10,
    return_checkpoints=2,
    consistency_sizes=(100, 1_000),
    consistency_seeds=2,
    consistency_updates=20,
    return_episodes=2,
    n_tv_states=200,
)


@pytest.mark.slow
def test_tiny_run_writes_every_file_and_every_claim(tmp_path):
    calls = []
    section = dc.run_deep_critique(
        dc.DeepCritiqueConfig(**TINY), tmp_path, lambda done, total: calls.append((done, total))
    )
    assert tuple(c.id for c in section.claims) == dc.DEEP_CLAIM_IDS
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(dc.DEEP_FILES)
    assert set(section.files) == set(dc.DEEP_FILES)
    assert calls[-1][0] == calls[-1][1] == 4 + 9
    claims = {c.id: c for c in section.claims}
    # Example 2 holds on any network, trained a little or a lot.
    shift = claims["deep_shift_invariance"]
    assert shift.agrees and shift.value < 1e-6
    # Started at the expert's weights, both learners begin at TV 0 from the expert.
    drift = claims["deep_expert_drift"].details
    assert np.all(np.asarray(drift["tv_edm"])[:, 0] == 0)
    assert np.all(np.asarray(drift["tv_bc"])[:, 0] == 0)
    assert list(drift["updates"]) == [0, 10, 20]
    for claim in section.claims:
        assert claim.text and claim.check and not claim.check.endswith(".")
        for figure in claim.figures:
            assert (tmp_path / figure).stat().st_size > 0
    markdown = "\n".join(b for b in section.blocks if isinstance(b, str))
    for figure in ("deep_ptheta.png", "deep_shift.png", "deep_drift.png", "deep_rho.png"):
        assert f"({figure})" in markdown or any(
            f"({figure})" in b for b in section.blocks if isinstance(b, str)
        )

"""Learners: the losses by hand, batched seeds == single runs, determinism, decoupled EDM,
bad input, and BC's learning test on CartPole."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import (
    LearnerConfig,
    LearnerInputError,
    cross_entropy,
    edm_loss,
    minibatch_indices,
    seed_generator,
    state_log_density_gap,
    train,
)
from sbil.deep.networks import StackedMLP


def _data(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, d)).astype(np.float32)
    actions = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
    return obs, actions


def _lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


# --- losses against hand computation ------------------------------------------------------------

LOGITS = np.array([[[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]])  # K=1, B=3, A=2
ACTIONS = np.array([[1, 0, 1]])
SAMPLE_LOGITS = np.array([[[3.0, 0.0], [-2.0, 1.0]]])  # K=1, B'=2


def test_cross_entropy_by_hand():
    expected = np.mean(
        [
            -(1.0 - np.log(1 + np.e)),  # -log softmax([0, 1])[1]
            -(2.0 - np.log(np.exp(2) + np.exp(-1))),
            np.log(2.0),
        ]
    )
    got = cross_entropy(torch.tensor(LOGITS), torch.tensor(ACTIONS))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_rho_and_edm_loss_by_hand():
    rho = _lse(SAMPLE_LOGITS).mean() - _lse(LOGITS).mean()
    got = state_log_density_gap(torch.tensor(LOGITS), torch.tensor(SAMPLE_LOGITS))
    assert got.item() == pytest.approx(rho, rel=1e-12)
    ce = cross_entropy(torch.tensor(LOGITS), torch.tensor(ACTIONS)).item()
    terms = edm_loss(
        torch.tensor(LOGITS),
        torch.tensor(ACTIONS),
        torch.tensor(LOGITS),
        torch.tensor(SAMPLE_LOGITS),
    )
    assert terms.loss.item() == pytest.approx(ce + rho + rho**2, rel=1e-12)
    assert (terms.cross_entropy.item(), terms.rho.item()) == pytest.approx((ce, rho), rel=1e-12)


def test_losses_are_per_learner():
    logits = torch.tensor(np.concatenate([LOGITS, LOGITS[:, ::-1]]))
    actions = torch.tensor(np.concatenate([ACTIONS, ACTIONS]))
    per_learner = cross_entropy(logits, actions)
    assert per_learner[0] == cross_entropy(logits[:1], actions[:1])[0]
    assert per_learner[1] == cross_entropy(logits[1:], actions[1:])[0]


def test_first_loss_equals_hand_computation_with_l2_and_entropy():
    obs, actions = _data(n=32)  # batch = all data, so the first minibatch is a permutation
    config = LearnerConfig(algo="bc", n_updates=1, l2_coef=0.01, entropy_coef=0.1)
    result = train(from_arrays(obs, actions), config, seeds=[4], n_actions=2)
    net = StackedMLP.initialized([seed_generator(4, 0)], in_dim=4, hidden_sizes=(64, 64), out_dim=2)
    with torch.no_grad():
        logits = net(torch.from_numpy(obs)[None])[0].double().numpy()
    log_pi = logits - _lse(logits)[:, None]
    ce = -log_pi[np.arange(32), actions].mean()
    entropy = -(np.exp(log_pi) * log_pi).sum(1).mean()
    l2 = sum(float(w.detach().double().square().sum()) for w in net.weights)
    assert result.cross_entropy[0, 0] == pytest.approx(ce, rel=1e-5)
    assert result.loss[0, 0] == pytest.approx(ce + 0.01 * l2 - 0.1 * entropy, rel=1e-5)


# --- batched seeds, determinism ---------------------------------------------------------------


@pytest.mark.parametrize("algo", ["bc", "edm", "edm-decoupled"])
def test_batched_learner_follows_its_single_run(algo):
    obs, actions = _data(n=2000)
    config = LearnerConfig(algo=algo, n_updates=100, sgld_buffer_size=500)
    seeds = [3, 7, 11]
    batched = train(from_arrays(obs, actions), config, seeds=seeds, n_actions=2)
    for i in (0, 2):
        single = train(from_arrays(obs, actions), config, seeds=[seeds[i]], n_actions=2)
        np.testing.assert_allclose(batched.loss[i], single.loss[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(batched.rho[i], single.rho[0], rtol=0, atol=1e-5)
        for name, value in single.policy_state.items():
            np.testing.assert_allclose(batched.policy_state[name][i], value[0], atol=1e-5)
    assert not np.allclose(batched.loss[0], batched.loss[1])  # seeds differ


def test_same_seed_twice_is_identical():
    obs, actions = _data()
    config = LearnerConfig(algo="edm", n_updates=30, sgld_buffer_size=200)
    a = train(from_arrays(obs, actions), config, seeds=[5], n_actions=2)
    b = train(from_arrays(obs, actions), config, seeds=[5], n_actions=2)
    assert np.array_equal(a.loss, b.loss)
    assert all(torch.equal(a.policy_state[k], b.policy_state[k]) for k in a.policy_state)
    np.testing.assert_array_equal(a.learner(0)(obs), b.learner(0)(obs))


# --- decoupled EDM --------------------------------------------------------------------------------


def test_decoupled_edm_policy_follows_bc_exactly_and_edm_does_not():
    obs, actions = _data()
    base = LearnerConfig(algo="bc", n_updates=200, sgld_buffer_size=200)
    bc = train(from_arrays(obs, actions), base, seeds=[1], n_actions=2)
    decoupled = train(
        from_arrays(obs, actions),
        dataclasses.replace(base, algo="edm-decoupled"),
        seeds=[1],
        n_actions=2,
    )
    edm = train(
        from_arrays(obs, actions), dataclasses.replace(base, algo="edm"), seeds=[1], n_actions=2
    )
    np.testing.assert_allclose(decoupled.cross_entropy, bc.cross_entropy, rtol=0, atol=1e-6)
    for name, value in bc.policy_state.items():
        np.testing.assert_allclose(decoupled.policy_state[name], value, rtol=0, atol=1e-6)
        assert not np.allclose(edm.policy_state[name], value, atol=1e-3)
    assert decoupled.energy_state is not None and edm.energy_state is None
    assert np.isfinite(decoupled.rho).all() and np.isnan(bc.rho).all()


def test_decoupled_energy_term_sends_no_gradient_to_the_policy():
    from sbil.deep.learners import cross_entropy as ce_loss

    gens = [torch.Generator().manual_seed(0)]
    policy = StackedMLP.initialized(gens, in_dim=4, hidden_sizes=(8,), out_dim=2)
    energy = StackedMLP.initialized(gens, in_dim=4, hidden_sizes=(8,), out_dim=2)
    x = torch.randn(1, 6, 4)
    a = torch.randint(0, 2, (1, 6))
    samples = torch.randn(1, 6, 4)
    loss = edm_loss(policy(x), a, energy(x), energy(samples)).loss
    grads = torch.autograd.grad(loss.sum(), list(policy.parameters()))
    bc_grads = torch.autograd.grad(ce_loss(policy(x), a).sum(), list(policy.parameters()))
    for g, h in zip(grads, bc_grads, strict=True):
        torch.testing.assert_close(g, h, rtol=0, atol=0)


# --- options and helpers ----------------------------------------------------------------------


def test_normalisation_makes_the_learner_scale_invariant():
    obs, actions = _data()
    config = LearnerConfig(
        algo="edm", n_updates=50, sgld_buffer_size=200, normalize_observations=True
    )
    plain = train(from_arrays(obs, actions), config, seeds=[0], n_actions=2)
    scaled = train(from_arrays(obs * 100 + 7, actions), config, seeds=[0], n_actions=2)
    np.testing.assert_allclose(plain.loss, scaled.loss, atol=1e-3)
    np.testing.assert_allclose(scaled.obs_mean[0], obs.mean(0) * 100 + 7, rtol=1e-4)
    np.testing.assert_array_equal(plain.learner(0)(obs), scaled.learner(0)(obs * 100 + 7))


def test_minibatches_are_distinct_indices():
    for n in (40, 100_000):
        idx = minibatch_indices(torch.Generator().manual_seed(0), n, 32)
        assert len(set(idx.tolist())) == 32 and idx.max() < n


def test_small_data_caps_the_batch_at_the_data_size():
    # 10 pairs and batch 32: every update's minibatch is all 10 pairs, so the first update's
    # cross-entropy is the initial network's mean over the whole data set.
    obs, actions = _data(n=10)
    result = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=3), seeds=[0], n_actions=2
    )
    net = StackedMLP.initialized([seed_generator(0, 0)], in_dim=4, hidden_sizes=(64, 64), out_dim=2)
    with torch.no_grad():
        logits = net(torch.from_numpy(obs)[None])[0].double().numpy()
    ce = -(logits - _lse(logits)[:, None])[np.arange(10), actions].mean()
    assert result.cross_entropy[0, 0] == pytest.approx(ce, rel=1e-5)
    assert result.n_pairs == (10,)


# --- bad input ------------------------------------------------------------------------------------


def test_train_takes_validated_demonstrations():
    obs, actions = _data(n=20)
    config = LearnerConfig(algo="bc", n_updates=1)
    with pytest.raises(LearnerInputError, match="must be a Demonstrations"):
        train(obs, config, seeds=[0], n_actions=2)
    with pytest.raises(LearnerInputError, match="one Demonstrations per seed"):
        train([from_arrays(obs, actions)], config, seeds=[0, 1], n_actions=2)
    with pytest.raises(LearnerInputError, match="number of actions is unknown"):
        train(from_arrays(obs, actions), config, seeds=[0])
    with pytest.raises(LearnerInputError, match="ambiguous"):
        train(from_arrays(obs, actions, n_actions=3), config, seeds=[0], n_actions=2)
    with pytest.raises(LearnerInputError, match=r"outside 0\.\.1"):
        train(from_arrays(obs, actions + 1), config, seeds=[0], n_actions=2)


def test_bad_seeds_device_and_config():
    obs, actions = _data(n=20)
    config = LearnerConfig(algo="bc", n_updates=1)
    with pytest.raises(LearnerInputError, match="at least one seed"):
        train(from_arrays(obs, actions), config, seeds=[], n_actions=2)
    with pytest.raises(LearnerInputError, match=r"integers in 0..4294967295"):
        train(from_arrays(obs, actions), config, seeds=[-1], n_actions=2)
    with pytest.raises(LearnerInputError, match="sequence of integers"):
        train(from_arrays(obs, actions), config, seeds=3, n_actions=2)
    with pytest.raises(LearnerInputError, match=r"distinct .* got \[0\] more than once"):
        train(from_arrays(obs, actions), config, seeds=[0, 1, 0], n_actions=2)
    with pytest.raises(LearnerInputError, match="Unknown device"):
        train(from_arrays(obs, actions), config, seeds=[0], n_actions=2, device="tpu-9")
    if not torch.cuda.is_available():
        with pytest.raises(LearnerInputError, match="CUDA is not available"):
            train(from_arrays(obs, actions), config, seeds=[0], n_actions=2, device="cuda")
    with pytest.raises(LearnerInputError, match="algo must be one of"):
        LearnerConfig(algo="gail")
    with pytest.raises(LearnerInputError, match="batch_size must be a positive integer"):
        LearnerConfig(batch_size=0)
    with pytest.raises(LearnerInputError, match="sgld_reinit_prob"):
        LearnerConfig(sgld_reinit_prob=1.5)
    with pytest.raises(LearnerInputError, match="Unknown learner config keys"):
        LearnerConfig.from_dict({"algo": "bc", "lr": 1})


def test_learner_rejects_bad_observations():
    obs, actions = _data(n=20)
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    ).learner(0)
    assert learner(obs).shape == (20,) and learner(obs).dtype == np.int64
    with pytest.raises(LearnerInputError, match=r"shape \[n, 4\]"):
        learner(obs[0])
    with pytest.raises(LearnerInputError, match="NaN"):
        learner(np.full((1, 4), np.nan, np.float32))


def test_config_round_trips_and_reports_temperature():
    config = LearnerConfig()
    assert LearnerConfig.from_dict(config.to_dict()) == config
    assert (config.algo, config.hidden_sizes, config.batch_size, config.n_updates) == (
        "edm",
        (64, 64),
        32,
        10_000,
    )
    assert config.sgld_temperature == pytest.approx(0.005)


# --- learning test ------------------------------------------------------------------------------


@pytest.mark.slow
def test_bc_learns_cartpole_from_ten_expert_trajectories():
    from sbil.deep.evaluation import evaluate, run_episodes
    from sbil.deep.experts import get_expert

    _, _, trajectories = run_episodes(
        get_expert("CartPole-v1"), "CartPole-v1", 10, seed=1000, record=True
    )
    obs = np.concatenate([t.observations[:-1] for t in trajectories])
    actions = np.concatenate([t.actions for t in trajectories])
    result = train(
        from_arrays(obs, actions),
        LearnerConfig(algo="bc"),
        seeds=[0],
        n_actions=2,
        env_id="CartPole-v1",
    )
    # 50 evaluation episodes (not the protocol's 300) to keep the test short.
    evaluation = evaluate(result.learner(0), "CartPole-v1", n_episodes=50, seed=0)
    assert evaluation.mean >= 475, evaluation.returns


# --- fidelity to the reference code ---------------------------------------------------------------


def test_edm_updates_match_a_reference_style_implementation():
    """Five EDM updates written the way EDMStudent is (nn.Sequential, autograd.grad SGLD loop
    with retain_graph, separate forward passes, nn.CrossEntropyLoss, Adam), fed sbil's random
    draws, give sbil's losses and weights."""
    from torch import nn

    from sbil.deep.sgld import draw_chain_randomness, uniform_buffer
    from sbil.deep.training import _MINIBATCH, _POLICY_INIT, _SGLD

    obs, actions = _data(n=400)
    config = LearnerConfig(algo="edm", n_updates=5, sgld_buffer_size=100)
    result = train(from_arrays(obs, actions), config, seeds=[2], n_actions=2)

    init = StackedMLP.initialized(
        [seed_generator(2, _POLICY_INIT)], in_dim=4, hidden_sizes=(64, 64), out_dim=2
    )
    net = nn.Sequential(nn.Linear(4, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, 2))
    with torch.no_grad():
        for linear, w, b in zip(net[::2], init.weights, init.biases, strict=True):
            linear.weight.copy_(w[0].T)
            linear.bias.copy_(b[0, 0])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    batch_gen, sgld_gen = seed_generator(2, _MINIBATCH), seed_generator(2, _SGLD)
    buffer = uniform_buffer(sgld_gen, 100, 4)
    losses = []
    for _ in range(5):
        rows = minibatch_indices(batch_gen, 400, 32)
        state = torch.from_numpy(obs)[rows]
        action = torch.from_numpy(actions)[rows]
        draws = draw_chain_randomness(
            sgld_gen, batch_size=32, dim=4, buffer_size=100, n_steps=20, reinit_prob=0.05
        )
        loss_pi = nn.CrossEntropyLoss()(net(state), action)
        mask = draws.reinit_mask.float()[:, None]
        x_t = (1 - mask) * buffer[draws.buffer_indices] + mask * draws.reinit
        x_t.requires_grad_(True)
        for t in range(20):
            grad = torch.autograd.grad(net(x_t).logsumexp(1).sum(), [x_t], retain_graph=True)[0]
            x_t.data += 0.01 * grad + 0.01 * draws.noise[t]
        samples = x_t.detach()
        buffer[draws.buffer_indices] = samples
        rho = net(samples).logsumexp(1).mean() - net(state).logsumexp(1).mean()
        loss = loss_pi + rho + rho**2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    np.testing.assert_allclose(result.loss[0], losses, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        result.policy_state["weight1"][0], net[2].weight.detach().T, rtol=0, atol=1e-5
    )

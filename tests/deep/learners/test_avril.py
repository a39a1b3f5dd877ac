"""Tests for sbil.deep.learners.avril: AVRIL's loss by hand and against the authors' code, its
updates under Adam, the rows it trains on (its training, shared with the other transition
learners, is tested in tests/deep/test_transition_learners.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from sbil.deep.learners import LearnerConfig, minibatch_indices, seed_generator, train
from sbil.deep.learners.avril import avril_loss
from sbil.deep.networks import StackedMLP
from sbil.deep.train_inputs import _ENERGY_INIT, _MINIBATCH, _POLICY_INIT

SMALL = {"hidden_sizes": (16, 16), "normalize_observations": False}


def _t(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.float64))


def _a(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=np.int64))


def test_avril_gaussian_likelihood_and_kl_by_hand():
    q = np.array([[[1.0, -0.5, 0.2], [0.3, 0.3, 2.0], [-1.0, 0.0, 1.0]]])
    q_next = np.array([[[0.1, 0.7, -0.3], [1.5, 0.0, 0.4], [9.0, 9.0, 9.0]]])
    actions, next_actions, done = [[0, 2, 1]], [[1, 0, 2]], [[0.0, 0.0, 1.0]]
    params = np.array([[[0.2, -0.3], [-0.4, 0.1], [1.0, 0.5]]])  # (mu, log sd)
    gamma = 0.8
    td = np.array([1.0 - gamma * 0.7, 2.0 - gamma * 1.5, 0.0])  # row 2 terminal: Q(s', a') = 0
    mu, sd = params[0, :, 0], np.exp(params[0, :, 1])
    td_nll = -scipy.stats.norm.logpdf(td, loc=mu, scale=sd).mean()
    kl = np.mean(np.log(1 / sd) + (sd**2 + mu**2) / 2 - 0.5)  # KL(N(mu, sd^2) || N(0, 1))
    ce = -scipy.special.log_softmax(q[0], axis=-1)[[0, 1, 2], [0, 2, 1]].mean()
    terms = avril_loss(
        _t(q),
        _a(actions),
        _t(q_next),
        _a(next_actions),
        _t(params),
        _t(done),
        discount=gamma,
        td_likelihood_weight=0.3,
    )
    assert terms.td_nll.item() == pytest.approx(td_nll, rel=1e-12)
    assert terms.kl.item() == pytest.approx(kl, rel=1e-12)
    assert terms.cross_entropy.item() == pytest.approx(ce, rel=1e-12)
    assert terms.loss.item() == pytest.approx(ce + kl + 0.3 * td_nll, rel=1e-12)


# --- AVRIL against the authors' code --------------------------------------------------------------
# A numpy port of ``avril.elbo`` in alg/scalable-birl/AVRIL/models.py (vanderschaarlab/
# mlforhealthlabpub), state_only=True: inputs [n, 2, d] hold (s, s'), targets [n, 2, 1] hold
# (a, a'); its td has no discount (gamma = 1) and no terminal masking (its data has none);
# jax.scipy.stats.norm.logpdf -> scipy.stats.norm.logpdf.


def _kl_gaussian(mean, var):
    return 0.5 * (-np.log(var) - 1.0 + var + mean**2)


def _mlp_numpy(net: StackedMLP, x: np.ndarray) -> np.ndarray:
    """hk.Sequential([hk.Linear, elu, ..., hk.Linear]) with ``net``'s weights, in float64."""
    for layer, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        x = x @ w[0].detach().double().numpy() + b[0, 0].detach().double().numpy()
        if layer < len(net.weights) - 1:
            x = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))  # jax.nn.elu
    return x


def _avril_elbo_code(q_network, encoder, inputs, targets):
    n = len(inputs)
    q_values = _mlp_numpy(q_network, inputs[:, 0, :])
    q_values_a = np.take_along_axis(q_values, targets[:, 0, :].astype(np.int32), axis=1)
    q_values_a = q_values_a.reshape(n)
    q_values_next = _mlp_numpy(q_network, inputs[:, 1, :])
    q_values_next_a = np.take_along_axis(q_values_next, targets[:, 1, :].astype(np.int32), axis=1)
    q_values_next_a = q_values_next_a.reshape(n)
    td = q_values_a - q_values_next_a
    r_par = _mlp_numpy(encoder, inputs[:, 0, :])
    means = r_par[:, 0].reshape(n)
    log_sds = r_par[:, 1].reshape(n)
    irl_loss = -scipy.stats.norm.logpdf(td, means, np.exp(log_sds)).mean()
    kl = _kl_gaussian(means, np.exp(log_sds) ** 2).mean()
    pred = scipy.special.log_softmax(q_values, axis=1)
    neg_log_lik = -np.take_along_axis(pred, targets[:, 0, :].astype(np.int32), axis=1).mean()
    return neg_log_lik + kl + irl_loss


def test_avril_loss_equals_the_authors_elbo_on_a_fixed_batch():
    rng = np.random.default_rng(8)
    n, d, n_actions = 64, 4, 3
    inputs = rng.normal(size=(n, 2, d)).astype(np.float32)
    targets = rng.integers(0, n_actions, size=(n, 2, 1))
    q_network = StackedMLP.initialized(
        [seed_generator(1, _POLICY_INIT)], in_dim=d, hidden_sizes=(64, 64), out_dim=n_actions
    )
    encoder = StackedMLP.initialized(
        [seed_generator(1, _ENERGY_INIT)], in_dim=d, hidden_sizes=(64, 64), out_dim=2
    )
    expected = _avril_elbo_code(q_network, encoder, inputs.astype(np.float64), targets)
    s, s_next = torch.from_numpy(inputs[None, :, 0]), torch.from_numpy(inputs[None, :, 1])
    with torch.no_grad():
        terms = avril_loss(
            q_network(s),
            torch.from_numpy(targets[None, :, 0, 0]),
            q_network(s_next),
            torch.from_numpy(targets[None, :, 1, 0]),
            encoder(s),
            torch.zeros(1, n),
            discount=1.0,
            td_likelihood_weight=1.0,
        )
    assert terms.loss.item() == pytest.approx(expected, rel=1e-6)
    # The discount is sbil's addition (the paper's TD error has one); it changes the value.
    with torch.no_grad():
        discounted = avril_loss(
            q_network(s),
            torch.from_numpy(targets[None, :, 0, 0]),
            q_network(s_next),
            torch.from_numpy(targets[None, :, 1, 0]),
            encoder(s),
            torch.zeros(1, n),
            discount=0.99,
            td_likelihood_weight=1.0,
        )
    assert abs(discounted.loss.item() - expected) > 1e-4


def test_avril_updates_match_the_authors_elbo_under_adam(episodes, sequential):
    """Five updates of the authors' elbo (written as their code, on torch autograd, with one
    Adam over both networks at their lr 1e-4 and batch 64), fed sbil's minibatches, give sbil's
    losses and weights with discount=1 (the code's)."""
    demos = episodes(n_episodes=4, length=50)
    config = LearnerConfig(algo="avril", n_updates=5, discount=1.0)
    assert (config.learning_rate, config.batch_size) == (1e-4, 64)
    result = train(demos, config, seeds=[3])

    q_network = sequential(
        StackedMLP.initialized(
            [seed_generator(3, _POLICY_INIT)], in_dim=4, hidden_sizes=(64, 64), out_dim=2
        )
    )
    encoder = sequential(
        StackedMLP.initialized(
            [seed_generator(3, _ENERGY_INIT)], in_dim=4, hidden_sizes=(64, 64), out_dim=2
        )
    )
    optimizer = torch.optim.Adam([*encoder.parameters(), *q_network.parameters()], lr=1e-4)
    rows = demos.transition_rows(need_next_action=True)
    assert len(rows) == 4 * 49  # every step but each episode's last
    generator = seed_generator(3, _MINIBATCH)
    losses = []
    for _ in range(5):
        index = rows[minibatch_indices(generator, len(rows), 64).numpy()]
        states = torch.from_numpy(demos.observations[index])
        next_states = torch.from_numpy(demos.next_observations[index])
        actions = torch.from_numpy(demos.actions[index])[:, None]
        next_actions = torch.from_numpy(demos.next_actions[index])[:, None]
        q_values = q_network(states)
        td = (
            q_values.gather(1, actions)[:, 0] - q_network(next_states).gather(1, next_actions)[:, 0]
        )
        r_par = encoder(states)
        means, log_sds = r_par[:, 0], r_par[:, 1]
        irl_loss = -torch.distributions.Normal(means, log_sds.exp()).log_prob(td).mean()
        var = log_sds.exp() ** 2
        kl = (0.5 * (-var.log() - 1.0 + var + means**2)).mean()
        neg_log_lik = -q_values.log_softmax(1).gather(1, actions).mean()
        loss = neg_log_lik + kl + irl_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    np.testing.assert_allclose(result.loss[0], losses, rtol=1e-6, atol=1e-6)
    for layer, linear in enumerate(q_network[::2]):
        np.testing.assert_allclose(
            result.policy_state[f"weight{layer}"][0], linear.weight.detach().T, rtol=0, atol=1e-6
        )
    for layer, linear in enumerate(encoder[::2]):
        np.testing.assert_allclose(
            result.energy_state[f"weight{layer}"][0], linear.weight.detach().T, rtol=0, atol=1e-6
        )


def test_avril_skips_a_truncated_last_step_but_keeps_a_terminal_one(episodes):
    demos = episodes(n_episodes=3, length=5, final=True, terminated=[False, True, False])
    avril = demos.transition_rows(need_next_action=True)
    np.testing.assert_array_equal(avril, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    np.testing.assert_array_equal(demos.transition_rows(), np.arange(15))
    config = LearnerConfig(algo="avril", n_updates=1, **SMALL)
    assert train(demos, config, seeds=[0]).n_pairs == (13,)
    rcal = LearnerConfig(algo="rcal", n_updates=1, **SMALL)
    assert train(demos, rcal, seeds=[0]).n_pairs == (15,)

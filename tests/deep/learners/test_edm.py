"""Tests for sbil.deep.learners.edm: EDM's loss by hand, decoupled EDM's policy (BC's exactly),
and EDM's updates against a reference-style implementation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, minibatch_indices, seed_generator, train
from sbil.deep.learners.edm import edm_loss, state_log_density_gap
from sbil.deep.losses import cross_entropy
from sbil.deep.networks import StackedMLP


def _data(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, d)).astype(np.float32)
    actions = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
    return obs, actions


def _lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


LOGITS = np.array([[[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]])  # K=1, B=3, A=2
ACTIONS = np.array([[1, 0, 1]])
SAMPLE_LOGITS = np.array([[[3.0, 0.0], [-2.0, 1.0]]])  # K=1, B'=2


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


# --- fidelity to the reference code ---------------------------------------------------------------


def test_edm_updates_match_a_reference_style_implementation():
    """Five EDM updates written the way EDMStudent is (nn.Sequential, autograd.grad SGLD loop
    with retain_graph, separate forward passes, nn.CrossEntropyLoss, Adam), fed sbil's random
    draws, give sbil's losses and weights."""
    from torch import nn

    from sbil.deep.sgld import draw_chain_randomness, uniform_buffer
    from sbil.deep.train_inputs import _MINIBATCH, _POLICY_INIT, _SGLD

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

"""Tests for sbil.deep.learners.bc: BC's loss by hand, its first update with the policy
regulariser, and its learning test on CartPole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, seed_generator, train
from sbil.deep.learners.bc import bc_loss
from sbil.deep.networks import StackedMLP


def _data(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, d)).astype(np.float32)
    actions = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
    return obs, actions


def _lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


def test_bc_loss_is_the_cross_entropy_by_hand():
    logits = np.array([[[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]])  # K=1, B=3, A=2
    actions = np.array([[1, 0, 1]])
    expected = -np.mean((logits - _lse(logits)[..., None])[0, np.arange(3), actions[0]])
    terms = bc_loss(torch.tensor(logits), torch.tensor(actions))
    assert terms.loss.shape == (1,)
    assert terms.loss.item() == pytest.approx(expected, rel=1e-12)
    assert terms.cross_entropy.item() == terms.loss.item()


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

"""``Policy``: a trained learner with stable-baselines3's ``predict``, loaded from a run, used in
a plain Gymnasium loop; sampled actions follow ``softmax(f(s))`` from an explicit generator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from sbil.deep.checkpoint import load_learner
from sbil.deep.evaluation import evaluate
from sbil.deep.learners import Learner, LearnerConfig
from sbil.deep.networks import StackedMLP
from sbil.deep.policy import Policy, PolicyError, sample_actions
from sbil.experiments.runs import RunSpec, run_training


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-seed BC run on CartPole-like data: pole angle > 0 -> push right."""
    folder = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(400, 4)) * [1, 1, 0.1, 1]).astype(np.float32)
    np.savez(
        folder / "data.npz",
        observations=obs,
        actions=(obs[:, 2] + 0.1 * obs[:, 3] > 0).astype(np.int64),
        episode_lengths=[100] * 4,
    )
    spec = RunSpec(
        learner=LearnerConfig(algo="bc", n_updates=300, normalize_observations=True),
        seeds=(0, 1),
        data=str(folder / "data.npz"),
        env_id="CartPole-v1",
    )
    run_training(spec, folder / "bc")
    return folder / "bc"


def _learner(n_actions=3, seed=0) -> Learner:
    """Random weights with small logits, so that every action has a fair probability."""
    net = StackedMLP.initialized(
        [torch.Generator().manual_seed(seed)], in_dim=4, hidden_sizes=(16,), out_dim=n_actions
    )
    return Learner(
        config=LearnerConfig(algo="bc", hidden_sizes=(16,)),
        seed=seed,
        obs_dim=4,
        n_actions=n_actions,
        obs_mean=np.zeros(4),
        obs_std=np.ones(4),
        policy_state=net.model_state(0),
    )


def test_predict_takes_one_observation_or_a_batch_as_sb3_does(run):
    policy = Policy.load(run, seed=1)
    learner = load_learner(run / "seed-1")
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    actions, state = policy.predict(obs)
    assert state is None and actions.dtype == np.int64 and actions.shape == (20,)
    np.testing.assert_array_equal(actions, learner(obs))
    one, state = policy.predict(obs[3])
    assert state is None and isinstance(one, np.ndarray) and one.shape == ()
    assert one.dtype == np.int64 and int(one) == learner(obs[3:4])[0]
    assert int(policy.predict(obs[3].tolist())[0]) == int(one)  # plain lists too
    assert int(policy.predict(obs[3].astype(np.float64))[0]) == int(one)
    np.testing.assert_array_equal(policy(obs), learner(obs))  # sbil's batched protocol
    np.testing.assert_array_equal(policy.logits(obs), learner.logits(obs))
    assert policy.logits(obs[3]).shape == (2,)
    probabilities = policy.action_probabilities(obs)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert policy.seed == 1 and policy.algo == "bc" and policy.env_id == "CartPole-v1"
    assert "seed=1" in repr(policy)


def test_spaces_are_the_tasks(run):
    policy = Policy.load(run, seed=0)
    env = gym.make("CartPole-v1")
    assert policy.observation_space == env.observation_space
    assert policy.action_space == env.action_space == gym.spaces.Discrete(2)
    unregistered = Policy(_learner())
    assert unregistered.observation_space.shape == (4,)
    assert np.isinf(unregistered.observation_space.low).all()


def test_a_plain_gymnasium_loop_plays_the_episodes_evaluate_plays(run):
    policy = Policy.load(run, seed=0)
    env = gym.make("CartPole-v1")
    returns = []
    for episode in range(3):
        obs, _ = env.reset(seed=10 + episode)
        done, total = False, 0.0
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    env.close()
    expected = evaluate(load_learner(run / "seed-0"), "CartPole-v1", 3, seed=10).returns
    np.testing.assert_array_equal(returns, expected)
    np.testing.assert_array_equal(evaluate(policy, "CartPole-v1", 3, seed=10).returns, expected)
    assert min(returns) > 50  # the learner balances: a loop that acts wrongly fails fast


def test_sampled_actions_follow_softmax_of_the_logits_and_repeat_with_the_seed():
    policy = Policy(_learner(n_actions=3), rng=7)
    obs = np.tile(np.float32([0.3, -0.2, 0.1, 0.5]), (20_000, 1))
    actions, _ = policy.predict(obs, deterministic=False)
    p = policy.action_probabilities(obs[0])
    assert p.min() > 0.1  # every action is drawn often enough to test its frequency
    frequencies = np.bincount(actions, minlength=3) / len(actions)
    sd = np.sqrt(p * (1 - p) / len(actions))
    assert (np.abs(frequencies - p) < 5 * sd).all(), (frequencies, p)
    again, _ = Policy(_learner(n_actions=3), rng=7).predict(obs, deterministic=False)
    np.testing.assert_array_equal(again, actions)
    by_call, _ = Policy(_learner(n_actions=3)).predict(
        obs, deterministic=False, rng=np.random.default_rng(7)
    )
    np.testing.assert_array_equal(by_call, actions)
    other, _ = Policy(_learner(n_actions=3), rng=8).predict(obs, deterministic=False)
    assert (other != actions).any()
    single, _ = policy.predict(obs[0], deterministic=False)
    assert single.shape == () and 0 <= int(single) < 3


def test_sample_actions_inverts_the_cumulative_probabilities_row_by_row():
    class Fixed:
        def __init__(self, u):
            self.u = np.asarray(u)

        def random(self, n):
            return self.u[:n]

    # softmax(log [0.2, 0.3, 0.5]) = [0.2, 0.3, 0.5]: cumulative 0.2, 0.5, 1.0.
    logits = np.log(np.tile([0.2, 0.3, 0.5], (6, 1)))
    u = [0.0, 0.19, 0.21, 0.49, 0.51, 0.999]
    np.testing.assert_array_equal(sample_actions(logits, Fixed(u)), [0, 0, 1, 1, 2, 2])


def test_loading_names_the_seed_to_pick(run, tmp_path):
    with pytest.raises(PolicyError, match="holds learners of seeds 0, 1; pick one with seed="):
        Policy.load(run)
    with pytest.raises(PolicyError, match="has no learner of seed 5; it has seeds 0, 1"):
        Policy.load(run, seed=5)
    assert Policy.load(run / "seed-1").seed == 1
    assert Policy.load(run / "seed-1" / "learner.json", seed=1).seed == 1
    with pytest.raises(PolicyError, match="holds the learner of seed 1, not 0"):
        Policy.load(run / "seed-1", seed=0)
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.load(tmp_path / "nowhere")
    with pytest.raises(PolicyError, match="neither a learner checkpoint"):
        Policy.load(tmp_path)
    with pytest.raises(PolicyError, match="wraps a trained Learner"):
        Policy("a model")


def test_bad_observations_and_calls_are_refused_in_one_sentence():
    policy = Policy(_learner())
    for bad, message in [
        (np.zeros(3), r"one observation of shape \[4\] or a batch \[n, 4\], got shape \[3\]"),
        (np.zeros((2, 5)), r"got shape \[2, 5\]"),
        (np.zeros((1, 2, 4)), r"got shape \[1, 2, 4\]"),
        (np.array([0.0, np.nan, 0, 0]), "NaN or infinite"),
        ("four numbers", "must be numbers"),
    ]:
        with pytest.raises(PolicyError, match=message):
            policy.predict(bad)
    with pytest.raises(PolicyError, match="no recurrent state"):
        policy.predict(np.zeros(4), state=np.zeros(1))
    with pytest.raises(PolicyError, match="draws actions at random: give a seed"):
        policy.predict(np.zeros(4), deterministic=False)
    with pytest.raises(PolicyError, match="non-negative integer seed or a numpy Generator"):
        Policy(_learner(), rng=-1)

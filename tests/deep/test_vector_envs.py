"""Tests for sbil.deep.vector_envs: the numpy ports replay Gymnasium's own episodes bit for bit.

Each case plays the same seeded episodes twice, through :func:`run_episodes` (the numpy ports,
many episodes in lockstep) and through an independent loop over ``gym.make(env_id)``, and
compares every observation, action, reward, termination and length exactly. The policies are
a fixed linear policy with some pseudo-random actions mixed in, and a uniformly pseudo-random
policy; their random draws are a hash of the observation's bits, so a row's action depends on
that row alone (the Policy protocol) and both runs take the same actions.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sbil.deep.evaluation import evaluate, evaluate_group, run_episodes
from sbil.deep.vector_envs import _scalar_square, numpy_task


def _uniforms(obs: np.ndarray, salt: int) -> np.ndarray:
    """``[n]`` numbers in [0, 1): a hash of each float32 observation row's bits."""
    bits = np.ascontiguousarray(obs, dtype=np.float32).view(np.uint32).astype(np.uint64)
    weights = np.arange(1, obs.shape[1] + 1, dtype=np.uint64)
    h = (bits * weights).sum(axis=1) * np.uint64(2654435761) + np.uint64(salt)
    return ((h >> np.uint64(16)) % np.uint64(1 << 20)) / float(1 << 20)


def _noisy_linear(weights, epsilon: float, salt: int = 3):
    """``argmax(obs @ W)``, except a pseudo-random action with probability ``epsilon``."""
    weights = np.asarray(weights, dtype=np.float32)

    def policy(obs):
        greedy = np.argmax(obs @ weights, axis=1)
        random = (_uniforms(obs, salt + 1) * weights.shape[1]).astype(np.int64)
        return np.where(_uniforms(obs, salt) < epsilon, random, greedy).astype(np.int64)

    return policy


def _random_linear(obs_dim, n_actions, seed, epsilon):
    weights = np.random.default_rng(seed).normal(size=(obs_dim, n_actions))
    return _noisy_linear(weights, epsilon)


_BALANCE = [[0, 0], [0, 0], [-1, 1], [-1, 1]]  # push towards where the pole falls

# (task, policy, episodes, max_episode_steps): together the cases of each task include
# terminations and truncations (checked), at the task's own time limit and at an override.
CASES = {
    "CartPole-v1": [
        (_noisy_linear(_BALANCE, 0.05), 100, None),
        (_random_linear(4, 2, 3, 0.0), 50, 100),
        (_noisy_linear(np.zeros((4, 2)), 1.0), 100, 25),  # uniformly random
    ],
    "Acrobot-v1": [
        (_random_linear(6, 3, 3, 0.8), 60, None),
        (_noisy_linear(np.zeros((6, 3)), 1.0), 50, 150),
    ],
    "MountainCar-v0": [
        (_random_linear(2, 3, 1, 0.0), 100, None),
        (_noisy_linear(np.zeros((2, 3)), 1.0), 50, None),
    ],
}


def _gymnasium_episodes(policy, env_id, n, seed, max_episode_steps):
    """Gymnasium's single environment, one episode at a time, everything recorded."""
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    env = gym.make(env_id, **kwargs)
    episodes = []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards = [obs], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = int(policy(np.asarray(obs, dtype=np.float32)[None])[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
        episodes.append((np.array(observations), actions, rewards, terminated))
    env.close()
    return episodes


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_numpy_ports_replay_gymnasium_exactly(env_id):
    assert numpy_task(env_id) is not None
    outcomes = set()
    for policy, n, max_episode_steps in CASES[env_id]:
        returns, lengths, trajectories = run_episodes(
            policy, env_id, n, seed=11, record=True, max_episode_steps=max_episode_steps
        )
        reference = _gymnasium_episodes(policy, env_id, n, 11, max_episode_steps)
        for i, (observations, actions, rewards, terminated) in enumerate(reference):
            t = trajectories[i]
            assert t.seed == 11 + i
            np.testing.assert_array_equal(t.observations, observations, strict=True)
            np.testing.assert_array_equal(t.actions, actions)
            np.testing.assert_array_equal(t.rewards, rewards)
            assert t.terminated == terminated
            assert lengths[i] == len(actions)
            assert returns[i] == np.cumsum(rewards)[-1]  # summed in step order, as the loop
            outcomes.add("terminated" if terminated else "truncated")
    assert outcomes == {"terminated", "truncated"}


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_numpy_ports_give_the_returns_of_the_reference_loop(env_id):
    policy, n, max_episode_steps = CASES[env_id][0]
    loop = evaluate(policy, env_id, n, 2, vectorize=False, max_episode_steps=max_episode_steps)
    for n_envs in (None, 7):
        vector = evaluate(policy, env_id, n, 2, n_envs=n_envs, max_episode_steps=max_episode_steps)
        np.testing.assert_array_equal(vector.returns, loop.returns)
        np.testing.assert_array_equal(vector.lengths, loop.lengths)


def test_a_group_in_lockstep_equals_each_policy_alone():
    policies = [policy for policy, _, _ in CASES["CartPole-v1"]]
    done = [[] for _ in policies]
    group = evaluate_group(
        policies,
        "CartPole-v1",
        40,
        seed=5,
        n_envs=9,
        max_episode_steps=200,
        progress=[lambda d, t, k=k: done[k].append((d, t)) for k in range(len(policies))],
    )
    for k, policy in enumerate(policies):
        alone = evaluate(policy, "CartPole-v1", 40, seed=5, vectorize=False, max_episode_steps=200)
        np.testing.assert_array_equal(group[k].returns, alone.returns)
        np.testing.assert_array_equal(group[k].lengths, alone.lengths)
        assert done[k] == [(d, 40) for d in range(1, 41)]
    assert len({tuple(r.lengths) for r in group}) == len(policies)  # the policies differ


def test_a_task_without_a_port_plays_gymnasiums_own_envs():
    assert numpy_task("LunarLander-v3") is None
    policies = [_noisy_linear(np.zeros((8, 4)), 1.0, salt) for salt in (1, 2)]
    group = evaluate_group(policies, "LunarLander-v3", 5, seed=3, n_envs=2)
    for policy, result in zip(policies, group, strict=True):
        loop = evaluate(policy, "LunarLander-v3", 5, seed=3, vectorize=False)
        np.testing.assert_array_equal(result.returns, loop.returns)
        np.testing.assert_array_equal(result.lengths, loop.lengths)


def test_a_port_applies_only_to_the_class_it_ports_without_arguments():
    assert numpy_task("CartPole-v0") is numpy_task("CartPole-v1")
    assert numpy_task("no-such-task-v0") is None
    gym.register(
        "sbil-test/CartPoleSuttonBarto-v1",
        entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
        kwargs={"sutton_barto_reward": True},
        max_episode_steps=500,
    )
    assert numpy_task("sbil-test/CartPoleSuttonBarto-v1") is None


def test_gymnasium_vector_cartpole_cannot_seed_each_episode():
    # Why CartPole has a port of its own: CartPoleVectorEnv seeds one generator for all
    # sub-environments, so sub-env j does not start where reset(seed=s + j) would.
    vector = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="vector_entry_point")
    obs, _ = vector.reset(seed=7)
    single = [gym.make("CartPole-v1").reset(seed=7 + j)[0] for j in range(2)]
    assert not np.array_equal(obs, np.stack(single))
    _, ported = numpy_task("CartPole-v1").reset([7, 8])
    np.testing.assert_array_equal(ported, np.stack(single))


def test_scalar_square_is_numpy_scalar_power():
    x = np.random.default_rng(0).uniform(-40.0, 40.0, 5000)
    expected = np.array([value**2 for value in x])  # numpy float64 scalars, as Acrobot has
    np.testing.assert_array_equal(_scalar_square(x), expected, strict=True)


def test_a_port_resets_one_episode_as_gymnasium_does():
    for env_id in CASES:
        task = numpy_task(env_id)
        state, obs = task.reset([4])
        assert state.dtype == np.float64 and obs.dtype == np.float32
        assert obs.shape == (1, task.obs_dim)
        env = gym.make(env_id)
        np.testing.assert_array_equal(obs[0], env.reset(seed=4)[0])

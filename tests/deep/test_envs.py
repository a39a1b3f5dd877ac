"""Tests for sbil.deep.envs: which tasks are supported and how others are refused."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sbil.deep.envs import BUILTIN_ENVS, EnvSpec, UnsupportedEnvError, env_spec, make_env


class _ImageObsEnv(gym.Env):
    """Discrete actions but image observations: must be refused."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((8, 8, 3), np.uint8), {}

    def step(self, action):
        return np.zeros((8, 8, 3), np.uint8), 0.0, True, False, {}


class _ShiftedActionsEnv(_ImageObsEnv):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2, start=1)


@pytest.fixture
def registered():
    ids = {"SbilTestImageObs-v0": _ImageObsEnv, "SbilTestShifted-v0": _ShiftedActionsEnv}
    for env_id, cls in ids.items():
        gym.register(env_id, entry_point=cls, max_episode_steps=10)
    yield
    for env_id in ids:
        del gym.registry[env_id]
    env_spec.cache_clear()


def test_builtin_specs():
    expected = {
        "CartPole-v1": (4, 2, 500),
        "Acrobot-v1": (6, 3, 500),
        "LunarLander-v3": (8, 4, 1000),
        "MountainCar-v0": (2, 3, 200),
    }
    assert set(BUILTIN_ENVS) == set(expected)
    for env_id, (obs_dim, n_actions, steps) in expected.items():
        assert env_spec(env_id) == EnvSpec(env_id, obs_dim, n_actions, steps)


@pytest.mark.filterwarnings("ignore:.*out of date")
def test_other_discrete_vector_envs_work_by_name():
    assert env_spec("CartPole-v0") == EnvSpec("CartPole-v0", 4, 2, 200)
    env = make_env("CartPole-v0")
    assert env.spec.max_episode_steps == 200


def test_continuous_actions_are_refused_with_what_is_supported():
    with pytest.raises(UnsupportedEnvError, match=r"Pendulum-v1.*continuous.*Discrete action"):
        env_spec("Pendulum-v1")


def test_image_observations_are_refused(registered):
    with pytest.raises(UnsupportedEnvError, match=r"images of shape \(8, 8, 3\), not vectors"):
        env_spec("SbilTestImageObs-v0")


def test_actions_must_start_at_zero(registered):
    with pytest.raises(UnsupportedEnvError, match="start at 1, not 0"):
        env_spec("SbilTestShifted-v0")


def test_finite_state_tasks_point_to_tabular():
    with pytest.raises(UnsupportedEnvError, match=r"finite \(use sbil.tabular"):
        env_spec("FrozenLake-v1")


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("CartPol-v1", "Did you mean: `CartPole`"),
        ("CartPole-v9", "versioned environments"),
        ("NoSuchTask-v0", "Built-in tasks are CartPole-v1, Acrobot-v1"),
        ("", "non-empty string"),
    ],
)
def test_unknown_ids_list_builtins_and_gymnasium_suggestions(env_id, message):
    with pytest.raises(UnsupportedEnvError, match=message):
        env_spec(env_id)
    assert issubclass(UnsupportedEnvError, ValueError)

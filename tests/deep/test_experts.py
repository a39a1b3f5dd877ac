"""Tests for sbil.deep.experts: scripted experts are experts, batched and deterministic."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sbil.deep.envs import BUILTIN_ENVS, env_spec
from sbil.deep.evaluation import evaluate
from sbil.deep.experts import (
    SCRIPTED_EXPERTS,
    get_expert,
    list_experts,
    train_sb3_expert,
    trained_experts,
)

# Thresholds sit well below the 100-episode means in docs/experts.md (500, -84, -113, 253):
# an expert that falls under them on 10 episodes is broken, not unlucky.
THRESHOLDS = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -120.0,
    "MountainCar-v0": -150.0,
    "LunarLander-v3": 200.0,
}


@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
def test_scripted_expert_reaches_expert_return(env_id):
    result = evaluate(get_expert(env_id), env_id, 10, seed=100)
    assert result.mean >= THRESHOLDS[env_id]


def test_cartpole_expert_balances_every_episode():
    result = evaluate(get_expert("CartPole-v1"), "CartPole-v1", 10, seed=200)
    np.testing.assert_array_equal(result.returns, 500.0)


@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
def test_scripted_experts_are_batched_row_wise_and_deterministic(env_id):
    spec = env_spec(env_id)
    obs = np.random.default_rng(0).normal(size=(50, spec.obs_dim)).astype(np.float32)
    expert = get_expert(env_id)
    batch = expert(obs)
    assert batch.dtype == np.int64 and batch.shape == (50,)
    assert batch.min() >= 0 and batch.max() < spec.n_actions
    rows = np.concatenate([expert(obs[i : i + 1]) for i in range(50)])
    np.testing.assert_array_equal(batch, rows)
    np.testing.assert_array_equal(batch, expert(obs))
    assert len(np.unique(batch)) > 1  # the controller actually reacts to the state


def test_controllers_follow_their_documented_rules():
    cartpole = SCRIPTED_EXPERTS["CartPole-v1"]
    assert cartpole(np.array([[0, 0, 0.1, 0]], np.float32))[0] == 1  # pole leans right: push right
    assert cartpole(np.array([[0, 0, -0.1, 0]], np.float32))[0] == 0
    mountain_car = SCRIPTED_EXPERTS["MountainCar-v0"]
    obs = np.array([[-0.5, 0.01], [-0.5, -0.01], [-0.4, 0.0], [-0.6, 0.0]], np.float32)
    np.testing.assert_array_equal(mountain_car(obs), [2, 0, 0, 2])
    acrobot = SCRIPTED_EXPERTS["Acrobot-v1"]
    obs = np.array([[1, 0, 1, 0, 0, 1.0], [1, 0, 1, 0, 0, -1.0]], np.float32)
    np.testing.assert_array_equal(acrobot(obs), [2, 0])


def test_experts_reject_unbatched_or_wrong_size_observations():
    expert = get_expert("CartPole-v1")
    with pytest.raises(ValueError, match=r"shape \[n, 4\], got \(4,\).*obs\[None\]"):
        expert(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"shape \[n, 8\], got \(2, 3\)"):
        get_expert("LunarLander-v3")(np.zeros((2, 3), np.float32))


@pytest.mark.filterwarnings("ignore:.*out of date")
def test_get_expert_errors(tmp_path):
    with pytest.raises(ValueError, match="no scripted expert for 'CartPole-v0'"):
        get_expert("CartPole-v0")
    with pytest.raises(
        ValueError, match="Unknown expert 'oracle' for 'CartPole-v1'; available: scripted"
    ):
        get_expert("CartPole-v1", "oracle", root=tmp_path)
    with pytest.raises(ValueError, match=r"No trained expert 'sb3-ppo'.*sbil expert train"):
        get_expert("CartPole-v1", "sb3-ppo", root=tmp_path)


def test_list_experts_includes_every_scripted_expert(tmp_path):
    assert list_experts(tmp_path) == [(env_id, "scripted") for env_id in BUILTIN_ENVS]
    assert trained_experts(tmp_path / "missing") == []


def test_training_without_sb3_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails as if absent
    with pytest.raises(ImportError, match=r"pip install 'sbil\[experts\]'"):
        train_sb3_expert("CartPole-v1", total_timesteps=10, root=tmp_path)


def test_train_sb3_expert_validates_before_training(tmp_path):
    with pytest.raises(ValueError, match="Unknown algorithm 'a2c'"):
        train_sb3_expert("CartPole-v1", algo="a2c", root=tmp_path)
    with pytest.raises(ValueError, match="total_timesteps must be at least 1"):
        train_sb3_expert("CartPole-v1", total_timesteps=0, root=tmp_path)


def test_train_sb3_expert_tiny_run_is_cached_and_loadable(tmp_path):
    pytest.importorskip("stable_baselines3")
    trained = train_sb3_expert(
        "CartPole-v1",
        algo="ppo",
        total_timesteps=64,
        root=tmp_path,
        n_eval_episodes=2,
        hyperparameters={"n_steps": 64, "batch_size": 32, "n_epochs": 1},
    )
    assert trained.name == "sb3-ppo" and trained.n_eval_episodes == 2
    assert list_experts(tmp_path)[-1] == ("CartPole-v1", "sb3-ppo")
    policy = get_expert("CartPole-v1", "sb3-ppo", root=tmp_path)
    result = evaluate(policy, "CartPole-v1", 2, seed=trained.eval_seed)
    assert result.mean == pytest.approx(trained.return_mean)
    with pytest.raises(ValueError, match="already exists"):
        train_sb3_expert("CartPole-v1", total_timesteps=64, root=tmp_path)

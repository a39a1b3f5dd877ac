"""Tests for the shipped PPO experts: each loads, is the file its record describes, and replays
the record's first episodes exactly (greedy and sampled, same seeds)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from sbil.deep.envs import BUILTIN_ENVS
from sbil.deep.evaluation import evaluate
from sbil.deep.experts import (
    SHIPPED,
    get_expert,
    list_experts,
    shipped_dir,
    shipped_experts,
    shipped_record,
    trained_experts,
)
from sbil.deep.zoo import EVAL_EPISODES, EVAL_SEED, NOISE_SEED, ZOO_PPO, ZOO_SOURCE, zoo_paths

pytest.importorskip("stable_baselines3")

#: Episodes replayed per task (one at a time, as recorded), sized so the whole file takes a few
#: seconds: LunarLander's and CartPole's episodes are long, Acrobot's and MountainCar's short.
REPLAYED = {"CartPole-v1": 3, "Acrobot-v1": 5, "LunarLander-v3": 2, "MountainCar-v0": 5}

#: Below RL Zoo's PPO scores (benchmark.md: CartPole 500, Acrobot -73.5, LunarLander-v2 242,
#: MountainCar -110.4): a shipped expert under them over 100 episodes is not an expert.
GREEDY_AT_LEAST = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "LunarLander-v3": 200.0,
    "MountainCar-v0": -130.0,
}


@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
def test_each_task_has_a_shipped_expert_that_is_the_recorded_file(env_id):
    model_path, record_path = zoo_paths(shipped_dir(), env_id)
    data = shipped_record(env_id)
    assert json.loads(record_path.read_text()) == data
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == data["model_sha256"]
    assert model_path.stat().st_size < 200_000
    assert data["hyperparameters"] == ZOO_PPO[env_id]
    assert data["hyperparameters_source"] == ZOO_SOURCE
    training = data["training"]
    assert training["seed"] == 0 and training["timesteps_done"] >= training["total_timesteps"]
    assert set(training["versions"]) >= {"sbil", "stable-baselines3", "torch", "gymnasium"}
    # A VecNormalize-trained expert carries its observation statistics.
    assert (data["obs_normalization"] is not None) == ZOO_PPO[env_id].get("normalize", False)


@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
def test_the_record_holds_every_episode_of_both_modes(env_id):
    evaluation = shipped_record(env_id)["evaluation"]
    assert (evaluation["episodes"], evaluation["eval_seed"]) == (EVAL_EPISODES, EVAL_SEED)
    assert evaluation["noise_seed"] == NOISE_SEED
    for mode in ("greedy", "sampled"):
        returns = np.array(evaluation[mode]["returns"])
        assert returns.shape == (EVAL_EPISODES,) and len(evaluation[mode]["lengths"]) == 100
        assert evaluation[mode]["mean"] == pytest.approx(returns.mean())
        assert evaluation[mode]["std"] == pytest.approx(returns.std())
    assert evaluation["greedy"]["mean"] >= GREEDY_AT_LEAST[env_id]


@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
@pytest.mark.parametrize("noise", ["none", "sample"])
def test_a_shipped_expert_replays_its_recorded_episodes(env_id, noise):
    evaluation = shipped_record(env_id)["evaluation"]
    mode = "sampled" if noise == "sample" else "greedy"
    n = REPLAYED[env_id]
    policy = get_expert(env_id, SHIPPED, noise=noise, seed=evaluation["noise_seed"])
    result = evaluate(policy, env_id, n, seed=evaluation["eval_seed"], vectorize=False)
    np.testing.assert_array_equal(result.returns, evaluation[mode]["returns"][:n])
    np.testing.assert_array_equal(result.lengths, evaluation[mode]["lengths"][:n])


def test_the_sampled_expert_draws_from_the_policy_and_the_greedy_one_does_not():
    obs = np.random.default_rng(0).normal(size=(2000, 6)).astype(np.float32)
    greedy = get_expert("Acrobot-v1", SHIPPED)
    sampled = get_expert("Acrobot-v1", SHIPPED, noise="sample", seed=3)
    np.testing.assert_array_equal(greedy(obs), greedy(obs[::-1])[::-1])
    np.testing.assert_array_equal(sampled(obs), sampled(obs))
    assert 0 < (sampled(obs) != greedy(obs)).mean() < 0.5
    assert not np.array_equal(sampled(obs), get_expert("Acrobot-v1", SHIPPED, noise="sample")(obs))


def test_list_experts_and_trained_experts_include_the_shipped_ones(tmp_path):
    listed = list_experts(tmp_path)
    assert [(env_id, SHIPPED) for env_id in BUILTIN_ENVS] == [p for p in listed if p[1] == SHIPPED]
    shipped = shipped_experts()
    assert [e.env_id for e in shipped] == list(BUILTIN_ENVS)
    assert trained_experts(tmp_path) == shipped
    assert trained_experts(tmp_path, shipped=False) == []
    for expert in shipped:
        record = shipped_record(expert.env_id)["evaluation"]
        assert expert.name == SHIPPED
        assert (expert.return_mean, expert.sampled_mean) == (
            record["greedy"]["mean"],
            record["sampled"]["mean"],
        )


def test_a_modified_shipped_file_or_a_missing_one_is_refused(tmp_path, monkeypatch):
    import sbil.deep.experts.shipped as shipped  # the module that looks shipped_dir up

    for env_id in BUILTIN_ENVS:
        (tmp_path / env_id).mkdir()
        for path in zoo_paths(shipped_dir(), env_id):
            (tmp_path / env_id / path.name).write_bytes(path.read_bytes())
    (tmp_path / "CartPole-v1" / "ppo-zoo.zip").write_bytes(b"not the model")
    monkeypatch.setattr(shipped, "shipped_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="does not match its record"):
        get_expert("CartPole-v1", SHIPPED)
    (tmp_path / "Acrobot-v1" / "ppo-zoo.json").unlink()
    with pytest.raises(ValueError, match=r"No shipped expert 'ppo-zoo' for 'Acrobot-v1'"):
        get_expert("Acrobot-v1", SHIPPED)
    assert "Acrobot-v1" not in [e.env_id for e in shipped_experts()]

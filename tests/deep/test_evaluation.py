"""Tests for sbil.deep.evaluation: seeded, exact episode counts, vector == loop."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from sbil.deep.data import from_arrays
from sbil.deep.envs import UnsupportedEnvError
from sbil.deep.evaluation import (
    action_match_rate,
    checkpoint_folders,
    evaluate,
    evaluate_group,
    run_episodes,
    training_episodes,
)
from sbil.deep.experts import get_expert


def _random_policy(n_actions: int, seed: int):
    """Deterministic pseudo-random policy: the action is a hash of the observation row."""

    def policy(obs):
        keys = np.abs(np.round(obs * 1e4).astype(np.int64)).sum(axis=1) + seed
        return (keys % n_actions).astype(np.int64)

    return policy


def _reference_returns(policy, env_id, n, seed):
    """Independent one-at-a-time loop written directly against Gymnasium."""
    env = gym.make(env_id)
    returns = []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action = int(policy(np.asarray(obs, np.float32)[None])[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    return np.array(returns)


@pytest.mark.parametrize(
    ("env_id", "policy"),
    [("CartPole-v1", _random_policy(2, seed=3)), ("Acrobot-v1", get_expert("Acrobot-v1"))],
)
def test_vector_evaluation_equals_the_one_at_a_time_loop(env_id, policy):
    # Uneven episode lengths exercise resets of sub-environments at different steps.
    n = 13
    vector = evaluate(policy, env_id, n, seed=5, n_envs=4)
    loop = evaluate(policy, env_id, n, seed=5, vectorize=False)
    np.testing.assert_array_equal(vector.returns, loop.returns)
    np.testing.assert_array_equal(vector.lengths, loop.lengths)
    np.testing.assert_array_equal(vector.returns, _reference_returns(policy, env_id, n, 5))
    assert len(set(vector.lengths.tolist())) > 3  # the episodes really differ in length


def test_evaluate_is_deterministic_and_seed_dependent():
    policy = _random_policy(2, seed=1)
    a = evaluate(policy, "CartPole-v1", 20, seed=0)
    b = evaluate(policy, "CartPole-v1", 20, seed=0)
    c = evaluate(policy, "CartPole-v1", 20, seed=1)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, c.returns)
    # Episode i is seeded seed + i, so shifting the seed shifts the episodes.
    np.testing.assert_array_equal(a.returns[1:], c.returns[:-1])


@pytest.mark.parametrize("n_envs", [1, 3, 16, 64])
def test_evaluate_counts_exactly_n_episodes_whatever_the_number_of_envs(n_envs):
    policy = _random_policy(2, seed=2)
    done = []
    result = evaluate(
        policy, "CartPole-v1", 7, seed=0, n_envs=n_envs, progress=lambda d, t: done.append((d, t))
    )
    assert result.n_episodes == 7 and result.returns.shape == (7,)
    assert done == [(i, 7) for i in range(1, 8)]
    np.testing.assert_array_equal(result.returns, result.lengths)  # CartPole pays 1 per step
    reference = evaluate(policy, "CartPole-v1", 7, seed=0, vectorize=False)
    np.testing.assert_array_equal(result.returns, reference.returns)


def test_eval_result_statistics():
    result = evaluate(get_expert("MountainCar-v0"), "MountainCar-v0", 5, seed=0)
    assert result.mean == pytest.approx(np.mean(result.returns))
    assert result.std == pytest.approx(np.std(result.returns))
    assert result.sem == pytest.approx(np.std(result.returns, ddof=1) / np.sqrt(5))
    summary = result.to_dict()
    assert summary["n_episodes"] == 5 and summary["returns"] == result.returns.tolist()


def test_max_episode_steps_overrides_the_time_limit():
    result = evaluate(get_expert("CartPole-v1"), "CartPole-v1", 3, max_episode_steps=20)
    np.testing.assert_array_equal(result.returns, [20.0, 20.0, 20.0])


def test_recorded_trajectories_replay_the_episode():
    returns, lengths, trajectories = run_episodes(
        get_expert("Acrobot-v1"), "Acrobot-v1", 3, seed=4, n_envs=2, record=True
    )
    for i, trajectory in enumerate(trajectories):
        assert trajectory.seed == 4 + i
        assert trajectory.observations.shape == (lengths[i] + 1, 6)
        assert trajectory.actions.shape == (lengths[i],)
        assert trajectory.episode_return == returns[i]
        env = gym.make("Acrobot-v1")
        obs, _ = env.reset(seed=4 + i)
        np.testing.assert_array_equal(trajectory.observations[0], obs)
        for action in trajectory.actions[:10]:
            obs, *_ = env.step(int(action))
        np.testing.assert_array_equal(trajectory.observations[10], obs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_episodes": 0}, ValueError, "n_episodes must be a positive integer"),
        ({"seed": -1}, ValueError, r"seed must be an integer in 0..4294967295"),
        ({"seed": 2**63 - 1}, ValueError, r"seed must be an integer in 0..4294967295"),
        ({"seed": 2**32 - 2, "n_episodes": 3}, ValueError, r"uses seeds up to 4294967296"),
        ({"seed": 1.5}, ValueError, r"seed must be an integer"),
        ({"n_envs": 0}, ValueError, "n_envs must be at least 1"),
        ({"env_id": "Pendulum-v1"}, UnsupportedEnvError, "continuous"),
        ({"env_id": "NoSuchEnv-v0"}, UnsupportedEnvError, "Unknown Gymnasium environment"),
    ],
)
def test_evaluate_rejects_bad_arguments(kwargs, error, message):
    args = {"env_id": "CartPole-v1", "n_episodes": 2, "seed": 0} | kwargs
    with pytest.raises(error, match=message):
        evaluate(get_expert("CartPole-v1"), **args)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (lambda obs: np.zeros((len(obs), 1), np.int64), r"shape \(\d+, 1\)"),
        (lambda obs: np.zeros(len(obs)), "dtype float64"),
        (lambda obs: np.full(len(obs), 2), r"action 2, outside 0..1"),
    ],
)
def test_evaluate_rejects_malformed_policy_output(policy, message):
    for vectorize in (True, False):
        with pytest.raises(ValueError, match=message):
            evaluate(policy, "CartPole-v1", 2, vectorize=vectorize)


def test_action_match_rate():
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    expert = get_expert("CartPole-v1")
    demos = from_arrays(obs, expert(obs), episode_lengths=[60, 40])
    assert action_match_rate(expert, demos) == 1.0
    assert action_match_rate(lambda o: 1 - expert(o), demos) == 0.0
    always_right = action_match_rate(lambda o: np.ones(len(o), np.int64), demos, batch_size=7)
    assert always_right == pytest.approx(np.mean(demos.actions == 1))
    with pytest.raises(ValueError, match="shape"):
        action_match_rate(lambda o: np.ones((len(o), 2)), demos)


def test_the_largest_seeds_reach_the_episodes_exactly():
    _, _, trajectories = run_episodes(
        get_expert("CartPole-v1"), "CartPole-v1", 2, seed=2**32 - 2, record=True
    )
    assert [t.seed for t in trajectories] == [2**32 - 2, 2**32 - 1]


# --- trained learners on disk -----------------------------------------------------------------


def _checkpoint(folder, metadata=None):
    folder.mkdir(parents=True)
    (folder / "learner.json").write_text(json.dumps({"metadata": metadata}))
    return folder


def test_checkpoint_folders_finds_one_checkpoint_or_every_seed_of_a_run(tmp_path):
    single = _checkpoint(tmp_path / "one")
    assert checkpoint_folders(single) == {None: single}
    assert checkpoint_folders(single / "learner.json") == {None: single}
    run = tmp_path / "run"
    for seed in (10, 2):
        _checkpoint(run / f"seed-{seed}")
    (run / "seed-x").mkdir()
    (run / "seed-3").mkdir()  # no learner.json: not a checkpoint
    (run / "config.json").write_text("{}")
    assert checkpoint_folders(run) == {2: run / "seed-2", 10: run / "seed-10"}
    with pytest.raises(ValueError, match="neither a learner checkpoint"):
        checkpoint_folders(tmp_path / "run" / "seed-3")
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint_folders(tmp_path / "missing")


def test_training_episodes_reads_what_the_checkpoint_records(tmp_path):
    root = str(tmp_path / "datasets")
    new = {"dataset": "d-v0", "root": root, "train_episodes": [3, 4, 5]}
    ckpt = _checkpoint(tmp_path / "new", new)
    assert training_episodes(ckpt, "d-v0", root) == {3, 4, 5}
    assert training_episodes(ckpt, "other-v0", root) == frozenset()
    assert training_episodes(ckpt, "d-v0", tmp_path / "elsewhere") == frozenset()
    # Today's `sbil train` format: the first `episodes` episodes, root as typed (unknown here).
    old = {"run": {"dataset": "d-v0", "root": None, "episodes": 4}}
    assert training_episodes(_checkpoint(tmp_path / "old", old), "d-v0", "/x") == {0, 1, 2, 3}
    relative = {"dataset": "d-v0", "root": "rel", "train_episodes": [0]}
    assert training_episodes(_checkpoint(tmp_path / "rel", relative), "d-v0", "/x") == {0}
    npz = {"dataset": None, "data": "demos.npz", "train_episodes": [0, 1]}
    assert training_episodes(_checkpoint(tmp_path / "npz", npz), "d-v0") == frozenset()
    for name, unknown in (("none", None), ("empty", {}), ("noeps", {"dataset": "d-v0"})):
        assert training_episodes(_checkpoint(tmp_path / name, unknown), "d-v0") is None


def test_eval_result_repr_summarises_instead_of_printing_the_arrays():
    from sbil.deep.evaluation import EvalResult

    returns = np.concatenate([np.full(5000, 100.0), np.full(5000, 300.0)])
    result = EvalResult("CartPole-v1", 7, returns, np.full(10_000, 200, dtype=np.int64))
    text = repr(result)
    assert len(text) < 200 and "\n" not in text and "array" not in text
    assert text == (
        "EvalResult('CartPole-v1', 10000 episodes (seeds 7..10006), return 200 ± 100 "
        "(min 100, max 300), length 200 ± 0)"
    )
    single = EvalResult("CartPole-v1", 3, np.array([1.5]), np.array([9]))
    assert "1 episode (seed 3)" in repr(single)


def test_a_policy_is_never_called_with_one_row_when_it_plays_several_episodes_at_once():
    # Torch's one-row forward pass (a matrix-vector product) may round differently from a
    # batch's; the last running episode is padded to two rows instead.
    expert = get_expert("CartPole-v1")
    sizes = []

    def policy(obs):
        sizes.append(len(obs))
        return expert(obs)

    result = evaluate(policy, "CartPole-v1", 5, seed=0, n_envs=4, max_episode_steps=30)
    assert min(sizes) == 2 and max(sizes) == 4
    np.testing.assert_array_equal(result.returns, [30.0] * 5)
    sizes.clear()
    evaluate(policy, "CartPole-v1", 1, seed=0, max_episode_steps=30)
    assert set(sizes) == {1}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "LunarLander-v3"])
def test_evaluate_group_gives_each_policy_its_own_evaluation(env_id):
    n_actions = 2 if env_id == "CartPole-v1" else 4
    policies = [_random_policy(n_actions, seed=s) for s in range(3)]
    group = evaluate_group(policies, env_id, 6, seed=2)
    for policy, result in zip(policies, group, strict=True):
        alone = evaluate(policy, env_id, 6, seed=2, vectorize=False)
        assert result.env_id == env_id and result.seed == 2
        np.testing.assert_array_equal(result.returns, alone.returns)
        np.testing.assert_array_equal(result.lengths, alone.lengths)
    loops = evaluate_group(policies, env_id, 6, seed=2, vectorize=False)
    for result, loop in zip(group, loops, strict=True):
        np.testing.assert_array_equal(result.returns, loop.returns)


def test_evaluate_group_wants_one_progress_callback_per_policy():
    with pytest.raises(ValueError, match="2 progress callbacks for 3 policies"):
        evaluate_group([get_expert("CartPole-v1")] * 3, "CartPole-v1", 2, progress=[None] * 2)

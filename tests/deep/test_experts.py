"""Tests for sbil.deep.experts: scripted experts are experts, batched and deterministic."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sbil.deep.envs import BUILTIN_ENVS, env_spec
from sbil.deep.evaluation import evaluate
from sbil.deep.experts import (
    SCRIPTED_EXPERTS,
    SCRIPTED_RETURNS,
    SCRIPTED_RETURNS_EPISODES,
    EpsilonGreedyExpert,
    ExpertNoise,
    ObsNormalization,
    SB3Policy,
    get_expert,
    list_experts,
    state_uniforms,
    train_sb3_expert,
    trained_experts,
    with_noise,
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
    listed = list_experts(tmp_path)
    assert listed[: len(BUILTIN_ENVS)] == [(env_id, "scripted") for env_id in BUILTIN_ENVS]
    assert {name for _, name in listed[len(BUILTIN_ENVS) :]} <= {"ppo-zoo"}  # shipped ones
    assert trained_experts(tmp_path / "missing", shipped=False) == []


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


def test_train_sb3_expert_refuses_an_unwritable_cache_before_training(tmp_path, monkeypatch):
    sb3 = pytest.importorskip("stable_baselines3")

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the cache folder was checked")

    monkeypatch.setattr(sb3.PPO, "learn", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(
        ValueError, match=r"Cannot write trained experts under .*a-file.*--experts-dir"
    ):
        train_sb3_expert("CartPole-v1", total_timesteps=64, root=blocker / "experts")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": 2**32}, r"seed must be an integer in 0..4294967295"),
        ({"seed": -1}, r"seed must be an integer in 0..4294967295"),
        ({"eval_seed": 2**32 - 1}, r"eval_seed 4294967295 with 100 episodes"),
    ],
)
def test_train_sb3_expert_refuses_seeds_outside_the_seed_range(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_sb3_expert("CartPole-v1", total_timesteps=64, root=tmp_path, **kwargs)


@pytest.mark.slow  # 100 episodes of each task (about 6 s)
@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
def test_the_listed_scripted_returns_are_what_the_experts_score(env_id):
    result = evaluate(get_expert(env_id), env_id, SCRIPTED_RETURNS_EPISODES, seed=0)
    mean, std = SCRIPTED_RETURNS[env_id]
    assert (round(result.mean, 2), round(result.std, 2)) == (mean, std)


# --- stochastic experts -----------------------------------------------------------------------


def test_expert_noise_parses_prints_and_tags():
    assert ExpertNoise.parse(None) == ExpertNoise.parse("none") == ExpertNoise()
    eps = ExpertNoise.parse(" Epsilon:0.05 ")
    assert (eps.kind, eps.epsilon, str(eps), eps.tag) == (
        "epsilon",
        0.05,
        "epsilon:0.05",
        "eps0_05",
    )
    assert ExpertNoise.parse("epsilon:1").tag == "eps1"
    assert (str(ExpertNoise.parse("sample")), ExpertNoise.parse("sample").tag) == (
        "sample",
        "sampled",
    )
    assert ExpertNoise().deterministic and not eps.deterministic
    for bad in ("epsilon:x", "epsilon:-0.1", "epsilon:nan", "sample:2", "gauss", "none:1"):
        with pytest.raises(ValueError):
            ExpertNoise.parse(bad)


def test_state_uniforms_depend_only_on_the_seed_the_stream_and_the_row():
    obs = np.random.default_rng(0).normal(size=(4000, 4)).astype(np.float32)
    u = state_uniforms(obs, 3, 0)
    assert u.shape == (4000,) and ((u >= 0) & (u < 1)).all()
    np.testing.assert_array_equal(state_uniforms(obs[::-1], 3, 0), u[::-1])  # row-wise
    np.testing.assert_array_equal(state_uniforms(obs[:7], 3, 0), u[:7])
    assert not np.array_equal(state_uniforms(obs, 4, 0), u)
    assert not np.array_equal(state_uniforms(obs, 3, 1), u)
    # Uniform: every tenth of [0, 1) gets about a tenth of 4000 rows.
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert counts.min() > 330 and counts.max() < 470, counts
    assert abs(np.corrcoef(u, state_uniforms(obs, 3, 1))[0, 1]) < 0.05


def test_an_epsilon_expert_is_a_row_wise_policy_with_the_right_noise_rate():
    obs = np.random.default_rng(1).normal(size=(20000, 4)).astype(np.float32)
    greedy = SCRIPTED_EXPERTS["CartPole-v1"](obs)
    noisy = get_expert("CartPole-v1", noise="epsilon:0.2", seed=7)
    assert isinstance(noisy, EpsilonGreedyExpert)
    actions = noisy(obs)
    assert actions.dtype == np.int64 and set(np.unique(actions)) <= {0, 1}
    # A random action is uniform over both actions: it differs from the expert's half the time.
    assert abs((actions != greedy).mean() - 0.1) < 0.01
    np.testing.assert_array_equal(noisy(obs[:5]), actions[:5])
    np.testing.assert_array_equal(
        get_expert("CartPole-v1", noise="epsilon:0.2", seed=7)(obs), actions
    )
    assert not np.array_equal(get_expert("CartPole-v1", noise="epsilon:0.2", seed=8)(obs), actions)
    assert get_expert("CartPole-v1", noise="none", seed=7) is SCRIPTED_EXPERTS["CartPole-v1"]


def test_an_epsilon_expert_plays_the_same_episodes_vectorised_or_not():
    noisy = get_expert("Acrobot-v1", noise="epsilon:0.5", seed=3)
    vector = evaluate(noisy, "Acrobot-v1", 4, seed=0, n_envs=3)
    loop = evaluate(noisy, "Acrobot-v1", 4, seed=0, vectorize=False)
    np.testing.assert_array_equal(vector.returns, loop.returns)
    plain = evaluate(get_expert("Acrobot-v1"), "Acrobot-v1", 4, seed=0)
    assert not np.array_equal(vector.returns, plain.returns)


def test_sample_noise_needs_an_expert_with_a_distribution():
    with pytest.raises(ValueError, match="Scripted experts have no action distribution"):
        get_expert("CartPole-v1", noise="sample")
    with pytest.raises(ValueError, match="this expert has none"):
        with_noise(SCRIPTED_EXPERTS["CartPole-v1"], 2, "sample")
    with pytest.raises(ValueError, match="noise seed must be an integer"):
        get_expert("CartPole-v1", noise="epsilon:0.1", seed=2**32)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_a_sampling_sb3_expert_draws_from_its_own_policy_reproducibly(algo):
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    import torch

    model = {"ppo": sb3.PPO, "dqn": sb3.DQN}[algo]("MlpPolicy", gym.make("Acrobot-v1"), seed=0)
    obs = np.random.default_rng(2).normal(size=(6000, 6)).astype(np.float32)
    deterministic = SB3Policy(model, 6)(obs)
    sampler = SB3Policy(model, 6, sample=True, seed=5)
    drawn = sampler(obs)
    np.testing.assert_array_equal(SB3Policy(model, 6, sample=True, seed=5)(obs), drawn)
    np.testing.assert_array_equal(sampler(obs[:9]), drawn[:9])  # row-wise
    if algo == "ppo":
        # Frequencies of the drawn actions match the policy's mean probabilities.
        with torch.no_grad():
            tensor = model.policy.obs_to_tensor(obs)[0]
            probs = model.policy.get_distribution(tensor).distribution.probs.numpy()
        freq = np.bincount(drawn, minlength=3) / len(drawn)
        np.testing.assert_allclose(freq, probs.mean(axis=0), atol=0.02)
    else:  # epsilon-greedy at the model's exploration rate (1.0 before any training)
        model.exploration_rate = 0.3
        drawn = SB3Policy(model, 6, sample=True, seed=5)(obs)
        assert abs((drawn != deterministic).mean() - 0.3 * 2 / 3) < 0.02


def test_obs_normalization_is_vec_normalize_s():
    pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    env = VecNormalize(DummyVecEnv([lambda: gym.make("Acrobot-v1")]), clip_obs=2.0)
    env.obs_rms.mean = np.linspace(-1, 1, 6)
    env.obs_rms.var = np.linspace(0.1, 3, 6)
    obs = np.random.default_rng(0).normal(scale=3, size=(50, 6)).astype(np.float32)
    rms = env.obs_rms
    normalize = ObsNormalization(rms.mean.tolist(), rms.var.tolist(), env.clip_obs, env.epsilon)
    np.testing.assert_array_equal(normalize(obs), env.normalize_obs(obs))
    assert normalize(obs).dtype == np.float32 and np.abs(normalize(obs)).max() == 2.0
    record = {"mean": rms.mean.tolist(), "var": rms.var.tolist(), "clip_obs": 2.0, "epsilon": 1e-8}
    np.testing.assert_array_equal(ObsNormalization.from_record(record)(obs), normalize(obs))
    assert ObsNormalization.from_record(None) is None
    with pytest.raises(ValueError, match="mean \\[d\\] and a non-negative var"):
        ObsNormalization([0.0, 0.0], [1.0])


def test_a_normalised_sb3_expert_acts_on_normalised_observations_and_draws_on_raw_ones():
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym

    model = sb3.PPO("MlpPolicy", gym.make("Acrobot-v1"), seed=0)
    obs = np.random.default_rng(1).normal(size=(500, 6)).astype(np.float32)
    normalize = ObsNormalization(np.full(6, 0.5), np.full(6, 4.0))
    normalised = SB3Policy(model, 6, normalize=normalize)
    np.testing.assert_array_equal(normalised(obs), SB3Policy(model, 6)(normalize(obs)))
    # The noise is a hash of the raw observation, as for every stochastic expert.
    drawn = SB3Policy(model, 6, sample=True, seed=4, normalize=normalize)(obs)
    u = state_uniforms(obs, 4, 0)
    import torch

    with torch.no_grad():
        tensor = model.policy.obs_to_tensor(normalize(obs))[0]
        probs = model.policy.get_distribution(tensor).distribution.probs.numpy()
    cdf = np.cumsum(probs.astype(np.float64), axis=1)
    np.testing.assert_array_equal(drawn, (cdf < (u * cdf[:, -1])[:, None]).sum(axis=1))

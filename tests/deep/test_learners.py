"""Learners (the package's names): the shared cross-entropy by hand, batched seeds == single
runs, determinism, options, bad input. BC's and EDM's own tests are in
tests/deep/learners/test_bc.py and test_edm.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import (
    LearnerConfig,
    LearnerInputError,
    cross_entropy,
    minibatch_indices,
    seed_generator,
    train,
)
from sbil.deep.networks import StackedMLP


def _data(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, d)).astype(np.float32)
    actions = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
    return obs, actions


def _lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


# --- losses against hand computation ------------------------------------------------------------

LOGITS = np.array([[[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]])  # K=1, B=3, A=2
ACTIONS = np.array([[1, 0, 1]])
SAMPLE_LOGITS = np.array([[[3.0, 0.0], [-2.0, 1.0]]])  # K=1, B'=2


def test_cross_entropy_by_hand():
    expected = np.mean(
        [
            -(1.0 - np.log(1 + np.e)),  # -log softmax([0, 1])[1]
            -(2.0 - np.log(np.exp(2) + np.exp(-1))),
            np.log(2.0),
        ]
    )
    got = cross_entropy(torch.tensor(LOGITS), torch.tensor(ACTIONS))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_losses_are_per_learner():
    logits = torch.tensor(np.concatenate([LOGITS, LOGITS[:, ::-1]]))
    actions = torch.tensor(np.concatenate([ACTIONS, ACTIONS]))
    per_learner = cross_entropy(logits, actions)
    assert per_learner[0] == cross_entropy(logits[:1], actions[:1])[0]
    assert per_learner[1] == cross_entropy(logits[1:], actions[1:])[0]


# --- batched seeds, determinism ---------------------------------------------------------------


@pytest.mark.parametrize("algo", ["bc", "edm", "edm-decoupled"])
def test_batched_learner_follows_its_single_run(algo):
    obs, actions = _data(n=2000)
    config = LearnerConfig(algo=algo, n_updates=100, sgld_buffer_size=500)
    seeds = [3, 7, 11]
    batched = train(from_arrays(obs, actions), config, seeds=seeds, n_actions=2)
    for i in (0, 2):
        single = train(from_arrays(obs, actions), config, seeds=[seeds[i]], n_actions=2)
        np.testing.assert_allclose(batched.loss[i], single.loss[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(batched.rho[i], single.rho[0], rtol=0, atol=1e-5)
        for name, value in single.policy_state.items():
            np.testing.assert_allclose(batched.policy_state[name][i], value[0], atol=1e-5)
    assert not np.allclose(batched.loss[0], batched.loss[1])  # seeds differ


def test_same_seed_twice_is_identical():
    obs, actions = _data()
    config = LearnerConfig(algo="edm", n_updates=30, sgld_buffer_size=200)
    a = train(from_arrays(obs, actions), config, seeds=[5], n_actions=2)
    b = train(from_arrays(obs, actions), config, seeds=[5], n_actions=2)
    assert np.array_equal(a.loss, b.loss)
    assert all(torch.equal(a.policy_state[k], b.policy_state[k]) for k in a.policy_state)
    np.testing.assert_array_equal(a.learner(0)(obs), b.learner(0)(obs))


# --- options and helpers ----------------------------------------------------------------------


def test_normalisation_makes_the_learner_scale_invariant():
    obs, actions = _data()
    config = LearnerConfig(
        algo="edm", n_updates=50, sgld_buffer_size=200, normalize_observations=True
    )
    plain = train(from_arrays(obs, actions), config, seeds=[0], n_actions=2)
    scaled = train(from_arrays(obs * 100 + 7, actions), config, seeds=[0], n_actions=2)
    np.testing.assert_allclose(plain.loss, scaled.loss, atol=1e-3)
    np.testing.assert_allclose(scaled.obs_mean[0], obs.mean(0) * 100 + 7, rtol=1e-4)
    np.testing.assert_array_equal(plain.learner(0)(obs), scaled.learner(0)(obs * 100 + 7))


def test_minibatches_are_distinct_indices():
    for n in (40, 100_000):
        idx = minibatch_indices(torch.Generator().manual_seed(0), n, 32)
        assert len(set(idx.tolist())) == 32 and idx.max() < n


def test_small_data_caps_the_batch_at_the_data_size():
    # 10 pairs and batch 32: every update's minibatch is all 10 pairs, so the first update's
    # cross-entropy is the initial network's mean over the whole data set.
    obs, actions = _data(n=10)
    result = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=3), seeds=[0], n_actions=2
    )
    net = StackedMLP.initialized([seed_generator(0, 0)], in_dim=4, hidden_sizes=(64, 64), out_dim=2)
    with torch.no_grad():
        logits = net(torch.from_numpy(obs)[None])[0].double().numpy()
    ce = -(logits - _lse(logits)[:, None])[np.arange(10), actions].mean()
    assert result.cross_entropy[0, 0] == pytest.approx(ce, rel=1e-5)
    assert result.n_pairs == (10,)


# --- bad input ------------------------------------------------------------------------------------


def test_train_takes_validated_demonstrations():
    obs, actions = _data(n=20)
    config = LearnerConfig(algo="bc", n_updates=1)
    with pytest.raises(LearnerInputError, match="must be a Demonstrations"):
        train(obs, config, seeds=[0], n_actions=2)
    with pytest.raises(LearnerInputError, match="one Demonstrations per seed"):
        train([from_arrays(obs, actions)], config, seeds=[0, 1], n_actions=2)
    with pytest.raises(LearnerInputError, match="number of actions is unknown"):
        train(from_arrays(obs, actions), config, seeds=[0])
    with pytest.raises(LearnerInputError, match="ambiguous"):
        train(from_arrays(obs, actions, n_actions=3), config, seeds=[0], n_actions=2)
    with pytest.raises(LearnerInputError, match=r"outside 0\.\.1"):
        train(from_arrays(obs, actions + 1), config, seeds=[0], n_actions=2)


def test_bad_seeds_device_and_config():
    obs, actions = _data(n=20)
    config = LearnerConfig(algo="bc", n_updates=1)
    with pytest.raises(LearnerInputError, match="at least one seed"):
        train(from_arrays(obs, actions), config, seeds=[], n_actions=2)
    with pytest.raises(LearnerInputError, match=r"integers in 0..4294967295"):
        train(from_arrays(obs, actions), config, seeds=[-1], n_actions=2)
    with pytest.raises(LearnerInputError, match="sequence of integers"):
        train(from_arrays(obs, actions), config, seeds=3, n_actions=2)
    with pytest.raises(LearnerInputError, match=r"distinct .* got \[0\] more than once"):
        train(from_arrays(obs, actions), config, seeds=[0, 1, 0], n_actions=2)
    with pytest.raises(LearnerInputError, match="Unknown device"):
        train(from_arrays(obs, actions), config, seeds=[0], n_actions=2, device="tpu-9")
    if not torch.cuda.is_available():
        with pytest.raises(LearnerInputError, match="CUDA is not available"):
            train(from_arrays(obs, actions), config, seeds=[0], n_actions=2, device="cuda")
    with pytest.raises(LearnerInputError, match="algo must be one of"):
        LearnerConfig(algo="gail")
    with pytest.raises(LearnerInputError, match="batch_size must be a positive integer"):
        LearnerConfig(batch_size=0)
    with pytest.raises(LearnerInputError, match="sgld_reinit_prob"):
        LearnerConfig(sgld_reinit_prob=1.5)
    with pytest.raises(LearnerInputError, match="Unknown learner config keys"):
        LearnerConfig.from_dict({"algo": "bc", "lr": 1})


def test_learner_rejects_bad_observations():
    obs, actions = _data(n=20)
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    ).learner(0)
    assert learner(obs).shape == (20,) and learner(obs).dtype == np.int64
    with pytest.raises(LearnerInputError, match=r"shape \[n, 4\]"):
        learner(obs[0])
    with pytest.raises(LearnerInputError, match="NaN"):
        learner(np.full((1, 4), np.nan, np.float32))


def test_config_round_trips_and_reports_temperature():
    config = LearnerConfig()
    assert LearnerConfig.from_dict(config.to_dict()) == config
    assert (config.algo, config.hidden_sizes, config.batch_size, config.n_updates) == (
        "edm",
        (64, 64),
        32,
        10_000,
    )
    assert config.sgld_temperature == pytest.approx(0.005)

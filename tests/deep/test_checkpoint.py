"""Checkpoints: a saved learner loads and acts identically; atomic, complete files; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sbil.deep.checkpoint import CheckpointError, load_learner, save_learner, save_run
from sbil.deep.learners import LearnerConfig, train


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(200, 4)) * [1, 5, 0.1, 2]).astype(np.float32)
    return obs, (obs[:, 2] > 0).astype(np.int64)


@pytest.mark.parametrize(
    "config",
    [
        LearnerConfig(algo="bc", n_updates=20),
        LearnerConfig(algo="edm", n_updates=5, sgld_buffer_size=50, normalize_observations=True),
        LearnerConfig(algo="edm-decoupled", n_updates=5, sgld_buffer_size=50, hidden_sizes=(8,)),
    ],
    ids=["bc", "edm-normalised", "edm-decoupled"],
)
def test_saved_learner_loads_and_acts_identically(tmp_path, data, config):
    obs, actions = data
    learner = train(obs, actions, config, seeds=[3], n_actions=2, env_id="CartPole-v1").learner(0)
    folder = save_learner(tmp_path / "ckpt", learner, metadata={"note": "test"})
    loaded = load_learner(folder)
    probe = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32) * 3
    np.testing.assert_array_equal(loaded.logits(probe), learner.logits(probe))
    np.testing.assert_array_equal(loaded(probe), learner(probe))
    np.testing.assert_array_equal(loaded.state_log_density(probe), learner.state_log_density(probe))
    assert loaded.config == config and loaded.seed == 3 and loaded.env_id == "CartPole-v1"
    np.testing.assert_array_equal(loaded.obs_std, learner.obs_std)
    doc = json.loads((folder / "learner.json").read_text())
    assert doc["obs_dim"] == 4 and doc["n_actions"] == 2 and doc["metadata"] == {"note": "test"}
    assert doc["hidden_sizes"] == list(config.hidden_sizes)
    assert load_learner(folder / "learner.json").seed == 3
    assert sorted(p.name for p in folder.iterdir()) == ["learner.json", "weights.pt"]
    state = torch.load(folder / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_save_run_writes_config_checkpoints_and_losses(tmp_path, data):
    obs, actions = data
    result = train(obs, actions, LearnerConfig(algo="bc", n_updates=10), seeds=[0, 4], n_actions=2)
    out = save_run(tmp_path / "run", result, run_config={"dataset": "x"}, extra_results={"t": 1})
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "x" and config["seeds"] == [0, 4]
    assert config["learner_config"]["algo"] == "bc"
    results = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in results["learners"]] == [0, 4] and results["t"] == 1
    with np.load(out / "losses.npz") as losses:
        np.testing.assert_array_equal(losses["loss"], result.loss)
    np.testing.assert_array_equal(load_learner(out / "seed-4")(obs), result.learner(1)(obs))
    with pytest.raises(CheckpointError, match="holds a training run"):
        load_learner(out)
    assert not list(out.rglob("*.tmp"))


def test_load_errors_are_clear(tmp_path, data):
    with pytest.raises(CheckpointError, match=r"learner\.json is missing"):
        load_learner(tmp_path / "nothing")
    obs, actions = data
    learner = train(obs, actions, LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2)
    folder = save_learner(tmp_path / "c", learner.learner(0))
    (folder / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="Cannot load weights"):
        load_learner(folder)
    (folder / "weights.pt").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: no weights\.pt"):
        load_learner(folder)
    (folder / "learner.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="Cannot read"):
        load_learner(folder)
    (folder / "learner.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not an sbil learner checkpoint"):
        load_learner(folder)
    with pytest.raises(CheckpointError, match="needs a Learner"):
        save_learner(tmp_path / "d", "not a learner")


def test_mismatched_weights_are_reported(tmp_path, data):
    obs, actions = data
    learner = train(obs, actions, LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2)
    folder = save_learner(tmp_path / "c", learner.learner(0))
    doc = json.loads((folder / "learner.json").read_text())
    doc["config"]["hidden_sizes"] = [32, 32]
    (folder / "learner.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="do not fit an MLP 4-32-32-2"):
        load_learner(folder)

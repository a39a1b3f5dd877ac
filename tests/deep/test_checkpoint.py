"""Checkpoints: a saved learner loads and acts identically; atomic, complete files; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sbil.deep.checkpoint import CheckpointError, load_learner, save_learner
from sbil.deep.data import from_arrays
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
    learner = train(
        from_arrays(obs, actions), config, seeds=[3], n_actions=2, env_id="CartPole-v1"
    ).learner(0)
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


def test_load_errors_are_clear(tmp_path, data):
    with pytest.raises(CheckpointError, match=r"learner\.json is missing"):
        load_learner(tmp_path / "nothing")
    obs, actions = data
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    )
    folder = save_learner(tmp_path / "c", learner.learner(0))
    (folder / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a weights file saved by sbil"):
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
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    )
    folder = save_learner(tmp_path / "c", learner.learner(0))
    doc = json.loads((folder / "learner.json").read_text())
    doc["config"]["hidden_sizes"] = [32, 32]
    (folder / "learner.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="do not fit an MLP 4-32-32-2") as caught:
        load_learner(folder)
    message = str(caught.value)
    assert "\n" not in message and "load_state_dict" not in message
    assert "weight0 has shape [1, 4, 64], expected [1, 4, 32]" in message


def _folder(tmp_path, data):
    obs, actions = data
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    )
    return save_learner(tmp_path / "c", learner.learner(0))


def _never_unsafe(message: str) -> None:
    assert "weights_only" not in message and "unsafe" not in message.lower()
    assert "\n" not in message


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda path: torch.save({"a": [1, 2]}, path), id="pickled-list"),
        pytest.param(lambda path: torch.save(torch.zeros(3), path), id="bare-tensor"),
        pytest.param(lambda path: torch.save({"x": object}, path), id="python-object"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:100]), id="truncated"),
        *[
            pytest.param(
                lambda path, seed=seed: path.write_bytes(np.random.default_rng(seed).bytes(2000)),
                id=f"random-bytes-{seed}",
            )
            # Seeds whose bytes make torch's unpickler raise UnpicklingError, IndexError,
            # UnicodeDecodeError and KeyError respectively.
            for seed in (0, 17, 54, 62)
        ],
    ],
)
def test_weights_that_are_not_sbil_weights_get_one_safe_sentence(tmp_path, data, payload):
    folder = _folder(tmp_path, data)
    payload(folder / "weights.pt")
    with pytest.raises(CheckpointError, match="is not a weights file saved by sbil") as caught:
        load_learner(folder)
    _never_unsafe(str(caught.value))


@pytest.mark.parametrize("field", ["obs_dim", "config", "obs_std"])
def test_a_missing_field_is_named(tmp_path, data, field):
    folder = _folder(tmp_path, data)
    doc = json.loads((folder / "learner.json").read_text())
    del doc[field]
    (folder / "learner.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=f"lacks the field\\(s\\) '{field}'"):
        load_learner(folder)


def test_a_config_that_is_not_a_mapping_is_named(tmp_path, data):
    folder = _folder(tmp_path, data)
    doc = json.loads((folder / "learner.json").read_text())
    doc["config"] = ["bc"]
    (folder / "learner.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="'config' field is not a mapping"):
        load_learner(folder)


def test_missing_weights_are_named(tmp_path, data):
    folder = _folder(tmp_path, data)
    state = torch.load(folder / "weights.pt", weights_only=True)
    del state["policy.bias1"]
    torch.save(state, folder / "weights.pt")
    with pytest.raises(CheckpointError, match=r"do not fit an MLP 4-64-64-2: bias1 missing\.$"):
        load_learner(folder)


def test_a_truncated_weights_file_says_so(tmp_path, data):
    obs, actions = data
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    ).learner(0)
    folder = save_learner(tmp_path / "bc", learner)
    weights = folder / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_learner(folder)


def test_non_finite_weights_are_refused(tmp_path, data):
    obs, actions = data
    learner = train(
        from_arrays(obs, actions), LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2
    ).learner(0)
    folder = save_learner(tmp_path / "bc", learner)
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["policy.weight0"][0, 0, 0] = float("nan")
    torch.save(state, folder / "weights.pt")
    with pytest.raises(CheckpointError, match=r"NaN or infinite.*diverged"):
        load_learner(folder)

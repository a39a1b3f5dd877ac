"""Checkpoints: a saved learner loads and acts identically; atomic, complete files; clear errors."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch

from sbil.deep.checkpoint import (
    CheckpointError,
    check_run_folder,
    load_learner,
    provenance,
    save_learner,
    save_run,
)
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
    learner = train(obs, actions, LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2)
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
    learner = train(obs, actions, LearnerConfig(algo="bc", n_updates=1), seeds=[0], n_actions=2)
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


def test_files_and_folders_follow_the_umask(tmp_path, data):
    obs, actions = data
    result = train(obs, actions, LearnerConfig(algo="bc", n_updates=2), seeds=[0], n_actions=2)
    previous = os.umask(0o022)
    try:
        out = save_run(tmp_path / "run", result, run_config={})
    finally:
        os.umask(previous)
    assert (out.stat().st_mode & 0o777) == 0o755
    assert (out / "seed-0").stat().st_mode & 0o777 == 0o755
    for name in ("config.json", "results.json", "losses.npz", "seed-0/weights.pt"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_a_run_never_mixes_with_an_earlier_one(tmp_path, data):
    obs, actions = data
    bc = train(obs, actions, LearnerConfig(algo="bc", n_updates=2), seeds=[0, 1, 2], n_actions=2)
    edm = LearnerConfig(algo="edm", n_updates=2, sgld_buffer_size=50)
    edm_run = train(obs, actions, edm, seeds=[7], n_actions=2)
    out = save_run(tmp_path / "run", bc, run_config={})
    with pytest.raises(CheckpointError, match=r"already holds files.*--overwrite"):
        save_run(out, edm_run, run_config={})
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("seed")) == [
        "seed-0",
        "seed-1",
        "seed-2",
    ]
    save_run(out, edm_run, run_config={}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "losses.npz",
        "results.json",
        "seed-7",
    ]
    assert json.loads((out / "config.json").read_text())["seeds"] == [7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_learner(save_run(empty, edm_run, run_config={}) / "seed-7").seed == 7


def test_run_folder_is_checked_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        check_run_folder(tmp_path / "file")
    with pytest.raises(CheckpointError, match=r"Cannot write the run folder /proc/x \("):
        check_run_folder("/proc/x")
    # --overwrite replaces earlier runs only, never a folder of other files or the cwd.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not an sbil training run"):
        check_run_folder(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    with pytest.raises(CheckpointError, match="current folder or one of its parents"):
        check_run_folder(os.getcwd(), overwrite=True)
    with pytest.raises(CheckpointError, match="current folder or one of its parents"):
        check_run_folder("..", overwrite=True)
    assert check_run_folder(tmp_path / "a" / "b" / "run") == tmp_path / "a" / "b" / "run"
    assert (tmp_path / "a" / "b").is_dir() and not (tmp_path / "a" / "b" / "run").exists()


def test_provenance_names_the_commit_and_versions():
    import gymnasium

    import sbil

    record = provenance()
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["numpy"] == np.__version__
    assert record["versions"]["gymnasium"] == gymnasium.__version__
    assert record["versions"]["sbil"] is not None
    here = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=os.path.dirname(sbil.__file__),
        capture_output=True,
        text=True,
        check=False,
    )
    if here.returncode != 0:
        assert record["git_commit"] is None
        return
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=os.path.dirname(sbil.__file__),
        capture_output=True,
        text=True,
        check=True,
    )
    dirty = "-dirty" if status.stdout.strip() else ""
    assert record["git_commit"] == here.stdout.strip() + dirty


def test_save_run_records_provenance(tmp_path, data):
    obs, actions = data
    result = train(obs, actions, LearnerConfig(algo="bc", n_updates=2), seeds=[0], n_actions=2)
    out = save_run(tmp_path / "run", result, run_config={})
    config = json.loads((out / "config.json").read_text())
    assert config["provenance"] == provenance()

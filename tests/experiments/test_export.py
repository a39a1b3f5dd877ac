"""Exporting a training run: one folder per seed with the run's provenance; clear refusals for
missing, unfinished or incomplete runs and occupied destinations."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sbil.deep.checkpoint import load_learner
from sbil.deep.export import ExportError
from sbil.deep.learners import LearnerConfig
from sbil.experiments.export import default_out, export_run
from sbil.experiments.runs import RunSpec, run_training

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-seed BC run on CartPole-like data (60 updates)."""
    folder = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(200, 4)) * [1, 1, 0.1, 1]).astype(np.float32)
    np.savez(
        folder / "data.npz",
        observations=obs,
        actions=(obs[:, 2] > 0).astype(np.int64),
        episode_lengths=[50] * 4,
    )
    spec = RunSpec(
        learner=LearnerConfig(algo="bc", n_updates=60, normalize_observations=True),
        seeds=(0, 1),
        data=str(folder / "data.npz"),
        env_id="CartPole-v1",
    )
    run_training(spec, folder / "bc")
    return folder / "bc"


def _copy(run, tmp_path):
    target = tmp_path / "bc"
    shutil.copytree(run, target)
    return target


def test_every_seed_is_exported_with_the_runs_provenance(run, tmp_path):
    out = tmp_path / "exported"
    result = export_run(run, "torchscript", out=out)
    assert result.folder == out and sorted(result.learners) == [0, 1] and result.skipped == {}
    config = json.loads((run / "config.json").read_text())
    probe = np.random.default_rng(3).normal(size=(100, 4)).astype(np.float32)
    for seed, written in result.learners.items():
        assert written.folder == out / f"seed-{seed}"
        assert sorted(p.name for p in written.folder.iterdir()) == [
            "logits.pt",
            "policy.json",
            "policy.pt",
        ]
        learner = load_learner(run / f"seed-{seed}")
        actions = torch.jit.load(str(written.policy))(torch.from_numpy(probe)).numpy()
        np.testing.assert_array_equal(actions, learner(probe))
        training = json.loads(written.sidecar.read_text())["training"]
        assert training["algo"] == "bc" and training["env_id"] == "CartPole-v1"
        assert training["seed"] == seed
        assert training["git_commit"] == config["provenance"]["git_commit"]
        assert training["run_config"] == config
        assert training["run"] == str(run.resolve())
        assert training["checkpoint"] == str((run / f"seed-{seed}").resolve())
        assert training["checkpoint_metadata"]["train_episodes"] == [0, 1, 2, 3]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "sbil-export" and manifest["export_format"] == "torchscript"
    assert manifest["seeds"] == {"0": "seed-0", "1": "seed-1"} and manifest["skipped"] == {}
    assert manifest["git_commit"] == config["provenance"]["git_commit"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sbil-")]  # nothing staged


def test_the_default_destination_is_beside_the_run_and_seeds_can_be_chosen(run, tmp_path):
    copy = _copy(run, tmp_path)
    assert default_out(copy, "onnx") == tmp_path / "bc-onnx"
    assert default_out(copy / "seed-1", "torchscript") == tmp_path / "bc-torchscript"
    result = export_run(copy, "torchscript", seeds=[1])
    assert result.folder == tmp_path / "bc-torchscript" and list(result.learners) == [1]
    assert sorted(p.name for p in result.folder.iterdir()) == ["export.json", "seed-1"]
    one = export_run(copy / "seed-0", "torchscript", out=tmp_path / "one")
    assert list(one.learners) == [0]
    sidecar = json.loads(one.learners[0].sidecar.read_text())
    assert sidecar["training"]["run"] == str(copy.resolve())  # the checkpoint's run is found


def test_an_earlier_export_is_replaced_only_with_overwrite(run, tmp_path):
    out = tmp_path / "out"
    export_run(run, "torchscript", out=out, seeds=[0])
    with pytest.raises(ExportError, match="already holds an export; pass --overwrite"):
        export_run(run, "torchscript", out=out)
    result = export_run(run, "torchscript", out=out, overwrite=True)
    assert sorted(result.learners) == [0, 1]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="holds files that are not an sbil export"):
        export_run(run, "torchscript", out=other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_missing_unfinished_and_incomplete_runs_are_refused_clearly(run, tmp_path):
    with pytest.raises(ExportError, match="does not exist; give a run folder"):
        export_run(tmp_path / "nowhere", "torchscript")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"not an sbil training run \(no config\.json\)"):
        export_run(tmp_path / "empty", "torchscript")
    unfinished = _copy(run, tmp_path / "a")
    (unfinished / "results.json").unlink()
    with pytest.raises(ExportError, match=r"not finished \(no results\.json\).*--resume"):
        export_run(unfinished, "torchscript", out=tmp_path / "x")
    incomplete = _copy(run, tmp_path / "b")
    shutil.rmtree(incomplete / "seed-1")
    with pytest.raises(ExportError, match="incomplete: its learner of seed 1 has no checkpoint"):
        export_run(incomplete, "torchscript", out=tmp_path / "x")
    with pytest.raises(ExportError, match=r"no finished learner of seed\(s\) 7; .*seeds 0, 1"):
        export_run(run, "torchscript", out=tmp_path / "x", seeds=[7])
    with pytest.raises(ExportError, match="is inside"):
        export_run(run, "torchscript", out=run / "exported")
    with pytest.raises(ExportError, match="must be torchscript or onnx"):
        export_run(run, "keras", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_seeds_that_failed_in_training_are_skipped_and_said(run, tmp_path):
    copy = _copy(run, tmp_path)
    results = json.loads((copy / "results.json").read_text())
    results["learners"][1].update(
        status="failed", error="diverged: the loss became nan at update 3", checkpoint=None
    )
    (copy / "results.json").write_text(json.dumps(results))
    shutil.rmtree(copy / "seed-1")
    result = export_run(copy, "torchscript", out=tmp_path / "out")
    assert list(result.learners) == [0]
    assert result.skipped == {1: "diverged: the loss became nan at update 3"}
    manifest = json.loads((tmp_path / "out" / "export.json").read_text())
    assert manifest["skipped"] == {"1": "diverged: the loss became nan at update 3"}
    with pytest.raises(ExportError, match=r"seed 1 .* failed in training \(diverged: the loss"):
        export_run(copy, "torchscript", out=tmp_path / "none", seeds=[1])
    results["learners"][0].update(status="failed", error="diverged", checkpoint=None)
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(ExportError, match="no learner to export: every seed failed"):
        export_run(copy, "torchscript", out=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_an_onnx_export_of_a_run_runs_in_onnxruntime(run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    result = export_run(run, "onnx", out=tmp_path / "onnx", seeds=[1])
    probe = np.random.default_rng(4).normal(size=(100, 4)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(result.learners[1].policy))
    (actions,) = session.run(None, {"observations": probe})
    np.testing.assert_array_equal(actions, load_learner(run / "seed-1")(probe))

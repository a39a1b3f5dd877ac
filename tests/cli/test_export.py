"""`sbil export` and `sbil evaluate --record` as a user types them: tiny runs, the files they
write, and one clear line for every refusal."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import deep, export, train
from sbil.deep.checkpoint import load_learner

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    train.register(app)
    deep.register(app)
    export.register(app)
    return app


@pytest.fixture(scope="module")
def run(app, tmp_path_factory):
    """`sbil train` of two BC seeds for 5 updates: poor learners, short CartPole episodes."""
    folder = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(80, 4)) * [1, 1, 0.1, 1]).astype(np.float32)
    np.savez(
        folder / "data.npz",
        observations=obs,
        actions=(obs[:, 2] > 0).astype(np.int64),
        episode_lengths=[40, 40],
    )
    args = ["train", "--data", str(folder / "data.npz"), "--env", "CartPole-v1", "--algo", "bc"]
    args += ["--seeds", "0,1", "--updates", "5", "--no-progress", "--out", str(folder / "bc")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return folder / "bc"


def _one_clear_line(result, message, code=1):
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_export_torchscript_writes_each_seed_beside_the_run(app, run):
    import torch

    result = runner.invoke(app, ["export", str(run), "--format", "torchscript"])
    assert result.exit_code == 0, result.output
    out = run.with_name("bc-torchscript")
    assert f"Exported 2 learner(s) of {run} as torchscript to {out}" in result.stdout
    assert f"seed 1: policy.pt (actions), logits.pt (logits), policy.json -> {out / 'seed-1'}" in (
        result.stdout
    )
    probe = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    for seed in (0, 1):
        policy = torch.jit.load(str(out / f"seed-{seed}" / "policy.pt"))
        np.testing.assert_array_equal(
            policy(torch.from_numpy(probe)).numpy(), load_learner(run / f"seed-{seed}")(probe)
        )
    again = runner.invoke(app, ["export", str(run), "--format", "torchscript"])
    _one_clear_line(again, "already holds an export; pass --overwrite")
    replaced = runner.invoke(app, ["export", str(run), "-f", "torchscript", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_export_onnx_of_one_seed_runs_in_onnxruntime(app, run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    args = ["export", str(run), "--format", "onnx", "--seeds", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "seed-1"]
    sidecar = json.loads((out / "seed-1" / "policy.json").read_text())
    assert sidecar["export_format"] == "onnx" and sidecar["training"]["seed"] == 1
    probe = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(out / "seed-1" / "policy.onnx"))
    (actions,) = session.run(None, {"observations": probe})
    np.testing.assert_array_equal(actions, load_learner(run / "seed-1")(probe))


def test_export_refusals_are_one_line(app, run, tmp_path, monkeypatch):
    result = runner.invoke(app, ["export", str(run), "--format", "tflite"])
    _one_clear_line(result, "--format must be torchscript or onnx, got 'tflite'.", code=2)
    result = runner.invoke(app, ["export", str(run)])
    assert result.exit_code == 2 and "Missing option '--format'" in result.output
    result = runner.invoke(app, ["export", str(run), "-f", "onnx", "--seeds", "0-"])
    assert result.exit_code == 2, result.output
    result = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "-f", "torchscript"])
    _one_clear_line(result, "does not exist; give a run folder written by `sbil train`")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((run / "config.json").read_text())
    result = runner.invoke(app, ["export", str(unfinished), "-f", "torchscript"])
    _one_clear_line(result, "is not finished (no results.json)")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were not installed
    result = runner.invoke(app, ["export", str(run), "-f", "onnx", "--out", str(tmp_path / "o")])
    _one_clear_line(result, "Exporting to ONNX needs onnx")
    assert 'with `pip install "sbil[export]"`' in result.stderr
    assert not (tmp_path / "o").exists()


def test_evaluate_record_writes_a_video_of_each_learners_first_episodes(app, run, tmp_path):
    pytest.importorskip("moviepy")
    videos = tmp_path / "videos"
    args = ["evaluate", str(run), "--episodes", "3", "--record", str(videos)]
    result = runner.invoke(app, [*args, "--record-episodes", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        folder = videos / f"seed-{seed}"
        assert f"Recorded 2 video(s) of learner {run / f'seed-{seed}'} in {folder}" in result.stdout
        assert sorted(p.name for p in folder.glob("*.mp4")) == ["episode-0.mp4", "episode-1.mp4"]
        assert all(p.stat().st_size > 0 for p in folder.glob("*.mp4"))
        index = json.loads((folder / "videos.json").read_text())
        assert [v["reset_seed"] for v in index["videos"]] == [0, 1]


def test_evaluate_record_without_moviepy_names_the_video_extra(app, run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)
    args = ["evaluate", str(run), "--episodes", "1", "--record", str(tmp_path / "v")]
    result = runner.invoke(app, args)
    _one_clear_line(result, "needs moviepy, which comes with sbil's 'video' extra; install")
    assert 'it with `pip install "sbil[video]"`' in result.stderr
    result = runner.invoke(app, [*args, "--record-episodes", "0"])
    _one_clear_line(result, "--record-episodes must be at least 1, got 0.", code=2)

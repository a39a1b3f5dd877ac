"""Smoke runs of `sbil train` with tiny budgets, as a user would type them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import deep, train
from sbil.deep.checkpoint import load_learner

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    train.register(app)
    deep.register(app)
    return app


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    from sbil.deep.data import collect

    root = tmp_path_factory.mktemp("minari")
    collect("CartPole-v1", 3, root=root, seed=0)
    return root


def test_train_edm_on_a_minari_dataset_then_evaluate(app, minari_root, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "sbil/cartpole/scripted-v0", "--root", str(minari_root)]
    args += ["--algo", "edm", "--seeds", "0,1", "--episodes", "2", "--updates", "50"]
    result = runner.invoke(app, [*args, "--out", str(out), "--sgld-buffer-size", "100"])
    assert result.exit_code == 0, result.output
    assert "Trained 2 edm learner(s) on 1000 pairs from 2 trajectories" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["env_id"] == "CartPole-v1" and config["episodes"] == 2
    assert config["learner_config"]["n_updates"] == 50 and config["seeds"] == [0, 1]
    learner = load_learner(out / "seed-1")
    assert learner.config.algo == "edm" and learner.env_id == "CartPole-v1"
    evaluated = runner.invoke(app, ["evaluate", str(out / "seed-1"), "--episodes", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "CartPole-v1 learner" in evaluated.output


def test_train_bc_from_arrays_with_evaluation(app, tmp_path):
    from sbil.deep.evaluation import run_episodes
    from sbil.deep.experts import get_expert

    _, _, trajectories = run_episodes(get_expert("CartPole-v1"), "CartPole-v1", 2, record=True)
    path = tmp_path / "demos.npz"
    np.savez(
        path,
        observations=np.concatenate([t.observations[:-1] for t in trajectories]),
        actions=np.concatenate([t.actions for t in trajectories]),
        episode_lengths=[len(t.actions) for t in trajectories],
    )
    out = tmp_path / "bc"
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(path),
            "--env",
            "CartPole-v1",
            "--algo",
            "bc",
            "--updates",
            "50",
            "--every-nth-step",
            "20",
            "--eval-episodes",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "on 50 pairs from 2 trajectories" in result.output and "return" in result.output
    results = json.loads((out / "results.json").read_text())
    assert len(results["evaluation"]["0"]["returns"]) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --dataset"),
        (["--dataset", "sbil/cartpole/scripted-v0", "--episodes", "7"], "more trajectories"),
        (["--dataset", "sbil/cartpole/scripted-v0", "--seeds", "a,b"], "--seeds must be"),
        (["--dataset", "sbil/cartpole/scripted-v0", "--algo", "gail"], "algo must be one of"),
        (["--dataset", "nope/none-v0"], "No local Minari dataset"),
        (["--dataset", "sbil/cartpole/scripted-v0", "--sgld-noise", "hot"], "'langevin'"),
    ],
)
def test_bad_input_gives_one_clear_line(app, minari_root, tmp_path, extra, message):
    args = ["train", "--root", str(minari_root), "--out", str(tmp_path / "x"), "--updates", "1"]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_cuda_without_a_gpu_is_a_clear_error(app, minari_root, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    args = ["train", "--dataset", "sbil/cartpole/scripted-v0", "--root", str(minari_root)]
    result = runner.invoke(app, [*args, "--device", "cuda", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "CUDA is not available" in result.output

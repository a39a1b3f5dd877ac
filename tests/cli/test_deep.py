"""Smoke runs of the deep data commands, as a user would type them (tiny budgets)."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import deep
from sbil.deep.data import load_demonstrations

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    deep.register(app)
    return app


def test_collect_writes_a_loadable_dataset(app, tmp_path):
    args = ["collect", "--env", "CartPole-v1", "--episodes", "2", "--root", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Wrote sbil/cartpole/scripted-v0 (2 episodes, 1000 steps)" in result.output
    assert "500.00 ± 0.00" in result.output
    assert load_demonstrations("sbil/cartpole/scripted-v0", root=tmp_path).n_episodes == 2

    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "already exists" in again.output and "Traceback" not in again.output
    replaced = runner.invoke(app, [*args[:3], "--episodes", "1", *args[5:], "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert load_demonstrations("sbil/cartpole/scripted-v0", root=tmp_path).n_episodes == 1


def test_collect_with_custom_id_seed_and_progress(app, tmp_path):
    result = runner.invoke(
        app,
        [
            "collect",
            "--env",
            "MountainCar-v0",
            "--episodes",
            "2",
            "--seed",
            "3",
            "--dataset-id",
            "me/mc-v2",
            "--root",
            str(tmp_path),
            "--progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "me" / "mc-v2" / "data" / "metadata.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "Pendulum-v1", "--episodes", "1"], "continuous"),
        (["--env", "CartPole-v1", "--episodes", "0"], "n_episodes must be a positive integer"),
        (["--env", "CartPole-v1", "--episodes", "1", "--dataset-id", "bad id"], "Malformed"),
        (["--env", "CartPole-v1", "--episodes", "1", "--expert", "oracle"], "Unknown expert"),
    ],
)
def test_collect_errors_are_one_line_messages(app, tmp_path, args, message):
    result = runner.invoke(app, ["collect", *args, "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_evaluate_an_expert(app, tmp_path):
    output = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--expert",
            "scripted",
            "--env",
            "CartPole-v1",
            "--episodes",
            "3",
            "--output",
            str(output),
            "--progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "CartPole-v1 scripted expert: 500.00 ± 0.00" in result.output
    assert "3 episodes, seeds 0..2" in result.output
    saved = json.loads(output.read_text())
    assert saved["returns"] == [500.0, 500.0, 500.0] and saved["policy"] == "scripted expert"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "CartPole-v1"], "Give either a CHECKPOINT or --expert"),
        (["ckpt", "--expert", "scripted", "--env", "CartPole-v1"], "exactly one"),
        (["--expert", "scripted"], "--env is required"),
        (["missing.pt", "--env", "CartPole-v1"], "does not exist"),
        (["--expert", "scripted", "--env", "Nope-v0"], "Unknown Gymnasium environment"),
    ],
)
def test_evaluate_errors(app, args, message):
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_expert_list_and_eval(app):
    listed = runner.invoke(app, ["expert", "list"])
    assert listed.exit_code == 0, listed.output
    for env_id in ("CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0"):
        assert env_id in listed.output
    evaluated = runner.invoke(
        app, ["expert", "eval", "Acrobot-v1", "--episodes", "2", "--seed", "7"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "Acrobot-v1 scripted expert:" in evaluated.output and "seeds 7..8" in evaluated.output


def test_expert_train_without_sb3_gives_the_install_line(app, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails as if absent
    result = runner.invoke(
        app, ["expert", "train", "CartPole-v1", "--timesteps", "10", "--experts-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "pip install 'sbil[experts]'" in result.output


class _FakeLearner:
    """Stands in for a loaded checkpoint: a policy that knows its task."""

    env_id = "CartPole-v1"

    def __call__(self, obs):
        from sbil.deep.experts import cartpole_expert

        return cartpole_expert(obs)


def test_evaluate_a_checkpoint_takes_the_task_from_it(app, tmp_path, monkeypatch):
    import types

    loaded = []
    fake = types.ModuleType("sbil.deep.checkpoint")
    fake.load_learner = lambda path: loaded.append(path) or _FakeLearner()
    monkeypatch.setitem(sys.modules, "sbil.deep.checkpoint", fake)
    checkpoint = tmp_path / "learner"
    checkpoint.mkdir()
    result = runner.invoke(app, ["evaluate", str(checkpoint), "--episodes", "2", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert loaded == [checkpoint]
    assert f"CartPole-v1 learner {checkpoint}: 500.00 ± 0.00" in result.output
    assert "seeds 4..5" in result.output


@pytest.mark.slow  # imports torch and trains a tiny learner (about 4 s)
def test_evaluate_a_saved_learner_checkpoint(app, tmp_path):
    from sbil.deep.checkpoint import load_learner, save_learner
    from sbil.deep.data import collect
    from sbil.deep.evaluation import evaluate
    from sbil.deep.learners import LearnerConfig, train

    info = collect("CartPole-v1", 2, root=tmp_path)
    demos = load_demonstrations(info.dataset_id, root=tmp_path)
    config = LearnerConfig(algo="bc", n_updates=20)
    trained = train(
        demos.observations, demos.actions, config, seeds=[0], n_actions=2, env_id=demos.env_id
    )
    checkpoint = save_learner(tmp_path / "bc", trained.learner(0))

    result = runner.invoke(app, ["evaluate", str(checkpoint), "--episodes", "3"])
    assert result.exit_code == 0, result.output
    expected = evaluate(load_learner(checkpoint), "CartPole-v1", 3, seed=0)
    assert f"CartPole-v1 learner {checkpoint}: {expected.mean:.2f} ± {expected.std:.2f}" in (
        result.output
    )

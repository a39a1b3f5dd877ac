"""Smoke runs of the deep data commands, as a user would type them (tiny budgets)."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import _common, deep
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
        (["--env", "CartPole-v1", "--episodes", "0"], "--episodes must be at least 1, got 0"),
        (["--env", "CartPole-v1", "--episodes", "1", "--seed", "-1"], "--seed must be at least 0"),
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
        (["--expert", "scripted", "--env", "CartPole-v1", "--episodes", "0"], "--episodes must"),
        (["--expert", "scripted", "--env", "CartPole-v1", "--n-envs", "0"], "--n-envs must"),
        (["--expert", "scripted", "--env", "CartPole-v1", "--holdout-from", "1"], "need --dataset"),
        (
            ["--expert", "scripted", "--env", "CartPole-v1", "--output", "/proc/nope/x.json"],
            "Cannot write --output /proc/nope/x.json",
        ),
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
    """Stands in for a loaded checkpoint: a policy that knows its task and sizes."""

    env_id = "CartPole-v1"
    obs_dim = 4
    n_actions = 2

    def __call__(self, obs):
        from sbil.deep.experts import cartpole_expert

        return cartpole_expert(obs)


def _fake_checkpoint(tmp_path, monkeypatch, learner=None):
    """A checkpoint folder that `load_learner` (replaced) loads as ``learner``; and the loads."""
    import types

    loaded = []
    fake = types.ModuleType("sbil.deep.checkpoint")
    fake.load_learner = lambda path: loaded.append(path) or (learner or _FakeLearner())
    monkeypatch.setitem(sys.modules, "sbil.deep.checkpoint", fake)
    checkpoint = tmp_path / "learner"
    checkpoint.mkdir()
    return checkpoint, loaded


def test_evaluate_a_checkpoint_takes_the_task_from_it(app, tmp_path, monkeypatch):
    checkpoint, loaded = _fake_checkpoint(tmp_path, monkeypatch)
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
    mismatch = runner.invoke(app, ["evaluate", str(checkpoint), "--env", "Acrobot-v1"])
    assert mismatch.exit_code == 1, mismatch.output
    assert "was trained on CartPole-v1 (observations of size 4, 2 actions)" in mismatch.output


def test_evaluate_a_checkpoint_on_a_task_of_other_sizes_names_both_tasks(
    app, tmp_path, monkeypatch
):
    checkpoint, _ = _fake_checkpoint(tmp_path, monkeypatch)
    result = runner.invoke(app, ["evaluate", str(checkpoint), "--env", "Acrobot-v1"])
    assert result.exit_code == 1
    assert (
        f"The checkpoint {checkpoint} was trained on CartPole-v1 (observations of size 4, "
        "2 actions) but Acrobot-v1 has observations of size 6 and 3 actions" in result.output
    )
    assert "--env CartPole-v1" in result.output and "Traceback" not in result.output


def test_evaluate_a_checkpoint_on_another_task_of_the_same_sizes_warns(app, tmp_path, monkeypatch):
    checkpoint, _ = _fake_checkpoint(tmp_path, monkeypatch)
    args = ["evaluate", str(checkpoint), "--env", "CartPole-v0", "--episodes", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Warning: the checkpoint was trained on CartPole-v1 but is evaluated on CartPole-v0" in (
        result.output
    )
    same = runner.invoke(app, ["evaluate", str(checkpoint), "--episodes", "1"])
    assert same.exit_code == 0 and "Warning" not in same.output


class _AlwaysLeft:
    """A CartPole checkpoint that always pushes left (action 0)."""

    env_id, obs_dim, n_actions = "CartPole-v1", 4, 2

    def __call__(self, obs):
        import numpy as np

        return np.zeros(len(obs), np.int64)


def test_evaluate_reports_the_action_match_on_held_out_episodes(app, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    collected = runner.invoke(
        app, ["collect", "--env", "CartPole-v1", "--episodes", "3", "--root", str(root)]
    )
    assert collected.exit_code == 0, collected.output
    demos = load_demonstrations("sbil/cartpole/scripted-v0", root=root)
    held_out = demos.select([1, 2])
    expected = float((held_out.actions == 0).mean())
    assert 0.2 < expected < 0.8  # the expert pushes both ways: the rate can tell policies apart

    checkpoint, _ = _fake_checkpoint(tmp_path, monkeypatch, _AlwaysLeft())
    output = tmp_path / "eval.json"
    args = ["evaluate", str(checkpoint), "--episodes", "1", "--dataset"]
    args += ["sbil/cartpole/scripted-v0", "--root", str(root), "--holdout-from", "1"]
    result = runner.invoke(app, [*args, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert (
        f"Action match with sbil/cartpole/scripted-v0 episodes 1..2 ({held_out.n_steps} "
        f"states): {expected:.2%}" in result.output
    )
    saved = json.loads(output.read_text())["action_match"]
    assert saved == {
        "dataset": "sbil/cartpole/scripted-v0",
        "episodes": [1, 2],
        "n_states": held_out.n_steps,
        "rate": pytest.approx(expected),
    }

    expert_args = ["evaluate", "--expert", "scripted", "--env", "CartPole-v1", "--episodes", "1"]
    expert = runner.invoke(
        app, [*expert_args, "--dataset", "sbil/cartpole/scripted-v0", "--root", str(root)]
    )
    assert expert.exit_code == 0, expert.output
    assert f"episodes 0..2 ({demos.n_steps} states): 100.00%" in expert.output

    too_far = runner.invoke(app, [*args[:-1], "3"])
    assert too_far.exit_code == 1
    assert "--holdout-from must be in 0..2" in too_far.output
    other_task = runner.invoke(app, [*args, "--env", "Acrobot-v1"])
    assert other_task.exit_code == 1 and "Traceback" not in other_task.output


def test_collect_into_an_unusable_root_says_which_option(app, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["collect", "--env", "CartPole-v1", "--episodes", "1", "--root", str(blocker / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Cannot write datasets under" in result.output and "--root" in result.output
    assert "Traceback" not in result.output


def test_progress_defaults_to_whether_stderr_is_a_terminal(monkeypatch):
    for terminal in (True, False):
        monkeypatch.setattr(_common, "stderr_is_terminal", lambda terminal=terminal: terminal)
        with _common.progress_bar(None, "x") as callback:
            assert (callback is not None) == terminal
        with _common.progress_bar(True, "x") as callback:
            assert callback is not None  # an explicit flag wins
        with _common.progress_bar(False, "x") as callback:
            assert callback is None


@pytest.mark.parametrize(
    "command",
    [
        ["collect", "--env", "CartPole-v1", "--episodes", "1"],
        ["evaluate", "--expert", "scripted", "--env", "CartPole-v1", "--episodes", "1"],
        ["expert", "eval", "CartPole-v1", "--episodes", "1"],
    ],
)
def test_commands_show_progress_by_default_on_a_terminal(app, tmp_path, monkeypatch, command):
    import sbil.deep.evaluation

    seen = []
    run_episodes = sbil.deep.evaluation.run_episodes

    def recording(*args, progress=None, **kwargs):
        seen.append(progress is not None)
        return run_episodes(*args, progress=progress, **kwargs)

    monkeypatch.setattr(sbil.deep.evaluation, "run_episodes", recording)
    monkeypatch.setattr(_common, "stderr_is_terminal", lambda: True)
    for flags, shown in (([], True), (["--no-progress"], False)):
        extra = ["--root", str(tmp_path / str(shown))] if command[0] == "collect" else []
        seen.clear()
        result = runner.invoke(app, [*command, *extra, *flags])
        assert result.exit_code == 0, result.output
        assert seen == [shown]


def test_output_json_is_readable_by_others_as_the_umask_allows(app, tmp_path):
    import os
    import stat

    output = tmp_path / "eval.json"
    old = os.umask(0o022)
    try:
        args = ["evaluate", "--expert", "scripted", "--env", "CartPole-v1", "--episodes", "1"]
        result = runner.invoke(app, [*args, "--output", str(output)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o644

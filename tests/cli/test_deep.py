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


_CP = ["--env", "CartPole-v1", "--episodes"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--env", "Pendulum-v1", "--episodes", "1"], 1, "continuous"),
        ([*_CP, "0"], 2, "--episodes must be at least 1, got 0"),
        ([*_CP, "1", "--seed", "-1"], 2, "--seed must be an integer in 0..4294967295"),
        ([*_CP, "1", "--seed", "99999999999999999999"], 2, "got 99999999999999999999"),
        ([*_CP, "2", "--seed", "9223372036854775807"], 2, "in 0..4294967295"),
        ([*_CP, "2", "--seed", "4294967295"], 2, "uses seeds up to 4294967296"),
        ([*_CP, "1", "--dataset-id", "bad id"], 2, "--dataset-id: Malformed"),
        ([*_CP, "1", "--expert-noise", "epsilon:2"], 2, "--expert-noise: epsilon must be"),
        ([*_CP, "1", "--expert-noise", "gauss"], 2, "Unknown expert noise 'gauss'"),
        ([*_CP, "1", "--expert-noise", "sample"], 1, "Scripted experts have no action"),
        ([*_CP, "1", "--expert", "oracle"], 1, "Unknown expert"),
        ([*_CP, "x"], 2, "Invalid value for '--episodes'"),
    ],
)
def test_collect_errors_are_one_line_messages(app, tmp_path, args, code, message):
    result = runner.invoke(app, ["collect", *args, "--root", str(tmp_path)])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


def test_collect_while_another_collect_writes_the_same_dataset_fails_clearly(app, tmp_path):
    from sbil.deep.datasets import dataset_path
    from sbil.files import lock

    args = ["collect", "--env", "CartPole-v1", "--episodes", "1", "--root", str(tmp_path)]
    with lock(dataset_path("sbil/cartpole/scripted-v0", tmp_path)):  # as a running collect does
        result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "'sbil/cartpole/scripted-v0'" in result.output
    assert "is being written right now by process" in result.output
    assert not (tmp_path / "sbil" / "cartpole" / "scripted-v0").exists()
    assert runner.invoke(app, args).exit_code == 0  # once it is done


def test_collect_a_stochastic_expert(app, tmp_path):
    args = ["collect", "--env", "CartPole-v1", "--episodes", "2", "--root", str(tmp_path)]
    result = runner.invoke(app, [*args, "--expert-noise", "epsilon:0.1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "Wrote sbil/cartpole/scripted-eps0_1-v0 (2 episodes" in result.output
    assert "Expert scripted, epsilon:0.1 return:" in result.output
    demos = load_demonstrations("sbil/cartpole/scripted-eps0_1-v0", root=tmp_path)
    assert demos.n_episodes == 2


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


_EXPERT = ["--expert", "scripted", "--env", "CartPole-v1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--env", "CartPole-v1"], 2, "Give either a RUN_OR_CHECKPOINT folder or --expert"),
        (["ckpt", *_EXPERT], 2, "exactly one"),
        (["--expert", "scripted"], 2, "--env is required"),
        (["missing.pt", "--env", "CartPole-v1"], 1, "does not exist"),
        (["--expert", "scripted", "--env", "Nope-v0"], 1, "Unknown Gymnasium environment"),
        ([*_EXPERT, "--episodes", "0"], 2, "--episodes must"),
        ([*_EXPERT, "--n-envs", "0"], 2, "--n-envs must"),
        ([*_EXPERT, "--holdout-from", "1"], 2, "need --dataset"),
        ([*_EXPERT, "--seed", "99999999999999999999"], 2, "--seed must be an integer in 0.."),
        ([*_EXPERT, "--episodes", "2", "--seed", "4294967295"], 2, "uses seeds up to"),
        ([*_EXPERT, "--expert-noise", "epsilon:x"], 2, "--expert-noise: epsilon must be"),
        (["ckpt", "--expert-noise", "epsilon:0.1"], 2, "--expert-noise applies to --expert"),
        (
            [*_EXPERT, "--dataset", "d-v0", "--holdout-from", "-1"],
            2,
            "--holdout-from must be at least 0",
        ),
        (
            [*_EXPERT, "--output", "/proc/nope/x.json"],
            1,
            "Cannot write --output /proc/nope/x.json",
        ),
    ],
)
def test_evaluate_errors(app, args, code, message):
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("output", ["{blocker}/x.json", "{tmp}"], ids=["under-a-file", "a-folder"])
def test_evaluate_output_to_a_bad_path_fails_before_any_episode(app, tmp_path, monkeypatch, output):
    import sbil.deep.evaluation

    def no_episodes(*args, **kwargs):
        raise AssertionError("episodes ran before --output was checked")

    monkeypatch.setattr(sbil.deep.evaluation, "_run_group", no_episodes)  # the one engine
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = output.format(blocker=blocker, tmp=tmp_path)
    result = runner.invoke(app, ["evaluate", *_EXPERT, "--output", path])
    assert result.exit_code == 1, result.output
    assert f"Cannot write --output {path}" in result.output


def test_expert_list_and_eval(app, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(deep, "console", Console(width=200, soft_wrap=True))  # one-line rows
    listed = runner.invoke(app, ["expert", "list"])
    assert listed.exit_code == 0, listed.output
    for env_id in ("CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0"):
        assert env_id in listed.output
    # Measured returns, not a pointer to docs that a pip install does not ship.
    assert "docs/" not in listed.output
    assert "-84.35 ± 24.27 (100 ep., seeds 0..)" in listed.output
    assert "252.83 ± 78.47" in listed.output
    # The shipped PPO experts, with the greedy and the sampled return their records hold.
    from sbil.deep.experts import trained_experts

    shipped = {t.env_id: t for t in trained_experts() if t.name == "ppo-zoo"}
    lander = shipped["LunarLander-v3"]
    assert (
        f"sampled {lander.sampled_mean:.2f} ± {lander.sampled_std:.2f}" in listed.output
        and f"greedy {lander.return_mean:.2f}" in listed.output
    )
    evaluated = runner.invoke(
        app, ["expert", "eval", "Acrobot-v1", "--episodes", "2", "--seed", "7"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "Acrobot-v1 scripted expert:" in evaluated.output and "seeds 7..8" in evaluated.output


def test_expert_eval_of_a_stochastic_expert(app):
    args = ["expert", "eval", "Acrobot-v1", "--episodes", "2", "--seed", "7"]
    noisy = runner.invoke(app, [*args, "--expert-noise", "epsilon:0.5"])
    assert noisy.exit_code == 0, noisy.output
    assert "Acrobot-v1 scripted expert (epsilon:0.5):" in noisy.output
    assert noisy.output == runner.invoke(app, [*args, "--expert-noise", "epsilon:0.5"]).output
    bad = runner.invoke(app, [*args, "--expert-noise", "sample"])
    assert bad.exit_code == 1 and "Scripted experts have no action distribution" in bad.output


def test_expert_train_into_an_unwritable_cache_fails_before_training(app, tmp_path, monkeypatch):
    sb3 = pytest.importorskip("stable_baselines3")

    def no_training(*args, **kwargs):
        raise AssertionError("training started before --experts-dir was checked")

    monkeypatch.setattr(sb3.PPO, "learn", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["expert", "train", "CartPole-v1", "--timesteps", "64"]
    result = runner.invoke(app, [*args, "--experts-dir", str(blocker / "experts")])
    assert result.exit_code == 1, result.output
    assert "Cannot write trained experts under" in result.output and "Traceback" not in (
        result.output
    )
    seed = runner.invoke(app, [*args, "--experts-dir", str(tmp_path), "--seed", "4294967296"])
    assert seed.exit_code == 2 and "--seed must be an integer in 0..4294967295" in seed.output


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
    (checkpoint / "learner.json").write_text("{}")  # metadata unknown (e.g. save_learner)
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
    trained = train(demos, config, seeds=[0])
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
    # The checkpoint does not say what it trained on: the match is flagged, not "held-out".
    assert "does not record which episodes it trained on" in result.output
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


def test_progress_is_a_bar_on_a_terminal_and_lines_without_one(monkeypatch):
    for terminal in (True, False):
        monkeypatch.setattr(_common, "stderr_is_terminal", lambda terminal=terminal: terminal)
        with _common.progress_bar(None, "x") as callback:
            assert callback is not None  # never silent by default
            assert (getattr(callback, "__name__", "") == "update") and (
                ("progress_bar" in callback.__qualname__) == terminal
            )
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
    run_group = sbil.deep.evaluation._run_group  # what every evaluation and collection plays

    def recording(*args, progress=None, **kwargs):
        seen.append(progress is not None and any(p is not None for p in progress))
        return run_group(*args, progress=progress, **kwargs)

    monkeypatch.setattr(sbil.deep.evaluation, "_run_group", recording)
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


# --- evaluating a whole training run ----------------------------------------------------------


def _fake_run(tmp_path, monkeypatch, policies, metadata=None):
    """A run folder of seed-<s>/ checkpoints that `load_learner` (replaced) loads as
    ``policies[s]``, each recording ``metadata(s)`` as `sbil train` does."""
    import types

    run = tmp_path / "run"
    (run / "config.json").parent.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for seed in policies:
        folder = run / f"seed-{seed}"
        folder.mkdir()
        doc = {"metadata": metadata(seed) if metadata else {}}
        (folder / "learner.json").write_text(json.dumps(doc))
    fake = types.ModuleType("sbil.deep.checkpoint")
    fake.load_learner = lambda path: policies[int(path.name.removeprefix("seed-"))]
    monkeypatch.setitem(sys.modules, "sbil.deep.checkpoint", fake)
    return run


def test_evaluate_a_run_prints_every_seed_and_a_summary_over_seeds(app, tmp_path, monkeypatch):
    import numpy as np

    from sbil.deep.evaluation import evaluate

    run = _fake_run(tmp_path, monkeypatch, {0: _FakeLearner(), 1: _AlwaysLeft()})
    output = tmp_path / "eval.json"
    args = ["evaluate", str(run), "--episodes", "3", "--iqm", "--output", str(output)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    left = evaluate(_AlwaysLeft(), "CartPole-v1", 3, seed=0)
    assert f"CartPole-v1 learner {run / 'seed-0'}: 500.00 ± 0.00" in result.output
    assert f"CartPole-v1 learner {run / 'seed-1'}: {left.mean:.2f} ± {left.std:.2f}" in (
        result.output
    )
    means = np.array([500.0, left.mean])
    half = 12.7062047361747 * means.std(ddof=1) / np.sqrt(2)  # t(0.975, 1 dof)
    line = f"Run {run}, 2 seed(s): mean return {means.mean():.2f}, 95% CI "
    line += f"{means.mean() - half:.2f} .. {means.mean() + half:.2f}"
    assert line in result.output and "IQM" in result.output
    saved = json.loads(output.read_text())
    assert [entry["learner_seed"] for entry in saved["learners"]] == [0, 1]
    assert saved["learners"][1]["returns"] == left.returns.tolist()
    assert saved["summary"]["seed_means"] == pytest.approx(means.tolist())
    assert saved["summary"]["ci95"] == pytest.approx([means.mean() - half, means.mean() + half])
    assert saved["summary"]["iqm"]["estimate"] == pytest.approx(means.mean())  # 2 seeds: mean


@pytest.fixture
def dataset_root(app, tmp_path):
    root = tmp_path / "datasets"
    args = ["collect", "--env", "CartPole-v1", "--episodes", "4", "--root", str(root)]
    assert runner.invoke(app, args).exit_code == 0
    return root


def _trained_on(root, episodes_of):
    def metadata(seed):
        return {
            "dataset": "sbil/cartpole/scripted-v0",
            "root": str(root),
            "train_episodes": episodes_of[seed],
        }

    return metadata


def test_the_action_match_never_uses_episodes_a_learner_trained_on(
    app, tmp_path, monkeypatch, dataset_root
):
    # Sliding windows: seed 0 trained on episodes 0..1, seed 1 on 1..2.
    metadata = _trained_on(dataset_root, {0: [0, 1], 1: [1, 2]})
    run = _fake_run(tmp_path, monkeypatch, {0: _AlwaysLeft(), 1: _AlwaysLeft()}, metadata)
    demos = load_demonstrations("sbil/cartpole/scripted-v0", root=dataset_root)
    args = ["evaluate", str(run), "--episodes", "1", "--dataset", "sbil/cartpole/scripted-v0"]
    args += ["--root", str(dataset_root)]
    result = runner.invoke(app, [*args, "--output", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    for held_out, label in (([2, 3], "2..3"), ([0, 3], "0, 3")):
        rate = float((demos.select(held_out).actions == 0).mean())
        assert f"episodes {label} ({demos.select(held_out).n_steps} states): {rate:.2%}" in (
            result.output
        )
    saved = json.loads((tmp_path / "e.json").read_text())
    assert [e["action_match"]["episodes"] for e in saved["learners"]] == [[2, 3], [0, 3]]

    refused = runner.invoke(app, [*args, "--holdout-from", "2"])
    assert refused.exit_code == 1
    assert "seed 1 trained on episode 2 of sbil/cartpole/scripted-v0, which --holdout-from 2" in (
        refused.output
    )
    fine = runner.invoke(app, [*args, "--holdout-from", "3"])
    assert fine.exit_code == 0, fine.output
    assert fine.output.count("episodes 3 (") == 2


def test_the_action_match_is_refused_when_every_episode_was_trained_on(
    app, tmp_path, monkeypatch, dataset_root
):
    import sbil.deep.evaluation

    def no_episodes(*args, **kwargs):
        raise AssertionError("episodes ran before the match was checked")

    metadata = _trained_on(dataset_root, {0: [0, 1, 2, 3]})
    run = _fake_run(tmp_path, monkeypatch, {0: _AlwaysLeft()}, metadata)
    monkeypatch.setattr(sbil.deep.evaluation, "_run_group", no_episodes)  # the one engine
    args = ["evaluate", str(run / "seed-0"), "--dataset", "sbil/cartpole/scripted-v0"]
    result = runner.invoke(app, [*args, "--root", str(dataset_root)])
    assert result.exit_code == 1
    assert "this learner trained on every episode of sbil/cartpole/scripted-v0 (0..3)" in (
        result.output
    )

    # The same id in another datasets folder is other data: every episode is held out there.
    other = _trained_on(tmp_path / "elsewhere", {0: [0, 1, 2, 3]})
    (run / "seed-0" / "learner.json").write_text(json.dumps({"metadata": other(0)}))
    monkeypatch.undo()  # episodes may run again
    _fake_run(tmp_path / "b", monkeypatch, {0: _AlwaysLeft()}, other)
    again = runner.invoke(app, [*args, "--root", str(dataset_root), "--episodes", "1"])
    assert again.exit_code == 0, again.output
    assert "episodes 0..3 (" in again.output


# --- exit codes through the real entry point --------------------------------------------------


def _main(monkeypatch, capsys, argv):
    from sbil.cli import _common, main

    monkeypatch.setattr(sys, "argv", ["sbil", *argv])
    monkeypatch.setattr(_common, "_interrupt_reported", False)
    with pytest.raises(SystemExit) as exit:
        main()
    return exit.value.code, capsys.readouterr().err


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("argv", "usage", "failure", "patch"),
    [
        (
            ["collect", "--env", "CartPole-v1", "--episodes", "2"],
            ["--episodes", "0"],
            ["--dataset-id", "taken-v0"],
            ("sbil.deep.evaluation", "_run_group"),
        ),
        (
            ["evaluate", "--expert", "scripted", "--env", "CartPole-v1", "--episodes", "2"],
            ["--seed", "-1"],
            ["--dataset", "missing-v0"],
            ("sbil.deep.evaluation", "_run_group"),
        ),
        (
            ["expert", "eval", "CartPole-v1", "--episodes", "2"],
            ["--episodes", "0"],
            ["--expert", "sb3-nope"],
            ("sbil.deep.evaluation", "_run_group"),
        ),
        (
            ["expert", "train", "CartPole-v1", "--timesteps", "64"],
            ["--timesteps", "0"],
            ["--algo", "a2c"],
            ("sbil.deep.experts", "train_sb3_expert"),
        ),
        (["expert", "list"], ["--bogus"], None, ("sbil.deep.experts", "trained_experts")),
    ],
    ids=["collect", "evaluate", "expert-eval", "expert-train", "expert-list"],
)
def test_exit_codes_usage_2_failure_1_interrupt_130(
    tmp_path, monkeypatch, capsys, argv, usage, failure, patch
):
    import importlib

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    monkeypatch.setenv("SBIL_EXPERTS_DIR", str(tmp_path / "experts"))
    (tmp_path / "datasets" / "taken-v0" / "data").mkdir(parents=True)

    code, err = _main(monkeypatch, capsys, [*argv, *usage])
    assert code == 2 and "Error" in err and "Traceback" not in err, err
    if failure is not None:
        code, err = _main(monkeypatch, capsys, [*argv, *failure])
        assert code == 1 and "Error:" in err and len(err.strip().splitlines()) == 1, err

    monkeypatch.setattr(importlib.import_module(patch[0]), patch[1], _interrupt)
    code, err = _main(monkeypatch, capsys, argv)
    assert code == 130, err
    assert err.strip() == "Interrupted (Ctrl-C)."
    assert not any(p.name.startswith(".") for p in (tmp_path / "datasets").rglob("*"))


@pytest.mark.parametrize("command", [["evaluate"], ["expert", "eval"]])
def test_expert_noise_help_says_what_it_does_when_evaluating(app, command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    noise = text[text.index("--expert-noise") :]
    assert "The noise applied to the expert being evaluated" in noise
    assert "dataset's id" not in text


def test_expert_noise_help_of_collect_names_the_dataset(app):
    result = runner.invoke(app, ["collect", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.replace("│", " ").split())
    assert "The noise of the expert that records the episodes" in text
    assert "named in the dataset's id and metadata" in text

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


@pytest.fixture
def no_training(monkeypatch):
    """Make training fail loudly: the errors below must come before it starts."""
    from sbil.deep import learners

    def boom(*args, **kwargs):
        raise AssertionError("training started before the input was validated")

    monkeypatch.setattr(learners, "train", boom)


def _npz(path, *, obs_dim=4, n=40, actions=None, lengths=(20, 20)):
    rng = np.random.default_rng(0)
    acts = np.arange(n) % 2 if actions is None else actions
    np.savez(
        path,
        observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=acts,
        episode_lengths=list(lengths),
    )
    return path


def _one_clear_line(result, message):
    assert result.exit_code == 1, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    for leak in ("allow_pickle", "unsafely", "BadZipFile", "Errno", "n_updates", "num_threads"):
        assert leak not in result.output, result.output


@pytest.mark.parametrize(
    ("write", "message"),
    [
        pytest.param(
            lambda p: p.write_bytes(_npz(p).read_bytes()[:300]), "is not an .npz", id="truncated"
        ),
        pytest.param(lambda p: p.write_text("obs,action\n1,0\n" * 20), "is not an .npz", id="text"),
        pytest.param(lambda p: p.write_bytes(b""), "is not an .npz", id="empty"),
        pytest.param(
            lambda p: np.savez(
                p, observations=np.array([None, 1], dtype=object), actions=np.zeros(2, int)
            ),
            "not a plain numeric array",
            id="object-array",
        ),
        pytest.param(lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)), None, id="npy"),
    ],
)
def test_corrupt_data_files_get_sbil_messages(app, tmp_path, no_training, write, message):
    path = tmp_path / "demos.npz"
    write(path)
    if message is None:  # np.save appends .npy; give sbil that single-array file as --data
        path.with_suffix(".npy").rename(path)
        message = "holds a single array"
    args = ["train", "--data", str(path), "--env", "CartPole-v1", "--out", str(tmp_path / "o")]
    _one_clear_line(runner.invoke(app, args), message)


# Seeds whose five flipped bytes make numpy/zipfile raise EOFError, BadZipFile, ValueError,
# NotImplementedError, OSError and UnicodeDecodeError respectively.
@pytest.mark.parametrize("seed", [0, 1, 25, 41, 82, 107])
def test_damaged_npz_of_any_kind_is_one_line_naming_data(app, tmp_path, no_training, seed):
    path = _npz(tmp_path / "demos.npz")
    damaged = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for _ in range(5):
        damaged[rng.integers(len(damaged))] = rng.integers(256)
    path.write_bytes(bytes(damaged))
    args = ["train", "--data", str(path), "--env", "CartPole-v1", "--out", str(tmp_path / "o")]
    _one_clear_line(runner.invoke(app, args), f"--data {path}")


def test_action_count_comes_from_the_task_not_the_data(app, tmp_path):
    # Acrobot has 3 actions; demonstrations that never use action 2 still train 3-action policies.
    data = _npz(tmp_path / "acrobot.npz", obs_dim=6)
    out = tmp_path / "acrobot"
    args = ["train", "--data", str(data), "--env", "Acrobot-v1", "--algo", "bc"]
    result = runner.invoke(app, [*args, "--updates", "2", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_learner(out / "seed-0").n_actions == 3
    assert json.loads((out / "config.json").read_text())["n_actions"] == 3


def test_data_without_a_task_needs_n_actions(app, tmp_path, no_training):
    data = _npz(tmp_path / "d.npz")
    args = ["train", "--data", str(data), "--algo", "bc", "--out", str(tmp_path / "o")]
    _one_clear_line(runner.invoke(app, args), "pass --env ID or --n-actions N")
    wrong = runner.invoke(app, [*args, "--env", "CartPole-v1", "--n-actions", "4"])
    _one_clear_line(wrong, "--n-actions 4 vs CartPole-v1 (2 actions)")


def test_n_actions_option_sets_the_action_count(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "o"
    args = ["train", "--data", str(data), "--algo", "bc", "--n-actions", "4", "--updates", "2"]
    result = runner.invoke(app, [*args, "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_learner(out / "seed-0").n_actions == 4


def test_held_out_action_match_is_reported(app, tmp_path):
    data = _npz(tmp_path / "d.npz", n=60, lengths=(20, 20, 20))
    out = tmp_path / "o"
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "bc", "--seeds", "0,3"]
    args += ["--episodes", "1", "--updates", "5", "--no-progress", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out action match" in result.output and "(2 episodes, 40 states)" in result.output
    match = json.loads((out / "results.json").read_text())["held_out_action_match"]
    assert match["episodes"] == 2 and match["states"] == 40
    from sbil.deep.data import from_arrays
    from sbil.deep.evaluation import action_match_rate

    with np.load(data) as arrays:
        held = from_arrays(arrays["observations"][20:], arrays["actions"][20:], env_id=None)
    for seed in (0, 3):
        expected = action_match_rate(load_learner(out / f"seed-{seed}"), held)
        assert match["rates"][str(seed)] == pytest.approx(expected)
    everything = runner.invoke(app, [*args[:-7], "--updates", "1", "--out", str(tmp_path / "all")])
    assert everything.exit_code == 0, everything.output
    assert "No held-out episodes" in everything.output
    assert (
        json.loads((tmp_path / "all" / "results.json").read_text())["held_out_action_match"] is None
    )


def test_a_used_out_folder_is_refused_before_training_unless_overwrite(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    base = ["train", "--data", str(data), "--env", "CartPole-v1", "--updates", "2"]
    base += ["--no-progress", "--sgld-buffer-size", "50", "--out", str(out)]
    first = runner.invoke(app, [*base, "--algo", "bc", "--seeds", "0-2"])
    assert first.exit_code == 0, first.output
    refused = runner.invoke(app, [*base, "--algo", "edm", "--seeds", "7"])
    _one_clear_line(refused, "already holds files")
    assert "--overwrite" in refused.output
    replaced = runner.invoke(app, [*base, "--algo", "edm", "--seeds", "7", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-7"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0,0"], "more than once"),
        (["--seeds", "0-2,1"], "more than once"),
        (["--eval-seed", "-1", "--eval-episodes", "2"], "--eval-seed must be at least 0"),
        (["--eval-episodes", "-5"], "--eval-episodes must be at least 0"),
        (["--eval-episodes", "2", "--n-actions", "2"], "--eval-episodes needs a task"),
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--every-nth-step", "0"], "--every-nth-step must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--updates", "0"], "--updates must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--sgld-reinit-prob", "2"], "--sgld-reinit-prob must be in"),
        (["--out", "/proc/x"], "Cannot write the run folder /proc/x"),
    ],
)
def test_options_are_checked_before_training(app, tmp_path, no_training, extra, message):
    data = _npz(tmp_path / "d.npz")
    args = ["train", "--data", str(data), "--algo", "bc", "--out", str(tmp_path / "o"), *extra]
    _one_clear_line(runner.invoke(app, args), message)


def test_help_states_the_every_nth_step_deviation(app):
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "deviates from the EDM reference, which keeps every 20th" in text


class _Demos:
    """A stand-in for Demonstrations with a declared action count (from a Minari space)."""

    def __init__(self, n_actions, actions=(0, 1, 0)):
        self.n_actions = n_actions
        self.actions = np.asarray(actions)

    def check_env(self, env_id):
        from sbil.deep.envs import env_spec

        return env_spec(env_id)


def test_a_declared_action_count_wins_over_the_data_and_must_agree():
    from sbil.deep.data import from_arrays

    declared = from_arrays(np.zeros((3, 2), np.float32), np.array([0, 1, 0]), n_actions=5)
    assert train._n_actions(declared, None, None) == 5  # not 2 = max action + 1
    assert train._n_actions(_Demos(5), None, None) == 5
    assert train._n_actions(_Demos(None), "Acrobot-v1", None) == 3
    assert train._n_actions(_Demos(3), "Acrobot-v1", 3) == 3
    with pytest.raises(ValueError, match=r"dataset's action space \(3 actions\) vs CartPole-v1"):
        train._n_actions(_Demos(3), "CartPole-v1", None)
    with pytest.raises(ValueError, match="has action 4 but the task has 3 actions"):
        train._n_actions(_Demos(None, actions=(0, 4)), None, 3)

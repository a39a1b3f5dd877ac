"""Logs, curves and tidy figures of `sbil train`, `sbil evaluate` and `sbil plot`, as a user
types them: what a run folder holds, progress on stderr (each line once, every seed named),
TensorBoard, per-seed CSV/JSON. Tiny budgets throughout."""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import deep, plot, train

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    train.register(app)
    deep.register(app)
    plot.register(app)
    return app


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four 10-step episodes of CartPole-sized observations."""
    path = tmp_path_factory.mktemp("data") / "d.npz"
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(
        path, observations=obs, actions=(obs[:, 2] > 0).astype(np.int64), episode_lengths=[10] * 4
    )
    return path


def _train(app, data, out, *extra):
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "edm"]
    args += ["--seeds", "0,1", "--episodes", "2", "--updates", "30", "--sgld-buffer-size", "50"]
    return runner.invoke(app, [*args, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(app, data, tmp_path_factory):
    """A finished run (evaluated over 3 episodes per seed) and the result of its command."""
    out = tmp_path_factory.mktemp("runs") / "run"
    result = _train(app, data, out, "--eval-episodes", "3")
    assert result.exit_code == 0, result.output
    return out, result


def _progress(stderr: str, description: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(description + ":")]


def test_a_run_folder_holds_its_curves_log_and_tidy_figures(run):
    out, _ = run
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "log.txt",
        "losses.npz",
        "results.json",
        "seed-0",
        "seed-1",
        "training.csv",
        "training.json",
    ]
    with np.load(out / "losses.npz") as saved:
        assert list(saved["terms"]) == ["loss", "cross_entropy", "rho"]
        assert list(saved["seeds"]) == [0, 1]
        for name in ("loss", "cross_entropy", "rho"):
            assert saved[name].shape == (2, 30) and np.isfinite(saved[name]).all()
    rows = json.loads((out / "training.json").read_text())
    results = json.loads((out / "results.json").read_text())["learners"]
    with open(out / "training.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert [r["seed"] for r in rows] == [0, 1] and [r["seed"] for r in table] == ["0", "1"]
    for row, record, line in zip(rows, results, table, strict=True):
        assert (row["env_id"], row["algo"], row["k"], row["status"]) == (
            "CartPole-v1",
            "edm",
            2,
            "done",
        )
        assert row["n_episodes"] == 3 and row["eval_seed"] == 0 and row["n_updates"] == 30
        assert row["mean_return"] == pytest.approx(np.mean(record["returns"]))
        assert row["std_return"] == pytest.approx(np.std(record["returns"]))
        assert row["action_match"] == record["action_match"] and row["action_match_states"] == 20
        assert row["final_loss"] == record["final_loss"] and row["policy"] == f"seed-{row['seed']}"
        assert (
            row["git_commit"]
            == json.loads((out / "config.json").read_text())["provenance"]["git_commit"]
        )
        assert float(line["mean_return"]) == row["mean_return"]


def test_progress_goes_to_stderr_each_line_once_and_to_the_log(run):
    out, result = run
    assert "%" not in result.stdout and "elapsed" not in result.stdout  # stdout stays parseable
    training = _progress(result.stderr, "training edm x2")
    assert training[-1].startswith("training edm x2: 30/30 (100%)")
    assert sum("30/30" in line for line in training) == 1  # the final line once (was twice)
    for seed in (0, 1):
        lines = _progress(result.stderr, f"evaluating seed {seed} on CartPole-v1")
        assert [line.split()[5] for line in lines] == ["1/3", "2/3", "3/3"], result.stderr
    log = (out / "log.txt").read_text().splitlines()
    messages = [line.split("  ", 1)[1] for line in log]
    assert messages[0].startswith("train: started edm x2 (seeds 0, 1)")
    assert sum(m.startswith("training edm x2: 30/30 (100%)") for m in messages) == 1
    for seed in (0, 1):
        assert any(m.startswith(f"seed {seed}: evaluating on CartPole-v1: 3/3") for m in messages)
        assert any(
            re.match(rf"seed {seed}: final loss .*, return .* \(3 episodes\)", m) for m in messages
        )
    assert messages[-1] == "train: finished; results.json written"


def test_evaluate_shows_every_seed_and_writes_its_figures_into_the_run(app, run, tmp_path):
    out, _ = run
    before = (out / "log.txt").read_text()
    result = runner.invoke(app, ["evaluate", str(out), "--episodes", "4"])
    assert result.exit_code == 0, result.output
    for seed in (0, 1):  # each seed's own progress lines, naming it (was the first seed only)
        lines = _progress(result.stderr, f"evaluating seed {seed} on CartPole-v1")
        assert [line.split()[5] for line in lines] == ["1/4", "2/4", "3/4", "4/4"], result.stderr
    assert "elapsed" not in result.stdout
    rows = json.loads((out / "evaluation.json").read_text())
    printed = re.findall(r"seed-(\d): (-?[\d.]+) ± ([\d.]+) \(mean", result.stdout)
    assert [(r["seed"], r["mean_return"], r["std_return"]) for r in rows] == [
        pytest.approx((int(s), float(m), float(d)), abs=0.006) for s, m, d in printed
    ]
    assert all(r["algo"] == "edm" and r["k"] == 2 and r["n_episodes"] == 4 for r in rows)
    assert all(r["final_loss"] is None and r["action_match"] is None for r in rows)
    assert (out / "evaluation.csv").read_text().count("\n") == 3
    added = (out / "log.txt").read_text()[len(before) :].splitlines()
    assert "evaluate: 2 learner(s), 4 episodes of CartPole-v1" in added[0]
    assert any("evaluating seed 1 on CartPole-v1: 4/4 (100%)" in line for line in added)
    assert "evaluate: wrote evaluation.csv and evaluation.json" in added[-1]

    elsewhere = runner.invoke(
        app, ["evaluate", str(out / "seed-1"), "--episodes", "2", "--out", str(tmp_path / "e")]
    )
    assert elsewhere.exit_code == 0, elsewhere.output
    (row,) = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert row["seed"] == 1 and row["policy"] == str(out / "seed-1") and row["n_episodes"] == 2
    expert = runner.invoke(
        app,
        ["evaluate", "--expert", "scripted", "--env", "CartPole-v1", "--episodes", "2"],
    )
    assert (
        expert.exit_code == 0 and "evaluating scripted expert on CartPole-v1: 2/2" in expert.stderr
    )


def test_a_run_with_its_evaluation_can_be_replaced(app, data, tmp_path):
    out = tmp_path / "run"
    assert _train(app, data, out, "--no-progress").exit_code == 0
    assert runner.invoke(app, ["evaluate", str(out), "--episodes", "1"]).exit_code == 0
    assert (out / "evaluation.csv").is_file()
    again = _train(app, data, out, "--no-progress", "--overwrite")
    assert again.exit_code == 0, again.output
    assert not (out / "evaluation.csv").exists()  # an evaluation of the replaced run


def test_tensorboard_gets_every_term_of_every_seed(app, data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, board = tmp_path / "run", tmp_path / "tb"
    result = _train(app, data, out, "--no-progress", "--tensorboard", str(board))
    assert result.exit_code == 0, result.output
    with np.load(out / "losses.npz") as saved:
        for row, seed in enumerate((0, 1)):
            events = EventAccumulator(str(board / f"seed-{seed}"), size_guidance={"scalars": 0})
            events.Reload()
            assert sorted(events.Tags()["scalars"]) == [
                "train/cross_entropy",
                "train/loss",
                "train/rho",
            ]
            values = [e.value for e in events.Scalars("train/rho")]
            assert np.array_equal(np.array(values, np.float32), saved["rho"][row])


def test_tensorboard_missing_is_one_line_naming_the_extra(app, data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    out = tmp_path / "run"
    result = _train(app, data, out, "--tensorboard", str(tmp_path / "tb"))
    assert result.exit_code == 1, result.output
    assert 'pip install "sbil[tensorboard]"' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()  # refused before the run folder was claimed


def test_tensorboard_inside_the_run_folder_is_a_usage_error(app, data, tmp_path):
    out = tmp_path / "run"
    result = _train(app, data, out, "--tensorboard", str(out / "tb"))
    assert result.exit_code == 2, result.output
    assert "--tensorboard" in result.stderr and "inside --out" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_plot_draws_the_runs_curves(app, run, tmp_path):
    import matplotlib.image

    out, _ = run
    result = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Training curves of {out} -> {tmp_path / 'c.png'}"
    image = matplotlib.image.imread(tmp_path / "c.png")
    assert image.shape[1] > 3 * image.shape[0] / 2 and image.std() > 0  # three panels abreast
    default = runner.invoke(app, ["plot", str(out)])
    assert default.exit_code == 0 and (out / "curves.png").is_file()
    from sbil.experiments.runs import is_run_folder

    assert is_run_folder(out)  # so --resume and --overwrite still take it
    (out / "curves.png").unlink()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["plot", "{tmp}/missing"], 2, "is not a folder"),
        (["plot", "{tmp}"], 1, "holds no training curves"),
        (["plot", "{run}", "--out", "{tmp}/c.txt"], 2, "must end in .png, .pdf or .svg"),
    ],
)
def test_plot_refusals_are_one_line(app, run, tmp_path, args, code, message):
    args = [a.format(tmp=tmp_path, run=run[0]) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1

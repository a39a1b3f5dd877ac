"""`sbil train` as a user types it: smoke runs, the run folder it writes, resume, trajectory
windows, claimed folders, divergence, large numbers and bad data. Tiny budgets throughout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from sbil.cli import deep, train
from sbil.deep.checkpoint import load_learner

runner = CliRunner()
DATASET = "sbil/cartpole/scripted-v0"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    train.register(app)
    deep.register(app)
    return app


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """A local Minari dataset of 3 scripted CartPole episodes (500 steps each)."""
    from sbil.deep.data import collect

    root = tmp_path_factory.mktemp("minari")
    collect("CartPole-v1", 3, root=root, seed=0)
    return root


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


def _one_clear_line(result, message, code=1):
    """``result`` failed with exit status ``code`` and one line on stderr holding ``message``."""
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for leak in ("allow_pickle", "unsafely", "BadZipFile", "Errno", "n_updates", "num_threads"):
        assert leak not in result.output, result.output


def _read(path):
    return json.loads(Path(path).read_text())


def _weights_equal(a, b) -> bool:
    import torch

    x, y = load_learner(a), load_learner(b)
    pairs = [(x.policy_state, y.policy_state), (x.energy_state or {}, y.energy_state or {})]
    return all(s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s) for s, t in pairs)


# --- smoke runs -------------------------------------------------------------------------------


def test_train_edm_on_a_minari_dataset_then_evaluate_the_run(app, minari_root, tmp_path):
    from sbil.deep.data import load_demonstrations
    from sbil.deep.evaluation import action_match_rate
    from sbil.files import lock_path

    out = tmp_path / "run"
    args = ["train", "--dataset", DATASET, "--root", str(minari_root), "--algo", "edm"]
    args += ["--seeds", "0,1", "--episodes", "2", "--updates", "30", "--sgld-buffer-size", "100"]
    result = runner.invoke(app, [*args, "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert (
        "Trained 2 edm learner(s) on 1000 pairs from 2 trajectories each (first windows, every 1 "
        "step(s); 30 updates, " in text
    )
    assert "Action match on 1 held-out episodes (500 states) that no learner trained on." in text
    for seed in (0, 1):
        line = rf"  seed {seed}: final loss -?\d+\.\d{{4}} \(CE \d+\.\d{{4}} \+ rho \+ rho\^2, "
        line += r"rho -?\d\.\d{3}.*\), held-out action match [01]\.\d{3} -> "
        assert re.search(line + re.escape(str(out / f"seed-{seed}")), text), text

    config = _read(out / "config.json")
    assert set(config) == {"spec", "resolved", "provenance"}
    spec = config["spec"]
    assert spec["dataset"] == DATASET and spec["root"] == str(minari_root) and spec["data"] is None
    assert spec["seeds"] == [0, 1] and spec["episodes"] == 2 and spec["windows"] == "first"
    assert spec["learner"]["algo"] == "edm" and spec["learner"]["n_updates"] == 30
    assert spec["learner"]["sgld_buffer_size"] == 100
    resolved = config["resolved"]
    assert resolved["env_id"] == "CartPole-v1" and resolved["n_actions"] == 2
    assert resolved["root"] == str(minari_root)
    assert resolved["train_episodes"] == {"0": [0, 1], "1": [0, 1]}
    assert resolved["held_out_episodes"] == [2]  # the one episode no seed trains on
    assert resolved["n_pairs"] == {"0": 1000, "1": 1000}
    assert "git_commit" in config["provenance"] and config["provenance"]["versions"]["torch"]

    results = _read(out / "results.json")
    assert results["env_id"] == "CartPole-v1"
    assert results["held_out_episodes"] == 1 and results["held_out_states"] == 500
    held_out = load_demonstrations(DATASET, root=minari_root).select([2])
    assert [r["seed"] for r in results["learners"]] == [0, 1]
    for record in results["learners"]:
        seed = record["seed"]
        assert record["status"] == "done" and record["error"] is None
        assert record["checkpoint"] == f"seed-{seed}" and record["returns"] is None
        assert record["train_episodes"] == [0, 1] and record["n_pairs"] == 1000
        learner = load_learner(out / f"seed-{seed}")
        assert record["action_match"] == pytest.approx(action_match_rate(learner, held_out))
        assert learner.config.algo == "edm" and learner.env_id == "CartPole-v1"
        metadata = _read(out / f"seed-{seed}" / "learner.json")["metadata"]
        assert metadata["train_episodes"] == [0, 1] and metadata["held_out_episodes"] == [2]
        assert metadata["dataset"] == DATASET and metadata["root"] == str(minari_root)
    with np.load(out / "losses.npz") as losses:
        assert losses["loss"].shape == (2, 30) and np.isfinite(losses["loss"]).all()
    assert not (out / ".state").exists() and not lock_path(out).exists()

    evaluated = runner.invoke(app, ["evaluate", str(out), "--episodes", "2", "--no-progress"])
    assert evaluated.exit_code == 0, evaluated.output
    for seed in (0, 1):
        assert f"CartPole-v1 learner {out / f'seed-{seed}'}: " in evaluated.stdout
    assert f"Run {out}, 2 seed(s): mean return" in evaluated.stdout


def test_the_datasets_folder_from_the_environment_is_recorded(
    app, minari_root, tmp_path, monkeypatch
):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    out = tmp_path / "run"
    args = ["train", "--dataset", DATASET, "--algo", "bc", "--episodes", "1", "--updates", "2"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = _read(out / "config.json")
    assert config["spec"]["root"] is None  # the run follows the variable when re-created
    assert config["resolved"]["root"] == str(minari_root)  # but records where the data was
    assert _read(out / "seed-0" / "learner.json")["metadata"]["root"] == str(minari_root)


def test_train_bc_from_an_npz_with_holdout_and_evaluation(app, minari_root, tmp_path):
    from sbil.deep.data import load_demonstrations
    from sbil.deep.evaluation import evaluate

    demos = load_demonstrations(DATASET, root=minari_root)
    data = tmp_path / "demos.npz"
    np.savez(
        data,
        observations=demos.observations,
        actions=demos.actions,
        episode_lengths=demos.episode_lengths,
    )
    out = tmp_path / "bc"
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "bc"]
    args += ["--updates", "50", "--every-nth-step", "20", "--holdout", "1"]
    result = runner.invoke(app, [*args, "--eval-episodes", "2", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert (
        "Trained 1 bc learner(s) on 50 pairs from all trajectories each (first windows, every 20 "
        "step(s); 50 updates, " in text
    )
    # Thinned for training, but the held-out episode is matched on every step.
    assert "Action match on 1 held-out episodes (500 states)" in text
    assert re.search(r"seed 0: final loss \d+\.\d{4}, held-out action match [01]\.\d{3}, ", text)
    assert re.search(r", return \d+\.\d\d ± \d+\.\d\d \(2 episodes\) -> ", text), text
    config = _read(out / "config.json")
    assert config["spec"]["data"] == str(data) and config["spec"]["holdout"] == 1
    assert config["resolved"]["train_episodes"] == {"0": [0, 1]}
    assert config["resolved"]["held_out_episodes"] == [2]
    (record,) = _read(out / "results.json")["learners"]
    assert record["n_pairs"] == 50 and len(record["returns"]) == 2
    expected = evaluate(load_learner(out / "seed-0"), "CartPole-v1", 2, 0).returns
    assert record["returns"] == pytest.approx(expected)  # the saved learner, eval seeds 0, 1


def test_no_held_out_episodes_is_said_plainly(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "o"
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "bc", "--updates", "2"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "No held-out episodes" in result.stdout and "--holdout H" in result.stdout
    assert "held-out action match" not in result.stdout
    results = _read(out / "results.json")
    assert results["held_out_episodes"] == 0 and results["learners"][0]["action_match"] is None


# --- resume -----------------------------------------------------------------------------------


def _train_calls(monkeypatch, *, stop_at=None):
    """Wrap training so that it records the updates it reports (and, with ``stop_at``, dies
    there as a killed process would: the state of the last checkpoint is all that is left)."""
    from sbil.deep import learners, training

    real = training.train  # the function itself, even if an earlier call wrapped it
    seen: list[int] = []

    def recording(*args, **kwargs):
        given = kwargs.get("progress")

        def progress(done, total):
            seen.append(done)
            if done == stop_at:
                raise KeyboardInterrupt
            if given is not None:
                given(done, total)

        return real(*args, **{**kwargs, "progress": progress})

    monkeypatch.setattr(learners, "train", recording)
    return seen


EDM_TINY = ["--algo", "edm", "--hidden", "8", "--batch-size", "8", "--sgld-buffer-size", "50"]


def test_resume_with_out_alone_ends_bit_for_bit_as_an_uninterrupted_run(app, tmp_path, monkeypatch):
    data = _npz(tmp_path / "d.npz", n=60, lengths=(20, 20, 20))
    args = ["train", "--data", str(data), "--env", "CartPole-v1", *EDM_TINY, "--seeds", "3,5"]
    args += ["--episodes", "1", "--windows", "sliding", "--updates", "60"]
    args += ["--checkpoint-every", "10", "--no-progress"]
    reference = runner.invoke(app, [*args, "--out", str(tmp_path / "reference")])
    assert reference.exit_code == 0, reference.output

    out = tmp_path / "run"
    _train_calls(monkeypatch, stop_at=27)
    killed = runner.invoke(app, [*args, "--out", str(out)])
    assert killed.exit_code != 0 and not (out / "results.json").exists()
    import torch

    (state,) = (out / ".state").iterdir()
    assert torch.load(state, weights_only=True)["update"] == 20

    seen = _train_calls(monkeypatch)
    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("Resumed and trained 2 edm learner(s)")
    assert seen[0] == 21 and seen[-1] == 60  # continued from update 20, not from the start
    for seed in (3, 5):
        assert _weights_equal(tmp_path / "reference" / f"seed-{seed}", out / f"seed-{seed}")
    with np.load(out / "losses.npz") as x, np.load(tmp_path / "reference" / "losses.npz") as y:
        assert np.array_equal(x["loss"], y["loss"]) and np.array_equal(x["rho"], y["rho"])
    ours, theirs = _read(out / "results.json"), _read(tmp_path / "reference" / "results.json")
    assert [r["action_match"] for r in ours["learners"]] == [
        r["action_match"] for r in theirs["learners"]
    ]
    assert (
        _read(out / "config.json")["spec"] == _read(tmp_path / "reference" / "config.json")["spec"]
    )


def test_a_run_that_is_resumed_with_other_settings_is_refused(app, tmp_path, monkeypatch):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "bc", "--updates", "9"]
    args += ["--checkpoint-every", "3", "--out", str(out)]
    _train_calls(monkeypatch, stop_at=5)
    assert runner.invoke(app, args).exit_code != 0
    refused = runner.invoke(app, [*args, "--seeds", "0-2"])  # no --resume
    _one_clear_line(refused, "already holds an interrupted run; pass --resume to continue it")
    assert "--overwrite to replace it" in refused.output
    other = runner.invoke(app, [*args, "--seeds", "0-2", "--resume"])
    _one_clear_line(other, "holds a run with a different description")
    assert f"sbil train --resume --out {out}" in other.output


def _sbil(args, **kwargs) -> subprocess.Popen:
    """``sbil ARGS`` in a new process (as a user runs it, through the console entry point)."""
    code = "import sys; from sbil.cli import main; sys.argv[0] = 'sbil'; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for_state(process: subprocess.Popen, out: Path, timeout: float = 180) -> Path:
    state = out / ".state" / "stack-0.pt"
    deadline = time.monotonic() + timeout
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"no training state appeared (exit {process.returncode}): {err}")
        time.sleep(0.01)
    return state


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_weights(app, tmp_path):
    import torch

    data = _npz(tmp_path / "d.npz", n=60, lengths=(20, 20, 20))
    args = ["train", "--data", str(data), "--env", "CartPole-v1", *EDM_TINY, "--sgld-steps", "2"]
    args += ["--seeds", "0-2", "--episodes", "2", "--windows", "sliding", "--updates", "600"]
    args += ["--checkpoint-every", "10", "--no-progress"]
    out = tmp_path / "run"
    process = _sbil([*args, "--out", out])
    _wait_for_state(process, out)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and not (out / "results.json").exists()
    update = torch.load(out / ".state" / "stack-0.pt", weights_only=True)["update"]
    assert 10 <= update < 600 and update % 10 == 0

    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    reference = runner.invoke(app, [*args, "--out", str(tmp_path / "reference")])
    assert reference.exit_code == 0, reference.output
    for seed in (0, 1, 2):
        assert _weights_equal(tmp_path / "reference" / f"seed-{seed}", out / f"seed-{seed}")


@pytest.mark.slow
def test_ctrl_c_saves_the_state_and_says_how_to_resume(tmp_path):
    import torch

    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["train", "--data", data, "--env", "CartPole-v1", "--algo", "bc", "--hidden", "8"]
    args += ["--updates", "1000000", "--checkpoint-every", "20", "--no-progress", "--out", out]
    process = _sbil(args)
    _wait_for_state(process, out)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("Interrupted (Ctrl-C); the training state was saved")
    assert f"continue with `sbil train --resume --out {out}`" in stderr
    assert stdout == "" and not (out / "results.json").exists()
    assert torch.load(out / ".state" / "stack-0.pt", weights_only=True)["update"] >= 20


# --- which trajectories each seed trains on ---------------------------------------------------


def _labelled(path, *, flipped=()):
    """6 episodes of 10 steps whose action is ``obs[1] > 0`` (the opposite in ``flipped``)."""
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(60, 4)).astype(np.float32)
    obs[:, 1] = np.sign(obs[:, 1]) * (0.5 + np.abs(obs[:, 1]))
    actions = (obs[:, 1] > 0).astype(np.int64)
    for episode in flipped:
        actions[10 * episode : 10 * episode + 10] ^= 1
    np.savez(path, observations=obs, actions=actions, episode_lengths=[10] * 6)
    return path


@pytest.mark.parametrize(
    ("extra", "expected", "held_out"),
    [
        (["--seeds", "0,1", "--episodes", "2"], {0: [0, 1], 1: [0, 1]}, [2, 3, 4, 5]),
        (
            ["--seeds", "0-2", "--episodes", "2", "--windows", "sliding"],
            {0: [0, 1], 1: [1, 2], 2: [2, 3]},
            [4, 5],
        ),
        (
            ["--seeds", "3,4", "--episodes", "2", "--windows", "sliding", "--holdout", "2"],
            {3: [3, 0], 4: [0, 1]},  # windows wrap within the 4 episodes that may be trained on
            [4, 5],
        ),
        (["--seeds", "0,1", "--holdout", "3"], {0: [0, 1, 2], 1: [0, 1, 2]}, [3, 4, 5]),
    ],
    ids=["first", "sliding", "sliding-holdout", "holdout-all"],
)
def test_windows_are_recorded_for_every_seed(app, tmp_path, extra, expected, held_out):
    data = _labelled(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--n-actions", "2", "--algo", "bc", "--updates", "1"]
    result = runner.invoke(app, [*args, *extra, "--out", str(out)])
    assert result.exit_code == 0, result.output
    resolved = _read(out / "config.json")["resolved"]
    assert resolved["train_episodes"] == {str(s): e for s, e in expected.items()}
    assert resolved["held_out_episodes"] == held_out
    assert resolved["n_pairs"] == {str(s): 10 * len(e) for s, e in expected.items()}
    records = _read(out / "results.json")["learners"]
    assert {r["seed"]: r["train_episodes"] for r in records} == expected
    for seed, episodes in expected.items():
        metadata = _read(out / f"seed-{seed}" / "learner.json")["metadata"]
        assert metadata["train_episodes"] == episodes and metadata["held_out_episodes"] == held_out
    assert f"Action match on {len(held_out)} held-out episodes ({10 * len(held_out)} states)" in (
        result.stdout
    )


def test_random_windows_are_a_reproducible_seeded_draw(app, tmp_path):
    from sbil.experiments.runs import training_episodes

    data = _labelled(tmp_path / "d.npz")
    args = ["train", "--data", str(data), "--n-actions", "2", "--algo", "bc", "--updates", "1"]
    args += ["--seeds", "0-3", "--episodes", "3", "--windows", "random", "--holdout", "1"]
    drawn = []
    for name in ("a", "b"):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        drawn.append(_read(tmp_path / name / "config.json")["resolved"]["train_episodes"])
    assert drawn[0] == drawn[1]
    for seed in range(4):
        expected = training_episodes("random", k=3, seed=seed, pool=5).tolist()
        assert drawn[0][str(seed)] == expected
        assert len(set(expected)) == 3 and max(expected) < 5  # never the held-out episode 5
    assert _read(tmp_path / "a" / "config.json")["resolved"]["held_out_episodes"] == [5]


def test_the_action_match_is_measured_only_on_episodes_no_seed_trained_on(app, tmp_path):
    from sbil.deep.data import from_arrays
    from sbil.deep.evaluation import action_match_rate

    # Episodes 4 and 5 (held out) are labelled the opposite way: a learner of episodes 0..3
    # matches them almost never, and almost always matches what it trained on.
    data = _labelled(tmp_path / "d.npz", flipped=(4, 5))
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--n-actions", "2", "--algo", "bc", "--lr", "0.01"]
    args += ["--seeds", "0-2", "--episodes", "2", "--windows", "sliding", "--updates", "150"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(data) as arrays:
        demos = from_arrays(
            arrays["observations"], arrays["actions"], episode_lengths=arrays["episode_lengths"]
        )
    for record in _read(out / "results.json")["learners"]:
        learner = load_learner(out / f"seed-{record['seed']}")
        assert record["action_match"] == pytest.approx(
            action_match_rate(learner, demos.select([4, 5]))
        )
        assert action_match_rate(learner, demos.select(record["train_episodes"])) > 0.8
        assert record["action_match"] < 0.2


# --- the --out folder -------------------------------------------------------------------------


def _bc(data, out, *extra):
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "bc", "--updates", "2"]
    return [*args, "--no-progress", *extra, "--out", str(out)]


def test_a_folder_another_process_writes_is_refused_at_once(app, tmp_path, no_training):
    from sbil.files import lock

    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    with lock(out):
        result = runner.invoke(app, _bc(data, out))
    _one_clear_line(result, f"{out} is in use by process {os.getpid()} on ")
    assert not out.exists()


@pytest.mark.slow
def test_two_trainings_into_one_folder_at_once(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "bc", "--hidden", "8"]
    args += ["--updates", "1000000", "--checkpoint-every", "20", "--no-progress"]
    first = _sbil([*args, "--out", out])
    try:
        _wait_for_state(first, out)
        second = runner.invoke(app, [*args, "--out", str(out)])
        _one_clear_line(second, f"{out} is in use by process {first.pid} on ")
        assert not (out / "seed-0").exists()
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130


def test_an_earlier_run_is_replaced_only_with_overwrite(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    first = runner.invoke(app, _bc(data, out, "--seeds", "0-2"))
    assert first.exit_code == 0, first.output
    refused = runner.invoke(app, _bc(data, out, "--seeds", "7"))
    _one_clear_line(refused, f"--out {out} already holds a finished run; pass --resume")
    assert "--overwrite to replace it" in refused.output
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-0", "seed-1", "seed-2"]
    replaced = runner.invoke(app, _bc(data, out, "--seeds", "7", "--overwrite"))
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-7"]
    assert _read(out / "config.json")["spec"]["seeds"] == [7]


def test_overwrite_never_replaces_other_files_or_the_current_folder(
    app, tmp_path, monkeypatch, no_training
):
    data = _npz(tmp_path / "d.npz")
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = runner.invoke(app, _bc(data, other, "--overwrite"))
    _one_clear_line(result, f"--out {other} holds files that are not an sbil training run")
    assert (other / "notes.txt").read_text() == "keep me"

    # A run folder in which the user left a file of their own is not only a run.
    run = tmp_path / "run"
    (run / "seed-0").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "seed-0" / "learner.json").write_text("{}")
    (run / "plot.png").write_text("mine")
    _one_clear_line(runner.invoke(app, _bc(data, run, "--overwrite")), "not an sbil training run")
    assert (run / "plot.png").exists() and (run / "seed-0" / "learner.json").exists()

    (run / "plot.png").unlink()  # now it is a run; run from inside it, it is still refused
    for cwd, out in ((run, "."), (run / "seed-0", ".."), (run / "seed-0", str(run))):
        monkeypatch.chdir(cwd)
        result = runner.invoke(app, _bc(data, out, "--overwrite"))
        _one_clear_line(result, "is the current folder or one of its parents")
        assert (run / "config.json").exists() and (run / "seed-0" / "learner.json").exists()


def _read_only_empty_folder(tmp_path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    pytest.skip("running as root: a folder's mode does not stop root from writing in it")


@pytest.mark.parametrize("where", ["chmod", "proc"])
def test_an_empty_read_only_out_folder_is_refused(app, tmp_path, no_training, where):
    if where == "proc":
        out = Path("/proc/driver")  # an empty folder of a file system nobody can write
        if not out.is_dir() or any(out.iterdir()):
            pytest.skip("this system has no empty /proc/driver folder")
    else:
        out = _read_only_empty_folder(tmp_path)
    data = _npz(tmp_path / "d.npz")
    result = runner.invoke(app, _bc(data, out))
    _one_clear_line(result, f"Cannot write the run folder {out} (")
    assert out.is_dir() and not any(out.iterdir())


def test_resume_and_overwrite_together_is_a_usage_error(app, tmp_path, no_training):
    data = _npz(tmp_path / "d.npz")
    result = runner.invoke(app, _bc(data, tmp_path / "o", "--resume", "--overwrite"))
    _one_clear_line(result, "Give at most one of --resume and --overwrite.", code=2)


# --- divergence -------------------------------------------------------------------------------


def test_a_diverging_run_fails_and_is_never_marked_complete(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--algo", "edm", "--lr", "1e8"]
    result = runner.invoke(app, [*args, "--updates", "20", "--out", str(out)])
    _one_clear_line(result, "Training diverged: the loss of seed 0 became nan at update ")
    assert re.search(
        r"at update \d+ of 20; the learning rate 1e\+08 is likely too large", result.output
    )
    assert not list(out.glob("seed-*")) and not (out / "results.json").exists()
    assert result.stdout == ""
    refused = runner.invoke(app, ["evaluate", str(out), "--episodes", "1"])
    _one_clear_line(refused, "is neither a learner checkpoint")


def test_evaluate_refuses_nan_weights(app, tmp_path):
    import torch

    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    assert runner.invoke(app, _bc(data, out)).exit_code == 0
    weights = out / "seed-0" / "weights.pt"
    state = torch.load(weights, weights_only=True)
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    torch.save(state, weights)
    for target in (out, out / "seed-0"):
        result = runner.invoke(app, ["evaluate", str(target), "--episodes", "1"])
        _one_clear_line(result, "weights contain NaN or infinite values")


# --- large numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0-99999"], "names 100000 seeds, more than the 10000 allowed"),
        (["--seeds", "0-999999999"], "names 1000000000 seeds, more than the 10000 allowed"),
        (["--seeds", "99999999999999999999"], "past the largest seed 4294967295"),
        (
            ["--eval-seed", "4294967295", "--eval-episodes", "2"],
            "--eval-seed 4294967295 with 2 episodes uses seeds up to 4294967296",
        ),
    ],
)
def test_absurd_numbers_are_refused_at_once(app, tmp_path, no_training, extra, message):
    data = _npz(tmp_path / "d.npz")
    started = time.monotonic()
    result = runner.invoke(app, [*_bc(data, tmp_path / "o"), *extra])
    _one_clear_line(result, message, code=2)
    assert time.monotonic() - started < 30  # not a quadratic check over the seeds
    assert not (tmp_path / "o").exists()


def _refused_for_memory(extra, obs_dim):
    """Skip where sbil would (rightly) try to train: the machine is large enough."""
    from sbil.deep.learners import LearnerConfig, memory_estimate

    options = dict(zip(extra[::2], extra[1::2], strict=True))
    hidden = tuple(int(h) for h in options.get("--hidden", "64,64").split(","))
    buffer = int(options.get("--sgld-buffer-size", 10_000))
    config = LearnerConfig(algo="edm", hidden_sizes=hidden, sgld_buffer_size=buffer)
    need = memory_estimate(config, n_learners=1, obs_dim=obs_dim, n_actions=2, n_pairs=40)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need <= 0.8 * have:
        pytest.skip(f"this machine has the {need / 2**30:.0f} GiB such a run needs")


@pytest.mark.parametrize(
    ("extra", "obs_dim"),
    [
        (["--hidden", "100000,100000"], 4),
        (["--sgld-buffer-size", "1000000000"], 100),
    ],
    ids=["hidden", "sgld-buffer"],
)
def test_runs_too_large_for_memory_are_refused_with_the_figure(app, tmp_path, extra, obs_dim):
    _refused_for_memory(extra, obs_dim)
    data = _npz(tmp_path / "d.npz", obs_dim=obs_dim)
    out = tmp_path / "o"
    args = ["train", "--data", str(data), "--n-actions", "2", "--algo", "edm", "--updates", "2"]
    started = time.monotonic()
    result = runner.invoke(app, [*args, *extra, "--out", str(out)])
    _one_clear_line(result, "Training 1 learner(s) with these settings needs at least ")
    assert re.search(
        r"needs at least \d+\.\d (GiB|TiB) of memory but this machine has", result.output
    )
    assert time.monotonic() - started < 60
    assert not list(out.glob("seed-*")) and not (out / "results.json").exists()


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        ([], "exactly one of --dataset", 2),
        (["--dataset", DATASET, "--episodes", "7"], "more trajectories than the 3", 1),
        (["--dataset", DATASET, "--seeds", "a,b"], "--seeds must be comma-separated", 2),
        (["--dataset", DATASET, "--algo", "gail"], "--algo must be one of", 2),
        (["--dataset", "nope/none-v0"], "No local Minari dataset", 1),
        (["--dataset", DATASET, "--sgld-noise", "hot"], "'langevin'", 2),
        (["--dataset", DATASET, "--windows", "middle"], "--windows must be one of first", 2),
        (["--dataset", DATASET, "--holdout", "3"], "--holdout 3 leaves no episode to train", 1),
        (["--dataset", DATASET, "--hidden", "64,x"], "--hidden must be integers like 64,64", 2),
    ],
)
def test_bad_input_gives_one_clear_line(app, minari_root, tmp_path, extra, message, code):
    args = ["train", "--root", str(minari_root), "--out", str(tmp_path / "x"), "--updates", "1"]
    args += ["--algo", "edm"]  # a later --algo (gail) replaces it
    _one_clear_line(runner.invoke(app, [*args, *extra]), message, code=code)


def test_cuda_without_a_gpu_is_a_clear_error(app, minari_root, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    args = ["train", "--dataset", DATASET, "--root", str(minari_root), "--algo", "bc"]
    result = runner.invoke(app, [*args, "--device", "cuda", "--out", str(tmp_path / "x")])
    _one_clear_line(result, "CUDA is not available")


def test_data_folder_is_named_a_folder(app, tmp_path, no_training):
    args = ["train", "--data", str(tmp_path), "--env", "CartPole-v1", "--algo", "bc"]
    args += ["--out", str(tmp_path / "o")]
    _one_clear_line(runner.invoke(app, args), f"--data {tmp_path} is a folder; give the .npz file")


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
    args = ["train", "--data", str(path), "--env", "CartPole-v1", "--algo", "bc"]
    args += ["--out", str(tmp_path / "o")]
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
    args = ["train", "--data", str(path), "--env", "CartPole-v1", "--algo", "bc"]
    args += ["--out", str(tmp_path / "o")]
    _one_clear_line(runner.invoke(app, args), f"--data {path}")


def test_action_count_comes_from_the_task_not_the_data(app, tmp_path):
    # Acrobot has 3 actions; demonstrations that never use action 2 still train 3-action policies.
    data = _npz(tmp_path / "acrobot.npz", obs_dim=6)
    out = tmp_path / "acrobot"
    args = ["train", "--data", str(data), "--env", "Acrobot-v1", "--algo", "bc"]
    result = runner.invoke(app, [*args, "--updates", "2", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_learner(out / "seed-0").n_actions == 3
    assert _read(out / "config.json")["resolved"]["n_actions"] == 3


def test_data_without_a_task_needs_n_actions(app, tmp_path, no_training):
    data = _npz(tmp_path / "d.npz")
    args = ["train", "--data", str(data), "--algo", "bc", "--out", str(tmp_path / "o")]
    _one_clear_line(runner.invoke(app, args), "pass --env ID or --n-actions N")
    wrong = runner.invoke(app, [*args, "--env", "CartPole-v1", "--n-actions", "4", "--overwrite"])
    _one_clear_line(wrong, "--n-actions 4 vs CartPole-v1 (2 actions)")


def test_n_actions_option_sets_the_action_count(app, tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "o"
    args = ["train", "--data", str(data), "--algo", "bc", "--n-actions", "4", "--updates", "2"]
    result = runner.invoke(app, [*args, "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_learner(out / "seed-0").n_actions == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0,0"], "names seed 0 more than once"),
        (["--seeds", "0-2,1"], "names seed 1 more than once"),
        (["--seeds", "3-1"], "the range 3-1 is empty"),
        (["--eval-seed", "-1", "--eval-episodes", "2"], "--eval-seed must be an integer >= 0"),
        (["--eval-episodes", "-5"], "--eval-episodes must be an integer >= 0"),
        (["--eval-episodes", "2", "--n-actions", "2"], "--eval-episodes needs a task"),
        (["--episodes", "0"], "--episodes must be an integer >= 1"),
        (["--holdout", "-1"], "--holdout must be an integer >= 0"),
        (["--every-nth-step", "0"], "--every-nth-step must be an integer >= 1"),
        (["--threads", "0"], "--threads must be an integer >= 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1"),
        (["--n-actions", "1"], "--n-actions must be an integer >= 2"),
        (["--updates", "0"], "--updates must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--lr", "nan"], "--lr must be positive"),
        (["--sgld-reinit-prob", "2"], "--sgld-reinit-prob must be in"),
    ],
)
def test_options_are_checked_before_training(app, tmp_path, no_training, extra, message):
    data = _npz(tmp_path / "d.npz")
    args = ["train", "--data", str(data), "--algo", "bc", "--out", str(tmp_path / "o"), *extra]
    _one_clear_line(runner.invoke(app, args), message, code=2)
    assert not (tmp_path / "o").exists()


def test_an_unwritable_out_is_a_failure_naming_it(app, tmp_path, no_training):
    data = _npz(tmp_path / "d.npz")
    result = runner.invoke(app, _bc(data, "/proc/x"))
    _one_clear_line(result, "Cannot write the run folder /proc/x (")
    file = tmp_path / "file"
    file.write_text("x")
    _one_clear_line(runner.invoke(app, _bc(data, file)), f"--out {file} is a file")


def test_help_states_the_every_nth_step_deviation(app):
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "deviates from the EDM reference, which keeps every 20th" in text


@pytest.mark.parametrize(
    ("algo", "extra", "pairs", "recorded"),
    [
        ("valuedice", ["--nu-lr", "0.002"], 1000, {"nu_learning_rate": 0.002, "batch_size": 256}),
        ("rcal", ["--reward-l1", "0.5"], 1000, {"reward_l1_coef": 0.5, "learning_rate": 0.001}),
        ("iqlearn", ["--temperature", "0.1"], 1000, {"soft_q_temperature": 0.1}),
        # the recorded CartPole episodes end by a time limit: AVRIL drops their last steps
        ("avril", ["--td-weight", "2", "--discount", "1"], 998, {"td_likelihood_weight": 2.0}),
    ],
)
def test_train_each_transition_learner_from_the_command_line(
    app, minari_root, tmp_path, algo, extra, pairs, recorded
):
    out = tmp_path / algo
    args = ["train", "--dataset", DATASET, "--root", str(minari_root), "--algo", algo]
    args += ["--seeds", "0,1", "--episodes", "2", "--updates", "20", *extra]
    result = runner.invoke(app, [*args, "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Trained 2 {algo} learner(s) on {pairs} pairs from 2 trajectories" in result.stdout
    learner = _read(out / "config.json")["spec"]["learner"]
    assert learner["algo"] == algo and learner["n_updates"] == 20
    assert recorded.items() <= learner.items()
    assert "sgld_steps" in learner  # the shared fields stay; other learners' fields do not
    assert ("nu_learning_rate" in learner) == (algo == "valuedice")
    assert ("chi2_alpha" in learner) == (algo == "iqlearn")
    evaluated = runner.invoke(app, ["evaluate", str(out), "--episodes", "2"])
    assert evaluated.exit_code == 0, evaluated.output


def test_an_option_of_another_learner_is_a_usage_error(app, minari_root, tmp_path):
    args = ["train", "--dataset", DATASET, "--root", str(minari_root), "--algo", "bc"]
    result = runner.invoke(app, [*args, "--chi2-alpha", "1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "--chi2-alpha applies to iqlearn only" in result.output


def test_algo_has_no_default_and_its_absence_is_one_usage_line(app, tmp_path, no_training):
    data = _npz(tmp_path / "d.npz")
    args = ["train", "--data", str(data), "--env", "CartPole-v1", "--updates", "2"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    _one_clear_line(result, "Missing option '--algo'", code=2)
    assert "bc, edm, edm-decoupled, valuedice, rcal, iqlearn, avril or dsfn" in result.stderr
    assert "Try 'sbil train --help' for help." in result.stderr
    assert not (tmp_path / "o").exists()


def test_help_groups_the_options_in_panels(app):
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    panels = re.findall(r"╭─ (.+?) ─", result.output)
    assert panels == [
        "Options",
        "Run",
        "Data",
        "Training",
        "EDM's SGLD sampler (edm, edm-decoupled)",
        "Transition learners (valuedice, rcal, iqlearn, avril, dsfn)",
        "ValueDICE",
        "RCAL",
        "IQ-Learn",
        "AVRIL",
        "Evaluation",
        "Output",
    ]
    sections = dict(zip(panels, re.split(r"╭─ .+? ─+╮", result.output)[1:], strict=True))
    assert "--sgld-steps" in sections[panels[4]] and "--chi2-alpha" in sections["IQ-Learn"]
    assert "--algo" in sections["Run"] and "--data" in sections["Data"]
    assert "--eval-episodes" in sections["Evaluation"] and "--help" in sections["Options"]


def test_data_help_names_every_array_it_reads(app):
    from sbil.experiments.runs import NPZ_ARRAYS

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.replace("│", " ").split())
    help_text = text[text.index("--data") : text.index("--env ")]
    assert set(NPZ_ARRAYS) >= {"observations", "actions", "final_observations", "terminated"}
    for name in NPZ_ARRAYS:
        assert name in help_text, name

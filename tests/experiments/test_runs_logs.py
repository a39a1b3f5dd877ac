"""What a run writes besides its checkpoints: every named loss term in losses.npz (a resumed
run's equal to an uninterrupted one's), its log, and tidy rows that say when a seed failed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sbil.deep.learners import LearnerConfig
from sbil.experiments import runs
from sbil.experiments.runs import RunSpec, load_curves, run_training


def _npz(path, *, n_episodes=4, length=8):
    rng = np.random.default_rng(0)
    n = n_episodes * length
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    np.savez(
        path,
        observations=obs,
        actions=(obs[:, 1] > 0).astype(np.int64),
        episode_lengths=[length] * n_episodes,
        final_observations=rng.normal(size=(n_episodes, 3)).astype(np.float32),
        terminated=[True, False] * (n_episodes // 2),
    )
    return path


def _spec(path, learner, **changes) -> RunSpec:
    fields = {"learner": learner, "seeds": (0, 1), "data": str(path), "n_actions": 2}
    return RunSpec(**{**fields, "holdout": 1, **changes})


def test_a_resumed_runs_curves_equal_an_uninterrupted_runs_term_by_term(tmp_path):
    learner = LearnerConfig(algo="iqlearn", n_updates=40, batch_size=4, hidden_sizes=(8,))
    spec = _spec(_npz(tmp_path / "d.npz"), learner, checkpoint_every=10)
    run_training(spec, tmp_path / "reference")

    def interrupt(done, total):  # a kill at update 27: the state of update 20 is on disk
        if done == 27:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, out, progress=interrupt)
    assert not (out / runs.LOSSES_FILE).exists() and not (out / "training.csv").exists()
    run_training(spec, out, resume=True)
    seeds, curves = load_curves(out)
    _, reference = load_curves(tmp_path / "reference")
    assert seeds == (0, 1)
    assert list(curves) == ["loss", "reward_term", "value_term", "chi2_term", "cross_entropy"]
    for name, curve in reference.items():
        assert curve.shape == (2, 40) and np.array_equal(curves[name], curve), name
    with np.load(out / runs.LOSSES_FILE) as saved:  # what older readers read is still there
        assert np.isnan(saved["rho"]).all()
        assert np.array_equal(saved["loss"], curves["loss"])
    messages = [line.split("  ", 1)[1] for line in (out / "log.txt").read_text().splitlines()]
    started = [m for m in messages if m.startswith("train: ")]
    assert started[0].startswith("train: started iqlearn x2")
    assert started[1] == "train: interrupted: Ctrl-C"
    assert started[2].startswith("train: resumed iqlearn x2")
    assert messages[-1] == "train: finished; results.json written"


def test_valuedice_keeps_its_objective_as_the_old_loss(tmp_path):
    learner = LearnerConfig(algo="valuedice", n_updates=5, batch_size=4, hidden_sizes=(8,))
    run_training(_spec(_npz(tmp_path / "d.npz"), learner), tmp_path / "run")
    with np.load(tmp_path / "run" / runs.LOSSES_FILE) as saved:
        assert "nu_gradient_penalty" in list(saved["terms"])
        assert np.array_equal(saved["loss"], saved["objective"])


def test_a_diverged_seed_is_a_failed_row_with_its_reason(tmp_path):
    data = _npz(tmp_path / "d.npz")
    config = LearnerConfig(algo="edm", n_updates=5, batch_size=4, sgld_buffer_size=20)
    scaled = tmp_path / "scaled.npz"
    with np.load(data) as arrays:
        fields = dict(arrays)
    fields["observations"] = fields["observations"] * 1e30  # logits overflow: NaN
    np.savez(scaled, **fields)
    spec = _spec(scaled, config, seeds=(0,))
    run_training(spec, tmp_path / "run", stop_on_divergence=False)
    (row,) = json.loads((tmp_path / "run" / "training.json").read_text())
    assert row["status"] == "failed" and "diverged" in row["error"]
    assert row["mean_return"] is None and row["n_episodes"] == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "seed 0: FAILED, diverged: the loss became" in log


def test_a_refused_run_leaves_no_log_behind(tmp_path):
    huge = LearnerConfig(algo="bc", n_updates=5, hidden_sizes=(100_000, 100_000))
    with pytest.raises(Exception, match="needs at least"):
        run_training(_spec(_npz(tmp_path / "d.npz"), huge), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())

"""Training curves to TensorBoard: one run per seed, one tag per term, every update once even
after a resume, and a one-line error naming the extra when TensorBoard is missing."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

from sbil.experiments.tensorboard_log import (
    TensorBoardMissing,
    TensorBoardTerms,
    check_tensorboard,
)


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard run as TensorBoard itself reads it (with its purges)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_missing_tensorboard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    with pytest.raises(TensorBoardMissing) as error:
        check_tensorboard()
    message = str(error.value)
    assert 'pip install "sbil[tensorboard]"' in message and "\n" not in message
    with pytest.raises(TensorBoardMissing):
        TensorBoardTerms("anywhere")


def test_each_seed_is_a_run_and_each_term_a_tag(tmp_path):
    pytest.importorskip("tensorboard")
    from sbil.deep.data import from_arrays
    from sbil.deep.learners import LearnerConfig, train

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(60, 4)).astype(np.float32)
    demos = from_arrays(obs, (obs[:, 0] > 0).astype(np.int64), n_actions=2)
    config = LearnerConfig(algo="edm", n_updates=30, batch_size=8, sgld_buffer_size=40)
    with TensorBoardTerms(tmp_path / "tb") as board:
        result = train(demos, config, seeds=[3, 8], on_terms=board)
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["seed-3", "seed-8"]
    for row, seed in enumerate((3, 8)):
        scalars = _scalars(tmp_path / "tb" / f"seed-{seed}")
        assert sorted(scalars) == ["train/cross_entropy", "train/loss", "train/rho"]
        for name, curve in result.curves.items():
            steps, values = zip(*scalars[f"train/{name}"], strict=True)
            assert steps == tuple(range(1, 31))
            assert np.array_equal(np.array(values, np.float32), curve[row]), name


def test_a_resumed_training_shows_each_update_once(tmp_path):
    pytest.importorskip("tensorboard")
    from sbil.deep.data import from_arrays
    from sbil.deep.learners import LearnerConfig, TrainingInterrupted, train

    rng = np.random.default_rng(1)
    obs = rng.normal(size=(60, 4)).astype(np.float32)
    demos = from_arrays(obs, (obs[:, 0] > 0).astype(np.int64), n_actions=2)
    config = LearnerConfig(algo="bc", n_updates=60, batch_size=8)

    def interrupt(done, total):
        if done == 45:
            os.kill(os.getpid(), signal.SIGINT)

    state = tmp_path / "state"
    with pytest.raises(TrainingInterrupted), TensorBoardTerms(tmp_path / "tb") as board:
        train(
            demos,
            config,
            seeds=[0],
            state_dir=state,
            checkpoint_every=20,  # resumes from update 40: 41..46 are trained twice
            progress=interrupt,
            on_terms=board,
        )
    with TensorBoardTerms(tmp_path / "tb") as board:
        resumed = train(demos, config, seeds=[0], state_dir=state, on_terms=board)
    scalars = _scalars(tmp_path / "tb" / "seed-0")
    steps, values = zip(*scalars["train/loss"], strict=True)
    assert steps == tuple(range(1, 61))
    assert np.array_equal(np.array(values, np.float32), resumed.loss[0])

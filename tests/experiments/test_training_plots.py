"""Training-curve figures: one panel per term, a line per seed, log scale only where a term is
positive over more than a decade, a title naming the learner, task and k; runs written before
the terms had names still plot."""

from __future__ import annotations

import io
import json

import matplotlib.image
import numpy as np
import pytest

from sbil.experiments.runs import RunError, load_curves
from sbil.experiments.training_plots import plot_run, plot_training_curves, run_title


def _png(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    image = matplotlib.image.imread(io.BytesIO(buf.getvalue()), format="png")
    assert image.ndim == 3 and image.std() > 0
    return image


def _curves(k=3, n=400):
    rng = np.random.default_rng(0)
    t = np.arange(1, n + 1)
    return {
        "loss": (np.exp(-t / 100) + 0.01 * rng.random((k, n))).astype(np.float32),  # 1 .. 0.01
        "rho": rng.normal(size=(k, n)).astype(np.float32),  # changes sign
        "narrow": (100 + rng.random((k, n))).astype(np.float32),  # positive, within a decade
    }


def test_one_panel_per_term_and_a_line_per_seed():
    fig = plot_training_curves((0, 5, 9), _curves(), title="EDM on CartPole-v1")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "rho", "narrow"]
    loss, rho, narrow = axes
    assert loss.get_yscale() == "log" and rho.get_yscale() == "linear"
    assert narrow.get_yscale() == "linear"
    assert loss.get_xlabel() == "update" and "Adam" in loss.get_ylabel()
    assert len(loss.get_lines()) == 6  # each seed: every update faintly, its running mean
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "5", "9"]
    assert fig.get_suptitle().startswith("EDM on CartPole-v1\nrunning mean over 4 updates")
    _png(fig)


def test_the_running_mean_skips_what_is_not_finite():
    from sbil.experiments.training_plots import _running_mean

    values = np.array([1.0, np.nan, 3.0, 5.0, np.inf])
    np.testing.assert_allclose(_running_mean(values, 2), [1.0, 1.0, 3.0, 4.0, 5.0])
    assert np.isnan(_running_mean(np.array([np.nan, np.nan]), 2)).all()


def test_a_diverged_curve_is_marked():
    curves = {"loss": np.array([[1.0, 0.5, np.nan, np.nan]], np.float32)}
    fig = plot_training_curves((0,), curves, title="t")
    assert any("diverged" in text.get_text() for text in fig.axes[0].texts)
    _png(fig)


def _run_folder(tmp_path, **arrays):
    folder = tmp_path / "run"
    folder.mkdir()
    config = {
        "spec": {
            "learner": {"algo": "edm-decoupled", "n_updates": 400},
            "seeds": [0, 5, 9],
            "episodes": None,
            "env_id": None,
        },
        "resolved": {"env_id": "Acrobot-v1", "train_episodes": {"0": [0, 1], "5": [1, 2]}},
    }
    (folder / "config.json").write_text(json.dumps(config))
    np.savez(folder / "losses.npz", seeds=np.array([0, 5, 9]), **arrays)
    return folder


def test_a_run_folder_plots_with_its_learner_task_and_k(tmp_path):
    curves = _curves()
    folder = _run_folder(tmp_path, terms=np.array(list(curves)), **curves)
    assert run_title(folder) == (
        "decoupled EDM on Acrobot-v1, k = 2 trajectories per seed, 3 seeds, 400 updates (run)"
    )
    seeds, loaded = load_curves(folder)
    assert seeds == (0, 5, 9) and list(loaded) == ["loss", "rho", "narrow"]
    fig = plot_run(folder)
    assert fig.get_suptitle().startswith("decoupled EDM on Acrobot-v1, k = 2")
    _png(fig)


def test_a_run_written_before_the_terms_had_names_still_plots(tmp_path):
    k, n = 3, 50
    folder = _run_folder(
        tmp_path,
        loss=np.ones((k, n), np.float32),
        cross_entropy=np.ones((k, n), np.float32),
        rho=np.full((k, n), np.nan, np.float32),  # BC: no rho
    )
    _, curves = load_curves(folder)
    assert list(curves) == ["loss", "cross_entropy"]
    _png(plot_run(folder))


def test_a_folder_without_curves_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="holds no training curves"):
        load_curves(tmp_path)
    (tmp_path / "losses.npz").write_bytes(b"not a zip")
    with pytest.raises(RunError, match=r"Cannot read .*losses\.npz"):
        load_curves(tmp_path)

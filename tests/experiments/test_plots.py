"""Tests for sbil.experiments.plots: the figures render to valid PNGs and mark what they drop."""

import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from sbil.experiments import consistency as cs
from sbil.experiments import plots
from sbil.experiments.landing import edm_landing


@pytest.fixture
def study(small_study):
    return small_study


def _png(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert image.ndim == 3 and min(image.shape[:2]) > 50
    assert image.std() > 0  # not a blank canvas
    return image


def test_landing_plot_is_a_png():
    _png(plots.plot_landing(edm_landing([0.05, 0.3, 0.6, 0.9], [-1.0, 0.0, 0.5, 1.0, 2.0])))


def test_consistency_plot_marks_infinite_iqm(study):
    summary = cs.summarise(study, n_resamples=50)
    row = (summary["problem"] == "random") & (summary["method"] == "bc")
    row &= summary["n_samples"] == summary["n_samples"].min()
    summary.loc[row, ["iqm", "ci_high", "n_no_minimiser"]] = [np.inf, np.inf, 4]
    fig = plots.plot_consistency(summary, cs.limits(study))
    _png(fig)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("IQM = ∞" in t and "4/" in t for t in texts), texts


def test_consistency_plot_without_infinite_points_has_no_marker(study):
    fig = plots.plot_consistency(cs.summarise(study, n_resamples=50), cs.limits(study))
    assert not any("IQM = ∞" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_limits_plot_has_integer_count_ticks(study):
    fig = plots.plot_limits(cs.limits(study))
    _png(fig)
    ticks = fig.axes[0].get_yticks()
    np.testing.assert_array_equal(ticks, np.round(ticks))


def test_limits_plot_with_no_rows_still_renders():
    empty = pd.DataFrame(
        columns=["problem", "method", "converged", "error", "visitation_tv"]
    ).astype({"converged": bool})
    _png(plots.plot_limits(empty))

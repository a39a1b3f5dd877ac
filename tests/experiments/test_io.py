"""Tests for sbil.experiments.io: atomic figure and CSV writes."""

import os

import matplotlib
import pandas as pd
import pytest

from sbil.experiments import io

matplotlib.use("Agg")


def test_csv_is_written_whole_and_leaves_no_temporaries(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, float("inf")]})
    path = io.write_csv_atomic(frame, tmp_path / "sub" / "t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), frame)
    assert sorted(os.listdir(tmp_path / "sub")) == ["t.csv"]


def test_failed_csv_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")

    class Broken:
        def to_csv(self, path, index):
            with open(path, "w") as handle:
                handle.write("half a tab")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        io.write_csv_atomic(Broken(), target)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.csv"]


def test_figure_format_follows_the_suffix(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = io.save_figure_atomic(fig, tmp_path / "f.png", dpi=30)
    svg = io.save_figure_atomic(fig, tmp_path / "f.svg")
    plt.close(fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]


def test_no_second_provenance_function():
    """Provenance has one home, sbil.files.git_commit (None outside a checkout)."""
    assert not hasattr(io, "git_commit")

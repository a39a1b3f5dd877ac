"""Episode videos with Gymnasium's RecordVideo: one mp4 per seeded episode, the episodes
``evaluate`` plays, moved into place whole; a one-line error without moviepy."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sbil.deep.evaluation import evaluate
from sbil.deep.experts import get_expert
from sbil.deep.video import VideoError, check_recording, record_episodes


def _frames(path) -> int:
    from moviepy import VideoFileClip

    clip = VideoFileClip(str(path))
    try:
        return sum(1 for _ in clip.iter_frames())
    finally:
        clip.close()


def test_one_video_per_episode_of_the_episodes_evaluate_plays(tmp_path):
    pytest.importorskip("moviepy")

    def push_left(obs):  # the pole falls within about ten steps, at a seed-dependent time
        return np.zeros(len(obs), dtype=np.int64)

    recording = record_episodes(
        push_left, "CartPole-v1", tmp_path / "videos", 2, seed=3, max_episode_steps=30
    )
    assert [p.name for p in recording.videos] == ["episode-0.mp4", "episode-1.mp4"]
    expected = evaluate(push_left, "CartPole-v1", 2, seed=3, max_episode_steps=30)
    assert (expected.lengths < 30).all() and expected.lengths[0] != expected.lengths[1]
    np.testing.assert_array_equal(recording.returns, expected.returns)
    np.testing.assert_array_equal(recording.lengths, expected.lengths)
    for path, length in zip(recording.videos, recording.lengths, strict=True):
        assert path.is_file() and _frames(path) == length + 1  # the reset frame and each step
    doc = json.loads((tmp_path / "videos" / "videos.json").read_text())
    assert doc["env_id"] == "CartPole-v1"
    assert [v["reset_seed"] for v in doc["videos"]] == [3, 4]
    assert [v["return"] for v in doc["videos"]] == expected.returns.tolist()
    assert [v["file"] for v in doc["videos"]] == ["episode-0.mp4", "episode-1.mp4"]
    # Only the videos and their index are left: the staging folder is gone.
    names = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert names == ["episode-0.mp4", "episode-1.mp4", "videos.json"]


def test_without_moviepy_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # as if not installed
    with pytest.raises(VideoError, match=r'needs moviepy.*`pip install "sbil\[video\]"`'):
        check_recording(tmp_path / "v")
    with pytest.raises(VideoError, match="needs moviepy"):
        record_episodes(get_expert("CartPole-v1"), "CartPole-v1", tmp_path / "v", 1)


def test_bad_budgets_and_policies_are_refused(tmp_path):
    pytest.importorskip("moviepy")
    expert = get_expert("CartPole-v1")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_episodes must be a positive integer"):
            record_episodes(expert, "CartPole-v1", tmp_path / "v", bad)
    with pytest.raises(ValueError, match="seed"):
        record_episodes(expert, "CartPole-v1", tmp_path / "v", 2, seed=2**32 - 1)
    with pytest.raises(ValueError, match=r"returned action 7, outside 0\.\.1"):
        record_episodes(lambda obs: np.array([7]), "CartPole-v1", tmp_path / "v", 1)
    with pytest.raises(ValueError, match="shape"):
        record_episodes(lambda obs: np.array([0, 1]), "CartPole-v1", tmp_path / "v", 1)
    assert not list((tmp_path / "v").glob("*.mp4"))

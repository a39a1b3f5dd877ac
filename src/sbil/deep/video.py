"""Videos of a policy's episodes, written with Gymnasium's ``RecordVideo`` (``sbil evaluate
--record DIR``).

:func:`record_episodes` plays ``n_episodes`` episodes one at a time, episode ``i`` reset with
``seed + i`` exactly as :func:`sbil.deep.evaluation.evaluate` resets its episode ``i``, so the
videos show the first evaluated episodes (same returns, for a deterministic policy). It
writes::

    DIR/episode-<i>.mp4   episode i (reset seed SEED + i)
    DIR/videos.json       per video: file, reset seed, return, length; task, policy

Gymnasium records into a hidden staging folder inside ``DIR``; each finished video is then
moved into place with ``os.replace``, so ``DIR`` never holds a half-written video.
``RecordVideo`` encodes through moviepy, sbil's ``video`` extra
(``pip install "sbil[video]"``).

Example:
    >>> from sbil.deep.experts import get_expert
    >>> from sbil.deep.video import record_episodes
    >>> recording = record_episodes(
    ...     get_expert("CartPole-v1"), "CartPole-v1", "videos", n_episodes=2, seed=0
    ... )  # doctest: +SKIP
    >>> [p.name for p in recording.videos]  # doctest: +SKIP
    ['episode-0.mp4', 'episode-1.mp4']
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbil.deep.envs import Policy, env_spec
from sbil.seeds import check_seed_range

VIDEOS_FILE = "videos.json"
_PREFIX = "video"


class VideoError(ValueError):
    """Videos cannot be recorded as asked (a missing package, a task that cannot render)."""


def check_recording(out_dir: str | os.PathLike) -> Path:
    """Check, before any episode runs, that videos can be written to ``out_dir``.

    Raises:
        VideoError: if moviepy (the ``video`` extra) is not installed.
        NotWritableError: if ``out_dir`` cannot be created or written.
    """
    from sbil.files import check_writable_folder

    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise VideoError(
            "Recording videos needs moviepy, which comes with sbil's 'video' extra; install "
            'it with `pip install "sbil[video]"`.'
        ) from None
    return check_writable_folder(out_dir, what="the video folder")


@dataclass(frozen=True, eq=False)
class Recording:
    """The videos :func:`record_episodes` wrote.

    Attributes:
        env_id: the task.
        seed: episode ``i`` was reset with ``seed + i``.
        videos: ``[n]`` paths of the mp4 files, in episode order.
        returns: ``[n]`` float64 episode returns.
        lengths: ``[n]`` int64 episode lengths (steps).
    """

    env_id: str
    seed: int
    videos: list[Path]
    returns: np.ndarray
    lengths: np.ndarray


def record_episodes(
    policy: Policy,
    env_id: str,
    out_dir: str | os.PathLike,
    n_episodes: int = 1,
    seed: int = 0,
    *,
    max_episode_steps: int | None = None,
    label: str | None = None,
) -> Recording:
    """Play ``n_episodes`` seeded episodes of ``policy`` and write one mp4 video per episode.

    Args:
        policy: batched policy ``obs[n, obs_dim] -> actions[n]`` (a learner, an expert, a
            :class:`sbil.deep.policy.Policy`), called with one observation at a time.
        env_id: a supported task that renders ``rgb_array`` frames.
        out_dir: the video folder (created if needed); videos of the same names are replaced.
        n_episodes: number of episodes (videos).
        seed: episode ``i`` is reset with ``seed + i``.
        max_episode_steps: override the task's time limit (shorter videos).
        label: what to call the policy in ``videos.json`` (default: its type's name).

    Raises:
        VideoError: without moviepy, or for a task that cannot render frames.
        ValueError: for a bad budget or seed, or a policy returning malformed actions.
    """
    import gymnasium as gym

    spec = env_spec(env_id)
    if (
        isinstance(n_episodes, bool)
        or not isinstance(n_episodes, (int, np.integer))
        or n_episodes < 1
    ):
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}.")
    seed = check_seed_range(seed, int(n_episodes), name="seed")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}.")
    out_dir = check_recording(out_dir)
    options = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    with _offscreen():
        try:
            env = gym.make(env_id, render_mode="rgb_array", **options)
        except gym.error.DependencyNotInstalled as error:
            raise VideoError(f"{env_id} cannot render frames for a video: {error}") from None
        if env.render_mode != "rgb_array":
            env.close()
            raise VideoError(f"{env_id} does not render rgb_array frames; it cannot be recorded.")
        try:
            return _record(env, policy, spec, out_dir, int(n_episodes), seed, label)
        except gym.error.DependencyNotInstalled as error:  # e.g. pygame, at the first frame
            raise VideoError(f"{env_id} cannot render frames for a video: {error}") from None


def _record(env, policy, spec, out_dir: Path, n_episodes: int, seed: int, label) -> Recording:
    from gymnasium.wrappers import RecordVideo

    from sbil.files import staging_folder, write_json_atomic

    env_id = spec.env_id
    staging = staging_folder(out_dir / ".recording")
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    try:
        recorder = RecordVideo(
            env,
            video_folder=str(staging / "videos"),  # a new folder: no "overwriting" warning
            episode_trigger=lambda episode: True,
            name_prefix=_PREFIX,
            disable_logger=True,
        )
        try:
            for episode in range(n_episodes):
                obs, _ = recorder.reset(seed=seed + episode)
                done = False
                while not done:
                    action = _action(policy, obs, spec)
                    obs, reward, terminated, truncated, _ = recorder.step(action)
                    returns[episode] += float(reward)
                    lengths[episode] += 1
                    done = terminated or truncated
        finally:
            recorder.close()  # writes the last video
        videos = []
        for episode in range(n_episodes):
            written = staging / "videos" / f"{_PREFIX}-episode-{episode}.mp4"
            if not written.is_file():
                raise VideoError(f"Gymnasium wrote no video for episode {episode} of {env_id}.")
            videos.append(out_dir / f"episode-{episode}.mp4")
            os.replace(written, videos[-1])
    finally:
        env.close()
        shutil.rmtree(staging, ignore_errors=True)
    write_json_atomic(
        out_dir / VIDEOS_FILE,
        {
            "env_id": env_id,
            "policy": label or type(policy).__name__,
            "videos": [
                {
                    "file": path.name,
                    "reset_seed": seed + episode,
                    "return": float(returns[episode]),
                    "length": int(lengths[episode]),
                }
                for episode, path in enumerate(videos)
            ],
        },
    )
    return Recording(env_id=env_id, seed=seed, videos=videos, returns=returns, lengths=lengths)


@contextlib.contextmanager
def _offscreen() -> Iterator[None]:
    """Render without a display: SDL's dummy video driver (pygame otherwise prints an
    "XDG_RUNTIME_DIR is invalid" line on a headless machine), unless the user chose one."""
    chosen = os.environ.get("SDL_VIDEODRIVER")
    if chosen is None:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    try:
        yield
    finally:
        if chosen is None:
            os.environ.pop("SDL_VIDEODRIVER", None)


def _action(policy: Policy, obs, spec) -> int:
    actions = np.asarray(policy(np.asarray(obs, dtype=np.float32)[None]))
    if actions.shape != (1,) or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(
            f"The policy returned {actions.dtype} actions of shape {actions.shape} for one "
            f"observation; a policy maps observations [n, {spec.obs_dim}] to int64 actions [n]."
        )
    action = int(actions[0])
    if not 0 <= action < spec.n_actions:
        raise ValueError(
            f"The policy returned action {action}, outside 0..{spec.n_actions - 1} of "
            f"{spec.env_id}."
        )
    return action

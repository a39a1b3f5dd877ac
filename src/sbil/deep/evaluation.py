"""The one evaluation function: seeded episodes of a policy on a Gymnasium task.

Episode ``i`` of a run with ``seed=s`` always starts from ``env.reset(seed=s + i)``, whichever
sub-environment plays it, so the same seed gives the same returns and the vectorised run gives
exactly the returns of the one-episode-at-a-time loop (for a policy whose action for one row
does not depend on the other rows of the batch, as the :class:`~sbil.deep.envs.Policy`
protocol requires).

Vectorisation uses :class:`gymnasium.vector.SyncVectorEnv` with autoreset *disabled*: a finished
sub-environment is reset explicitly with the seed of the next unplayed episode (Gymnasium 1.x's
default next-step autoreset would reset it with an unseeded call and waste one step), and exactly
``n_episodes`` completed episodes are counted.

Example:
    >>> from sbil.deep.evaluation import evaluate
    >>> from sbil.deep.experts import get_expert
    >>> result = evaluate(get_expert("CartPole-v1"), "CartPole-v1", n_episodes=3, seed=0)
    >>> result.returns
    array([500., 500., 500.])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from sbil.deep.envs import EnvSpec, Policy, env_spec
from sbil.progress import ProgressCallback
from sbil.seeds import check_seed_range


class ReturnStats:
    """Summary statistics of a ``returns`` array ``[n]``, shared by every result type."""

    returns: np.ndarray

    @property
    def n_episodes(self) -> int:
        """Number of episodes."""
        return len(self.returns)

    @property
    def mean(self) -> float:
        """Mean return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Standard deviation of the returns (ddof 0, as stable-baselines3 reports)."""
        return float(np.std(self.returns))

    @property
    def sem(self) -> float:
        """Standard error of the mean return (ddof 1; 0 for one episode)."""
        n = self.n_episodes
        return float(np.std(self.returns, ddof=1) / np.sqrt(n)) if n > 1 else 0.0


@dataclass(frozen=True, eq=False, repr=False)
class EvalResult(ReturnStats):
    """Returns of ``n`` seeded episodes.

    Attributes:
        env_id: the task.
        seed: episode ``i`` was reset with seed ``seed + i``.
        returns: ``[n]`` float64 undiscounted episode returns, in episode order.
        lengths: ``[n]`` int64 episode lengths (steps).
    """

    env_id: str
    seed: int
    returns: np.ndarray
    lengths: np.ndarray

    def __repr__(self) -> str:
        """A summary (episodes, seeds, returns, lengths), never the arrays themselves."""
        n, returns, lengths = self.n_episodes, self.returns, self.lengths
        seeds = f"seed {self.seed}" if n == 1 else f"seeds {self.seed}..{self.seed + n - 1}"
        text = f"EvalResult({self.env_id!r}, {n} episode{'s' * (n != 1)} ({seeds})"
        if n:
            text += (
                f", return {self.mean:.4g} ± {self.std:.4g} (min {returns.min():.4g}, max "
                f"{returns.max():.4g}), length {np.mean(lengths):.4g} ± {np.std(lengths):.4g}"
            )
        return text + ")"

    def to_dict(self) -> dict:
        """A JSON-ready summary with the per-episode returns."""
        return {
            "env_id": self.env_id,
            "seed": self.seed,
            "n_episodes": self.n_episodes,
            "mean": self.mean,
            "std": self.std,
            "returns": self.returns.tolist(),
            "lengths": self.lengths.tolist(),
        }


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One recorded episode.

    Attributes:
        seed: the reset seed of the episode.
        observations: ``[T + 1, obs_dim]`` float32, including the final observation.
        actions: ``[T]`` int64.
        rewards: ``[T]`` float64.
        terminated: whether the episode ended in a terminal state (else it was truncated).
    """

    seed: int
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool

    @property
    def episode_return(self) -> float:
        """Undiscounted return."""
        return float(np.sum(self.rewards))


def _check_actions(actions, n: int, spec: EnvSpec) -> np.ndarray:
    actions = np.asarray(actions)
    if actions.shape != (n,):
        raise ValueError(
            f"The policy returned actions of shape {actions.shape} for {n} observations; a policy "
            f"maps observations [n, {spec.obs_dim}] to int64 actions [n]."
        )
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(
            f"The policy returned actions of dtype {actions.dtype}; it must return integer "
            f"actions in 0..{spec.n_actions - 1} for {spec.env_id}."
        )
    outside = (actions < 0) | (actions >= spec.n_actions)
    if outside.any():
        raise ValueError(
            f"The policy returned action {int(actions[np.argmax(outside)])}, "
            f"outside 0..{spec.n_actions - 1} of {spec.env_id}."
        )
    return actions.astype(np.int64, copy=False)


def _make(env_id: str, max_episode_steps: int | None) -> gym.Env:
    if max_episode_steps is None:
        return gym.make(env_id)
    return gym.make(env_id, max_episode_steps=max_episode_steps)


def _check_run(env_id: str, n_episodes: int, seed: int, max_episode_steps: int | None) -> EnvSpec:
    spec = env_spec(env_id)
    if (
        isinstance(n_episodes, bool)
        or not isinstance(n_episodes, (int, np.integer))
        or n_episodes < 1
    ):
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}.")
    check_seed_range(seed, int(n_episodes), name="seed")
    if max_episode_steps is None and spec.max_episode_steps is None:
        raise ValueError(
            f"{env_id} has no time limit, so an episode may never end; pass max_episode_steps."
        )
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}.")
    return spec


def run_episodes(
    policy: Policy,
    env_id: str,
    n_episodes: int,
    *,
    seed: int = 0,
    n_envs: int = 16,
    vectorize: bool = True,
    record: bool = False,
    max_episode_steps: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Trajectory] | None]:
    """Play ``n_episodes`` seeded episodes; the engine under :func:`evaluate` and collection.

    Args:
        policy: batched policy, ``obs[n, obs_dim] -> actions[n]``.
        env_id: a supported task.
        n_episodes: number of completed episodes to play.
        seed: episode ``i`` starts from ``reset(seed=seed + i)``; every such seed must lie in
            ``0 .. 2**32 - 1`` (:mod:`sbil.seeds`).
        n_envs: sub-environments of the vector env (capped at ``n_episodes``).
        vectorize: False plays one episode at a time in a single env (the reference loop).
        record: also return each episode's :class:`Trajectory`.
        max_episode_steps: override the task's time limit.
        progress: called as ``progress(done, n_episodes)`` after each episode.

    Returns:
        ``(returns[n] float64, lengths[n] int64, trajectories or None)`` in episode order.
    """
    spec = _check_run(env_id, n_episodes, seed, max_episode_steps)
    seed = int(seed)
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}.")
    if vectorize:
        return _run_vector(
            policy, spec, n_episodes, seed, n_envs, record, max_episode_steps, progress
        )
    return _run_loop(policy, spec, n_episodes, seed, record, max_episode_steps, progress)


def _run_loop(policy, spec, n_episodes, seed, record, max_episode_steps, progress):
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    trajectories = [] if record else None
    env = _make(spec.env_id, max_episode_steps)
    try:
        for episode in range(n_episodes):
            obs, _ = env.reset(seed=seed + episode)
            observations, actions, rewards = [obs], [], []
            done = terminated = False
            while not done:
                batch = np.asarray(obs, dtype=np.float32)[None]
                action = int(_check_actions(policy(batch), 1, spec)[0])
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[episode] += reward
                lengths[episode] += 1
                done = terminated or truncated
                if record:
                    observations.append(obs)
                    actions.append(action)
                    rewards.append(reward)
            if record:
                trajectories.append(
                    _trajectory(seed + episode, observations, actions, rewards, terminated)
                )
            if progress is not None:
                progress(episode + 1, n_episodes)
    finally:
        env.close()
    return returns, lengths, trajectories


def _trajectory(seed, observations, actions, rewards, terminated) -> Trajectory:
    return Trajectory(
        seed=seed,
        observations=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminated=bool(terminated),
    )


def _run_vector(policy, spec, n_episodes, seed, n_envs, record, max_episode_steps, progress):
    n_envs = min(n_envs, n_episodes)
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    trajectories: list[Trajectory | None] | None = [None] * n_episodes if record else None
    envs = gym.vector.SyncVectorEnv(
        [lambda: _make(spec.env_id, max_episode_steps)] * n_envs,
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    # episode_of[j]: the episode sub-env j is playing, or -1 once there are none left to play.
    episode_of = np.arange(n_envs)
    next_episode = n_envs
    done_count = 0
    buffers = [([], [], []) for _ in range(n_envs)]
    try:
        obs, _ = envs.reset(seed=[seed + j for j in range(n_envs)])
        if record:
            for j in range(n_envs):
                buffers[j][0].append(obs[j])
        while done_count < n_episodes:
            actions = _check_actions(policy(np.asarray(obs, dtype=np.float32)), n_envs, spec)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            active = episode_of >= 0
            returns[episode_of[active]] += rewards[active]
            lengths[episode_of[active]] += 1
            finished = terminated | truncated
            reset_seeds: list[int | None] = [None] * n_envs
            if record:
                for j in np.flatnonzero(active):
                    observations, acts, rews = buffers[j]
                    observations.append(obs[j])
                    acts.append(actions[j])
                    rews.append(rewards[j])
            for j in np.flatnonzero(finished & active):
                episode = episode_of[j]
                done_count += 1
                if record:
                    observations, acts, rews = buffers[j]
                    trajectories[episode] = _trajectory(
                        seed + episode, observations, acts, rews, terminated[j]
                    )
                    buffers[j] = ([], [], [])
                if progress is not None:
                    progress(done_count, n_episodes)
                if next_episode < n_episodes:
                    episode_of[j] = next_episode
                    reset_seeds[j] = seed + next_episode
                    next_episode += 1
                else:
                    episode_of[j] = -1
            # Idle sub-envs that finish are reset unseeded: nothing they do is counted.
            if finished.any() and done_count < n_episodes:
                obs, _ = envs.reset(seed=reset_seeds, options={"reset_mask": finished})
                if record:
                    for j in np.flatnonzero(finished & (episode_of >= 0)):
                        buffers[j][0].append(obs[j])
    finally:
        envs.close()
    return returns, lengths, trajectories


def evaluate(
    policy: Policy,
    env_id: str,
    n_episodes: int = 300,
    seed: int = 0,
    *,
    n_envs: int = 16,
    vectorize: bool = True,
    max_episode_steps: int | None = None,
    progress: ProgressCallback | None = None,
) -> EvalResult:
    """Return the returns of ``policy`` over ``n_episodes`` seeded episodes of ``env_id``.

    Args:
        policy: batched deterministic policy, float32 ``obs[n, obs_dim]`` -> int64 ``a[n]``.
        env_id: a supported Gymnasium task, e.g. ``"CartPole-v1"``.
        n_episodes: number of completed episodes.
        seed: episode ``i`` starts from ``env.reset(seed=seed + i)``; ``seed + n_episodes - 1``
            must not pass ``2**32 - 1``.
        n_envs: sub-environments stepped together (one batched policy call per step).
        vectorize: False plays one episode at a time (same returns, slower; the reference).
        max_episode_steps: override the task's registered time limit.
        progress: optional ``progress(done, n_episodes)`` callback (the CLI draws a bar).

    Returns:
        :class:`EvalResult` with per-episode returns and lengths.

    Raises:
        UnsupportedEnvError: for an unsupported task.
        ValueError: for a bad budget or seed, or a policy returning malformed actions.
    """
    returns, lengths, _ = run_episodes(
        policy,
        env_id,
        n_episodes,
        seed=seed,
        n_envs=n_envs,
        vectorize=vectorize,
        max_episode_steps=max_episode_steps,
        progress=progress,
    )
    return EvalResult(env_id=env_id, seed=int(seed), returns=returns, lengths=lengths)


def action_match_rate(policy: Policy, demos, *, batch_size: int = 65_536) -> float:
    """Fraction of demonstration states where ``policy`` picks the demonstrated action.

    Use held-out expert episodes, e.g. ``train, held_out = demos.split(k)``: train on
    ``train``, measure on ``held_out`` (``sbil evaluate --dataset ID --holdout-from k``).

    Args:
        policy: batched policy.
        demos: :class:`sbil.deep.data.Demonstrations` with ``observations[N, d]`` and
            ``actions[N]``.
        batch_size: observations per policy call.

    Returns:
        Agreement rate in ``[0, 1]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    observations, expert_actions = demos.observations, demos.actions
    matches = 0
    for start in range(0, len(expert_actions), batch_size):
        obs = observations[start : start + batch_size]
        actions = np.asarray(policy(obs))
        if actions.shape != (len(obs),):
            raise ValueError(
                f"The policy returned actions of shape {actions.shape} for {len(obs)} "
                "observations; a policy maps observations [n, obs_dim] to actions [n]."
            )
        matches += int(np.sum(actions == expert_actions[start : start + batch_size]))
    return matches / len(expert_actions)


# --- trained learners on disk -----------------------------------------------------------------

#: The file that marks a learner checkpoint folder (written by sbil.deep.checkpoint).
CHECKPOINT_FILE = "learner.json"


def checkpoint_folders(path: str | os.PathLike) -> dict[int | None, Path]:
    """The learner checkpoints at ``path``: one checkpoint folder, or a whole training run.

    Returns:
        ``{None: path}`` for a checkpoint folder (it holds ``learner.json``), or
        ``{seed: path / "seed-<seed>"}`` for a run folder (``config.json`` beside
        ``seed-<s>/`` checkpoints written by ``sbil train``), sorted by seed.

    Raises:
        ValueError: if ``path`` is neither, saying what it should hold.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Checkpoint {path} does not exist.")
    if (path / CHECKPOINT_FILE).is_file() or path.name == CHECKPOINT_FILE:
        return {None: path.parent if path.name == CHECKPOINT_FILE else path}
    found: dict[int | None, Path] = {}
    if path.is_dir():
        for folder in path.glob("seed-*"):
            seed = folder.name.removeprefix("seed-")
            if seed.isdigit() and (folder / CHECKPOINT_FILE).is_file():
                found[int(seed)] = folder
    if not found:
        raise ValueError(
            f"{path} is neither a learner checkpoint (a folder with {CHECKPOINT_FILE}) nor a "
            "training run (a folder of seed-<s>/ checkpoints) written by `sbil train`."
        )
    return dict(sorted(found.items()))


def training_episodes(
    checkpoint: str | os.PathLike, dataset_id: str, root: str | os.PathLike | None = None
) -> frozenset[int] | None:
    """The episodes of dataset ``dataset_id`` (under ``root``) a checkpoint's learner trained on.

    Reads the metadata ``sbil train`` saves with each checkpoint: ``train_episodes``,
    ``dataset`` and ``root``, or, in checkpoints that predate ``train_episodes``, the run's
    ``episodes`` count (``sbil train --episodes K`` trained on episodes ``0..K-1``). Two
    datasets are the same when their ids are equal and their datasets folders are the same or
    the checkpoint's is unknown (null or relative), so the answer errs towards "trained on it".

    Returns:
        The episode indices trained on (empty if the learner trained on other data), or None
        if the checkpoint does not record it.
    """
    from sbil.deep.datasets import datasets_root

    try:
        doc = json.loads((Path(checkpoint) / CHECKPOINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(metadata, dict):
        return None
    run = metadata.get("run") if isinstance(metadata.get("run"), dict) else {}
    trained_id = metadata.get("dataset", run.get("dataset"))
    trained_root = metadata.get("root", run.get("root"))
    if trained_id is None:
        # Trained on arrays or an .npz file (recorded as "data"), or not recorded at all.
        return frozenset() if run.get("data") or metadata.get("data") else None
    if trained_id != dataset_id:
        return frozenset()
    # A relative root was relative to where `sbil train` ran, which is unknown here.
    if trained_root is not None and Path(trained_root).expanduser().is_absolute():
        if datasets_root(trained_root).resolve() != datasets_root(root).resolve():
            return frozenset()
    episodes = metadata.get("train_episodes")
    if isinstance(episodes, list) and all(isinstance(e, int) for e in episodes):
        return frozenset(episodes)
    count = run.get("episodes")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return frozenset(range(count))
    return None

"""The one evaluation function: seeded episodes of a policy on a Gymnasium task.

Episode ``i`` of a run with ``seed=s`` always starts from ``env.reset(seed=s + i)``, whichever
row of a batch plays it, so the same seed gives the same returns and the vectorised run gives
exactly the returns of the one-episode-at-a-time loop (for a policy whose action for one row
does not depend on the other rows of the batch, as the :class:`~sbil.deep.envs.Policy`
protocol requires).

The vectorised run plays many episodes in lockstep: every step makes one batched call per
policy on its running episodes, then steps them all. Tasks with a numpy port
(:mod:`sbil.deep.vector_envs`: CartPole, Acrobot, MountainCar, bit-identical to Gymnasium's)
step as arrays; any other task (e.g. Box2D's LunarLander) steps Gymnasium's own environments,
one per running episode. A finished episode's row is replaced by the next unplayed episode,
reset with its seed (never Gymnasium's unseeded autoreset), and exactly ``n_episodes``
completed episodes are counted. :func:`evaluate_group` plays the episodes of several policies
(a sweep group's learners, one per seed) in the same lockstep on a ported task, and in turn on
Gymnasium's envs (whose stepping dominates there, so lockstep would save nothing).

Example:
    >>> from sbil.deep.evaluation import evaluate
    >>> from sbil.deep.experts import get_expert
    >>> result = evaluate(get_expert("CartPole-v1"), "CartPole-v1", n_episodes=3, seed=0)
    >>> result.returns
    array([500., 500., 500.])

Longer than ~400 lines: the one evaluation function, so both ways of stepping episodes (numpy
ports in lockstep and Gymnasium's own environments) and the plain loop they must equal are
side by side, with the result types and the loading of trained learners from their folders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from sbil.deep.envs import EnvSpec, Policy, env_spec
from sbil.deep.vector_envs import NumpyTask, numpy_task
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
    n_envs: int | None = None,
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
        n_envs: episodes played at once (one batched policy call per step); default all of
            them on a task with a numpy port (:mod:`sbil.deep.vector_envs`), else 16.
        vectorize: False plays one episode at a time in a single env (the reference loop).
        record: also return each episode's :class:`Trajectory`.
        max_episode_steps: override the task's time limit.
        progress: called as ``progress(done, n_episodes)`` after each episode.

    Returns:
        ``(returns[n] float64, lengths[n] int64, trajectories or None)`` in episode order.
    """
    ((returns, lengths, trajectories),) = _run_group(
        [policy],
        env_id,
        n_episodes,
        seed,
        n_envs=n_envs,
        vectorize=vectorize,
        record=record,
        max_episode_steps=max_episode_steps,
        progress=[progress],
    )
    return returns, lengths, trajectories


def _run_group(
    policies, env_id, n_episodes, seed, *, n_envs, vectorize, record, max_episode_steps, progress
):
    spec = _check_run(env_id, n_episodes, seed, max_episode_steps)
    seed, n_episodes = int(seed), int(n_episodes)
    if n_envs is not None and n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}.")
    if progress is None:
        progress = [None] * len(policies)
    if len(progress) != len(policies):
        raise ValueError(f"{len(progress)} progress callbacks for {len(policies)} policies.")
    if not vectorize:
        return [
            _run_loop(policy, spec, n_episodes, seed, record, max_episode_steps, callback)
            for policy, callback in zip(policies, progress, strict=True)
        ]
    limit = spec.max_episode_steps if max_episode_steps is None else max_episode_steps
    task = numpy_task(env_id)
    if task is not None:
        width = min(n_episodes if n_envs is None else n_envs, n_episodes)
        return _run_lockstep(
            policies, spec, _NumpyEpisodes(task), n_episodes, seed, width, record, limit, progress
        )
    # Gymnasium's envs: stepping them dominates (one Python call each), which lockstep across
    # policies cannot save, so each policy plays alone, ``n_envs`` episodes at a time.
    width = min(16 if n_envs is None else n_envs, n_episodes)
    runs = []
    for policy, callback in zip(policies, progress, strict=True):
        episodes = _GymnasiumEpisodes(env_id, max_episode_steps)
        try:
            runs += _run_lockstep(
                [policy], spec, episodes, n_episodes, seed, width, record, limit, [callback]
            )
        finally:
            episodes.close()
    return runs


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


class _NumpyEpisodes:
    """Running episodes of a :class:`~sbil.deep.vector_envs.NumpyTask`, one state column each."""

    def __init__(self, task: NumpyTask) -> None:
        self.task = task
        self.state = None

    def start(self, seeds: list[int]) -> np.ndarray:
        state, obs = self.task.reset(seeds)
        self.state = state if self.state is None else np.concatenate([self.state, state], axis=1)
        return obs

    def step(self, actions: np.ndarray):
        self.state, obs, rewards, terminated = self.task.step(self.state, actions)
        return obs, rewards, terminated, np.zeros_like(terminated)

    def keep(self, running: np.ndarray) -> None:
        self.state = self.state[:, running]


class _GymnasiumEpisodes:
    """Running episodes of Gymnasium's own environments (``gym.make``), one env each.

    A finished episode's env is reset with the seed of a later episode, never stepped past its
    end (Gymnasium's autoreset would reset it unseeded and waste a step).
    """

    def __init__(self, env_id: str, max_episode_steps: int | None) -> None:
        self.make = lambda: _make(env_id, max_episode_steps)
        self.running: list[gym.Env] = []
        self.idle: list[gym.Env] = []

    def start(self, seeds: list[int]) -> np.ndarray:
        observations = []
        for s in seeds:
            env = self.idle.pop() if self.idle else self.make()
            observations.append(env.reset(seed=s)[0])
            self.running.append(env)
        return np.asarray(observations, dtype=np.float32)

    def step(self, actions: np.ndarray):
        steps = [env.step(a) for env, a in zip(self.running, actions.tolist(), strict=True)]
        obs, rewards, terminated, truncated, _ = zip(*steps, strict=True)
        return (
            np.asarray(obs, dtype=np.float32),
            np.asarray(rewards, dtype=np.float64),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
        )

    def keep(self, running: np.ndarray) -> None:
        self.idle += [env for env, keep in zip(self.running, running, strict=True) if not keep]
        self.running = [env for env, keep in zip(self.running, running, strict=True) if keep]

    def close(self) -> None:
        for env in self.running + self.idle:
            env.close()


def _run_lockstep(policies, spec, episodes, n_episodes, seed, width, record, limit, progress):
    """Play ``n_episodes`` of every policy at once, ``width`` of each running at a time.

    Each running episode is one row: ``owner[r]`` is its policy, ``episode[r]`` its index. Every
    step makes one call per policy on its rows, steps all rows together, drops the finished
    ones and starts each policy's next episodes in their place.
    """
    n_policies = len(policies)
    returns = np.zeros((n_policies, n_episodes))
    lengths = np.zeros((n_policies, n_episodes), dtype=np.int64)
    terminal = np.zeros((n_policies, n_episodes), dtype=bool)
    started = np.zeros(n_policies, dtype=np.int64)
    finished = np.zeros(n_policies, dtype=np.int64)
    owner = np.zeros(0, dtype=np.int64)
    episode = np.zeros(0, dtype=np.int64)
    obs = np.zeros((0, spec.obs_dim), dtype=np.float32)
    # Recorded rows, in time order: (flat episode id k * n + i, observation[, action, reward]).
    first_obs: list[tuple[np.ndarray, np.ndarray]] = []
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def start(counts):
        nonlocal owner, episode, obs
        new_owner = np.repeat(np.arange(n_policies), counts)
        new_episode = np.concatenate(
            [started[k] + np.arange(c) for k, c in enumerate(counts)]
        ).astype(np.int64)
        started[:] += counts
        new_obs = episodes.start((seed + new_episode).tolist())
        owner = np.concatenate([owner, new_owner])
        episode = np.concatenate([episode, new_episode])
        obs = np.concatenate([obs, new_obs])
        if record:
            first_obs.append((new_owner * n_episodes + new_episode, new_obs))

    start(np.full(n_policies, width))
    while len(owner):
        actions = np.empty(len(owner), dtype=np.int64)
        for k, policy in enumerate(policies):
            rows = slice(None) if n_policies == 1 else np.flatnonzero(owner == k)
            count = len(owner) if n_policies == 1 else len(rows)
            if count == 1 and width > 1:
                # Torch computes a one-row batch as a matrix-vector product, whose float32
                # sums may differ in the last bit from a many-row batch's; a batch of
                # ``width`` episodes is always computed as the many-row batch it is.
                batch = np.repeat(obs[rows], 2, axis=0)
                actions[rows] = _check_actions(policy(batch), 2, spec)[:1]
            elif count:
                actions[rows] = _check_actions(policy(obs[rows]), count, spec)
        obs, rewards, terminated, truncated = episodes.step(actions)
        returns[owner, episode] += rewards
        lengths[owner, episode] += 1
        if record:
            steps.append((owner * n_episodes + episode, obs, actions, rewards))
        done = terminated | truncated | (lengths[owner, episode] >= limit)
        if not done.any():
            continue
        terminal[owner[done], episode[done]] = terminated[done]
        for k in owner[done].tolist():
            finished[k] += 1
            if progress[k] is not None:
                progress[k](int(finished[k]), n_episodes)
        more = np.minimum(np.bincount(owner[done], minlength=n_policies), n_episodes - started)
        running = ~done
        owner, episode, obs = owner[running], episode[running], obs[running]
        episodes.keep(running)
        if more.any():
            start(more)
    trajectories = _trajectories(first_obs, steps, terminal, seed) if record else None
    return [
        (returns[k], lengths[k], None if trajectories is None else trajectories[k])
        for k in range(n_policies)
    ]


def _trajectories(first_obs, steps, terminal, seed) -> list[list[Trajectory]]:
    """Each episode's :class:`Trajectory` from the rows recorded in time order."""
    n_policies, n_episodes = terminal.shape
    ids = np.concatenate([i for i, _ in first_obs] + [s[0] for s in steps])
    observations = np.concatenate([o for _, o in first_obs] + [s[1] for s in steps])
    step_ids = np.concatenate([s[0] for s in steps])
    actions = np.concatenate([s[2] for s in steps])
    rewards = np.concatenate([s[3] for s in steps])
    # A stable sort by episode keeps each episode's rows in time order (first observation
    # first: those rows come before every step's).
    order = np.argsort(ids, kind="stable")
    step_order = np.argsort(step_ids, kind="stable")
    obs_bounds = np.cumsum(np.bincount(ids, minlength=n_policies * n_episodes))[:-1]
    step_bounds = np.cumsum(np.bincount(step_ids, minlength=n_policies * n_episodes))[:-1]
    obs_parts = np.split(observations[order], obs_bounds)
    action_parts = np.split(actions[step_order], step_bounds)
    reward_parts = np.split(rewards[step_order], step_bounds)
    return [
        [
            _trajectory(
                seed + i,
                obs_parts[k * n_episodes + i],
                action_parts[k * n_episodes + i],
                reward_parts[k * n_episodes + i],
                terminal[k, i],
            )
            for i in range(n_episodes)
        ]
        for k in range(n_policies)
    ]


def evaluate(
    policy: Policy,
    env_id: str,
    n_episodes: int = 300,
    seed: int = 0,
    *,
    n_envs: int | None = None,
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
        n_envs: episodes played at once (one batched policy call per step); default all of
            them on a task with a numpy port (:mod:`sbil.deep.vector_envs`), else 16.
        vectorize: False plays one episode at a time (same returns, slower; the reference).
        max_episode_steps: override the task's registered time limit.
        progress: optional ``progress(done, n_episodes)`` callback (the CLI draws a bar).

    Returns:
        :class:`EvalResult` with per-episode returns and lengths.

    Raises:
        UnsupportedEnvError: for an unsupported task.
        ValueError: for a bad budget or seed, or a policy returning malformed actions.
    """
    (result,) = evaluate_group(
        [policy],
        env_id,
        n_episodes,
        seed,
        n_envs=n_envs,
        vectorize=vectorize,
        max_episode_steps=max_episode_steps,
        progress=[progress],
    )
    return result


def evaluate_group(
    policies: Sequence[Policy],
    env_id: str,
    n_episodes: int = 300,
    seed: int = 0,
    *,
    n_envs: int | None = None,
    vectorize: bool = True,
    max_episode_steps: int | None = None,
    progress: Sequence[ProgressCallback | None] | None = None,
) -> list[EvalResult]:
    """:func:`evaluate` of each policy (e.g. a sweep group's learners), played in lockstep.

    Every policy plays the same seeded episodes. On a task with a numpy port each step calls
    every policy once on its running episodes and steps all of them together, so ``K``
    policies cost ``K`` policies' forward passes but about one policy's environment steps;
    other tasks play each policy in turn. ``evaluate_group(ps, ...)[k]`` equals
    ``evaluate(ps[k], ...)``.

    Args:
        policies: the batched deterministic policies.
        env_id, n_episodes, seed, vectorize, max_episode_steps: as :func:`evaluate`
            (``vectorize=False`` plays each policy's episodes one at a time, in turn).
        n_envs: episodes of each policy played at once (default as :func:`evaluate`).
        progress: per policy, an optional ``progress(done, n_episodes)`` callback.

    Returns:
        One :class:`EvalResult` per policy, in order.
    """
    runs = _run_group(
        list(policies),
        env_id,
        n_episodes,
        seed,
        n_envs=n_envs,
        vectorize=vectorize,
        record=False,
        max_episode_steps=max_episode_steps,
        progress=None if progress is None else list(progress),
    )
    return [
        EvalResult(env_id=env_id, seed=int(seed), returns=returns, lengths=lengths)
        for returns, lengths, _ in runs
    ]


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

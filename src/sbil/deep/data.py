"""Expert demonstrations: a validated in-memory container, and Minari datasets on disk.

:class:`Demonstrations` holds the state-action pairs learners train on, flattened over
episodes, with the episode boundaries kept so that the EDM protocol can vary the number of
trajectories ``k`` (:meth:`Demonstrations.subset`). It is built from arrays
(:func:`from_arrays`) or from any local Minari dataset with discrete actions
(:func:`load_demonstrations`); :func:`collect` records an expert into a new Minari dataset,
created locally without any network access.

Example:
    >>> from sbil.deep.data import collect, load_demonstrations
    >>> info = collect("CartPole-v1", 10, root="/tmp/minari")  # doctest: +SKIP
    >>> demos = load_demonstrations(info.dataset_id, root="/tmp/minari")  # doctest: +SKIP
    >>> demos.subset(4).n_episodes  # doctest: +SKIP
    4
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbil.deep.envs import EnvSpec, Policy, check_spaces, env_spec
from sbil.deep.evaluation import ReturnStats
from sbil.files import umask


class DatasetError(ValueError):
    """A dataset is missing, malformed, or does not fit the task it is used with."""


@dataclass(frozen=True, eq=False)
class Demonstrations:
    """Expert state-action pairs of ``E`` episodes, concatenated in episode order.

    Attributes:
        observations: ``[N, obs_dim]`` float32, finite; the states where actions were taken
            (an episode's final observation is not included).
        actions: ``[N]`` int64, non-negative; ``actions[i]`` was taken in ``observations[i]``.
        episode_lengths: ``[E]`` int64, each ``>= 1``, summing to ``N``.
        episode_returns: ``[E]`` float64 undiscounted returns, or ``None`` if unknown.
        env_id: the Gymnasium task the episodes come from, if known.
        n_actions: size of the discrete action space the episodes were recorded with, if
            known (every action is ``< n_actions``). Learners should size their output from
            it, not from ``actions.max() + 1``: a dataset need not contain every action.
    """

    observations: np.ndarray
    actions: np.ndarray
    episode_lengths: np.ndarray
    episode_returns: np.ndarray | None = None
    env_id: str | None = None
    n_actions: int | None = None

    def __post_init__(self) -> None:
        obs, actions, lengths = self.observations, self.actions, self.episode_lengths
        for name, value in (
            ("observations", obs),
            ("actions", actions),
            ("episode_lengths", lengths),
        ):
            if not isinstance(value, np.ndarray):
                raise DatasetError(
                    f"{name} must be a numpy array, got {type(value).__name__}; "
                    "build Demonstrations with from_arrays(...) to convert."
                )
        if obs.dtype != np.float32 or obs.ndim != 2:
            raise DatasetError(
                f"observations must be float32 of shape [N, obs_dim], got {obs.dtype} {obs.shape}; "
                "use from_arrays(...) to convert."
            )
        if actions.dtype != np.int64 or actions.shape != (len(obs),):
            raise DatasetError(
                f"actions must be int64 of shape [{len(obs)}] (one per observation), got "
                f"{actions.dtype} {actions.shape}."
            )
        if lengths.dtype != np.int64 or lengths.ndim != 1:
            raise DatasetError(
                f"episode_lengths must be int64 of shape [E], got {lengths.dtype} {lengths.shape}."
            )
        if len(lengths) == 0 or len(obs) == 0:
            raise DatasetError("The demonstrations are empty: they need at least one step.")
        if lengths.min() < 1:
            episode = int(np.argmin(lengths))
            raise DatasetError(
                f"Episode {episode} has {int(lengths[episode])} steps; "
                "every episode needs at least one."
            )
        if int(lengths.sum()) != len(obs):
            raise DatasetError(
                f"episode_lengths sum to {int(lengths.sum())} but there are {len(obs)} "
                "observations; they must be equal."
            )
        bad_rows = ~np.isfinite(obs).all(axis=1)
        if bad_rows.any():
            row = int(np.argmax(bad_rows))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has a NaN or infinite observation at step {step}; "
                "remove or fix that episode."
            )
        if actions.min() < 0:
            row = int(np.argmin(actions))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has negative action {int(actions[row])} at step {step}; "
                "discrete actions are 0..n_actions-1."
            )
        n_actions = self.n_actions
        if n_actions is not None:
            if isinstance(n_actions, bool) or not isinstance(n_actions, (int, np.integer)):
                raise DatasetError(
                    f"n_actions must be a positive integer or None, got {n_actions!r}."
                )
            if n_actions < 1:
                raise DatasetError(f"n_actions must be a positive integer, got {n_actions}.")
            object.__setattr__(self, "n_actions", int(n_actions))
            if actions.max() >= n_actions:
                row = int(np.argmax(actions >= n_actions))
                episode, step = self._locate(row)
                raise DatasetError(
                    f"Episode {episode} has action {int(actions[row])} at step {step}, but "
                    f"there are n_actions={n_actions} actions (0..{n_actions - 1}); "
                    "fix the action or pass the right n_actions."
                )
        returns = self.episode_returns
        if returns is not None:
            if not isinstance(returns, np.ndarray) or returns.shape != lengths.shape:
                raise DatasetError(
                    f"episode_returns must be an array of shape {lengths.shape} (one per episode), "
                    f"got {getattr(returns, 'shape', type(returns).__name__)}."
                )
            if not np.isfinite(returns).all():
                episode = int(np.argmax(~np.isfinite(returns)))
                raise DatasetError(f"Episode {episode} has a NaN or infinite return.")
        # Store read-only views: the container is immutable, the caller's arrays are untouched.
        for name in ("observations", "actions", "episode_lengths", "episode_returns"):
            value = getattr(self, name)
            if value is not None:
                view = value.view()
                view.setflags(write=False)
                object.__setattr__(self, name, view)

    def _locate(self, row: int) -> tuple[int, int]:
        """(episode, step within it) of flat row ``row``."""
        ends = np.cumsum(self.episode_lengths)
        episode = int(np.searchsorted(ends, row, side="right"))
        start = int(ends[episode - 1]) if episode else 0
        return episode, row - start

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E``."""
        return len(self.episode_lengths)

    @property
    def n_steps(self) -> int:
        """Number of state-action pairs ``N``."""
        return len(self.actions)

    @property
    def obs_dim(self) -> int:
        """Length of an observation vector."""
        return int(self.observations.shape[1])

    @property
    def episode_starts(self) -> np.ndarray:
        """``[E]`` int64 index of each episode's first row."""
        return np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)

    def episode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(observations[T, obs_dim], actions[T])`` of episode ``index``."""
        if not -self.n_episodes <= index < self.n_episodes:
            raise IndexError(f"Episode {index} does not exist; there are {self.n_episodes}.")
        index %= self.n_episodes
        start = int(self.episode_starts[index])
        stop = start + int(self.episode_lengths[index])
        return self.observations[start:stop], self.actions[start:stop]

    def select(self, episodes: Sequence[int] | np.ndarray) -> Demonstrations:
        """The demonstrations of the given episodes, in the given order.

        ``env_id`` and ``n_actions`` are kept. To hold episodes out for evaluation, see
        :meth:`split`, or select the complement yourself.

        Args:
            episodes: episode indices, non-empty, each in ``0..E-1``, no repeats.
        """
        episodes = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if len(episodes) == 0:
            raise DatasetError("Select at least one episode.")
        if episodes.min() < 0 or episodes.max() >= self.n_episodes:
            raise DatasetError(
                f"Episode indices must be in 0..{self.n_episodes - 1}, got {episodes.tolist()}."
            )
        if len(np.unique(episodes)) != len(episodes):
            raise DatasetError(f"Episode indices must not repeat, got {episodes.tolist()}.")
        starts = self.episode_starts[episodes]
        lengths = self.episode_lengths[episodes]
        rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)])
        return Demonstrations(
            observations=self.observations[rows],
            actions=self.actions[rows],
            episode_lengths=lengths.copy(),
            episode_returns=None
            if self.episode_returns is None
            else self.episode_returns[episodes],
            env_id=self.env_id,
            n_actions=self.n_actions,
        )

    def subset(self, k: int, *, seed: int | np.random.Generator | None = None) -> Demonstrations:
        """``k`` whole trajectories: the first ``k``, or ``k`` drawn without replacement.

        Args:
            k: number of trajectories, ``1 <= k <= n_episodes``.
            seed: ``None`` takes episodes ``0..k-1``; a seed or Generator draws ``k`` distinct
                episodes at random (kept in their original order).
        """
        return self.select(self._subset_indices(k, seed, self.n_episodes))

    def split(
        self, k: int, *, seed: int | np.random.Generator | None = None
    ) -> tuple[Demonstrations, Demonstrations]:
        """``(subset(k, seed=seed), the other E - k episodes)``, e.g. train and held-out.

        The first part is exactly :meth:`subset` with the same ``k`` and ``seed``; the second
        holds every other episode, in the original order.

        Args:
            k: number of trajectories in the first part, ``1 <= k <= n_episodes - 1`` (the
                second part cannot be empty).
            seed: as :meth:`subset`.

        Example:
            >>> train, held_out = demos.split(4)  # doctest: +SKIP
        """
        chosen = self._subset_indices(k, seed, self.n_episodes - 1)
        rest = np.setdiff1d(np.arange(self.n_episodes), chosen)
        return self.select(chosen), self.select(rest)

    def _subset_indices(
        self, k: int, seed: int | np.random.Generator | None, k_max: int
    ) -> np.ndarray:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= k_max:
            if k_max < self.n_episodes:
                raise DatasetError(
                    f"Cannot split {self.n_episodes} episodes with k={k!r}: k must be an integer "
                    f"in 1..{k_max} so that at least one episode is left over."
                )
            raise DatasetError(
                f"k must be an integer in 1..{self.n_episodes} (the number of episodes), got {k!r}."
            )
        if seed is None:
            return np.arange(k, dtype=np.int64)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(self.n_episodes, size=k, replace=False)).astype(np.int64)

    def check_env(self, env_id: str) -> EnvSpec:
        """Check that these demonstrations fit the task ``env_id`` and return its spec.

        Raises:
            UnsupportedEnvError: if the task is not supported.
            DatasetError: if the observation size or action count differs, or an action
                (named by episode and step) is not one of the task's actions.
        """
        spec = env_spec(env_id)
        if self.obs_dim != spec.obs_dim:
            raise DatasetError(
                f"The demonstrations have observations of size {self.obs_dim} but {env_id} has "
                f"observations of size {spec.obs_dim}; use demonstrations recorded on {env_id}."
            )
        if self.n_actions is not None and self.n_actions != spec.n_actions:
            raise DatasetError(
                f"The demonstrations were recorded with {self.n_actions} actions but {env_id} "
                f"has {spec.n_actions}; use demonstrations recorded on {env_id}."
            )
        if self.actions.max() >= spec.n_actions:
            row = int(np.argmax(self.actions >= spec.n_actions))
            episode, step = self._locate(row)
            raise DatasetError(
                f"Episode {episode} has action {int(self.actions[row])} at step {step}, but "
                f"{env_id} has {spec.n_actions} actions (0..{spec.n_actions - 1})."
            )
        return spec


def from_arrays(
    observations: np.ndarray | Sequence[np.ndarray],
    actions: np.ndarray | Sequence[np.ndarray],
    *,
    episode_lengths: Sequence[int] | np.ndarray | None = None,
    episode_returns: Sequence[float] | np.ndarray | None = None,
    env_id: str | None = None,
    n_actions: int | None = None,
) -> Demonstrations:
    """Build validated :class:`Demonstrations` from arrays.

    Args:
        observations: ``[N, obs_dim]`` array with ``episode_lengths`` given (or ``None`` for a
            single episode), or a sequence of per-episode ``[T_e, obs_dim]`` arrays.
        actions: ``[N]`` integer-valued array, or a sequence of per-episode ``[T_e]`` arrays.
        episode_lengths: ``[E]`` lengths summing to ``N`` (flat arrays only).
        episode_returns: ``[E]`` returns, optional.
        env_id: the task, optional (checked with :meth:`Demonstrations.check_env` if given).
        n_actions: size of the action space, optional; every action must be below it.

    Raises:
        DatasetError: if shapes disagree, actions are not integers, values are not finite,
            or the data is empty; the message names the offending episode.
    """
    per_episode = not isinstance(observations, np.ndarray) and isinstance(observations, Sequence)
    if per_episode:
        if episode_lengths is not None:
            raise DatasetError("Pass episode_lengths only with flat [N, obs_dim] arrays.")
        if isinstance(actions, np.ndarray) or len(actions) != len(observations):
            raise DatasetError(
                "With per-episode observation arrays, pass per-episode action arrays too "
                f"(got {len(observations)} observation arrays)."
            )
        if len(observations) == 0:
            raise DatasetError("The demonstrations are empty: they need at least one episode.")
        obs_list = [np.asarray(o) for o in observations]
        act_list = [np.asarray(a).reshape(-1) for a in actions]
        for e, (o, a) in enumerate(zip(obs_list, act_list, strict=True)):
            if o.ndim != 2 or len(o) != len(a):
                raise DatasetError(
                    f"Episode {e} has observations of shape {o.shape} and {len(a)} actions; "
                    "it needs observations [T, obs_dim] and T actions."
                )
            if o.shape[1] != obs_list[0].shape[1]:
                raise DatasetError(
                    f"Episode {e} has observations of size {o.shape[1]}, episode 0 of size "
                    f"{obs_list[0].shape[1]}; all episodes must come from one task."
                )
        episode_lengths = [len(a) for a in act_list]
        observations = np.concatenate(obs_list)
        actions = np.concatenate(act_list)
    observations = np.asarray(observations)
    actions = np.asarray(actions)
    if observations.ndim == 1:
        raise DatasetError(
            f"observations must be [N, obs_dim], got shape {observations.shape}; reshape a "
            "one-dimensional state to [N, 1]."
        )
    if not (np.issubdtype(observations.dtype, np.number) or observations.dtype == bool):
        raise DatasetError(f"observations must be numeric, got dtype {observations.dtype}.")
    if episode_lengths is None:
        episode_lengths = [len(actions)]
    lengths = np.asarray(episode_lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise DatasetError(f"episode_lengths must be a 1-D list of integers, got {lengths!r}.")
    if actions.ndim != 1:
        raise DatasetError(f"actions must be [N], got shape {actions.shape}.")
    if not np.issubdtype(actions.dtype, np.integer):
        actions_f = actions.astype(np.float64)
        bad = ~np.isfinite(actions_f) | (actions_f != np.round(actions_f))
        if bad.any():
            row = int(np.argmax(bad))
            ends = np.cumsum(lengths)
            episode = int(np.searchsorted(ends, row, side="right"))
            raise DatasetError(
                f"Episode {episode} has a non-integer action {actions[row]!r}; discrete actions "
                "are integers 0..n_actions-1."
            )
    returns = None if episode_returns is None else np.asarray(episode_returns, dtype=np.float64)
    demos = Demonstrations(
        observations=np.array(observations, dtype=np.float32, order="C"),  # a copy
        actions=np.array(actions, dtype=np.int64),
        episode_lengths=lengths.astype(np.int64),
        episode_returns=returns,
        env_id=env_id,
        n_actions=n_actions,
    )
    if env_id is not None:
        demos.check_env(env_id)
    return demos


# --- Minari datasets --------------------------------------------------------------------------


def _make_writable_folder(folder: Path, root: str | os.PathLike | None) -> None:
    """Create ``folder`` (inside the datasets root) or say which option to fix."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", str(folder))
    except OSError as error:
        source = (
            "--root"
            if root is not None
            else "MINARI_DATASETS_PATH"
            if os.environ.get("MINARI_DATASETS_PATH")
            else "the default datasets folder"
        )
        raise DatasetError(
            f"Cannot write datasets under {datasets_root(root)} (from {source}): cannot create "
            f"{folder} ({error.strerror or error}); pass a writable folder with --root or set "
            "MINARI_DATASETS_PATH."
        ) from None


def _give_default_permissions(folder: Path) -> None:
    """Set ``folder`` and everything in it to the umask's default modes.

    ``tempfile.mkdtemp`` makes a private (0700) folder; once it becomes the dataset, others
    on a shared ``MINARI_DATASETS_PATH`` must read it like any file the user creates.
    """
    mask = umask()
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _is_minari_dataset(folder: Path) -> bool:
    """Whether ``folder`` is one Minari dataset (only ``data/`` with its metadata), i.e. safe
    for ``--overwrite`` to replace; a namespace folder holding other datasets is not."""
    return (
        folder.is_dir()
        and {p.name for p in folder.iterdir()} == {"data"}
        and (folder / "data" / "metadata.json").is_file()
    )


def datasets_root(root: str | os.PathLike | None = None) -> Path:
    """The Minari datasets folder: ``root``, else ``$MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets`` (Minari's own rule)."""
    # Absolute: Minari's storage writes below the folder it is given by a path it joins twice,
    # so a relative root would land in the wrong place.
    if root is not None:
        return Path(root).expanduser().absolute()
    env = os.environ.get("MINARI_DATASETS_PATH")
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if Minari accepts it, e.g. ``"sbil/cartpole/scripted-v0"``.

    Raises:
        DatasetError: if it is malformed (Minari ids are ``(namespace/)name-v<version>``).
    """
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None or match.group("version") is None:
        raise DatasetError(
            f"Malformed dataset id {dataset_id!r}: Minari ids look like 'namespace/name-v0' "
            "(letters, digits, '-' and '_', optional '/'-separated namespace, and a version)."
        )
    return dataset_id


def default_dataset_id(env_id: str, expert: str) -> str:
    """``sbil/<task>/<expert>-v0``, e.g. ``sbil/cartpole/scripted-v0`` for CartPole-v1."""
    task = env_id.split("/")[-1].rsplit("-v", 1)[0].lower()
    return check_dataset_id(f"sbil/{task}/{expert}-v0")


def _dataset_path(dataset_id: str, root: str | os.PathLike | None) -> Path:
    return datasets_root(root) / check_dataset_id(dataset_id)


def load_demonstrations(
    dataset_id: str,
    *,
    root: str | os.PathLike | None = None,
    env_id: str | None = None,
) -> Demonstrations:
    """Load a local Minari dataset with discrete actions and vector observations.

    Args:
        dataset_id: Minari id, e.g. ``"sbil/cartpole/scripted-v0"``.
        root: datasets folder (default: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``).
            Nothing is downloaded.
        env_id: check the data against this task (default: the dataset's own task, if it
            is registered).

    Returns:
        :class:`Demonstrations`, one episode per Minari episode, in the dataset's order.

    Raises:
        DatasetError: if the dataset is missing, empty, has unsupported spaces, contains NaN or
            infinite values, or does not fit ``env_id`` (naming the episode).
    """
    import gymnasium as gym
    from minari import MinariDataset

    path = _dataset_path(dataset_id, root)
    if not (path / "data").is_dir():
        raise DatasetError(
            f"No local Minari dataset {dataset_id!r} at {path}; create one with "
            f"`sbil collect` or pass the right --root (datasets folder: {datasets_root(root)})."
        )
    recreate = "re-create it with `sbil collect --overwrite`"
    # Minari and h5py report corrupt files with whatever exception their internals hit
    # (OSError, KeyError, AssertionError, TypeError, ...): any of them means "unreadable".
    try:
        dataset = MinariDataset(path / "data")
        spaces = (dataset.observation_space, dataset.action_space)
        total_episodes = dataset.total_episodes
        source_env = dataset.env_spec.id if dataset.env_spec is not None else None
    except Exception as error:  # re-raised as one clear error
        raise DatasetError(
            f"Cannot read the Minari dataset {dataset_id!r} at {path} "
            f"({_describe(error)}); {recreate}."
        ) from None
    try:
        spec = check_spaces(dataset_id, *spaces)
    except ValueError as error:
        raise DatasetError(f"Dataset {error}") from None
    if total_episodes == 0:
        raise DatasetError(f"Dataset {dataset_id!r} has no episodes; {recreate}.")

    n_actions = spec.n_actions
    obs_list, act_list, returns = [], [], []
    episode_number = 0
    episodes = iter(dataset.iterate_episodes())
    while True:
        try:
            episode = next(episodes, None)
            if episode is None:
                break
            obs = np.asarray(episode.observations)
            acts = np.asarray(episode.actions)
            rewards = np.asarray(episode.rewards)
            n = len(episode)
        except Exception as error:  # re-raised as one clear error
            raise DatasetError(
                f"Cannot read dataset {dataset_id!r} at {path} (episode {episode_number}: "
                f"{_describe(error)}); {recreate}."
            ) from None
        _check_episode(dataset_id, episode_number, obs, acts, n, n_actions)
        obs_list.append(obs[:-1])
        act_list.append(acts.reshape(-1))
        returns.append(float(np.sum(rewards)))
        episode_number += 1
    target = env_id or source_env
    demos = from_arrays(obs_list, act_list, episode_returns=returns, n_actions=n_actions)
    if target is not None and (env_id is not None or target in gym.registry):
        demos.check_env(target)
    return dataclasses.replace(demos, env_id=target)


def _describe(error: Exception) -> str:
    """``"KeyError: 'x'"``, or just the type name when the error has no message."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_episode(
    dataset_id: str, number: int, obs: np.ndarray, acts: np.ndarray, n: int, n_actions: int
) -> None:
    """Raise a :class:`DatasetError` naming episode ``number`` if it is malformed."""
    where = f"Episode {number} of {dataset_id!r}"
    if n == 0:
        raise DatasetError(f"{where} has no steps.")
    if obs.shape[0] != n + 1 or acts.shape[0] != n:
        raise DatasetError(
            f"{where} has {obs.shape[0]} observations and {acts.shape[0]} actions for {n} steps; "
            "Minari stores T + 1 and T."
        )
    if not np.isfinite(obs).all():
        raise DatasetError(f"{where} contains NaN or infinite observations.")
    acts = acts.reshape(-1)
    outside = (acts < 0) | (acts >= n_actions)
    if outside.any():
        step = int(np.argmax(outside))
        raise DatasetError(
            f"{where} has action {acts[step].item()!r} at step {step}, but the dataset's "
            f"action space has {n_actions} actions (0..{n_actions - 1})."
        )


@dataclass(frozen=True, eq=False)
class CollectResult(ReturnStats):
    """What :func:`collect` wrote (with ``mean``, ``std``, ``sem`` of the expert returns).

    Attributes:
        dataset_id: the Minari id.
        path: the dataset folder (``<root>/<dataset_id>``).
        returns: ``[E]`` float64 expert returns of the recorded episodes.
        n_steps: total recorded steps.
    """

    dataset_id: str
    path: Path
    returns: np.ndarray
    n_steps: int


def collect(
    env_id: str,
    n_episodes: int,
    *,
    expert: str | Policy = "scripted",
    seed: int = 0,
    dataset_id: str | None = None,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
    n_envs: int = 16,
    progress=None,
    experts_root: str | os.PathLike | None = None,
) -> CollectResult:
    """Record ``n_episodes`` expert episodes into a new local Minari dataset.

    Episode ``i`` starts from ``reset(seed=seed + i)``. The dataset is written in a hidden
    temporary folder next to its destination and moved into place only when complete, so a
    failure leaves nothing behind. The expert's return statistics go in the metadata
    (``expert_return_mean``, ``expert_return_std``, ...).

    Args:
        env_id: a supported task.
        n_episodes: number of episodes to record.
        expert: an expert name for :func:`sbil.deep.experts.get_expert`, or any policy.
        seed: seed of episode 0.
        dataset_id: Minari id (default ``sbil/<task>/<expert>-v0``).
        root: datasets folder (default ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``).
        overwrite: replace an existing dataset with this id.
        n_envs: sub-environments used to play the episodes.
        progress: optional ``progress(done, n_episodes)`` callback.
        experts_root: where trained experts are cached, for a named ``expert``.

    Raises:
        DatasetError: for a malformed id, or an existing dataset without ``overwrite``.
        UnsupportedEnvError, ValueError: as :func:`sbil.deep.evaluation.run_episodes`.
    """
    import gymnasium as gym
    from minari import __version__ as minari_version
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    from sbil.deep.evaluation import run_episodes
    from sbil.deep.experts import get_expert

    env_spec(env_id)
    expert_name = expert if isinstance(expert, str) else getattr(expert, "name", "custom")
    policy = get_expert(env_id, expert, root=experts_root) if isinstance(expert, str) else expert
    dataset_id = dataset_id or default_dataset_id(env_id, expert_name)
    final = _dataset_path(dataset_id, root)
    if final.exists() and not overwrite:
        raise DatasetError(
            f"Dataset {dataset_id!r} already exists at {final}; pick another --dataset-id "
            "(e.g. bump the -v version) or pass --overwrite."
        )
    if final.exists() and not _is_minari_dataset(final):
        raise DatasetError(
            f"{final} is not a Minari dataset (it holds {sorted(p.name for p in final.iterdir())}"
            "), so --overwrite will not replace it; pick another --dataset-id or --root."
        )
    _make_writable_folder(final.parent, root)  # fail before playing any episode

    returns, lengths, trajectories = run_episodes(
        policy, env_id, n_episodes, seed=seed, n_envs=n_envs, record=True, progress=progress
    )
    buffers = [
        EpisodeBuffer(
            id=i,
            seed=t.seed,
            observations=t.observations,
            actions=t.actions,
            rewards=t.rewards,
            terminations=np.concatenate([np.zeros(len(t.actions) - 1, bool), [t.terminated]]),
            truncations=np.concatenate([np.zeros(len(t.actions) - 1, bool), [not t.terminated]]),
        )
        for i, t in enumerate(trajectories)
    ]
    metadata = {
        "dataset_id": dataset_id,
        "minari_version": minari_version,
        "algorithm_name": f"sbil {expert_name} expert",
        "author": {"sbil"},
        "description": (
            f"{n_episodes} episodes of the {expert_name} expert on {env_id}, episode i reset "
            f"with seed {seed} + i, recorded by `sbil collect`."
        ),
        "env_id": env_id,
        "expert": expert_name,
        "collection_seed": int(seed),
        "expert_return_mean": float(np.mean(returns)),
        "expert_return_std": float(np.std(returns)),
        "expert_return_min": float(np.min(returns)),
        "expert_return_max": float(np.max(returns)),
        "expert_episode_length_mean": float(np.mean(lengths)),
    }

    env = gym.make(env_id)
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    tmp = Path(tempfile.mkdtemp(prefix=".sbil-tmp-", dir=final.parent))
    try:
        storage = MinariStorage.new(
            tmp / "data",
            observation_space=observation_space,
            action_space=action_space,
            env_spec=gym.spec(env_id),
        )
        storage.update_metadata(metadata)
        storage.update_episodes(buffers)
        _give_default_permissions(tmp)
        if final.exists():  # overwrite: swap the old dataset out, then delete it
            old = Path(tempfile.mkdtemp(prefix=".sbil-old-", dir=final.parent))
            os.replace(final, old / "dataset")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CollectResult(
        dataset_id=dataset_id, path=final, returns=returns, n_steps=int(lengths.sum())
    )

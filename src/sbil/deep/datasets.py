"""Minari datasets on disk: where they live, their ids, and reading them as demonstrations.

Any local Minari dataset with discrete actions and vector observations loads as
:class:`~sbil.deep.demonstrations.Demonstrations` (:func:`load_demonstrations`); nothing is
ever downloaded. :func:`datasets_root` follows Minari's own rule (``--root``, else
``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``), and ids are checked against Minari's
pattern (:func:`check_dataset_id`). Recording new datasets is :func:`sbil.deep.collection.collect`.

Example:
    >>> from sbil.deep.datasets import load_demonstrations
    >>> demos = load_demonstrations("sbil/cartpole/scripted-v0")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from sbil.deep.demonstrations import DatasetError, Demonstrations, from_arrays
from sbil.deep.envs import check_spaces
from sbil.files import NotWritableError, check_writable_folder


def check_datasets_folder(folder: Path, root: str | os.PathLike | None) -> Path:
    """Create ``folder`` (inside the datasets root) and probe that it is writable, or say
    which option or variable to fix.

    Raises:
        DatasetError: naming ``--root``, ``MINARI_DATASETS_PATH`` or the default folder.
    """
    try:
        return check_writable_folder(folder)
    except NotWritableError as error:
        source = (
            "--root"
            if root is not None
            else "MINARI_DATASETS_PATH"
            if os.environ.get("MINARI_DATASETS_PATH")
            else "the default datasets folder"
        )
        raise DatasetError(
            f"Cannot write datasets under {datasets_root(root)} (from {source}): cannot create "
            f"{folder} ({error.reason}); pass a writable folder with --root or set "
            "MINARI_DATASETS_PATH."
        ) from None


def is_minari_dataset(folder: Path) -> bool:
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


def dataset_path(dataset_id: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``dataset_id``: ``datasets_root(root) / dataset_id``.

    Raises:
        DatasetError: for a malformed id.
    """
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

    path = dataset_path(dataset_id, root)
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
    obs_list, act_list, returns, finals, terminated = [], [], [], [], []
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
            ended = bool(np.asarray(episode.terminations).reshape(-1)[-1])
            n = len(episode)
        except Exception as error:  # re-raised as one clear error
            raise DatasetError(
                f"Cannot read dataset {dataset_id!r} at {path} (episode {episode_number}: "
                f"{_describe(error)}); {recreate}."
            ) from None
        _check_episode(dataset_id, episode_number, obs, acts, n, n_actions)
        obs_list.append(obs[:-1])
        finals.append(obs[-1])
        terminated.append(ended)
        act_list.append(acts.reshape(-1))
        returns.append(float(np.sum(rewards)))
        episode_number += 1
    target = env_id or source_env
    demos = from_arrays(
        obs_list,
        act_list,
        episode_returns=returns,
        n_actions=n_actions,
        final_observations=finals,
        terminated=terminated,
    )
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

"""A run's data: which episodes each seed trains on, every n-th step, npz demonstrations.

Part of :mod:`sbil.experiments.runs`.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sbil.experiments.runs.spec import WINDOWS, RunError, RunSpec
from sbil.files import write_bytes_atomic


def training_episodes(windows: str, *, k: int, seed: int, pool: int) -> np.ndarray:
    """The episode indices seed ``seed`` trains on, ``[k]`` int64, sorted for ``random``.

    Args:
        windows: ``"first"``, ``"sliding"`` or ``"random"`` (see the module doc).
        k: trajectories per seed, ``1 <= k <= pool``.
        seed: the learner's seed.
        pool: episodes ``0..pool-1`` may be trained on.
    """
    if not 1 <= k <= pool:
        raise RunError(
            f"--episodes {k} asks for more trajectories than the {pool} available for training "
            "(the held-out ones excluded); collect more episodes or lower --episodes/--holdout."
        )
    if windows == "first":
        return np.arange(k, dtype=np.int64)
    if windows == "sliding":
        return (seed + np.arange(k, dtype=np.int64)) % pool
    if windows == "random":
        rng = np.random.default_rng([seed, k, 0x5B11])
        return np.sort(rng.choice(pool, size=k, replace=False)).astype(np.int64)
    raise RunError(f"--windows must be one of {', '.join(WINDOWS)}, got {windows!r}.")


def every_nth_step(demos, n: int):
    """Steps ``0, n, 2n, ...`` of every episode of ``demos`` (the EDM reference keeps every
    20th, ``BaseStudent._fill_buffer``); ``n = 1`` returns ``demos`` itself."""
    if n == 1:
        return demos
    rows = np.concatenate(
        [
            start + np.arange(0, length, n)
            for start, length in zip(demos.episode_starts, demos.episode_lengths, strict=True)
        ]
    )
    lengths = (demos.episode_lengths + n - 1) // n
    # Each kept step keeps its own next state and action (steps t and t+1, not t + n).
    return dataclasses.replace(
        demos,
        observations=demos.observations[rows],
        actions=demos.actions[rows],
        episode_lengths=lengths.astype(np.int64),
        next_observations=demos.next_observations[rows],
        next_actions=demos.next_actions[rows],
        terminals=demos.terminals[rows],
    )


#: The arrays :func:`load_npz_demonstrations` reads from an ``.npz`` (any other is ignored).
NPZ_ARRAYS = ("observations", "actions", "episode_lengths", "final_observations", "terminated")


def load_npz_demonstrations(path: str | os.PathLike, env_id: str | None):
    """Demonstrations from an ``.npz`` of ``observations``, ``actions`` (and optionally
    ``episode_lengths``, and for the learners that use transitions ``final_observations``
    ``[E, obs_dim]`` and ``terminated`` ``[E]``), never unpickling anything; every failure is
    one :class:`RunError`."""
    from sbil.deep.data import from_arrays

    path = Path(path)
    expected = (
        "an .npz written by np.savez with numeric arrays 'observations' [N, obs_dim] and "
        "'actions' [N] (optionally 'episode_lengths' [E], 'final_observations' [E, obs_dim] "
        "and 'terminated' [E])"
    )
    if path.is_dir():
        raise RunError(f"--data {path} is a folder; give the .npz file, which is {expected}.")
    if not path.is_file():
        raise RunError(f"--data {path} does not exist.")
    try:
        loaded = np.load(path)  # allow_pickle=False: never runs code from the file
    except OSError as error:
        raise RunError(f"Cannot read --data {path} ({error.strerror or error}).") from None
    except Exception:  # a damaged or foreign file can fail in many ways inside numpy/zipfile
        raise RunError(f"--data {path} is not {expected}; re-create it.") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise RunError(f"--data {path} holds a single array; it must be {expected}.")
    arrays = {}
    with loaded:
        missing = {"observations", "actions"} - set(loaded.files)
        if missing:
            raise RunError(f"--data {path} lacks {sorted(missing)}; it must be {expected}.")
        for name in NPZ_ARRAYS:
            if name not in loaded.files:
                continue
            try:
                arrays[name] = loaded[name]
            except ValueError:  # object arrays (need pickle) or a corrupt member
                raise RunError(
                    f"--data {path}: array {name!r} is not a plain numeric array (sbil never "
                    f"loads pickled objects); it must be {expected}."
                ) from None
            except Exception:  # damaged member: BadZipFile, zlib.error, EOFError, ...
                raise RunError(f"--data {path} is damaged; re-create it.") from None
    return from_arrays(
        arrays["observations"],
        arrays["actions"],
        episode_lengths=arrays.get("episode_lengths"),
        env_id=env_id,
        final_observations=arrays.get("final_observations"),
        terminated=arrays.get("terminated"),
    )


def npz_arrays(demos) -> dict[str, np.ndarray]:
    """The :data:`NPZ_ARRAYS` of ``demos``, as :func:`load_npz_demonstrations` reads them.

    ``final_observations`` is written when every episode's last next state is known,
    ``terminated`` when any episode ended in a terminal state.

    Raises:
        RunError: if the file would not read back as ``demos`` (e.g. thinned demonstrations,
            whose next states are not the following rows, or last next states known for some
            episodes only).
    """
    from sbil.deep.data import from_arrays

    ends = np.cumsum(demos.episode_lengths) - 1
    arrays = {
        "observations": np.asarray(demos.observations),
        "actions": np.asarray(demos.actions),
        "episode_lengths": np.asarray(demos.episode_lengths),
    }
    final = demos.next_observations[ends]
    if np.isfinite(final).all():
        arrays["final_observations"] = np.asarray(final)
    if demos.terminals[ends].any():
        arrays["terminated"] = np.asarray(demos.terminals[ends])
    again = from_arrays(
        arrays["observations"],
        arrays["actions"],
        episode_lengths=arrays["episode_lengths"],
        final_observations=arrays.get("final_observations"),
        terminated=arrays.get("terminated"),
    )
    if not same_transitions(again, demos):
        raise RunError(
            "These demonstrations cannot be saved as an .npz that reads back the same: their "
            "next states are not each episode's following rows (thinned, e.g. by "
            "every_nth_step? pass the full demonstrations and set every_nth_step instead), or "
            "the final observation is known for some episodes only."
        )
    return arrays


def same_transitions(a, b) -> bool:
    """Whether two Demonstrations hold the same steps: observations, actions, episodes, next
    observations and actions, terminals (returns, task and action count aside)."""
    return all(
        np.array_equal(getattr(a, name), getattr(b, name), equal_nan=name == "next_observations")
        for name in (
            "observations",
            "actions",
            "episode_lengths",
            "next_observations",
            "next_actions",
            "terminals",
        )
    )


def save_npz_demonstrations(demos, path: str | os.PathLike) -> Path:
    """Write ``demos`` to ``path`` atomically as an ``.npz`` that :func:`load_npz_demonstrations`
    (and ``sbil train --data``) reads back as the same steps (:func:`npz_arrays`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **npz_arrays(demos))
    return write_bytes_atomic(path, buffer.getvalue())


def resolve_n_actions(demos, env_id: str | None, option: int | None) -> int:
    """The number of actions: from ``option``, the dataset's action space or the task; any
    disagreement between them is an error (never guessed from the largest action)."""
    declared = demos.n_actions
    task = demos.check_env(env_id).n_actions if env_id else None
    sources = [
        (value, where)
        for value, where in (
            (option, f"--n-actions {option}"),
            (declared, f"the dataset's action space ({declared} actions)"),
            (task, f"{env_id} ({task} actions)"),
        )
        if value is not None
    ]
    if not sources:
        raise RunError(
            "The number of actions is unknown: the data does not declare it and no task is "
            "given; pass --env ID or --n-actions N."
        )
    if len({value for value, _ in sources}) > 1:
        raise RunError(
            f"The number of actions disagrees: {' vs '.join(where for _, where in sources)}; "
            "fix --n-actions or --env."
        )
    value = int(sources[0][0])
    if demos.actions.max() >= value:
        raise RunError(
            f"The data has action {int(demos.actions.max())} but the task has {value} actions "
            f"(0..{value - 1}); fix --n-actions or --env."
        )
    return value


@dataclass(frozen=True)
class RunData:
    """The demonstrations of a run, resolved from its spec."""

    env_id: str | None
    n_actions: int
    train_episodes: dict[int, list[int]]
    """Per seed, the dataset episodes it trains on."""
    held_out: list[int]
    """Dataset episodes no seed trains on, used for the action match."""
    per_seed: list = field(repr=False)
    """One (thinned) Demonstrations per seed, in seed order."""
    held_out_demos: Any = field(repr=False)
    """The held-out episodes (every step), or None."""
    root: str | None = None


def load_run_data(spec: RunSpec) -> RunData:
    """Load the spec's demonstrations and select each seed's trajectories."""
    from sbil.deep.data import datasets_root, load_demonstrations

    root = spec.root
    if spec.dataset is not None:
        root = str(datasets_root(spec.root).absolute())
        demos = load_demonstrations(spec.dataset, root=root, env_id=spec.env_id)
    else:
        demos = load_npz_demonstrations(spec.data, spec.env_id)
    env_id = spec.env_id or demos.env_id
    n_actions = resolve_n_actions(demos, env_id, spec.n_actions)
    total = demos.n_episodes
    k = spec.episodes
    if spec.holdout is not None:
        if spec.holdout >= total:
            raise RunError(
                f"--holdout {spec.holdout} leaves no episode to train on (the data has {total}); "
                "lower --holdout or collect more episodes."
            )
        pool = total - spec.holdout
    else:
        pool = total
    if k is None:
        k = pool
    chosen = {s: training_episodes(spec.windows, k=k, seed=s, pool=pool) for s in spec.seeds}
    if spec.holdout is not None:
        held_out = list(range(pool, total))
    else:
        used = np.unique(np.concatenate(list(chosen.values())))
        held_out = sorted(set(range(total)) - set(used.tolist()))
    per_seed = [every_nth_step(demos.select(chosen[s]), spec.every_nth_step) for s in spec.seeds]
    return RunData(
        env_id=env_id,
        n_actions=n_actions,
        train_episodes={s: chosen[s].tolist() for s in spec.seeds},
        held_out=held_out,
        per_seed=per_seed,
        held_out_demos=demos.select(held_out) if held_out else None,
        root=root,
    )

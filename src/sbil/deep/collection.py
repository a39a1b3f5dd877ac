"""Recording demonstrations: :func:`collect` plays an expert and writes a new Minari dataset.

The dataset is created locally without any network access. It is written into a hidden
staging folder next to its destination and swapped in whole when complete
(:func:`sbil.files.staged_folder`), while a lock on the destination (:func:`sbil.files.lock`)
keeps a second ``collect`` of the same id from writing at the same time: that one fails at
once, saying which process holds it, and nothing is replaced behind anyone's back. A staging
folder left by a killed ``collect`` is removed by the next one in that folder.

Example:
    >>> from sbil.deep.collection import collect
    >>> info = collect("CartPole-v1", 10, root="/tmp/minari")  # doctest: +SKIP
    >>> info.dataset_id  # doctest: +SKIP
    'sbil/cartpole/scripted-v0'
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbil import files
from sbil.deep.datasets import (
    check_dataset_id,
    check_datasets_folder,
    dataset_path,
    default_dataset_id,
    is_minari_dataset,
)
from sbil.deep.demonstrations import DatasetError
from sbil.deep.envs import Policy, env_spec
from sbil.deep.evaluation import ReturnStats
from sbil.progress import ProgressCallback
from sbil.seeds import check_seed_range


@dataclass(frozen=True, eq=False)
class CollectResult(ReturnStats):
    """What :func:`collect` wrote (with ``mean``, ``std``, ``sem`` of the expert returns).

    Attributes:
        dataset_id: the Minari id.
        path: the dataset folder (``<root>/<dataset_id>``).
        returns: ``[E]`` float64 expert returns of the recorded episodes.
        n_steps: total recorded steps.
        expert: the expert's name, with its noise if any (e.g. ``"scripted, epsilon:0.1"``).
    """

    dataset_id: str
    path: Path
    returns: np.ndarray
    n_steps: int
    expert: str = ""


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
    progress: ProgressCallback | None = None,
    experts_root: str | os.PathLike | None = None,
    noise: str | None = None,
) -> CollectResult:
    """Record ``n_episodes`` expert episodes into a new local Minari dataset.

    Episode ``i`` starts from ``reset(seed=seed + i)``. The expert's return statistics go in
    the metadata (``expert_return_mean``, ``expert_return_std``, ...), with the expert's name
    and noise (``expert``, ``expert_noise``, ``expert_deterministic``, ``noise_seed``).

    Args:
        env_id: a supported task.
        n_episodes: number of episodes to record.
        expert: an expert name for :func:`sbil.deep.experts.get_expert`, or any policy.
        seed: seed of episode 0, and the noise seed of a stochastic expert; it and every
            ``seed + i`` must lie in ``0 .. 2**32 - 1``.
        dataset_id: Minari id (default ``sbil/<task>/<expert>-v0``, with the noise in the name
            for a stochastic expert, e.g. ``sbil/cartpole/scripted-eps0_1-v0``).
        root: datasets folder (default ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``).
        overwrite: replace an existing dataset with this id.
        n_envs: sub-environments used to play the episodes.
        progress: optional ``progress(done, n_episodes)`` callback.
        experts_root: where trained experts are cached, for a named ``expert``.
        noise: ``None``/``"none"`` (deterministic expert), ``"epsilon:E"`` or ``"sample"``
            (see :class:`sbil.deep.experts.ExpertNoise`).

    Raises:
        DatasetError: for a malformed id, an existing dataset without ``overwrite``, an
            unwritable datasets folder, or another process writing the same dataset now.
        UnsupportedEnvError, ValueError: as :func:`sbil.deep.evaluation.run_episodes`, or for
            a seed out of range or malformed noise.
    """
    import gymnasium as gym
    from minari import __version__ as minari_version
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    from sbil.deep.evaluation import run_episodes
    from sbil.deep.experts import ExpertNoise, get_expert, with_noise

    spec = env_spec(env_id)
    if (
        isinstance(n_episodes, bool)
        or not isinstance(n_episodes, (int, np.integer))
        or n_episodes < 1
    ):
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}.")
    seed = check_seed_range(seed, int(n_episodes), name="seed")
    noise = ExpertNoise.parse(noise)
    expert_name = expert if isinstance(expert, str) else getattr(expert, "name", "custom")
    if isinstance(expert, str):
        policy = get_expert(env_id, expert, root=experts_root, noise=noise, seed=seed)
    else:
        policy = with_noise(expert, spec.n_actions, noise, seed)
    label = f"{expert_name}-{noise.tag}" if noise.tag else expert_name
    if dataset_id is None:
        dataset_id = default_dataset_id(env_id, label)
    final = dataset_path(check_dataset_id(dataset_id), root)
    _check_destination(final, dataset_id, overwrite)  # fail before playing any episode
    check_datasets_folder(final.parent, root)

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(files.lock(final))
        except files.LockHeldError as error:
            raise DatasetError(
                f"Dataset {dataset_id!r} at {final} is being written right now by "
                f"{error.holder}; wait for it to finish, or pick another --dataset-id."
            ) from None
        # Again, now that no other collect can write it: one may have finished meanwhile.
        _check_destination(final, dataset_id, overwrite)

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
                truncations=np.concatenate(
                    [np.zeros(len(t.actions) - 1, bool), [not t.terminated]]
                ),
            )
            for i, t in enumerate(trajectories)
        ]
        how = "" if noise.deterministic else f" with {noise} noise (noise seed {seed})"
        noisy = "" if noise.deterministic else f", {noise}"
        metadata = {
            "dataset_id": dataset_id,
            "minari_version": minari_version,
            "algorithm_name": f"sbil {expert_name} expert{noisy}",
            "author": {"sbil"},
            "description": (
                f"{n_episodes} episodes of the {expert_name} expert{how} on {env_id}, episode i "
                f"reset with seed {seed} + i, recorded by `sbil collect`."
            ),
            "env_id": env_id,
            "expert": expert_name,
            "expert_noise": str(noise),
            "expert_deterministic": noise.deterministic,
            "noise_seed": None if noise.deterministic else seed,
            "collection_seed": seed,
            "expert_return_mean": float(np.mean(returns)),
            "expert_return_std": float(np.std(returns)),
            "expert_return_min": float(np.min(returns)),
            "expert_return_max": float(np.max(returns)),
            "expert_episode_length_mean": float(np.mean(lengths)),
        }
        env = gym.make(env_id)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
        with files.staged_folder(final, overwrite=overwrite) as staging:
            storage = MinariStorage.new(
                staging / "data",
                observation_space=observation_space,
                action_space=action_space,
                env_spec=gym.spec(env_id),
            )
            storage.update_metadata(metadata)
            storage.update_episodes(buffers)
    return CollectResult(
        dataset_id=dataset_id,
        path=final,
        returns=returns,
        n_steps=int(lengths.sum()),
        expert=f"{expert_name}{noisy}",
    )


def _check_destination(final: Path, dataset_id: str, overwrite: bool) -> None:
    """Refuse an existing dataset without ``overwrite``, and anything but one dataset with it."""
    if not final.exists():
        return
    if not overwrite:
        raise DatasetError(
            f"Dataset {dataset_id!r} already exists at {final}; pick another --dataset-id "
            "(e.g. bump the -v version) or pass --overwrite."
        )
    if not is_minari_dataset(final):
        raise DatasetError(
            f"{final} is not a Minari dataset (it holds {sorted(p.name for p in final.iterdir())}"
            "), so --overwrite will not replace it; pick another --dataset-id or --root."
        )

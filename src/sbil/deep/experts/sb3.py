"""Experts trained on this machine with stable-baselines3 (``sbil expert train``), their
records and the batched policy that wraps an SB3 model.

Part of :mod:`sbil.deep.experts`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sbil.deep.envs import env_spec
from sbil.deep.experts.common import SB3_ALGOS, SB3_INSTALL, _as_batch
from sbil.deep.experts.noise import state_uniforms
from sbil.files import NotWritableError, check_writable_folder, write_atomic, write_json_atomic
from sbil.seeds import check_seed_range


def experts_dir(path: str | os.PathLike | None = None) -> Path:
    """Where trained experts are cached: ``path``, else ``$SBIL_EXPERTS_DIR``, else
    ``~/.cache/sbil/experts``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("SBIL_EXPERTS_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "sbil" / "experts"


def _sb3_paths(env_id: str, algo: str, root: Path) -> tuple[Path, Path]:
    stem = root / env_id / f"sb3-{algo}"
    return stem.with_suffix(".zip"), stem.with_suffix(".json")


def _require_sb3():
    try:
        import stable_baselines3
    except ImportError:
        raise ImportError(
            f"Trained experts need stable-baselines3, which is not installed: {SB3_INSTALL}"
        ) from None
    return stable_baselines3


@dataclass(frozen=True)
class TrainedExpert:
    """A stable-baselines3 expert trained by :func:`train_sb3_expert`.

    Attributes:
        env_id: task it was trained on.
        algo: ``"ppo"`` or ``"dqn"``.
        total_timesteps: environment steps of training.
        seed: training seed.
        model_path: the saved SB3 model (``.zip``).
        return_mean: mean return of the deterministic policy over ``n_eval_episodes``.
        return_std: standard deviation (ddof 0) of those returns.
        n_eval_episodes: evaluation episodes (seeds ``eval_seed .. eval_seed + n - 1``).
        eval_seed: first evaluation seed.
    """

    env_id: str
    algo: str
    total_timesteps: int
    seed: int
    model_path: str
    return_mean: float
    return_std: float
    n_eval_episodes: int
    eval_seed: int

    @property
    def name(self) -> str:
        """The expert's name for :func:`get_expert`."""
        return f"sb3-{self.algo}"


@dataclass(frozen=True)
class ObsNormalization:
    """The observation normalisation of stable-baselines3's ``VecNormalize``, frozen.

    ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` in float64, cast to
    float32, as ``VecNormalize.normalize_obs`` computes it; an expert trained in a
    ``VecNormalize`` env acts on these normalised observations.

    Attributes:
        mean: ``[d]`` running mean of the training observations.
        var: ``[d]`` their running variance.
        clip_obs: bound of the normalised observations.
        epsilon: added to the variance.
    """

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float = 10.0
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        var = np.asarray(self.var, dtype=np.float64)
        if mean.ndim != 1 or var.shape != mean.shape or not np.all(var >= 0):
            raise ValueError(
                f"ObsNormalization needs mean [d] and a non-negative var [d], got shapes "
                f"{mean.shape} and {var.shape}."
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "var", var)

    @classmethod
    def from_record(cls, data: dict | None) -> ObsNormalization | None:
        """From a record's ``{"mean", "var", "clip_obs", "epsilon", ...}`` (None stays None)."""
        if data is None:
            return None
        return cls(data["mean"], data["var"], float(data["clip_obs"]), float(data["epsilon"]))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``[n, d]`` float32 normalised observations for raw ``obs[n, d]``."""
        scaled = (obs - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


class SB3Policy:
    """A saved stable-baselines3 model as a batched :class:`Policy`.

    Args:
        model: a PPO or DQN model.
        obs_dim: observation size.
        sample: False acts deterministically (``predict(deterministic=True)``); True draws
            each action as ``predict(deterministic=False)`` would (PPO: from its categorical
            policy; DQN: a random action with probability ``model.exploration_rate``), with the
            seeded, stateless randomness of :func:`state_uniforms`.
        seed: the noise seed when ``sample``.
        normalize: the observation normalisation the model was trained with (a model trained
            in ``VecNormalize``), applied before the model sees an observation; the noise
            still hashes the raw observation.
    """

    def __init__(
        self,
        model,
        obs_dim: int,
        *,
        sample: bool = False,
        seed: int = 0,
        normalize: ObsNormalization | None = None,
    ) -> None:
        self.model = model
        self.obs_dim = obs_dim
        self.sample = sample
        self.seed = check_seed_range(seed, name="noise seed")
        self.normalize = normalize

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Return the model's actions ``[n]`` for observations ``[n, obs_dim]``."""
        raw = _as_batch(obs, self.obs_dim, "stable-baselines3")
        obs = raw if self.normalize is None else self.normalize(raw)
        actions, _ = self.model.predict(obs, deterministic=True)
        actions = np.asarray(actions, dtype=np.int64).reshape(len(obs))
        if not self.sample:
            return actions
        n_actions = int(self.model.action_space.n)
        u = state_uniforms(raw, self.seed, 0)
        if hasattr(self.model.policy, "get_distribution"):  # PPO: its categorical policy
            import torch

            with torch.no_grad():
                tensor = self.model.policy.obs_to_tensor(obs)[0]
                probs = self.model.policy.get_distribution(tensor).distribution.probs
            cdf = np.cumsum(probs.cpu().numpy().astype(np.float64), axis=1)
            drawn = (cdf < (u * cdf[:, -1])[:, None]).sum(axis=1)
            return np.minimum(drawn, n_actions - 1).astype(np.int64)
        # DQN: epsilon-greedy at its exploration rate (SB3 draws one coin per batch; one per
        # state here, so that each row depends only on its own state).
        random_actions = (state_uniforms(raw, self.seed, 1) * n_actions).astype(np.int64)
        return np.where(u < float(self.model.exploration_rate), random_actions, actions)


def train_sb3_expert(
    env_id: str,
    *,
    algo: str = "ppo",
    total_timesteps: int = 100_000,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    n_eval_episodes: int = 100,
    eval_seed: int = 10_000,
    overwrite: bool = False,
    device: str = "cpu",
    hyperparameters: dict | None = None,
) -> TrainedExpert:
    """Train a stable-baselines3 agent with its default hyperparameters and cache it on disk.

    The model and a JSON record of its measured return are written atomically to
    ``experts_dir(root) / env_id / sb3-{algo}.zip`` (and ``.json``).

    Args:
        env_id: a supported task.
        algo: ``"ppo"`` or ``"dqn"``.
        total_timesteps: environment steps of training.
        seed: training seed (SB3's ``seed=``).
        root: cache directory (see :func:`experts_dir`).
        n_eval_episodes: episodes used to report the trained policy's return.
        eval_seed: first seed of those episodes.
        overwrite: replace an expert already cached at that path.
        device: torch device for training, ``"cpu"`` by default.
        hyperparameters: keyword arguments for the SB3 algorithm's constructor, overriding its
            defaults (e.g. ``{"n_steps": 64}`` for PPO).

    Returns:
        The :class:`TrainedExpert` record.

    Raises:
        ImportError: if stable-baselines3 is not installed (with the install line).
        ValueError: for an unknown ``algo``, a non-positive budget, a seed outside
            ``0 .. 2**32 - 1``, an existing expert without ``overwrite``, or a cache folder
            that cannot be written (checked before training).
    """
    from sbil.deep.evaluation import evaluate

    spec = env_spec(env_id)
    if algo not in SB3_ALGOS:
        raise ValueError(f"Unknown algorithm {algo!r}; choose one of {', '.join(SB3_ALGOS)}.")
    if total_timesteps < 1:
        raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}.")
    check_seed_range(seed, name="seed")
    check_seed_range(eval_seed, n_eval_episodes, name="eval_seed")
    model_path, record_path = _sb3_paths(env_id, algo, experts_dir(root))
    if model_path.exists() and not overwrite:
        raise ValueError(
            f"A trained expert already exists at {model_path}; pass overwrite=True "
            "(--overwrite) to replace it."
        )
    sb3 = _require_sb3()
    try:  # fail now, not after training: the model would be lost
        check_writable_folder(model_path.parent)
    except NotWritableError as error:
        raise ValueError(
            f"Cannot write trained experts under {model_path.parent} ({error.reason}); pass a "
            "writable --experts-dir (root=) or set SBIL_EXPERTS_DIR."
        ) from None
    import gymnasium as gym

    algo_class = {"ppo": sb3.PPO, "dqn": sb3.DQN}[algo]
    model = algo_class(
        "MlpPolicy",
        gym.make(env_id),
        seed=seed,
        device=device,
        verbose=0,
        **(hyperparameters or {}),
    )
    model.learn(total_timesteps=total_timesteps)

    result = evaluate(SB3Policy(model, spec.obs_dim), env_id, n_eval_episodes, seed=eval_seed)
    record = TrainedExpert(
        env_id=env_id,
        algo=algo,
        total_timesteps=total_timesteps,
        seed=seed,
        model_path=str(model_path),
        return_mean=result.mean,
        return_std=result.std,
        n_eval_episodes=n_eval_episodes,
        eval_seed=eval_seed,
    )
    # The model first, then its record: a record always describes a complete model. SB3 adds
    # ".zip" only to a suffix-less path, so the temporary ".tmp" file is saved as named.
    write_atomic(model_path, model.save)
    write_json_atomic(record_path, asdict(record))
    return record

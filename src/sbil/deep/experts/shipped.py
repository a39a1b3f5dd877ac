"""The shipped PPO experts (RL Zoo hyperparameters, trained by ``python -m sbil.deep.zoo``
and shipped inside the package under ``sbil/deep/shipped_experts``).

Part of :mod:`sbil.deep.experts`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sbil.deep.envs import BUILTIN_ENVS, env_spec
from sbil.deep.experts.common import SHIPPED
from sbil.deep.experts.noise import ExpertNoise
from sbil.deep.experts.sb3 import ObsNormalization, SB3Policy, TrainedExpert, _require_sb3


def shipped_dir() -> Path:
    """The package folder of the shipped experts, ``sbil/deep/shipped_experts``."""
    return Path(str(resources.files("sbil.deep") / "shipped_experts"))


def _shipped_paths(env_id: str, folder: str | os.PathLike | None = None) -> tuple[Path, Path]:
    stem = Path(folder or shipped_dir()) / env_id / SHIPPED
    return stem.with_suffix(".zip"), stem.with_suffix(".json")


def shipped_record(env_id: str, folder: str | os.PathLike | None = None) -> dict:
    """The JSON record of ``env_id``'s shipped expert (see ``docs/experts.md``).

    Raises:
        ValueError: if none is shipped for ``env_id``, or its record has no evaluation yet.
    """
    _, record_path = _shipped_paths(env_id, folder)
    if not record_path.is_file():
        shipped = ", ".join(e.env_id for e in shipped_experts(folder)) or "none"
        raise ValueError(
            f"No shipped expert {SHIPPED!r} for {env_id!r} (shipped: {shipped}); make it with "
            f"`python -m sbil.deep.zoo --out {shipped_dir()} --env {env_id}`."
        )
    data = json.loads(record_path.read_text())
    if data.get("evaluation") is None:
        raise ValueError(
            f"The shipped expert for {env_id!r} is trained but not measured; run "
            f"`python -m sbil.deep.zoo --out {record_path.parent.parent} --env {env_id} "
            "--phase record`."
        )
    return data


@dataclass(frozen=True)
class ShippedExpert(TrainedExpert):
    """A PPO expert at RL Zoo's hyperparameters shipped with sbil (name ``"ppo-zoo"``).

    ``return_mean``/``return_std`` are the greedy (deterministic) policy's; the sampled ones
    (``get_expert(..., noise="sample", seed=noise_seed)``) are ``sampled_mean``/``sampled_std``,
    over the same episodes.

    Attributes:
        sampled_mean: mean return of the sampled policy.
        sampled_std: standard deviation (ddof 0) of those returns.
        noise_seed: the sampled policy's noise seed.
        model_sha256: sha256 of the model zip.
    """

    sampled_mean: float
    sampled_std: float
    noise_seed: int
    model_sha256: str

    @property
    def name(self) -> str:
        """The expert's name for :func:`get_expert`."""
        return SHIPPED

    @classmethod
    def from_record(cls, data: dict, model_path: str | os.PathLike) -> ShippedExpert:
        """From a shipped expert's JSON record (:func:`shipped_record`)."""
        evaluation = data["evaluation"]
        return cls(
            env_id=data["env_id"],
            algo=data["algo"],
            total_timesteps=int(data["training"]["total_timesteps"]),
            seed=int(data["training"]["seed"]),
            model_path=str(model_path),
            return_mean=float(evaluation["greedy"]["mean"]),
            return_std=float(evaluation["greedy"]["std"]),
            n_eval_episodes=int(evaluation["episodes"]),
            eval_seed=int(evaluation["eval_seed"]),
            sampled_mean=float(evaluation["sampled"]["mean"]),
            sampled_std=float(evaluation["sampled"]["std"]),
            noise_seed=int(evaluation["noise_seed"]),
            model_sha256=data["model_sha256"],
        )


def shipped_experts(folder: str | os.PathLike | None = None) -> list[ShippedExpert]:
    """The measured experts shipped in ``folder`` (default :func:`shipped_dir`), by task."""
    found = []
    for env_id in BUILTIN_ENVS:
        model_path, record_path = _shipped_paths(env_id, folder)
        if record_path.is_file() and model_path.is_file():
            data = json.loads(record_path.read_text())
            if data.get("evaluation") is not None:
                found.append(ShippedExpert.from_record(data, model_path))
    return found


def load_ppo_expert(
    model_path: str | os.PathLike,
    env_id: str,
    *,
    normalize: ObsNormalization | None = None,
    sample: bool = False,
    seed: int = 0,
) -> SB3Policy:
    """A saved SB3 PPO model as an :class:`SB3Policy` on the CPU (with its normalisation)."""
    sb3 = _require_sb3()
    model = sb3.PPO.load(model_path, device="cpu")
    obs_dim = env_spec(env_id).obs_dim
    return SB3Policy(model, obs_dim, sample=sample, seed=seed, normalize=normalize)


def _shipped_expert(env_id: str, noise: ExpertNoise, seed: int) -> SB3Policy:
    data = shipped_record(env_id)
    model_path, _ = _shipped_paths(env_id)
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if digest != data["model_sha256"]:
        raise ValueError(
            f"The shipped expert {model_path} does not match its record (sha256 {digest}, "
            f"recorded {data['model_sha256']}); reinstall sbil or rerun `python -m "
            f"sbil.deep.zoo --out {shipped_dir()} --env {env_id}`."
        )
    return load_ppo_expert(
        model_path,
        env_id,
        normalize=ObsNormalization.from_record(data["obs_normalization"]),
        sample=noise.kind == "sample",
        seed=seed,
    )

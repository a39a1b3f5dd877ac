"""Experts that need no download: scripted controllers, and optional locally trained SB3 agents.

Every expert is a batched :class:`~sbil.deep.envs.Policy`: float32 observations ``obs[n, d]``
in, int64 actions ``a[n]`` out, deterministic. :func:`get_expert` is the one way to get one:

    >>> import numpy as np
    >>> from sbil.deep.experts import get_expert
    >>> expert = get_expert("CartPole-v1")
    >>> expert(np.zeros((2, 4), dtype=np.float32))
    array([0, 0])

Scripted experts (name ``"scripted"``), one per built-in task; their measured returns are in
``docs/experts.md``:

* CartPole-v1: linear state feedback, push right iff ``0.1 x + 0.5 x' + theta + theta' > 0``.
* Acrobot-v1: energy pumping, apply torque in the direction of the second joint's velocity.
* MountainCar-v0: push in the direction of the velocity; at rest, push towards the valley floor.
* LunarLander-v3: Gymnasium's own heuristic ``gymnasium.envs.box2d.lunar_lander.heuristic``.

Shipped experts (name ``"ppo-zoo"``) are PPO agents trained at RL Zoo's tuned hyperparameters
by ``python -m sbil.deep.zoo`` and shipped inside the package (``sbil/deep/shipped_experts``):
a fresh clone has them without training anything. :func:`shipped_experts` lists their records
(the command, versions, seed, and the greedy and sampled returns of 100 seeded episodes).

Trained experts (names ``"sb3-ppo"`` and ``"sb3-dqn"``) are stable-baselines3 agents trained
on this machine by :func:`train_sb3_expert` (``sbil expert train``) and cached under
:func:`experts_dir`. Both kinds need stable-baselines3, the optional extra
``pip install 'sbil[experts]'``.

Stochastic experts (:class:`ExpertNoise`, ``get_expert(..., noise=..., seed=...)``): the EDM
paper recorded a stochastic PPO expert, so an expert can also act

* ``"epsilon:E"`` (any expert): with probability ``E`` a uniformly random action (which may
  be the expert's own), else the expert's action;
* ``"sample"`` (SB3 experts): an action drawn from the trained policy's own distribution, as
  stable-baselines3's ``predict(deterministic=False)`` does (PPO: its categorical policy; DQN:
  epsilon-greedy with its final exploration rate).

Their randomness is seeded and *stateless*: the random numbers for a state are a hash of the
seed and the state's float32 bits, so the action in a state depends only on the seed and that
state. The noisy expert is still a batched :class:`~sbil.deep.envs.Policy` (row ``i`` depends
only on row ``i``), the same seed records the same episodes whatever the batching, and since
states of a continuous task essentially never repeat, the actions are as random as fresh draws.

The package: :mod:`~sbil.deep.experts.scripted`, :mod:`~sbil.deep.experts.noise`,
:mod:`~sbil.deep.experts.sb3` and :mod:`~sbil.deep.experts.shipped`, one kind of expert each;
this module lists them all and gets one (:func:`get_expert`).
"""

from __future__ import annotations

import json
import os

from sbil.deep.envs import BUILTIN_ENVS, Policy, env_spec
from sbil.deep.experts.common import SB3_ALGOS, SB3_INSTALL, SCRIPTED, SHIPPED
from sbil.deep.experts.noise import (
    NOISE_KINDS,
    EpsilonGreedyExpert,
    ExpertNoise,
    state_uniforms,
    with_noise,
)
from sbil.deep.experts.sb3 import (
    ObsNormalization,
    SB3Policy,
    TrainedExpert,
    _require_sb3,
    _sb3_paths,
    experts_dir,
    train_sb3_expert,
)
from sbil.deep.experts.scripted import (
    SCRIPTED_EXPERTS,
    SCRIPTED_RETURNS,
    SCRIPTED_RETURNS_EPISODES,
    acrobot_expert,
    cartpole_expert,
    lunar_lander_expert,
    mountain_car_expert,
)
from sbil.deep.experts.shipped import (
    ShippedExpert,
    _shipped_expert,
    load_ppo_expert,
    shipped_dir,
    shipped_experts,
    shipped_record,
)
from sbil.seeds import check_seed_range

__all__ = [
    "NOISE_KINDS",
    "SB3_ALGOS",
    "SB3_INSTALL",
    "SCRIPTED",
    "SCRIPTED_EXPERTS",
    "SCRIPTED_RETURNS",
    "SCRIPTED_RETURNS_EPISODES",
    "SHIPPED",
    "EpsilonGreedyExpert",
    "ExpertNoise",
    "ObsNormalization",
    "SB3Policy",
    "ShippedExpert",
    "TrainedExpert",
    "acrobot_expert",
    "cartpole_expert",
    "experts_dir",
    "get_expert",
    "list_experts",
    "load_ppo_expert",
    "lunar_lander_expert",
    "mountain_car_expert",
    "shipped_dir",
    "shipped_experts",
    "shipped_record",
    "state_uniforms",
    "train_sb3_expert",
    "trained_experts",
    "with_noise",
]


def trained_experts(
    root: str | os.PathLike | None = None, *, shipped: bool = True
) -> list[TrainedExpert]:
    """The trained experts: the shipped ones (:func:`shipped_experts`, unless ``shipped`` is
    False), then those cached under ``experts_dir(root)``, sorted by task and name."""
    found: list[TrainedExpert] = list(shipped_experts()) if shipped else []
    base = experts_dir(root)
    if base.is_dir():
        for record_path in sorted(base.glob("*/sb3-*.json")):
            try:
                found.append(TrainedExpert(**json.loads(record_path.read_text())))
            except (ValueError, TypeError):
                continue  # not one of ours, or from an incompatible version
    return found


def list_experts(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """All available ``(env_id, expert name)`` pairs: scripted ones, then the shipped ones,
    then those trained here and cached under ``experts_dir(root)``."""
    pairs = [(env_id, SCRIPTED) for env_id in BUILTIN_ENVS]
    pairs += [(t.env_id, t.name) for t in trained_experts(root)]
    return pairs


def get_expert(
    env_id: str,
    name: str = SCRIPTED,
    *,
    root: str | os.PathLike | None = None,
    noise: ExpertNoise | str | None = None,
    seed: int = 0,
) -> Policy:
    """Return the expert ``name`` for ``env_id`` as a batched :class:`Policy`.

    Args:
        env_id: a supported task, e.g. ``"CartPole-v1"``.
        name: ``"scripted"`` (built-in tasks), ``"ppo-zoo"`` (the shipped PPO experts, see
            :func:`shipped_experts`) or ``"sb3-ppo"`` / ``"sb3-dqn"`` (trained with
            :func:`train_sb3_expert` and cached under ``experts_dir(root)``).
        root: cache directory of trained experts.
        noise: None or ``"none"`` for the deterministic expert; ``"epsilon:E"`` or
            ``"sample"`` for a stochastic one (see :class:`ExpertNoise`).
        seed: the noise seed, ``0 .. 2**32 - 1`` (ignored without noise).

    Raises:
        UnsupportedEnvError: if ``env_id`` is not a supported task.
        ValueError: if there is no such expert for this task (saying which exist), or the
            noise is malformed or does not apply to this expert.
        ImportError: if a trained expert is asked for without stable-baselines3 installed.
    """
    spec = env_spec(env_id)
    noise = ExpertNoise.parse(noise)
    check_seed_range(seed, name="noise seed")
    if name == SCRIPTED:
        if env_id not in SCRIPTED_EXPERTS:
            raise ValueError(
                f"There is no scripted expert for {env_id!r}; scripted experts exist for "
                f"{', '.join(SCRIPTED_EXPERTS)}. Train one with `sbil expert train {env_id}`."
            )
        if noise.kind == "sample":
            raise ValueError(
                "Scripted experts have no action distribution to sample from; use epsilon:E "
                "noise, or a trained expert (ppo-zoo, sb3-ppo, sb3-dqn) with sample."
            )
        return with_noise(SCRIPTED_EXPERTS[env_id], spec.n_actions, noise, seed)
    if name == SHIPPED:
        return with_noise(_shipped_expert(env_id, noise, seed), spec.n_actions, noise, seed)
    if name.startswith("sb3-") and name[4:] in SB3_ALGOS:
        model_path, _ = _sb3_paths(env_id, name[4:], experts_dir(root))
        if not model_path.exists():
            raise ValueError(
                f"No trained expert {name!r} for {env_id!r} at {model_path}; train it with "
                f"`sbil expert train {env_id} --algo {name[4:]}`."
            )
        sb3 = _require_sb3()
        algo_class = {"ppo": sb3.PPO, "dqn": sb3.DQN}[name[4:]]
        model = algo_class.load(model_path, device="cpu")
        policy = SB3Policy(model, spec.obs_dim, sample=noise.kind == "sample", seed=seed)
        return with_noise(policy, spec.n_actions, noise, seed)
    available = [n for e, n in list_experts(root) if e == env_id] or ["none"]
    raise ValueError(
        f"Unknown expert {name!r} for {env_id!r}; available: {', '.join(available)} "
        f"(names are 'scripted', {SHIPPED!r} or 'sb3-<algo>' with algo in "
        f"{', '.join(SB3_ALGOS)})."
    )

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

Trained experts (names ``"sb3-ppo"`` and ``"sb3-dqn"``) are stable-baselines3 agents trained
on this machine by :func:`train_sb3_expert` (``sbil expert train``) and cached under
:func:`experts_dir`; stable-baselines3 is the optional extra ``pip install 'sbil[experts]'``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from sbil.deep.envs import BUILTIN_ENVS, Policy, env_spec
from sbil.files import write_atomic, write_json_atomic

SCRIPTED = "scripted"
SB3_ALGOS: tuple[str, ...] = ("ppo", "dqn")
SB3_INSTALL = "pip install 'sbil[experts]'  (or: pip install 'stable-baselines3>=2.3')"


def _as_batch(obs: np.ndarray, obs_dim: int, who: str) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise ValueError(
            f"The {who} expert takes observations of shape [n, {obs_dim}], got {obs.shape}; "
            "pass a batch (use obs[None] for a single observation)."
        )
    return obs


# --- scripted controllers ---------------------------------------------------------------------


def cartpole_expert(obs: np.ndarray) -> np.ndarray:
    """CartPole-v1: push right (1) iff ``0.1 x + 0.5 x_dot + theta + theta_dot > 0``.

    A linear state-feedback law (the sign pattern of an LQR controller for the linearised
    cart-pole): the pole angle and its rate dominate, the cart terms keep it near the centre.

    Args:
        obs: ``[n, 4]`` observations ``(x, x_dot, theta, theta_dot)``.

    Returns:
        ``[n]`` int64 actions (0 = push left, 1 = push right).
    """
    obs = _as_batch(obs, 4, "CartPole")
    gains = np.array([0.1, 0.5, 1.0, 1.0], dtype=np.float32)
    return (obs @ gains > 0).astype(np.int64)


def acrobot_expert(obs: np.ndarray) -> np.ndarray:
    """Acrobot-v1: torque in the direction of the second joint's angular velocity.

    Pushing with the elbow's motion pumps energy into the swing until the tip clears the bar.

    Args:
        obs: ``[n, 6]`` observations ``(cos t1, sin t1, cos t2, sin t2, t1_dot, t2_dot)``.

    Returns:
        ``[n]`` int64 actions (0 = torque -1, 2 = torque +1; 1 = none is never used).
    """
    obs = _as_batch(obs, 6, "Acrobot")
    return np.where(obs[:, 5] > 0, 2, 0).astype(np.int64)


def mountain_car_expert(obs: np.ndarray) -> np.ndarray:
    """MountainCar-v0: accelerate in the direction of motion; at rest, towards the valley floor.

    Pushing with the velocity adds energy on every half swing. The valley floor is at
    ``x = -pi/6`` (the track is ``sin(3x)``); starting at rest, pushing downhill starts the swing.

    Args:
        obs: ``[n, 2]`` observations ``(position, velocity)``.

    Returns:
        ``[n]`` int64 actions (0 = push left, 2 = push right).
    """
    obs = _as_batch(obs, 2, "MountainCar")
    position, velocity = obs[:, 0], obs[:, 1]
    at_rest = np.where(position < -np.pi / 6, 2, 0)
    return np.where(velocity > 0, 2, np.where(velocity < 0, 0, at_rest)).astype(np.int64)


def lunar_lander_expert(obs: np.ndarray) -> np.ndarray:
    """LunarLander-v3: Gymnasium's heuristic lander, applied row by row.

    Args:
        obs: ``[n, 8]`` observations (position, velocity, angle, angular velocity, leg contacts).

    Returns:
        ``[n]`` int64 actions (0 noop, 1 left engine, 2 main engine, 3 right engine).
    """
    from gymnasium.envs.box2d.lunar_lander import heuristic

    obs = _as_batch(obs, 8, "LunarLander")
    # The heuristic reads only `env.unwrapped.continuous` from the environment.
    discrete_env = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))
    return np.array([heuristic(discrete_env, row) for row in obs], dtype=np.int64)


SCRIPTED_EXPERTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "CartPole-v1": cartpole_expert,
    "Acrobot-v1": acrobot_expert,
    "MountainCar-v0": mountain_car_expert,
    "LunarLander-v3": lunar_lander_expert,
}
assert set(SCRIPTED_EXPERTS) == set(BUILTIN_ENVS)


# --- trained (stable-baselines3) experts ------------------------------------------------------


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


class SB3Policy:
    """A saved stable-baselines3 model as a batched deterministic :class:`Policy`."""

    def __init__(self, model, obs_dim: int) -> None:
        self.model = model
        self.obs_dim = obs_dim

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Return the model's deterministic actions ``[n]`` for observations ``[n, obs_dim]``."""
        obs = _as_batch(obs, self.obs_dim, "stable-baselines3")
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(len(obs))


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
        ValueError: for an unknown ``algo``, a non-positive budget, or an existing expert
            without ``overwrite``.
    """
    from sbil.deep.evaluation import evaluate

    spec = env_spec(env_id)
    if algo not in SB3_ALGOS:
        raise ValueError(f"Unknown algorithm {algo!r}; choose one of {', '.join(SB3_ALGOS)}.")
    if total_timesteps < 1:
        raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}.")
    model_path, record_path = _sb3_paths(env_id, algo, experts_dir(root))
    if model_path.exists() and not overwrite:
        raise ValueError(
            f"A trained expert already exists at {model_path}; pass overwrite=True "
            "(--overwrite) to replace it."
        )
    sb3 = _require_sb3()
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


def trained_experts(root: str | os.PathLike | None = None) -> list[TrainedExpert]:
    """The trained experts cached under ``experts_dir(root)``, sorted by task and name."""
    found = []
    base = experts_dir(root)
    if base.is_dir():
        for record_path in sorted(base.glob("*/sb3-*.json")):
            try:
                found.append(TrainedExpert(**json.loads(record_path.read_text())))
            except (ValueError, TypeError):
                continue  # not one of ours, or from an incompatible version
    return found


def list_experts(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """All available ``(env_id, expert name)`` pairs: scripted ones, then cached trained ones."""
    pairs = [(env_id, SCRIPTED) for env_id in BUILTIN_ENVS]
    pairs += [(t.env_id, t.name) for t in trained_experts(root)]
    return pairs


def get_expert(
    env_id: str, name: str = SCRIPTED, *, root: str | os.PathLike | None = None
) -> Policy:
    """Return the expert ``name`` for ``env_id`` as a batched :class:`Policy`.

    Args:
        env_id: a supported task, e.g. ``"CartPole-v1"``.
        name: ``"scripted"`` (built-in tasks) or ``"sb3-ppo"`` / ``"sb3-dqn"`` (trained with
            :func:`train_sb3_expert` and cached under ``experts_dir(root)``).
        root: cache directory of trained experts.

    Raises:
        UnsupportedEnvError: if ``env_id`` is not a supported task.
        ValueError: if there is no such expert for this task (saying which exist).
        ImportError: if a trained expert is asked for without stable-baselines3 installed.
    """
    spec = env_spec(env_id)
    if name == SCRIPTED:
        if env_id not in SCRIPTED_EXPERTS:
            raise ValueError(
                f"There is no scripted expert for {env_id!r}; scripted experts exist for "
                f"{', '.join(SCRIPTED_EXPERTS)}. Train one with `sbil expert train {env_id}`."
            )
        return SCRIPTED_EXPERTS[env_id]
    if name.startswith("sb3-") and name[4:] in SB3_ALGOS:
        model_path, _ = _sb3_paths(env_id, name[4:], experts_dir(root))
        if not model_path.exists():
            raise ValueError(
                f"No trained expert {name!r} for {env_id!r} at {model_path}; train it with "
                f"`sbil expert train {env_id} --algo {name[4:]}`."
            )
        sb3 = _require_sb3()
        algo_class = {"ppo": sb3.PPO, "dqn": sb3.DQN}[name[4:]]
        return SB3Policy(algo_class.load(model_path, device="cpu"), spec.obs_dim)
    available = [n for e, n in list_experts(root) if e == env_id] or ["none"]
    raise ValueError(
        f"Unknown expert {name!r} for {env_id!r}; available: {', '.join(available)} "
        f"(names are 'scripted' or 'sb3-<algo>' with algo in {', '.join(SB3_ALGOS)})."
    )

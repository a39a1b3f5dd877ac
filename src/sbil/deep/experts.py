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
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from sbil.deep.envs import BUILTIN_ENVS, Policy, env_spec
from sbil.files import NotWritableError, check_writable_folder, write_atomic, write_json_atomic
from sbil.seeds import check_seed_range

SCRIPTED = "scripted"
SHIPPED = "ppo-zoo"
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

#: Measured returns of the scripted experts, ``(mean, std)`` over 100 episodes reset with seeds
#: 0..99 (``sbil expert eval ENV --episodes 100 --seed 0``; gymnasium 1.4.0), as docs/experts.md
#: reports them; ``sbil expert list`` shows them. tests/deep/test_experts.py re-measures them.
SCRIPTED_RETURNS: dict[str, tuple[float, float]] = {
    "CartPole-v1": (500.00, 0.00),
    "Acrobot-v1": (-84.35, 24.27),
    "MountainCar-v0": (-113.20, 25.68),
    "LunarLander-v3": (252.83, 78.47),
}
SCRIPTED_RETURNS_EPISODES = 100


# --- stochastic experts -----------------------------------------------------------------------

NOISE_KINDS: tuple[str, ...] = ("none", "epsilon", "sample")


@dataclass(frozen=True)
class ExpertNoise:
    """How a recorded expert departs from its deterministic actions.

    Attributes:
        kind: ``"none"`` (deterministic), ``"epsilon"`` (with probability ``epsilon`` a
            uniformly random action; any expert) or ``"sample"`` (draw from an SB3 expert's
            own action distribution, as ``predict(deterministic=False)``).
        epsilon: for ``"epsilon"``, the probability in ``(0, 1]``; None otherwise.
    """

    kind: str = "none"
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(
                f"Unknown expert noise {self.kind!r}; use none, epsilon:E (e.g. epsilon:0.1) "
                "or sample (SB3 experts)."
            )
        if self.kind == "epsilon":
            eps = self.epsilon
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
                raise ValueError(
                    f"epsilon must be a probability in (0, 1], got {eps!r}; use 'none' for the "
                    "deterministic expert."
                )
            object.__setattr__(self, "epsilon", float(eps))
        elif self.epsilon is not None:
            raise ValueError(f"Expert noise {self.kind!r} takes no epsilon.")

    @classmethod
    def parse(cls, text: str | ExpertNoise | None) -> ExpertNoise:
        """``"none"``, ``"epsilon:0.1"`` or ``"sample"`` (None is ``"none"``).

        Raises:
            ValueError: for anything else, saying what is accepted.
        """
        if isinstance(text, ExpertNoise):
            return text
        if text is None:
            return cls()
        kind, colon, value = str(text).strip().lower().partition(":")
        if kind not in NOISE_KINDS:
            return cls(kind)  # refused, saying what is accepted
        if kind == "epsilon":
            if not colon:
                raise ValueError("epsilon noise needs its probability, e.g. epsilon:0.1.")
            try:
                epsilon = float(value)
            except ValueError:
                raise ValueError(
                    f"epsilon must be a probability in (0, 1], got {value!r} in {text!r}."
                ) from None
            return cls("epsilon", epsilon)
        if colon:
            raise ValueError(f"Expert noise {kind!r} takes no value, got {text!r}.")
        return cls(kind)

    def __str__(self) -> str:
        return f"epsilon:{self.epsilon:g}" if self.kind == "epsilon" else self.kind

    @property
    def deterministic(self) -> bool:
        """Whether the expert acts deterministically (``kind == "none"``)."""
        return self.kind == "none"

    @property
    def tag(self) -> str:
        """A suffix for dataset ids: ``""``, ``"eps0_1"`` or ``"sampled"`` (Minari ids allow
        no dots)."""
        if self.kind == "epsilon":
            return "eps" + f"{self.epsilon:.6f}".rstrip("0").rstrip(".").replace(".", "_")
        return {"none": "", "sample": "sampled"}[self.kind]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic, no warnings for arrays)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def state_uniforms(obs: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """``[n]`` float64 numbers in ``[0, 1)``, a hash of ``(seed, stream, obs[i])`` for each row.

    The pseudo-randomness of the stochastic experts: the number for a row depends only on the
    seed, the stream and that row's float32 bits, never on the batch or on call order.

    Args:
        obs: ``[n, d]`` observations.
        seed: the noise seed, ``0 .. 2**32 - 1``.
        stream: a small integer telling apart the uses within one step (e.g. 0: explore or
            not, 1: which random action).
    """
    bits = np.ascontiguousarray(obs, dtype=np.float32).view(np.uint32).astype(np.uint64)
    h = _mix64(np.full(len(bits), (seed << 8) | stream, dtype=np.uint64) + _GOLDEN)
    for column in bits.T:
        h = _mix64(h + _GOLDEN + column)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


class EpsilonGreedyExpert:
    """An expert that takes a uniformly random action with probability ``epsilon``.

    Args:
        expert: the deterministic expert.
        n_actions: the task's number of actions.
        epsilon: probability of a random action, in ``(0, 1]``.
        seed: noise seed (see :func:`state_uniforms`).
    """

    def __init__(self, expert: Policy, n_actions: int, epsilon: float, seed: int) -> None:
        self.expert = expert
        self.n_actions = int(n_actions)
        self.epsilon = float(epsilon)
        self.seed = check_seed_range(seed, name="noise seed")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Return int64 actions ``[n]`` for observations ``[n, obs_dim]``."""
        actions = np.asarray(self.expert(obs), dtype=np.int64)
        explore = state_uniforms(obs, self.seed, 0) < self.epsilon
        random_actions = (state_uniforms(obs, self.seed, 1) * self.n_actions).astype(np.int64)
        return np.where(explore, random_actions, actions)


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


# --- shipped experts (RL Zoo PPO, trained by `python -m sbil.deep.zoo`) -----------------------


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


def with_noise(
    expert: Policy, n_actions: int, noise: ExpertNoise | str | None, seed: int = 0
) -> Policy:
    """``expert`` with ``"epsilon:E"`` noise added (or unchanged for ``"none"``).

    ``"sample"`` needs the expert's own action distribution: an :class:`SB3Policy` made with
    ``sample=True`` (``get_expert(..., noise="sample")``) is returned unchanged; any other
    expert is refused.

    Raises:
        ValueError: for ``"sample"`` with an expert that cannot sample.
    """
    noise = ExpertNoise.parse(noise)
    if noise.kind == "epsilon":
        return EpsilonGreedyExpert(expert, n_actions, noise.epsilon, seed)
    if noise.kind == "sample" and not getattr(expert, "sample", False):
        raise ValueError(
            "sample noise draws from a trained SB3 expert's own action distribution; this "
            "expert has none, so use epsilon:E noise."
        )
    return expert

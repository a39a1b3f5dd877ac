"""A trained learner as a policy object in stable-baselines3's convention: ``predict``.

:class:`Policy` wraps one :class:`~sbil.deep.learner.Learner` (one seed of a run) for code
outside sbil: ``predict(observation)`` takes one observation or a batch and returns
``(actions, None)``, as SB3's ``BaseAlgorithm.predict`` does, so it drops into a plain
Gymnasium loop. Called as ``policy(obs[n, obs_dim])`` it is also an sbil
:class:`~sbil.deep.envs.Policy` (greedy, batched), so :func:`sbil.deep.evaluation.evaluate`
plays it.

Two differences from SB3, both deliberate:

* ``deterministic`` defaults to True: sbil's learners are measured greedily
  (``argmax_a f(s)[a]``, ties to the lowest action), as every evaluation in sbil does.
* ``deterministic=False`` draws ``a ~ softmax(f(s))`` from an explicit generator (``rng=`` of
  the policy or of the call), never from global random state, so the same seed gives the same
  actions.

Example:
    >>> import gymnasium as gym
    >>> from sbil.deep.policy import Policy
    >>> policy = Policy.load("runs/bc", seed=0)  # doctest: +SKIP
    >>> env = gym.make("CartPole-v1")
    >>> obs, _ = env.reset(seed=0)
    >>> action, _ = policy.predict(obs)  # doctest: +SKIP
    >>> obs, reward, terminated, truncated, _ = env.step(action)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from sbil.deep.learner import Learner


class PolicyError(ValueError):
    """A policy that cannot be loaded as asked, or an observation it cannot act on."""


Generator = np.random.Generator | int


def _generator(rng: Generator | None) -> np.random.Generator | None:
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise PolicyError(
            f"rng must be a non-negative integer seed or a numpy Generator, got {rng!r}."
        )
    return np.random.default_rng(int(rng))


class Policy:
    """One trained learner as a policy: ``predict(observation) -> (actions, None)``.

    Attributes:
        learner: the wrapped :class:`~sbil.deep.learner.Learner`.
        rng: the generator ``predict(..., deterministic=False)`` draws from when the call
            gives none (None: such a call must pass ``rng``).
    """

    def __init__(self, learner: Learner, *, rng: Generator | None = None) -> None:
        """Wrap ``learner``; ``rng`` (a seed or a numpy Generator) seeds sampled actions."""
        if not isinstance(learner, Learner):
            raise PolicyError(f"Policy wraps a trained Learner, got {type(learner).__name__}.")
        self.learner = learner
        self.rng = _generator(rng)

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, seed: int | None = None, rng: Generator | None = None
    ) -> Policy:
        """Load one learner of a training run (``sbil train``'s folder) or one checkpoint.

        Args:
            path: a run folder (``config.json`` beside ``seed-<s>/`` checkpoints), one
                checkpoint folder, or its ``learner.json``.
            seed: which learner of the run; may be left out when the run has one learner.
                For a checkpoint folder it is checked against the learner's seed.
            rng: generator (or seed) for ``predict(..., deterministic=False)``.

        Raises:
            PolicyError: if ``path`` holds no learner, or not the one ``seed`` names.
            CheckpointError: if the checkpoint is damaged or incomplete.
        """
        from sbil.deep.checkpoint import load_learner

        folder = checkpoint_folder(path, seed)
        learner = load_learner(folder)
        if seed is not None and learner.seed != seed:
            raise PolicyError(
                f"The checkpoint {folder} holds the learner of seed {learner.seed}, not {seed}; "
                f"pass seed={learner.seed} or the run folder."
            )
        return cls(learner, rng=rng)

    # --- what it acts on -----------------------------------------------------------------------

    @property
    def env_id(self) -> str | None:
        """The task it was trained for, if recorded."""
        return self.learner.env_id

    @property
    def seed(self) -> int:
        """The learner's training seed."""
        return self.learner.seed

    @property
    def algo(self) -> str:
        """The algorithm that trained it (``bc``, ``edm``, ...)."""
        return self.learner.config.algo

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return self.learner.obs_dim

    @property
    def n_actions(self) -> int:
        """Number of discrete actions ``0 .. n_actions - 1``."""
        return self.learner.n_actions

    @property
    def observation_space(self):
        """A ``gymnasium.spaces.Box`` of shape ``[obs_dim]``: the task's when it is
        registered, else unbounded float32."""
        return observation_space(self.env_id, self.obs_dim)

    @property
    def action_space(self):
        """``gymnasium.spaces.Discrete(n_actions)``."""
        import gymnasium as gym

        return gym.spaces.Discrete(self.n_actions)

    def __repr__(self) -> str:
        return (
            f"Policy(algo={self.algo!r}, env_id={self.env_id!r}, seed={self.seed}, "
            f"obs_dim={self.obs_dim}, n_actions={self.n_actions})"
        )

    # --- acting --------------------------------------------------------------------------------

    def _batch(self, observation) -> tuple[np.ndarray, bool]:
        """``(obs[n, obs_dim], whether one observation was given)``."""
        try:
            obs = np.asarray(observation, dtype=np.float32)
        except (TypeError, ValueError):
            raise PolicyError(
                f"An observation must be numbers of shape [{self.obs_dim}] (or a batch "
                f"[n, {self.obs_dim}]), got {type(observation).__name__}."
            ) from None
        single = obs.ndim == 1
        if single:
            obs = obs[None]
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise PolicyError(
                f"This policy takes one observation of shape [{self.obs_dim}] or a batch "
                f"[n, {self.obs_dim}], got shape {list(np.shape(observation))}."
            )
        if not np.isfinite(obs).all():
            raise PolicyError("The observation contains NaN or infinite values.")
        return obs, single

    def logits(self, observation) -> np.ndarray:
        """Logits ``f(s)`` (float32), ``[n_actions]`` or ``[n, n_actions]`` like the input;
        ``pi(a|s) = softmax(f(s))[a]``."""
        obs, single = self._batch(observation)
        out = self.learner.logits(obs)
        return out[0] if single else out

    def action_probabilities(self, observation) -> np.ndarray:
        """``pi(a|s) = softmax(f(s))`` in float64, shaped like :meth:`logits`."""
        logits = self.logits(observation).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def predict(
        self,
        observation,
        state=None,
        episode_start=None,
        deterministic: bool = True,
        *,
        rng: Generator | None = None,
    ) -> tuple[np.ndarray, None]:
        """Actions for one observation or a batch, in stable-baselines3's convention.

        Args:
            observation: ``[obs_dim]`` (one) or ``[n, obs_dim]`` (a batch).
            state: SB3's recurrent state; these policies have none (must be None).
            episode_start: ignored (SB3's recurrent-policy argument).
            deterministic: True (default): ``argmax_a f(s)[a]``, ties to the lowest action;
                False: ``a ~ softmax(f(s))`` drawn from ``rng``.
            rng: seed or generator for this call's draws (default: the policy's ``rng``).

        Returns:
            ``(actions, None)``: int64 actions, shape ``[]`` for one observation and ``[n]``
            for a batch (as SB3's), and no recurrent state.

        Raises:
            PolicyError: for a malformed observation, or a sampled action without a generator.
        """
        del episode_start  # no recurrent state
        if state is not None:
            raise PolicyError("sbil policies have no recurrent state; pass state=None.")
        obs, single = self._batch(observation)
        if deterministic:
            actions = self.learner(obs)
        else:
            generator = self.rng if rng is None else _generator(rng)
            if generator is None:
                raise PolicyError(
                    "predict(deterministic=False) draws actions at random: give a seed or "
                    "numpy Generator, as Policy(..., rng=SEED), Policy.load(..., rng=SEED) or "
                    "predict(..., rng=SEED)."
                )
            actions = sample_actions(self.learner.logits(obs), generator)
        return (actions.squeeze(axis=0) if single else actions), None  # SB3's 0-d array

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions ``[n]`` int64 for ``obs[n, obs_dim]`` (sbil's batched protocol)."""
        return self.learner(obs)


def sample_actions(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw ``a[i] ~ softmax(logits[i])``: ``[n]`` int64 for ``logits[n, n_actions]``.

    Inverse-CDF sampling in float64 with one uniform draw per row, so row ``i`` uses the
    ``i``-th number of ``rng`` whatever the other rows are.
    """
    logits = np.asarray(logits, dtype=np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(logits))[:, None] * cumulative[:, -1:]
    actions = (cumulative <= u).sum(axis=1)
    return np.minimum(actions, logits.shape[1] - 1).astype(np.int64)


def checkpoint_folder(path: str | os.PathLike, seed: int | None = None) -> Path:
    """The checkpoint folder of learner ``seed`` at ``path`` (a run or a checkpoint folder).

    Raises:
        PolicyError: if ``path`` holds no learner, or the run has no (or several, and ``seed``
            is None) learners to choose from.
    """
    from sbil.deep.evaluation import checkpoint_folders

    try:
        folders = checkpoint_folders(path)
    except ValueError as error:
        raise PolicyError(str(error)) from None
    if None in folders:  # one checkpoint folder: its seed is checked once loaded
        return folders[None]
    seeds = ", ".join(map(str, folders))
    if seed is None:
        if len(folders) == 1:
            return next(iter(folders.values()))
        raise PolicyError(
            f"The run {path} holds learners of seeds {seeds}; pick one with seed=... "
            "(--seed on the command line)."
        )
    if seed not in folders:
        raise PolicyError(f"The run {path} has no learner of seed {seed}; it has seeds {seeds}.")
    return folders[seed]


@functools.lru_cache(maxsize=64)
def _registered_observation_space(env_id: str):
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except Exception:  # unregistered or needs a missing package: fall back to unbounded
        return None
    try:
        return env.observation_space
    finally:
        env.close()


def observation_space(env_id: str | None, obs_dim: int):
    """The observation space a policy acts on: the registered task's ``Box`` if its shape is
    ``[obs_dim]``, else an unbounded float32 ``Box`` of that shape."""
    import gymnasium as gym

    space = _registered_observation_space(env_id) if env_id else None
    if isinstance(space, gym.spaces.Box) and space.shape == (obs_dim,):
        return space
    return gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)


def space_to_dict(space) -> dict:
    """A JSON-ready description of a ``Box`` or ``Discrete`` space; infinite bounds are null
    (JSON has no infinity)."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):

        def bounds(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values.ravel().tolist()]

        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": bounds(space.low),
            "high": bounds(space.high),
        }
    raise PolicyError(f"sbil describes Box and Discrete spaces only, got {space}.")

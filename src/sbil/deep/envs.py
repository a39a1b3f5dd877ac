"""Which Gymnasium tasks sbil supports, and the policy interface shared by experts and learners.

sbil's deep learners classify actions from vector observations, so a task must have a
``Discrete`` action space (actions ``0 .. n_actions - 1``) and a one-dimensional ``Box``
observation space. :func:`env_spec` checks this once and returns the two sizes every other
module needs; anything else raises :class:`UnsupportedEnvError` saying what is supported.

Example:
    >>> from sbil.deep.envs import env_spec
    >>> env_spec("CartPole-v1")
    EnvSpec(env_id='CartPole-v1', obs_dim=4, n_actions=2, max_episode_steps=500)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np

#: Tasks with a scripted expert in :mod:`sbil.deep.experts`; any other task with discrete
#: actions and vector observations works too, given your own demonstrations.
BUILTIN_ENVS: tuple[str, ...] = ("CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0")

_SUPPORTED = (
    "sbil supports Gymnasium tasks with a Discrete action space (actions 0..n-1) and a "
    "one-dimensional Box observation space, such as " + ", ".join(BUILTIN_ENVS)
)


class UnsupportedEnvError(ValueError):
    """The environment id is unknown, or its spaces are not ones sbil's learners handle."""


class Policy(Protocol):
    """A batched, deterministic policy: the interface of experts and trained learners.

    Called with observations ``obs[n, obs_dim]`` (float32) it returns actions ``a[n]``
    (int64). Row ``i`` of the output depends only on row ``i`` of the input.
    """

    def __call__(self, obs: np.ndarray, /) -> np.ndarray:  # pragma: no cover - protocol
        """Return int64 actions ``[n]`` for float32 observations ``[n, obs_dim]``."""
        ...


@dataclass(frozen=True)
class EnvSpec:
    """The sizes of a supported task.

    Attributes:
        env_id: Gymnasium id, e.g. ``"CartPole-v1"``.
        obs_dim: length of the observation vector.
        n_actions: number of discrete actions; actions are ``0 .. n_actions - 1``.
        max_episode_steps: the task's time limit, or ``None`` if it has none.
    """

    env_id: str
    obs_dim: int
    n_actions: int
    max_episode_steps: int | None = None


def _unknown_env_message(env_id: str, error: Exception) -> str:
    return (
        f"Unknown Gymnasium environment {env_id!r} ({error}). "
        f"Built-in tasks are {', '.join(BUILTIN_ENVS)}; any registered id with discrete actions "
        "and vector observations also works."
    )


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> EnvSpec:
    """Return the :class:`EnvSpec` for these spaces, or raise if sbil cannot handle them.

    Args:
        env_id: name used in messages.
        observation_space: must be a one-dimensional ``gymnasium.spaces.Box``.
        action_space: must be a ``gymnasium.spaces.Discrete`` starting at 0.

    Raises:
        UnsupportedEnvError: naming every unsupported space and what is supported.
    """
    problems = []
    if not isinstance(action_space, gym.spaces.Discrete):
        kind = "continuous" if isinstance(action_space, gym.spaces.Box) else "non-Discrete"
        problems.append(f"its action space {action_space} is {kind}")
    elif int(action_space.start) != 0:
        problems.append(f"its Discrete actions start at {int(action_space.start)}, not 0")
    if isinstance(observation_space, gym.spaces.Discrete):
        problems.append(
            f"its observation space {observation_space} is finite (use sbil.tabular for such tasks)"
        )
    elif not isinstance(observation_space, gym.spaces.Box):
        problems.append(f"its observation space {observation_space} is not a Box of floats")
    elif len(observation_space.shape) != 1:
        kind = "image" if len(observation_space.shape) >= 2 else "scalar"
        problems.append(
            f"its observations are {kind}s of shape {observation_space.shape}, not vectors"
        )
    if problems:
        raise UnsupportedEnvError(
            f"{env_id!r} is not supported: {'; '.join(problems)}. {_SUPPORTED}."
        )
    return EnvSpec(
        env_id=env_id,
        obs_dim=int(observation_space.shape[0]),
        n_actions=int(action_space.n),
    )


@functools.lru_cache(maxsize=64)
def env_spec(env_id: str) -> EnvSpec:
    """Check that ``env_id`` is a supported task and return its sizes.

    Args:
        env_id: a registered Gymnasium id, e.g. ``"CartPole-v1"``.

    Returns:
        The task's :class:`EnvSpec`.

    Raises:
        UnsupportedEnvError: if the id is unknown (with Gymnasium's suggestion, if any) or the
            task has continuous actions or image observations.
    """
    if not isinstance(env_id, str) or not env_id:
        raise UnsupportedEnvError(
            f"An environment id must be a non-empty string like 'CartPole-v1', got {env_id!r}."
        )
    try:
        registered = gym.spec(env_id)
    except gym.error.Error as error:
        raise UnsupportedEnvError(_unknown_env_message(env_id, error)) from None
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as error:
        raise UnsupportedEnvError(
            f"{env_id!r} needs a package that is not installed: {error}"
        ) from None
    try:
        spec = check_spaces(env_id, env.observation_space, env.action_space)
    finally:
        env.close()
    return EnvSpec(
        env_id=spec.env_id,
        obs_dim=spec.obs_dim,
        n_actions=spec.n_actions,
        max_episode_steps=registered.max_episode_steps,
    )


def make_env(env_id: str) -> gym.Env:
    """Create one environment of a supported task (with its registered time limit).

    Raises:
        UnsupportedEnvError: as :func:`env_spec`.
    """
    env_spec(env_id)
    return gym.make(env_id)

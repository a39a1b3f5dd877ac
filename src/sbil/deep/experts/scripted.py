"""Scripted controllers, one per built-in task, and their measured returns.

Part of :mod:`sbil.deep.experts` (its module doc says what each controller does).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from sbil.deep.envs import BUILTIN_ENVS
from sbil.deep.experts.common import _as_batch


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

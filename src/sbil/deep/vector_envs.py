"""Gymnasium's classic-control tasks in numpy: many seeded episodes stepped as one array.

:func:`numpy_task` returns, for ``CartPole-v1``, ``Acrobot-v1`` and ``MountainCar-v0`` (and any
id registered with the same Gymnasium class and no constructor arguments, e.g. ``CartPole-v0``),
a :class:`NumpyTask`: its ``reset(seeds)`` starts one episode per seed and its
``step(state, actions)`` advances every episode at once. Both are ports of Gymnasium 1.x's
single environments (``gymnasium/envs/classic_control/*.py``; the lines are cited beside each
function) with the same float64/float32 arithmetic in the same order and the same random draws
(a generator from ``gymnasium.utils.seeding.np_random(seed)`` per episode, as
``Env.reset(seed=...)`` makes), so every observation, reward and termination is bit-identical
to ``gym.make(env_id)`` played episode by episode (``tests/deep/test_vector_envs.py`` checks
it). The time limit (Gymnasium's ``TimeLimit`` wrapper) is the caller's:
:mod:`sbil.deep.evaluation` truncates an episode after ``max_episode_steps`` steps as the
wrapper does.

Why not Gymnasium's own vector versions: ``gym.make_vec(..., vectorization_mode=
"vector_entry_point")`` exists only for CartPole (``CartPoleVectorEnv``), and it draws the
initial states of all sub-environments from one generator seeded once (``reset`` seeds
``self.np_random`` with one integer and draws ``size=(4, num_envs)``; autoreset draws from the
same stream), so episode ``i`` cannot start from ``reset(seed=seed + i)``. Its step arithmetic
is the single environment's; the port below is that arithmetic with per-episode seeding.

Two numerical details make the ports exact rather than close:

* Gymnasium applies ``np.cos``/``np.sin`` to numpy scalars and the ports to arrays; numpy runs
  the same loop for both (and ``math.cos``, used by MountainCar, agrees with it), which the
  test checks on each machine it runs on.
* ``x**2`` of a numpy float64 *scalar* (Acrobot's ``dtheta1**2``, ``dtheta2**2``, ``d2**2``)
  is the C library's ``pow``, which differs from ``x * x`` (and from numpy's vectorised
  power) in the last bit for about 1 value in 1,000; :func:`_scalar_square` calls that same
  ``pow`` per element.

Example:
    >>> from sbil.deep.vector_envs import numpy_task
    >>> task = numpy_task("CartPole-v1")
    >>> state, obs = task.reset([0, 1, 2])
    >>> state, obs, rewards, terminated = task.step(state, np.array([0, 1, 0]))
    >>> obs.shape, rewards.tolist(), terminated.tolist()
    ((3, 4), [1.0, 1.0, 1.0], [False, False, False])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat

import gymnasium as gym
import numpy as np
from gymnasium.utils.seeding import np_random

#: ``reset(seeds[m]) -> (state[c, m] float64, obs[m, obs_dim] float32)``.
ResetFn = Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]
#: ``step(state[c, m], actions[m]) -> (state, obs[m, obs_dim] float32, rewards[m] float64,
#: terminated[m] bool)``.
StepFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class NumpyTask:
    """A task's dynamics on arrays: ``m`` independent episodes, one column of ``state`` each.

    Attributes:
        entry_point: the Gymnasium class it ports (``module:Class``).
        obs_dim: observation size.
        reset: ``reset(seeds[m])`` starts episode ``j`` as ``env.reset(seed=seeds[j])`` would:
            ``(state[c, m] float64, obs[m, obs_dim] float32)``. The state is component-major
            so that each component is one contiguous array, as Gymnasium's scalars are.
        step: ``step(state, actions[m])`` takes one step of every episode:
            ``(state, obs, rewards[m] float64, terminated[m] bool)``; never a truncation (the
            time limit is the caller's).
    """

    entry_point: str
    obs_dim: int
    reset: ResetFn
    step: StepFn


def _draws(seeds: Sequence[int], draw: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    """``draw(rng)`` for each seed's generator, as ``Env.reset(seed=s)`` seeds it: ``[m, ...]``."""
    return np.stack([draw(np_random(int(s))[0]) for s in seeds])


def _observations(*components: np.ndarray) -> np.ndarray:
    """``[m, len(components)]`` float32 rows, as ``np.array([c0, c1, ...], dtype=np.float32)``."""
    return np.stack(components, axis=1).astype(np.float32)


# --- CartPole: gymnasium/envs/classic_control/cartpole.py, CartPoleEnv -----------------------
# Constants of CartPoleEnv.__init__ (lines 125-137), derived the same way.
_GRAVITY = 9.8
_MASSCART = 1.0
_MASSPOLE = 0.1
_TOTAL_MASS = _MASSPOLE + _MASSCART
_LENGTH = 0.5  # half the pole's length
_POLEMASS_LENGTH = _MASSPOLE * _LENGTH
_FORCE_MAG = 10.0
_TAU = 0.02
_THETA_THRESHOLD_RADIANS = 12 * 2 * math.pi / 360
_X_THRESHOLD = 2.4


def cartpole_reset(seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """CartPoleEnv.reset (lines 229-248): ``np_random.uniform(-0.05, 0.05, size=(4,))``."""
    state = _draws(seeds, lambda rng: rng.uniform(low=-0.05, high=0.05, size=(4,))).T.copy()
    return state, _observations(*state)


def cartpole_step(state: np.ndarray, actions: np.ndarray):
    """CartPoleEnv.step (lines 165-227), Euler integrator, reward 1 per step."""
    x, x_dot, theta, theta_dot = state
    force = np.where(actions == 1, _FORCE_MAG, -_FORCE_MAG)
    costheta = np.cos(theta)
    sintheta = np.sin(theta)
    temp = (force + _POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / _TOTAL_MASS
    thetaacc = (_GRAVITY * sintheta - costheta * temp) / (
        _LENGTH * (4.0 / 3.0 - _MASSPOLE * np.square(costheta) / _TOTAL_MASS)
    )
    xacc = temp - _POLEMASS_LENGTH * thetaacc * costheta / _TOTAL_MASS
    x = x + _TAU * x_dot
    x_dot = x_dot + _TAU * xacc
    theta = theta + _TAU * theta_dot
    theta_dot = theta_dot + _TAU * thetaacc
    state = np.stack((x, x_dot, theta, theta_dot))
    terminated = (
        (x < -_X_THRESHOLD)
        | (x > _X_THRESHOLD)
        | (theta < -_THETA_THRESHOLD_RADIANS)
        | (theta > _THETA_THRESHOLD_RADIANS)
    )
    # A terminal step still earns 1.0 (steps beyond it, which are never taken, earn 0).
    return state, _observations(*state), np.ones(len(actions)), terminated


# --- Acrobot: gymnasium/envs/classic_control/acrobot.py, AcrobotEnv ---------------------------
# Class constants (lines 161-181); "book" dynamics, no torque noise.
_DT = 0.2
_LINK_LENGTH_1 = 1.0
_LINK_MASS_1 = 1.0
_LINK_MASS_2 = 1.0
_LINK_COM_POS_1 = 0.5
_LINK_COM_POS_2 = 0.5
_LINK_MOI = 1.0
_MAX_VEL_1 = 4 * math.pi
_MAX_VEL_2 = 9 * math.pi
_AVAIL_TORQUE = np.array([-1.0, 0.0, +1])


def _scalar_square(x: np.ndarray) -> np.ndarray:
    """``x**2`` element by element as a numpy float64 scalar computes it: C ``pow(x, 2.0)``."""
    return np.fromiter(map(math.pow, x.tolist(), repeat(2.0)), np.float64, len(x))


def acrobot_reset(seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """AcrobotEnv.reset (lines 199-214): ``uniform(-0.1, 0.1, size=(4,)).astype(float32)``.

    The first observation is ``_get_ob`` of that float32 state, so its cosines and sines are
    float32 ones; the state then enters ``step`` as float64 (``np.append`` with the torque).
    """
    s = _draws(seeds, lambda rng: rng.uniform(low=-0.1, high=0.1, size=(4,))).astype(np.float32).T
    obs = _observations(np.cos(s[0]), np.sin(s[0]), np.cos(s[1]), np.sin(s[1]), s[2], s[3])
    return s.astype(np.float64), obs


def _acrobot_dsdt(s_augmented: np.ndarray) -> tuple[np.ndarray, ...]:
    """AcrobotEnv._dsdt (lines 258-293), book dynamics, on ``s_augmented[5, m]``."""
    m1 = _LINK_MASS_1
    m2 = _LINK_MASS_2
    l1 = _LINK_LENGTH_1
    lc1 = _LINK_COM_POS_1
    lc2 = _LINK_COM_POS_2
    I1 = _LINK_MOI
    I2 = _LINK_MOI
    g = 9.8
    a = s_augmented[-1]
    theta1, theta2, dtheta1, dtheta2 = s_augmented[:-1]
    pi = math.pi
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * np.cos(theta2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * np.cos(theta2)) + I2
    phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * _scalar_square(dtheta2) * np.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * np.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - pi / 2)
        + phi2
    )
    ddtheta2 = (
        a + d2 / d1 * phi1 - m2 * l1 * lc2 * _scalar_square(dtheta1) * np.sin(theta2) - phi2
    ) / (m2 * lc2**2 + I2 - _scalar_square(d2) / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return dtheta1, dtheta2, ddtheta1, ddtheta2, np.zeros_like(a)


def _acrobot_rk4(y0: np.ndarray) -> np.ndarray:
    """rk4(self._dsdt, s_augmented, [0, self.dt]) (lines 429-475): one step of ``y0[5, m]``."""
    dt = _DT - 0
    dt2 = dt / 2.0
    k1 = np.stack(_acrobot_dsdt(y0))
    k2 = np.stack(_acrobot_dsdt(y0 + dt2 * k1))
    k3 = np.stack(_acrobot_dsdt(y0 + dt2 * k2))
    k4 = np.stack(_acrobot_dsdt(y0 + dt * k3))
    return (y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))[:4]


def _wrap(x: np.ndarray, m: float, big_m: float) -> np.ndarray:
    """wrap (lines 389-407): shift by ``big_m - m`` until inside ``[m, big_m]``."""
    diff = big_m - m
    while (above := x > big_m).any():
        x = np.where(above, x - diff, x)
    while (below := x < m).any():
        x = np.where(below, x + diff, x)
    return x


def acrobot_step(state: np.ndarray, actions: np.ndarray):
    """AcrobotEnv.step (lines 216-244): RK4 over ``dt``, wrapped angles, bounded velocities,
    reward -1 until the tip is a link's length above the base (then 0)."""
    ns = _acrobot_rk4(np.concatenate([state, _AVAIL_TORQUE[actions][None]]))
    theta1 = _wrap(ns[0], -math.pi, math.pi)
    theta2 = _wrap(ns[1], -math.pi, math.pi)
    # bound (lines 410-426) is min(max(x, m), M).
    dtheta1 = np.minimum(np.maximum(ns[2], -_MAX_VEL_1), _MAX_VEL_1)
    dtheta2 = np.minimum(np.maximum(ns[3], -_MAX_VEL_2), _MAX_VEL_2)
    state = np.stack((theta1, theta2, dtheta1, dtheta2))
    terminated = -np.cos(theta1) - np.cos(theta2 + theta1) > 1.0  # _terminal, lines 253-256
    rewards = np.where(terminated, 0.0, -1.0)
    obs = _observations(  # _get_ob, lines 246-251
        np.cos(theta1), np.sin(theta1), np.cos(theta2), np.sin(theta2), dtheta1, dtheta2
    )
    return state, obs, rewards, terminated


# --- MountainCar: gymnasium/envs/classic_control/mountain_car.py, MountainCarEnv --------------
# Constants of MountainCarEnv.__init__ (lines 108-116), goal_velocity=0.
_MIN_POSITION = -1.2
_MAX_POSITION = 0.6
_MAX_SPEED = 0.07
_GOAL_POSITION = 0.5
_GOAL_VELOCITY = 0
_FORCE = 0.001
_MC_GRAVITY = 0.0025


def mountain_car_reset(seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """MountainCarEnv.reset (lines 156-170): position ``uniform(-0.6, -0.4)``, velocity 0."""
    position = _draws(seeds, lambda rng: np.float64(rng.uniform(low=-0.6, high=-0.4)))
    state = np.stack((position, np.zeros_like(position)))
    return state, _observations(*state)


def mountain_car_step(state: np.ndarray, actions: np.ndarray):
    """MountainCarEnv.step (lines 132-154): reward -1 per step until the goal is reached."""
    position, velocity = state
    velocity = velocity + ((actions - 1) * _FORCE + np.cos(3 * position) * (-_MC_GRAVITY))
    velocity = np.clip(velocity, -_MAX_SPEED, _MAX_SPEED)
    position = position + velocity
    position = np.clip(position, _MIN_POSITION, _MAX_POSITION)
    velocity = np.where((position == _MIN_POSITION) & (velocity < 0), 0.0, velocity)
    terminated = (position >= _GOAL_POSITION) & (velocity >= _GOAL_VELOCITY)
    state = np.stack((position, velocity))
    return state, _observations(*state), np.full(len(actions), -1.0), terminated


_TASKS = (
    NumpyTask(
        "gymnasium.envs.classic_control.cartpole:CartPoleEnv", 4, cartpole_reset, cartpole_step
    ),
    NumpyTask("gymnasium.envs.classic_control.acrobot:AcrobotEnv", 6, acrobot_reset, acrobot_step),
    NumpyTask(
        "gymnasium.envs.classic_control.mountain_car:MountainCarEnv",
        2,
        mountain_car_reset,
        mountain_car_step,
    ),
)


def numpy_task(env_id: str) -> NumpyTask | None:
    """The numpy port of ``env_id``, or None if there is none (then play Gymnasium's own).

    A port applies to an id registered with the class it ports and no constructor arguments
    (``CartPole-v1``, ``Acrobot-v1``, ``MountainCar-v0``, ``CartPole-v0``); an id registered
    with, say, ``sutton_barto_reward=True`` or ``goal_velocity=0.1`` has none.
    """
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return None
    if spec.kwargs or not isinstance(spec.entry_point, str):
        return None
    return next((t for t in _TASKS if t.entry_point == spec.entry_point), None)

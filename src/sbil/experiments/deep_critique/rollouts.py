"""Rollouts of the deep studies: a softmax policy's visitation and returns.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sbil.deep.data import Demonstrations, from_arrays
from sbil.deep.envs import env_spec
from sbil.deep.evaluation import run_episodes
from sbil.deep.networks import StackedMLP
from sbil.experiments.deep_critique.networks import _forward, _softmax


@dataclass(frozen=True)
class Rollouts:
    """One episode per environment of ``K`` stacked policies acting by softmax.

    Attributes:
        returns: ``[K, E]`` undiscounted returns (model ``k`` played episodes ``k, e``).
        observations: per model, ``[N_k, d]`` float32 states where actions were taken, in
            episode order.
        actions: per model, ``[N_k]`` int64 actions.
        lengths: ``[K, E]`` episode lengths.
    """

    returns: np.ndarray
    observations: tuple[np.ndarray, ...]
    actions: tuple[np.ndarray, ...]
    lengths: np.ndarray


def softmax_rollouts(
    net: StackedMLP,
    env_id: str,
    episodes_per_model: int,
    *,
    seed: int,
    record: bool = False,
) -> Rollouts:
    """Play ``episodes_per_model`` episodes with each of ``net``'s ``K`` models, acting by softmax.

    ``a ~ softmax(f_k(s))``: the stochastic policy a network of the learner's class represents
    (sbil's learners act greedily; the realisable expert and the learners compared with it act
    by softmax). All ``K * E`` episodes run in one vectorised environment (Gymnasium's
    ``vector_entry_point`` when the task has one, e.g. CartPole's numpy-vectorised
    ``CartPoleVectorEnv``, else ``SyncVectorEnv``), one episode per sub-environment, so long
    episodes are never under-counted. The environment is seeded once (``reset(seed=seed)``)
    and the actions come from ``numpy.random.default_rng(seed)``.

    Args:
        net: ``K`` stacked policies on raw observations.
        env_id: the task.
        episodes_per_model: episodes of each model.
        seed: seed of the environment and of the action draws.
        record: keep the states and actions.

    Returns:
        :class:`Rollouts`.
    """
    import gymnasium as gym

    spec = env_spec(env_id)
    k, e = net.n_models, int(episodes_per_model)
    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    envs = gym.make_vec(env_id, num_envs=k * e, vectorization_mode=mode)
    rng = np.random.default_rng(seed)
    returns = np.zeros(k * e)
    lengths = np.zeros(k * e, dtype=np.int64)
    active = np.ones(k * e, dtype=bool)
    obs_log, act_log, env_log = [], [], []
    try:
        obs, _ = envs.reset(seed=seed)
        while active.any():
            logits = _forward(net, np.asarray(obs, np.float32).reshape(k, e, spec.obs_dim))
            probs = _softmax(logits.astype(np.float64)).reshape(k * e, spec.n_actions)
            actions = (probs.cumsum(-1) < rng.random((k * e, 1))).sum(-1)
            actions = np.minimum(actions, spec.n_actions - 1).astype(np.int64)
            if record:
                obs_log.append(np.asarray(obs, np.float32)[active])
                act_log.append(actions[active])
                env_log.append(np.flatnonzero(active))
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns[active] += rewards[active]
            lengths[active] += 1
            active &= ~(terminated | truncated)
    finally:
        envs.close()
    observations: list[np.ndarray] = []
    acts: list[np.ndarray] = []
    if record:
        all_obs, all_act = np.concatenate(obs_log), np.concatenate(act_log)
        order = np.argsort(np.concatenate(env_log), kind="stable")  # episode order, in time
        all_obs, all_act = all_obs[order], all_act[order]
        bounds = np.concatenate([[0], np.cumsum(lengths.reshape(k, e).sum(1))])
        for m in range(k):
            observations.append(all_obs[bounds[m] : bounds[m + 1]])
            acts.append(all_act[bounds[m] : bounds[m + 1]])
    return Rollouts(
        returns=returns.reshape(k, e),
        observations=tuple(observations),
        actions=tuple(acts),
        lengths=lengths.reshape(k, e),
    )


def recorded_episodes(policy, env_id: str, n_episodes: int, *, seed: int) -> Demonstrations:
    """``n_episodes`` seeded episodes of a (greedy) policy as :class:`Demonstrations`.

    Uses :func:`sbil.deep.evaluation.run_episodes` (episode ``i`` reset with ``seed + i``);
    the final observation of each episode is dropped (no action is taken there).
    """
    returns, _, trajectories = run_episodes(policy, env_id, n_episodes, seed=seed, record=True)
    return from_arrays(
        [t.observations[:-1] for t in trajectories],
        [t.actions for t in trajectories],
        episode_returns=returns,
        env_id=env_id,
        n_actions=env_spec(env_id).n_actions,
    )


def _draw_rows(array: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``array`` without replacement (all rows, shuffled, if there are fewer)."""
    return array[rng.permutation(len(array))[: min(n, len(array))]]

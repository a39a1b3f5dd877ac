"""Benchmark: a sweep group's evaluation, before (SyncVectorEnv, learner by learner) and now.

A group of ``K`` learners (one per seed) each plays the same ``N`` seeded episodes. Three ways,
side by side in one run, all returning identical per-episode returns (checked):

* ``before``: what ``evaluate`` did until 2026-12: each learner in turn through
  ``gymnasium.vector.SyncVectorEnv`` of 16 ``gym.make`` envs (autoreset disabled, a finished
  sub-env reset with the next episode's seed); the code is kept below as :func:`_before`;
* ``alone``: :func:`sbil.deep.evaluation.evaluate` of each learner in turn (numpy ports of the
  classic-control tasks, all ``N`` episodes at once; Gymnasium's envs for other tasks);
* ``group``: :func:`sbil.deep.evaluation.evaluate_group`, all ``K x N`` episodes in lockstep
  (what ``sbil train``/``sbil sweep`` now run).

The learners are :class:`sbil.deep.learner.Learner` s with randomly initialised 64-64 MLPs
whose forward pass runs on every call (the per-call cost of a trained learner), but whose
actions are the scripted expert's, so the episodes are as long as a good learner's.

Run: ``python benchmarks/deep_evaluation.py [--learners 10] [--episodes 300]
[--tasks CartPole-v1 Acrobot-v1 MountainCar-v0 LunarLander-v3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone

import gymnasium as gym
import numpy as np


def _learner_policies(env_id: str, k: int) -> list:
    """``k`` policies: a random-weight sbil Learner's forward pass, the expert's actions."""
    import torch

    from sbil.deep.config import LearnerConfig
    from sbil.deep.envs import env_spec
    from sbil.deep.experts import get_expert
    from sbil.deep.learner import Learner
    from sbil.deep.networks import StackedMLP

    spec = env_spec(env_id)
    expert = get_expert(env_id)
    policies = []
    for seed in range(k):
        net = StackedMLP.initialized(
            [torch.Generator().manual_seed(seed)],
            in_dim=spec.obs_dim,
            hidden_sizes=(64, 64),
            out_dim=spec.n_actions,
        )
        learner = Learner(
            config=LearnerConfig(algo="bc"),
            seed=seed,
            obs_dim=spec.obs_dim,
            n_actions=spec.n_actions,
            obs_mean=np.zeros(spec.obs_dim),
            obs_std=np.ones(spec.obs_dim),
            policy_state=net.state_dict(),
        )

        def policy(obs, learner=learner):
            learner(obs)  # the cost of a learner's call
            return expert(obs)

        policies.append(policy)
    return policies


def _before(policy, env_id: str, n_episodes: int, seed: int, n_envs: int = 16) -> np.ndarray:
    """The returns of ``evaluate``'s former vectorised path (SyncVectorEnv, autoreset off)."""
    n_envs = min(n_envs, n_episodes)
    returns = np.zeros(n_episodes)
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id)] * n_envs, autoreset_mode=gym.vector.AutoresetMode.DISABLED
    )
    episode_of = np.arange(n_envs)
    next_episode, done_count = n_envs, 0
    obs, _ = envs.reset(seed=[seed + j for j in range(n_envs)])
    while done_count < n_episodes:
        actions = np.asarray(policy(np.asarray(obs, dtype=np.float32)), dtype=np.int64)
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        active = episode_of >= 0
        returns[episode_of[active]] += rewards[active]
        finished = terminated | truncated
        reset_seeds: list[int | None] = [None] * n_envs
        for j in np.flatnonzero(finished & active):
            done_count += 1
            if next_episode < n_episodes:
                episode_of[j], reset_seeds[j] = next_episode, seed + next_episode
                next_episode += 1
            else:
                episode_of[j] = -1
        if finished.any() and done_count < n_episodes:
            obs, _ = envs.reset(seed=reset_seeds, options={"reset_mask": finished})
    envs.close()
    return returns


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _each_before(policies, env_id, n):
    return [_before(p, env_id, n, 0) for p in policies]


def _each_alone(policies, env_id, n):
    from sbil.deep.evaluation import evaluate

    return [evaluate(p, env_id, n, 0).returns for p in policies]


def _group(policies, env_id, n):
    from sbil.deep.evaluation import evaluate_group

    return evaluate_group(policies, env_id, n, 0)


def main() -> None:
    """Time the three ways for each task and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"],
    )
    parser.add_argument(
        "--lunar-episodes", type=int, default=30, help="episodes per learner on LunarLander"
    )
    args = parser.parse_args()

    import torch

    machine = platform.processor() or platform.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine}, {os.cpu_count()} CPUs, "
        f"load average {load}; gymnasium {gym.__version__}, torch {torch.__version__}\n"
    )
    print(
        "| task | learners x episodes | steps | before (s) | alone (s) | group (s) "
        "| before / group | alone / group |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for env_id in args.tasks:
        n = args.lunar_episodes if env_id.startswith("LunarLander") else args.episodes
        policies = _learner_policies(env_id, args.learners)
        before_s, before = _timed(_each_before, policies, env_id, n)
        alone_s, alone = _timed(_each_alone, policies, env_id, n)
        group_s, group = _timed(_group, policies, env_id, n)
        for b, a, g in zip(before, alone, group, strict=True):
            assert np.array_equal(b, a) and np.array_equal(b, g.returns), env_id
        steps = sum(int(g.lengths.sum()) for g in group)
        print(
            f"| {env_id} | {args.learners} x {n} | {steps:,} | {before_s:.2f} | {alone_s:.2f} "
            f"| {group_s:.2f} | {before_s / group_s:.1f} | {alone_s / group_s:.1f} |"
        )


if __name__ == "__main__":
    main()

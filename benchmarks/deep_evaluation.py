"""Benchmark: vectorised evaluation vs a one-episode-at-a-time loop on CartPole-v1.

Both paths are :func:`sbil.deep.evaluation.evaluate` (``vectorize=True`` with ``n_envs``
sub-environments, and ``vectorize=False``), play the same seeded episodes and return identical
returns (checked). Two policies:

* ``scripted``: the scripted CartPole expert (a 4-element dot product per call; the
  environment dominates the cost);
* ``scripted+mlp``: the same actions, but each call also runs a 4-64-64-2 torch MLP forward
  pass on the batch, the per-call cost of a trained learner. Episodes stay 500 steps long.

Run: ``python benchmarks/deep_evaluation.py [--episodes 300] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import datetime, timezone

import numpy as np


def _mlp_policy(expert):
    import torch

    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU()
    )
    net.append(torch.nn.Linear(64, 2))

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            net(torch.as_tensor(obs))  # the cost of a learner's forward pass
        return expert(obs)

    return policy


def _time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main() -> None:
    """Time both evaluation paths and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()

    from sbil.deep.evaluation import evaluate
    from sbil.deep.experts import get_expert

    expert = get_expert("CartPole-v1")
    policies = {"scripted": expert, "scripted+mlp": _mlp_policy(expert)}
    machine = platform.processor() or platform.machine()
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine}")
    print(f"# CartPole-v1, {args.episodes} episodes, median of {args.repeats} runs\n")
    print("| policy | evaluation | seconds | steps/s | speed-up vs loop |")
    print("|---|---|---:|---:|---:|")
    for name, policy in policies.items():
        loop_s, loop = _time(
            lambda p=policy: evaluate(p, "CartPole-v1", args.episodes, 0, vectorize=False),
            args.repeats,
        )
        steps = int(loop.lengths.sum())
        print(f"| {name} | loop (1 env) | {loop_s:.2f} | {steps / loop_s:,.0f} | 1.00 |")
        for n_envs in args.n_envs:
            vec_s, vec = _time(
                lambda p=policy, n=n_envs: evaluate(p, "CartPole-v1", args.episodes, 0, n_envs=n),
                args.repeats,
            )
            assert np.array_equal(vec.returns, loop.returns), "vector and loop returns differ"
            print(
                f"| {name} | vector ({n_envs} envs) | {vec_s:.2f} | {steps / vec_s:,.0f} "
                f"| {loop_s / vec_s:.2f} |"
            )


if __name__ == "__main__":
    main()

"""BC update throughput: updates per second at batch 32 on CartPole expert data, one process.

Times :func:`sbil.deep.learners.train` with ``algo="bc"`` (MLP 64-64 ELU, Adam 1e-3, batch 32)
on 10 trajectories of the scripted CartPole-v1 expert (5,000 pairs), median of interleaved
repeats, for each thread count asked for. Goal: at least 2,000 updates per second on the CPU.

Run: ``python benchmarks/deep_bc_update.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, train


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from deep_edm_update import expert_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=2000, help="updates per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    observations, actions = expert_pairs()
    demos = from_arrays(observations, actions)
    config = LearnerConfig(algo="bc", n_updates=args.updates)
    train(demos, config, seeds=[0], n_actions=2)  # warm up
    rates: dict[int, list[float]] = {n: [] for n in args.threads}
    for _ in range(args.repeats):
        for n in args.threads:
            start = time.perf_counter()
            train(demos, config, seeds=[0], n_actions=2, num_threads=n)
            rates[n].append(args.updates / (time.perf_counter() - start))
    print(
        f"{datetime.date.today()} torch {torch.__version__}; BC, batch 32, "
        f"{len(observations)} pairs, median of {args.repeats} repeats of {args.updates} updates"
    )
    for n, values in rates.items():
        print(
            f"threads {n}: {statistics.median(values):8.0f} updates/s "
            f"(min {min(values):.0f}, max {max(values):.0f})"
        )


if __name__ == "__main__":
    main()

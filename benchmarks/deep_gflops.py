"""Achieved GFLOP/s of a stacked learner update, beside this CPU's batched-matmul rate.

For each learner (default: EDM and BC) and each stack size K (default 10, 20 and 50, the
sweep's seeds, a doubled stack and stacking five k values of one task):

* **FLOPs per update**: the matrix-multiply FLOPs that ``torch.utils.flop_counter`` counts
  (``mm``, ``bmm``, ``addmm``, ``baddbmm``; 2 per multiply-add; element-wise work is not
  counted, as is usual) over ``2N`` updates minus those over ``N`` updates, divided by ``N``,
  so training set-up is not counted.
* **Achieved**: those FLOPs over the measured time of one update of
  ``sbil.deep.learners.train`` (median of the repeats, set-up subtracted the same way).
* **Batched matmul at the same shapes**: every matrix multiply of one update, recorded with its
  shapes by a dispatch mode, replayed back to back (``torch.baddbmm``/``bmm``/``mm`` on fresh
  tensors of those shapes, nothing else), timed, median of the repeats: the rate an update
  would reach if it were nothing but its matmuls at these shapes. The ratio of the two says how
  much of an update is overhead (small element-wise kernels, Python, dispatch).
* **Large matmul**: one ``[K, 512, 512] x [K, 512, 512]`` batched matmul, for the CPU's rate
  at shapes that amortise everything.

Data: 10 trajectories of the scripted CartPole-v1 expert (5,000 pairs), batch 32, the
published settings (MLP 64-64 ELU; EDM: SGLD 20 steps). One thread by default, as ``train``.

Run: ``python benchmarks/deep_gflops.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, train

_MATMULS = {
    torch.ops.aten.mm.default: "mm",
    torch.ops.aten.bmm.default: "bmm",
    torch.ops.aten.addmm.default: "addmm",
    torch.ops.aten.baddbmm.default: "baddbmm",
}


class _RecordMatmuls(TorchDispatchMode):
    """Records (op name, operand shapes) of every matrix multiply dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[tuple[int, ...], ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = _MATMULS.get(func)
        if name is not None:
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            self.calls.append((name, shapes))
        return func(*args, **(kwargs or {}))


def _flops(run: Callable[[int], Any], n: int) -> float:
    """Matmul FLOPs per update: counted over 2n updates minus n updates, over n."""
    counts = []
    for updates in (n, 2 * n):
        counter = FlopCounterMode(display=False)
        with counter:
            run(updates)
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / n


def _matmuls_of_one_update(run: Callable[[int], Any], n: int) -> list[tuple[str, tuple]]:
    """The matrix multiplies of one update: those of 2n updates less those of n, over n."""
    counts = []
    for updates in (n, 2 * n):
        mode = _RecordMatmuls()
        with mode:
            run(updates)
        counts.append(Counter(mode.calls))
    out = []
    for call, count in (counts[1] - counts[0]).items():
        out += [call] * round(count / n)
    return out


def _replay(calls: list[tuple[str, tuple]], repeats: int, inner: int) -> float:
    """Median seconds for one pass over ``calls`` (fresh random operands of the same shapes)."""
    operands = [tuple(torch.randn(s) for s in shapes) for _, shapes in calls]
    ops = {
        "mm": torch.mm,
        "bmm": torch.bmm,
        "addmm": torch.addmm,
        "baddbmm": torch.baddbmm,
    }
    fns = [(ops[name], args) for (name, _), args in zip(calls, operands, strict=True)]

    def one_pass() -> None:
        for fn, args in fns:
            fn(*args)

    one_pass()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            one_pass()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def _large_matmul_rate(k: int, repeats: int) -> float:
    a, b = torch.randn(k, 512, 512), torch.randn(k, 512, 512)
    torch.bmm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.bmm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * k * 512**3 / statistics.median(times) / 1e9


def _expert_pairs():
    import numpy as np

    from sbil.deep.evaluation import run_episodes
    from sbil.deep.experts import get_expert

    _, _, trajectories = run_episodes(
        get_expert("CartPole-v1"), "CartPole-v1", 10, seed=0, record=True
    )
    observations = np.concatenate([t.observations[:-1] for t in trajectories])
    actions = np.concatenate([t.actions for t in trajectories])
    return from_arrays(observations, actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="edm,bc")
    parser.add_argument("--ks", default="10,20,50", help="stack sizes K")
    parser.add_argument("--updates", type=int, default=100, help="N: updates per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demos = _expert_pairs()
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f}; N = {args.updates} updates, "
        f"median of {args.repeats} repeats"
    )
    header = (
        f"{'learner':<8}{'K':>4}{'MFLOP/update':>14}{'ms/update':>11}{'GFLOP/s':>9}"
        f"{'matmuls only: ms':>18}{'GFLOP/s':>9}{'achieved/matmul':>17}{'large bmm GFLOP/s':>19}"
    )
    print(header)
    for algo in args.algos.split(","):
        for k in (int(x) for x in args.ks.split(",")):

            def run(n: int, algo: str = algo, k: int = k) -> Any:
                config = LearnerConfig(algo=algo, n_updates=n)
                return train(demos, config, seeds=range(k), n_actions=2, num_threads=args.threads)

            flops = _flops(run, 5)
            calls = _matmuls_of_one_update(run, 5)
            run(args.updates)  # warm up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run(args.updates)
                middle = time.perf_counter()
                run(2 * args.updates)
                end = time.perf_counter()
                times.append(((end - middle) - (middle - start)) / args.updates)
            per_update = statistics.median(times)
            matmul_time = _replay(calls, args.repeats, 50)
            large = _large_matmul_rate(k, args.repeats)
            achieved = flops / per_update / 1e9
            matmul_rate = flops / matmul_time / 1e9
            print(
                f"{algo:<8}{k:>4}{flops / 1e6:>14.2f}{per_update * 1e3:>11.3f}{achieved:>9.1f}"
                f"{matmul_time * 1e3:>18.3f}{matmul_rate:>9.1f}{achieved / matmul_rate:>16.2f}x"
                f"{large:>19.1f}"
            )


if __name__ == "__main__":
    main()

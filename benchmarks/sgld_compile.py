"""Does ``torch.compile`` of EDM's SGLD chain pay off within a sweep? (issue 14)

One EDM stack of ``K`` learners (a sweep unit's shape: 10 seeds x 5 k = 50) trains on the
scripted CartPole-v1 expert's pairs twice per repeat, side by side in one process:
``train(..., compile_sgld=False)`` (the default, eager) and ``compile_sgld=True``. The first
compiled training pays the compilation (inductor's cache is pointed at a fresh folder, so it is
a cold compile, as in a sweep worker on a fresh machine); later ones run warm. Reported: the
median seconds per update of each, the compile overhead (the cold run less a warm one), and the
number of updates after which compiling has paid for itself, beside the updates of one sweep
unit (10,000 in the ``edm-paper`` preset). Samples of the compiled chain equal the eager
chain's to float32 rounding (``tests/deep/test_sgld.py``), not bit for bit, so compiling is an
opt-in and changes a sweep's numbers within that rounding.

Run: ``python benchmarks/sgld_compile.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="sbil-inductor-"))

import torch

sys.path.insert(0, str(Path(__file__).parent))
from deep_edm_update import expert_pairs
from sbil.deep.data import from_arrays
from sbil.deep.learners import LearnerConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=500, help="updates per timed training")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=50, help="K, learners in the stack")
    parser.add_argument("--unit-updates", type=int, default=10_000)
    args = parser.parse_args()
    observations, actions = expert_pairs()
    demos = from_arrays(observations, actions)
    config = LearnerConfig(algo="edm", n_updates=args.updates)

    def timed(compiled: bool) -> float:
        start = time.perf_counter()
        train(demos, config, seeds=range(args.seeds), n_actions=2, compile_sgld=compiled)
        return time.perf_counter() - start

    eager_first = timed(False)  # warm-up of the eager path (allocator, imports)
    cold = timed(True)
    from sbil.deep import sgld

    if "unavailable" in sgld._COMPILED:
        print(f"torch.compile unavailable: {sgld._COMPILED['unavailable']}")
        return
    eager, warm = [], []
    for _ in range(args.repeats):
        eager.append(timed(False))
        warm.append(timed(True))
    e, w = statistics.median(eager), statistics.median(warm)
    per_e, per_w = e / args.updates, w / args.updates
    overhead = cold - w
    print(
        f"{datetime.date.today()} torch {torch.__version__} "
        f"{platform.processor() or platform.machine()}, 1 thread; K = {args.seeds}, "
        f"{args.updates} updates per training, median of {args.repeats} repeats "
        f"(eager warm-up {eager_first:.1f} s)"
    )
    print(f"eager     {per_e * 1e3:8.2f} ms/update")
    print(f"compiled  {per_w * 1e3:8.2f} ms/update ({per_e / per_w:.2f}x per update)")
    print(f"compile overhead (cold run {cold:.1f} s less a warm one): {overhead:.1f} s")
    if per_w < per_e:
        print(f"pays for itself after {overhead / (per_e - per_w):,.0f} updates")
    else:
        print("never pays for itself: the compiled update is not faster")
    n = args.unit_updates
    unit_eager, unit_compiled = per_e * n, per_w * n + overhead
    print(
        f"one unit of {n:,} updates: eager {unit_eager:.0f} s, compiled {unit_compiled:.0f} s "
        f"including the compile ({unit_eager / unit_compiled:.2f}x)"
    )


if __name__ == "__main__":
    main()

"""Update cost of all seven learners at batch 32, batched-seed throughput, and sweep time shares.

Three measurements, each printed as a Markdown table:

1. **Update cost.** Seconds per update of one learner (``K = 1``) of every algorithm
   (:data:`sbil.deep.config.ALGOS`) at ``batch_size = 32`` (the ``edm-paper`` preset's batch),
   side by side in one process, with the ratio to BC. Each learner is timed through
   :func:`sbil.deep.training.train` (minibatch draws, forward, loss, backward, fused Adam and the
   loop's bookkeeping); the time of a one-update call is subtracted, so the one-off setup is
   not charged to the updates. Cases are interleaved over repeats; the median repeat is
   reported. Two problem sizes, synthetic
   data: CartPole-sized (4 observations, 2 actions) and LunarLander-sized (8 observations,
   4 actions).
2. **Batched seeds.** Learner-updates per second with ``K = 1`` and ``K = 20`` seeds stacked,
   and the speed-up ``throughput(K = 20) / throughput(K = 1)`` (issue 9 asks for >= 4x for each
   new learner).
3. **Share of a sweep's time** (``--sweep DIR``, no benchmark run): from a sweep folder's
   ``rows/*.json`` (``/work/notes/SWEEP_SCHEMA.md``), each learner's share of the summed
   worker-seconds (``train_seconds + eval_seconds``) and its mean per cell (one row = one seed
   of one env x algo x k; a stacked group's time is split evenly over its seeds).

The synthetic demonstrations (built with :func:`sbil.deep.data.from_arrays`, final
observations given so every step is a transition, every other episode terminated) are 10
episodes of 100 steps of a random walk with actions from a fixed linear rule: 1,000 pairs. The
numbers a learner computes do not change its cost; only the sizes do. No dataset, no network.

Run: ``python benchmarks/deep_learner_updates.py`` (about 4 minutes on a loaded 2-core
machine; ``--help`` for options) and ``python benchmarks/deep_learner_updates.py --sweep DIR``.
``--profile ALGO`` prints where one update's time goes at ``K = 1`` and ``K = 20``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from sbil.deep.config import ALGOS, TRANSITION_ALGOS, LearnerConfig
from sbil.deep.data import Demonstrations, from_arrays
from sbil.deep.training import train

#: (name, observation size, number of actions)
PROBLEMS: tuple[tuple[str, int, int], ...] = (
    ("CartPole-sized", 4, 2),
    ("LunarLander-sized", 8, 4),
)

#: Learners of the batched-seed table: the four of issue 9, with BC and EDM for reference.
BATCHED_ALGOS: tuple[str, ...] = ("bc", "edm", *TRANSITION_ALGOS)


def synthetic_demonstrations(
    obs_dim: int, n_actions: int, *, episodes: int = 10, steps: int = 100, seed: int = 0
) -> Demonstrations:
    """``episodes`` random-walk episodes of ``steps`` steps, with final observations, actions
    ``argmax(obs @ W)`` for a fixed random ``W`` and every other episode terminated."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(scale=0.1, size=(episodes, steps + 1, obs_dim)), axis=1)
    walk = walk.astype(np.float32)
    rule = rng.normal(size=(obs_dim, n_actions))
    observations = [w[:-1] for w in walk]
    actions = [np.argmax(o @ rule, axis=1) for o in observations]
    return from_arrays(
        observations,
        actions,
        n_actions=n_actions,
        final_observations=walk[:, -1],
        terminated=[e % 2 == 0 for e in range(episodes)],
    )


def train_seconds(
    demos: Demonstrations, algo: str, *, n_learners: int, updates: int, batch_size: int
) -> float:
    """Wall seconds of a ``train`` call with ``n_learners`` stacked seeds (1 torch thread)."""
    config = LearnerConfig(algo=algo, batch_size=batch_size, n_updates=updates)
    start = time.perf_counter()
    train(demos, config, seeds=range(n_learners), num_threads=1, stop_on_divergence=False)
    return time.perf_counter() - start


def seconds_per_update(
    demos: Demonstrations, algo: str, *, n_learners: int, updates: int, batch_size: int
) -> float:
    """Marginal wall seconds per update: ``(t(updates) - t(1)) / (updates - 1)``, so that the
    one-off setup of a ``train`` call (validation, initialisation, data to tensors: 10-130 ms)
    is not charged to the updates."""
    kwargs = {"n_learners": n_learners, "batch_size": batch_size}
    once = train_seconds(demos, algo, updates=1, **kwargs)
    return (train_seconds(demos, algo, updates=updates, **kwargs) - once) / (updates - 1)


def run_benchmark(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    k = args.seeds
    batched_updates = max(2, args.updates // args.batched_divisor)
    cases = [
        (problem, algo, n)
        for problem in PROBLEMS
        for algo in ALGOS
        for n in ((1, k) if algo in BATCHED_ALGOS else (1,))
    ]
    demos = {p: synthetic_demonstrations(p[1], p[2]) for p in PROBLEMS}

    def measure(case, updates_single, updates_batched):
        problem, algo, n = case
        updates = updates_single if n == 1 else updates_batched
        return seconds_per_update(
            demos[problem], algo, n_learners=n, updates=updates, batch_size=args.batch_size
        )

    for case in cases:  # warm up: imports, allocator, first-call dispatch
        measure(case, 20, 10)
    times: dict[tuple, list[float]] = defaultdict(list)
    started = time.perf_counter()
    for _ in range(args.repeats):
        for case in cases:
            times[case].append(measure(case, args.updates, batched_updates))
    elapsed = time.perf_counter() - started
    median = {case: statistics.median(v) for case, v in times.items()}

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread; "
        f"batch {args.batch_size}; median of {args.repeats} repeats of {args.updates} updates "
        f"(K = {k}: {batched_updates}); load average at the end {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; timed part took {elapsed:.0f} s"
    )
    print()
    print("Update cost, one learner (K = 1):")
    print()
    names = [p[0] for p in PROBLEMS]
    header = " | ".join(f"{n} ms / update | vs BC" for n in names)
    print(f"| learner | {header} |")
    print("|---|" + "---:|---:|" * len(PROBLEMS))
    for algo in ALGOS:
        cells = []
        for problem in PROBLEMS:
            ms = median[(problem, algo, 1)] * 1e3
            cells.append(f"{ms:.2f} | {ms / (median[(problem, 'bc', 1)] * 1e3):.2f}x")
        print(f"| {algo} | {' | '.join(cells)} |")
    print()
    print(f"Batched seeds: learner-updates per second, K = 1 against K = {k}:")
    print()
    print(f"| problem | learner | K = 1 | K = {k} | speed-up | >= 4x |")
    print("|---|---|---:|---:|---:|---|")
    for problem in PROBLEMS:
        for algo in BATCHED_ALGOS:
            single = 1 / median[(problem, algo, 1)]
            batched = k / median[(problem, algo, k)]
            ratio = batched / single
            print(
                f"| {problem[0]} | {algo} | {single:,.0f} | {batched:,.0f} | {ratio:.2f}x | "
                f"{'met' if ratio >= 4 else 'NOT met'} |"
            )
    print()
    spread = {
        f"{p[0]}/{algo}/K={n}": f"{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}"
        for (p, algo, n), v in times.items()
    }
    print("min-max ms per update over repeats:", spread)


def run_profile(args: argparse.Namespace) -> None:
    """Where the update time of ``args.profile`` goes at K = 1 and K = seeds (CartPole-sized):
    cProfile of 200 updates, functions by own time (torch kernels show as their Python entry
    points, the backward pass as ``run_backward``)."""
    import cProfile
    import pstats

    demos = synthetic_demonstrations(4, 2)
    kwargs = {"batch_size": args.batch_size, "updates": 200}
    for n in (1, args.seeds):
        train_seconds(demos, args.profile, n_learners=n, **{**kwargs, "updates": 20})
        profiler = cProfile.Profile()
        profiler.enable()
        seconds = train_seconds(demos, args.profile, n_learners=n, **kwargs)
        profiler.disable()
        print(f"\n{args.profile}, K = {n}: {seconds / 200 * 1e3:.2f} ms per update (profiled)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile_rows)


def _load_rows(rows_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(rows_dir.glob("*.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):  # rows are written atomically; be safe anyway
            print(f"skipped unreadable row {path.name}", file=sys.stderr)
    return rows


def run_sweep_shares(folder: Path) -> None:
    """Each learner's share of a sweep folder's summed worker-seconds (train + eval)."""
    rows_dir = folder / "rows"
    if not rows_dir.is_dir():
        raise SystemExit(f"{folder} is not a sweep folder: it has no rows/ folder of rows/*.json.")
    rows = _load_rows(rows_dir)
    if not rows:
        raise SystemExit(f"{rows_dir} holds no rows yet; run this again once cells have finished.")
    expected = None
    spec_path = folder / "sweep.json"
    if spec_path.is_file():
        spec = json.loads(spec_path.read_text()).get("spec", {})
        try:
            expected = len(spec["envs"]) * len(spec["ks"]) * len(spec["seeds"]) * len(spec["algos"])
            algos = list(spec["algos"])
        except (KeyError, TypeError):
            expected, algos = None, []
    else:
        algos = []
    algos += sorted({r["algo"] for r in rows} - set(algos))
    envs = sorted({r["env_id"] for r in rows})

    def seconds(row: dict, key: str) -> float:
        value = row.get(key)
        return float(value) if value is not None else 0.0

    per_algo: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        per_algo[row["algo"]].append(row)
    total = sum(seconds(r, "train_seconds") + seconds(r, "eval_seconds") for r in rows)
    failed = sum(r.get("status") != "done" for r in rows)
    print(
        f"{folder}: {len(rows)} rows"
        + (f" of {expected} in its spec" if expected else "")
        + f" ({failed} failed), {total:,.0f} worker-seconds of train + eval, "
        f"{sum(seconds(r, 'wall_seconds') for r in rows):,.0f} of wall (summed over rows); "
        f"read {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
    print()
    print(
        "| learner | rows | train (s) | eval (s) | share of train + eval | "
        "train s / cell | eval s / cell |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for algo in algos:
        group = per_algo.get(algo, [])
        if not group:
            print(f"| {algo} | 0 | | | | | |")
            continue
        tr = sum(seconds(r, "train_seconds") for r in group)
        ev = sum(seconds(r, "eval_seconds") for r in group)
        print(
            f"| {algo} | {len(group)} | {tr:,.0f} | {ev:,.0f} | {100 * (tr + ev) / total:.1f}% | "
            f"{tr / len(group):.2f} | {ev / len(group):.2f} |"
        )
    print()
    print("Mean train + eval seconds per cell (one seed), by task:")
    print()
    print(f"| learner | {' | '.join(envs)} |")
    print("|---|" + "---:|" * len(envs))
    for algo in algos:
        cells = []
        for env in envs:
            group = [r for r in per_algo.get(algo, []) if r["env_id"] == env]
            mean = (
                sum(seconds(r, "train_seconds") + seconds(r, "eval_seconds") for r in group)
                / len(group)
                if group
                else None
            )
            cells.append("" if mean is None else f"{mean:.2f} ({len(group)})")
        print(f"| {algo} | {' | '.join(cells)} |")
    print("\n(in brackets: rows averaged)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=1000, help="updates per timed K = 1 run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=20, help="K of the batched runs")
    parser.add_argument(
        "--batched-divisor",
        type=int,
        default=4,
        help="the K-seed runs do updates // this many updates",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--sweep",
        type=Path,
        metavar="DIR",
        help="only print each learner's share of the sweep folder DIR's worker-seconds",
    )
    parser.add_argument("--profile", choices=ALGOS, help="only profile one update of this learner")
    parser.add_argument("--profile-rows", type=int, default=25)
    args = parser.parse_args()
    for name in ("updates", "repeats", "seeds", "batched_divisor", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer.")
    if args.updates < 2:
        parser.error("--updates must be at least 2 (a one-update run is subtracted as setup).")
    if args.sweep is not None:
        run_sweep_shares(args.sweep)
    elif args.profile is not None:
        run_profile(args)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()

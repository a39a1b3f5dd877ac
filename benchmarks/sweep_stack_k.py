"""Benchmark: a sweep's groups trained one at a time (``--no-stack-k``, before) and stacked
across k (``stack_k``, now), side by side in one run, their rows checked identical.

The grid is the ``edm-paper`` preset's (PPO experts' sampled data, every 20th step, sliding
windows, batch 32, 10 seeds per group, its five k) on a subset of tasks and learners, with
fewer updates and episodes. The folder is prepared once (datasets and references); each
repeat runs the whole grid into a fresh copy of it, both ways, in turn, on one worker (so the
ratio is of compute, not of scheduling). Timed: ``run_sweep``'s wall seconds (loading data,
training, checkpoints, evaluation, rows). The rows' results (every field but timings) must be
equal, and are.

Run: ``python benchmarks/sweep_stack_k.py [--envs CartPole-v1 Acrobot-v1]
[--algos bc edm valuedice iqlearn] [--updates 1000] [--episodes 10] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

_TIMINGS = ("train_seconds", "eval_seconds", "wall_seconds", "git_commit", "sbil_version")


def _results(folder: Path) -> dict[str, dict]:
    rows = (json.loads(p.read_text()) for p in (folder / "rows").glob("*.json"))
    return {r["cell_id"]: {k: v for k, v in r.items() if k not in _TIMINGS} for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument("--algos", nargs="+", default=["bc", "edm", "valuedice", "iqlearn"])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import torch

    from sbil.experiments.sweep import PRESETS, SweepSpec, prepare, run_sweep

    base = PRESETS["edm-paper"]
    grid = {
        **base,
        "envs": args.envs,
        "algos": args.algos,
        "eval_episodes": args.episodes,
        "options": {**base["options"], "n_updates": args.updates},
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.node()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}"
    )
    print(f"# {grid}")
    spec = SweepSpec.from_dict(grid)
    seconds: dict[str, list[float]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared"
        prepared.mkdir()
        prepare(spec, prepared, lambda line: None)
        for repeat in range(args.repeats):
            found = {}
            for case, stack_k in (("before", False), ("now", True)):
                folder = Path(scratch) / f"{case}-{repeat}"
                shutil.copytree(prepared, folder)
                started = time.perf_counter()
                summary = run_sweep(spec, folder, stack_k=stack_k)
                seconds[case].append(time.perf_counter() - started)
                assert summary.failed == 0, summary.errors
                found[case] = _results(folder)
                shutil.rmtree(folder)
            assert found["before"] == found["now"], "stacked rows differ"
            print(
                f"# repeat {repeat}: before {seconds['before'][-1]:.1f} s, now "
                f"{seconds['now'][-1]:.1f} s, {len(found['now'])} rows identical"
            )
    print(f"# load at the end {os.getloadavg()[0]:.1f}")
    before = sorted(seconds["before"])[len(seconds["before"]) // 2]
    now = sorted(seconds["now"])[len(seconds["now"]) // 2]
    print("| grid | groups one at a time (s) | stacked across k (s) | speed-up |")
    print("|---|---:|---:|---:|")
    print(
        f"| {' + '.join(args.envs)}; {', '.join(args.algos)}; k {base['ks']}; "
        f"{len(base['seeds'])} seeds; {args.updates} updates; {args.episodes} episodes "
        f"| {before:.1f} | {now:.1f} | {before / now:.2f}x |"
    )


if __name__ == "__main__":
    main()

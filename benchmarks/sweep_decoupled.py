"""Benchmark: a decoupled EDM sweep group trained in full (before) and given its BC twin's
policy (now), side by side in one run, their rows checked identical.

A sweep folder with the BC groups already run (``sbil sweep`` of the same grid with
``algos = ["bc"]``) is prepared once. Then each repeat runs every decoupled EDM group twice
through :func:`sbil.experiments.sweep.run_group`, each time into a fresh copy of that folder:

* ``before``: ``Group.policy_from`` unset, so the group trains both networks and plays its
  evaluation episodes (what every sweep did until issue 14);
* ``now``: ``policy_from`` the BC twin's group (what ``run_sweep`` sets), so only the state
  model trains and the policy's results come from the twin's run.

Timed: the wall seconds of ``run_group`` (loading data, training, checkpoints, evaluation,
results), on 1 torch thread. The rows' results (every field but timings) must be equal.

Run: ``python benchmarks/sweep_decoupled.py [--envs CartPole-v1 Acrobot-v1] [--seeds 5]
[--updates 2000] [--episodes 100] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

_TIMINGS = ("train_seconds", "eval_seconds", "wall_seconds", "git_commit", "sbil_version")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from sbil.experiments.sweep import SweepSpec, groups, run_group, run_sweep, with_policy_twins

    grid = {
        "envs": args.envs,
        "ks": [args.k],
        "algos": ["bc", "edm-decoupled"],
        "seeds": list(range(args.seeds)),
        "eval_episodes": args.episodes,
        "options": {"n_updates": args.updates, "batch_size": 32},
    }
    print(
        f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}"
    )
    print(f"# {grid}")
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared"
        run_sweep(SweepSpec.from_dict({**grid, "algos": ["bc"]}), prepared)
        spec = SweepSpec.from_dict(grid)
        every = groups(spec, prepared)
        decoupled = [g for g in with_policy_twins(every, every) if g.algo == "edm-decoupled"]
        seconds: dict[tuple[str, str], list[float]] = {}
        for repeat in range(args.repeats):
            for group in decoupled:
                rows = {}
                for case, ran in (
                    ("before", dataclasses.replace(group, policy_from=None)),
                    ("now", group),
                ):
                    folder = Path(scratch) / f"{case}-{repeat}-{group.group_id}"
                    shutil.copytree(prepared, folder)
                    started = time.perf_counter()
                    rows[case] = run_group(str(folder), ran)
                    seconds.setdefault((group.env_id, case), []).append(
                        time.perf_counter() - started
                    )
                    shutil.rmtree(folder)
                results = {
                    case: [{k: v for k, v in r.items() if k not in _TIMINGS} for r in found]
                    for case, found in rows.items()
                }
                assert results["before"] == results["now"], group.group_id
                assert all(r["status"] == "done" for r in rows["now"]), group.group_id
    print(f"# rows identical in every repeat; load at the end {os.getloadavg()[0]:.1f}")
    print("| task | before s / group | now s / group | speed-up | saved |")
    print("|---|---:|---:|---:|---:|")
    for env_id in args.envs:
        before = sorted(seconds[(env_id, "before")])[len(seconds[(env_id, "before")]) // 2]
        now = sorted(seconds[(env_id, "now")])[len(seconds[(env_id, "now")]) // 2]
        print(
            f"| {env_id} | {before:.1f} | {now:.1f} | {before / now:.2f}x | "
            f"{1 - now / before:.0%} |"
        )


if __name__ == "__main__":
    main()

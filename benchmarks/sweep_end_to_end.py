"""End-to-end cost of the EDM-paper grid: sbil's sweep against the reference code's structure.

Both sides train and evaluate the same cells (EDM, ``k`` trajectories, every 20th step, sliding
windows) on the same locally recorded demonstrations, side by side in one run:

* ``reference``: one fresh Python process per cell (seed), as the reference's scripts are run;
  in it :class:`ReferenceStructureEDM` (benchmarks/deep_edm_update.py: ``nn.Sequential``, an
  autograd SGLD loop, separate forward passes) trains one learner, then plays the evaluation
  episodes one at a time (``evaluate(..., vectorize=False)``).
* ``sbil``: :func:`sbil.experiments.sweep.run_sweep` on one worker: the seeds of a cell train as
  one stacked model (:func:`sbil.deep.training.train`) and are evaluated with vector envs.

A subset at a reduced budget is timed; the parts (process start, per-update, per-episode) are
measured on each side and extrapolated to the full preset (10 seeds, 10,000 updates, 300
evaluation episodes per learner, 4 tasks x 5 k x 3 learners). ``--ray`` also times the same
sbil sweep on a local Ray (1 worker) to measure Ray's per-group overhead.

Run: ``python benchmarks/sweep_end_to_end.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _child(args: argparse.Namespace) -> None:
    """One reference-structure cell in this (fresh) process; prints its timings as JSON."""
    started = time.perf_counter()
    import torch

    sys.path.insert(0, str(HERE))
    from deep_edm_update import ReferenceStructureEDM
    from sbil.deep.data import load_demonstrations
    from sbil.deep.evaluation import evaluate
    from sbil.experiments.runs import every_nth_step, training_episodes

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - the reference uses the global RNGs
    demos = load_demonstrations(args.dataset, root=args.root)
    episodes = training_episodes("sliding", k=args.k, seed=args.seed, pool=args.pool)
    train = every_nth_step(demos.select(episodes), 20)
    learner = ReferenceStructureEDM(train.observations, train.actions, demos.n_actions)
    learner.batch_size = min(32, train.n_steps)
    loaded = time.perf_counter()
    for _ in range(args.updates):
        learner.update()
    trained = time.perf_counter()

    def policy(obs):
        with torch.no_grad():
            return learner.net(torch.as_tensor(obs, dtype=torch.float32)).argmax(1).numpy()

    evaluate(policy, args.env, args.episodes, 0, vectorize=False)
    done = time.perf_counter()
    print(
        json.dumps({"start": loaded - started, "train": trained - loaded, "eval": done - trained})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="CartPole-v1,LunarLander-v3")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--ray", action="store_true", help="also time the Ray backend")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("env", "dataset", "root"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    from sbil.experiments.sweep import SweepSpec, dataset_id, prepare, run_sweep

    envs = args.envs.split(",")
    spec = SweepSpec(
        envs=tuple(envs),
        ks=(args.k,),
        seeds=tuple(range(args.seeds)),
        algos=("edm",),
        windows="sliding",
        holdout=2,
        every_nth_step=20,
        eval_episodes=args.episodes,
        options={"n_updates": args.updates},
    )
    work = Path(tempfile.mkdtemp(prefix="sbil-bench-"))
    prepare(spec, work / "sbil", lambda line: None)  # demonstrations and references, untimed
    pool = spec.n_dataset_episodes - spec.holdout

    reference: dict[str, list[dict]] = {env: [] for env in envs}
    started = time.perf_counter()
    for env in envs:
        for seed in spec.seeds:
            command = [
                sys.executable,
                __file__,
                "--child",
                "--env",
                env,
                "--dataset",
                dataset_id(env, "scripted"),
                "--root",
                str(work / "sbil" / "datasets"),
                "--seed",
                str(seed),
                "--pool",
                str(pool),
                "--k",
                str(args.k),
                "--updates",
                str(args.updates),
                "--episodes",
                str(args.episodes),
            ]
            cell_started = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            timing = json.loads(out.stdout.strip().splitlines()[-1])
            timing["wall"] = time.perf_counter() - cell_started
            reference[env].append(timing)
    reference_wall = time.perf_counter() - started

    started = time.perf_counter()
    run_sweep(spec, work / "sbil")
    sbil_wall = time.perf_counter() - started
    sbil_parts = {}
    for env in envs:
        results = next((work / "sbil" / "runs").glob(f"{env}__edm__*")) / "results.json"
        doc = json.loads(results.read_text())
        sbil_parts[env] = {"train": doc["train_seconds"], "eval": doc["eval_seconds"]}

    ray_wall = None
    if args.ray:
        started = time.perf_counter()
        run_sweep(spec, work / "ray", backend="ray", workers=1)
        ray_wall = time.perf_counter() - started

    # Extrapolation to the full edm-paper preset: 5 k x 3 learners per task, 10 seeds,
    # 10,000 updates, 300 episodes. Per-update and per-episode costs are this run's.
    full_updates, full_episodes, full_seeds, cells_per_task = 10_000, 300, 10, 15
    ref_full = sbil_full = 0.0
    lines = []
    for env in envs:
        cells = reference[env]
        start = float(np.mean([c["wall"] - c["train"] - c["eval"] for c in cells]))
        per_update = float(np.mean([c["train"] for c in cells])) / args.updates
        per_episode = float(np.mean([c["eval"] for c in cells])) / args.episodes
        ref_cell = start + full_updates * per_update + full_episodes * per_episode
        group_update = sbil_parts[env]["train"] / args.updates  # all seeds together
        group_episode = sbil_parts[env]["eval"] / (args.episodes * args.seeds)
        sbil_group = (
            full_updates * group_update * full_seeds / args.seeds
            + full_episodes * full_seeds * group_episode
        )
        ref_full += cells_per_task * full_seeds * ref_cell
        sbil_full += cells_per_task * sbil_group
        lines.append(
            f"| {env} | {start:.2f} | {1e3 * per_update:.2f} | {1e3 * per_episode:.1f} | "
            f"{1e3 * group_update / args.seeds:.2f} | {1e3 * group_episode:.1f} |"
        )
    print(
        f"# sweep_end_to_end, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"subset: {len(envs)} tasks x EDM k={args.k} x {args.seeds} seeds, {args.updates} "
        f"updates, {args.episodes} episodes per learner"
    )
    print(
        f"subset wall: reference {reference_wall:.1f} s, sbil {sbil_wall:.1f} s, "
        f"ratio {reference_wall / sbil_wall:.2f}x"
    )
    if ray_wall is not None:
        print(
            f"ray (1 worker, includes ray.init): {ray_wall:.1f} s, "
            f"{(ray_wall - sbil_wall) / len(envs):.1f} s per group more than local"
        )
    print(
        "| task | ref. process start (s) | ref. ms/update | ref. ms/episode | "
        "sbil ms/update per learner | sbil ms/episode |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    print(
        f"extrapolated full preset (one core): reference {ref_full / 3600:.1f} h, "
        f"sbil {sbil_full / 3600:.1f} h, ratio {ref_full / sbil_full:.1f}x"
    )


if __name__ == "__main__":
    main()

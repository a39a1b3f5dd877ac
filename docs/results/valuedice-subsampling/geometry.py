"""Where a thinned data set's next states lie, on the edm-paper preset's four tasks (no training).

    python docs/results/valuedice-subsampling/geometry.py /tmp/vd-geometry

Records 10 episodes per task from the shipped PPO experts with sampled actions (episode i from
reset(seed=10000 + i), as the preset), keeps every n-th step as sbil's ``every_nth_step`` does
(each kept pair keeps its own next state), standardises with the kept states' mean and std (as
ValueDICE's ``normalize_observations``), and writes ``geometry.json`` next to this file: per task
and n, the number of pairs, the median distance from a next state ``s'`` to the nearest kept
state, and the median distance from a kept state to its nearest other kept state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from sbil.deep.collection import collect
from sbil.deep.data import load_demonstrations
from sbil.experiments.runs import every_nth_step
from sbil.experiments.sweep import dataset_id

HERE = Path(__file__).resolve().parent
TASKS = ("CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0")
STEPS = (1, 2, 20, 21)
EPISODES = 10


def _median_nearest(points: np.ndarray, reference: np.ndarray, *, exclude_self: bool) -> float:
    best = np.full(len(points), np.inf)
    for start in range(0, len(points), 512):  # chunks keep the distance matrix small
        d = np.linalg.norm(points[start : start + 512, None] - reference[None], axis=-1)
        if exclude_self:
            d[np.arange(d.shape[0]), start + np.arange(d.shape[0])] = np.inf
        best[start : start + 512] = d.min(1)
    return float(np.median(best))


def main(root: str) -> None:
    out = {}
    for env_id in TASKS:
        name = dataset_id(env_id, "ppo-zoo", "sample")
        if not (Path(root) / name / "data").is_dir():
            collect(env_id, EPISODES, expert="ppo-zoo", noise="sample", seed=10_000, root=root)
        demos = load_demonstrations(name, root=root)
        out[env_id] = {"episode_lengths": demos.episode_lengths.tolist()}
        for n in STEPS:
            kept = every_nth_step(demos, n)
            mean, std = kept.observations.mean(0), kept.observations.std(0) + 1e-8
            z = (kept.observations - mean) / std
            z_next = (kept.next_observations - mean) / std
            out[env_id][f"n={n}"] = {
                "pairs": len(z),
                "s_next_to_nearest_s": _median_nearest(z_next, z, exclude_self=False),
                "s_to_nearest_other_s": _median_nearest(z, z, exclude_self=True),
            }
        print(env_id, json.dumps(out[env_id]))
    (HERE / "geometry.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])

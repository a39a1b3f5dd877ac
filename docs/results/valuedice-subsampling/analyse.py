"""The numbers of README.md, from the study's sweep folders (run it after the sweeps).

    python docs/results/valuedice-subsampling/analyse.py /tmp/vd-ppo-n1 /tmp/vd-ppo-n2 ...

For every learner of every folder it writes one row to ``rows.csv`` (next to this file):
the sweep row's return and held-out action match, the held-out action match split by the
parity of the step (``t`` even: the cart is momentarily at rest in these experts' two-step
push/counter-push cycle; ``t`` odd: it is moving), the last 1,000 updates' mean of every loss
term in the run's ``losses.npz``, and where the learner's next states ``s'`` lie relative to
its training states ``s`` (median distance, in the training data's standardised coordinates,
from each ``s'`` to the nearest ``s``). ``summary.json`` holds the per-(expert, n, learner)
means and per-seed ranges that the README's table quotes.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from sbil.deep.checkpoint import load_learner
from sbil.deep.data import load_demonstrations
from sbil.experiments.runs import every_nth_step
from sbil.experiments.sweep import dataset_id

HERE = Path(__file__).resolve().parent
LAST = 1000  # updates averaged at the end of training


def _step_index(demos) -> np.ndarray:
    return np.concatenate([np.arange(n) for n in demos.episode_lengths])


def _nearest(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None] - reference[None], axis=-1).min(1)


def folder_rows(sweep: Path) -> list[dict]:
    spec = json.loads((sweep / "sweep.json").read_text())["spec"]
    n, expert = spec["every_nth_step"], spec["expert"]
    env_id = spec["envs"][0]
    demos = load_demonstrations(
        dataset_id(env_id, expert, spec["expert_noise"]), root=sweep / "datasets"
    )
    held = demos.select(range(demos.n_episodes - spec["holdout"], demos.n_episodes))
    parity = _step_index(held) % 2
    rows = []
    for path in sorted((sweep / "rows").glob("*.json")):
        row = json.loads(path.read_text())
        run = sweep / row["run_dir"]
        seed = row["seed"]
        policy = load_learner(run / f"seed-{seed}")
        match = policy(held.observations) == held.actions
        train = every_nth_step(demos.select(row["train_episodes"]), n)
        mean, std = train.observations.mean(0), train.observations.std(0)
        z, z_next = (train.observations - mean) / std, (train.next_observations - mean) / std
        out = {
            "expert": expert,
            "every_nth_step": n,
            "discount": row["options"].get("discount", 0.99),  # 0.99: the learners' default
            "algo": row["algo"],
            "k": row["k"],
            "seed": seed,
            "n_pairs": row["n_pairs"],
            "return_mean": row["return_mean"],
            "action_match": row["action_match"],
            "match_even_steps": float(match[parity == 0].mean()),
            "match_odd_steps": float(match[parity == 1].mean()),
            "train_even_step_fraction": float((_step_index(train) * n % 2 == 0).mean()),
            "s_next_to_nearest_s": float(np.median(_nearest(z_next, z))),
            "s_to_nearest_other_s": float(
                np.median(np.sort(np.linalg.norm(z[:, None] - z[None], axis=-1), 1)[:, 1])
            ),
            "git_commit": row["git_commit"],
        }
        losses = np.load(run / "losses.npz")
        column = list(losses["seeds"]).index(seed)
        for term in losses["terms"]:
            out[f"last_{term}"] = float(losses[term][column, -LAST:].mean())
            out[f"first_{term}"] = float(losses[term][column, :LAST].mean())
        rows.append(out)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    def key(r):
        return r["expert"], r["every_nth_step"], r["discount"], r["algo"]

    keys = sorted({key(r) for r in rows})
    measured = [
        "n_pairs",
        "return_mean",
        "action_match",
        "match_even_steps",
        "match_odd_steps",
        "s_next_to_nearest_s",
        "s_to_nearest_other_s",
        "last_objective",
        "last_log_ratio_term",
        "last_initial_term",
        "last_cross_entropy",
    ]
    out = []
    for expert, n, discount, algo in keys:
        group = [r for r in rows if key(r) == (expert, n, discount, algo)]
        entry = {
            "expert": expert,
            "every_nth_step": n,
            "discount": discount,
            "algo": algo,
            "seeds": [r["seed"] for r in group],
        }
        for name in measured:
            values = [r[name] for r in group if name in r]
            if values:
                entry[name] = {
                    "mean": float(np.mean(values)),
                    "min": float(min(values)),
                    "max": float(max(values)),
                }
        out.append(entry)
    return out


def main(folders: list[str]) -> None:
    rows = [row for folder in folders for row in folder_rows(Path(folder))]
    names = list(dict.fromkeys(name for row in rows for name in row))
    with open(HERE / "rows.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, names)
        writer.writeheader()
        writer.writerows(rows)
    (HERE / "summary.json").write_text(json.dumps(summarise(rows), indent=1) + "\n")
    for entry in summarise(rows):
        cells = [
            f"{entry['expert']:9s} n={entry['every_nth_step']:2d} gamma={entry['discount']}"
            f" {entry['algo']:10s}"
        ]
        for name in (
            "return_mean",
            "action_match",
            "match_even_steps",
            "match_odd_steps",
            "s_next_to_nearest_s",
            "last_objective",
            "last_cross_entropy",
        ):
            if name in entry:
                v = entry[name]
                cells.append(f"{name}={v['mean']:.3f} [{v['min']:.3f},{v['max']:.3f}]")
        print("  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The report of a model-selection study (:mod:`sbil.experiments.selection`).

Per learner and ``k``, the fresh seeds' normalised returns under each pick (published,
offline, oracle) are pooled over the study's tasks: the IQM with a stratified bootstrap 95%
interval (rliable's, :mod:`sbil.experiments.stats`), the price of having no environment
(oracle IQM minus offline IQM) and P(offline > published). :func:`summarise_study` computes
them, :func:`write_study_report` writes ``summary.json``, ``REPORT.md`` and one figure per
``k``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sbil.deep.learners.registry import DISPLAY_NAMES
from sbil.experiments.io import save_figure_atomic
from sbil.experiments.selection import (
    STUDY_FILE,
    SelectionSpec,
    configurations,
    final_units,
    read_unit,
    study_picks,
)
from sbil.experiments.stats import (
    Interval,
    normalised_score,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)
from sbil.files import write_json_atomic, write_text_atomic

MODES = ("published", "offline", "oracle")
CONFIDENCE = 0.95
N_RESAMPLES = 2000


def _seed(*name: Any) -> int:
    text = json.dumps([str(n) for n in name])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _interval(ci: Interval) -> dict[str, float]:
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high}


def load_study(folder: str | os.PathLike) -> SelectionSpec:
    path = Path(folder) / STUDY_FILE
    try:
        return SelectionSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{folder} is not a model-selection study folder ({STUDY_FILE}: {error}); pass the "
            "folder `sbil select --out` wrote."
        ) from None


def _anchors(folder: Path) -> dict[str, tuple[float, float]]:
    references = json.loads((folder / "data" / "references.json").read_text(encoding="utf-8"))
    return {env: (r["random"]["mean"], r["expert"]["mean"]) for env, r in references.items()}


def _fresh_scores(record, update, anchors) -> list[float | None]:
    """Per fresh seed, the normalised mean return at ``update`` (None: the seed failed)."""
    (checkpoint,) = [c for c in record["checkpoints"] if c["update"] == update]
    random, expert = anchors
    out = []
    for seed in record["seeds"]:
        entry = checkpoint["seeds"][str(seed)]
        ok = entry["status"] == "done" and "return_mean" in entry
        value = normalised_score(entry["return_mean"], random_return=random, expert_return=expert)
        out.append(float(value) if ok else None)
    return out


def summarise_study(folder: str | os.PathLike) -> dict[str, Any]:
    """The study's figures (JSON-ready); cells whose fresh seeds have not run are listed as
    missing and left out of every aggregate."""
    root = Path(folder)
    spec = load_study(root)
    anchors = _anchors(root)
    chosen = study_picks(spec, root)
    cells, missing = [], []
    for k in spec.ks:
        for env_id in spec.envs:
            for algo in spec.algos:
                picked = chosen.get((env_id, k, algo))
                if picked is None:
                    missing.append({"env_id": env_id, "k": k, "algo": algo, "phase": "select"})
                    continue
                records = {
                    u.config: read_unit(u.path(root))
                    for u in final_units(spec, picked, env_id, k, algo)
                }
                if any(r is None for r in records.values()):
                    missing.append({"env_id": env_id, "k": k, "algo": algo, "phase": "final"})
                    continue
                cell = {"env_id": env_id, "k": k, "algo": algo, "modes": {}}
                for mode, pick in picked.items():
                    scores = _fresh_scores(records[pick.config], pick.update, anchors[env_id])
                    cell["modes"][mode] = {
                        "config": pick.config,
                        "options": {
                            n: configurations(spec, algo)[pick.config][n] for n in spec.grids[algo]
                        },
                        "update": pick.update,
                        "picked_by": None if mode == "published" else pick.score,
                        "scores": scores,
                        "mean": _nanmean(scores),
                    }
                cells.append(cell)
    return {
        "study": spec.to_dict(),
        "cells": cells,
        "missing": missing,
        "aggregates": _aggregates(spec, cells),
        "seconds": _seconds(spec, root, chosen),
    }


def _nanmean(scores: Sequence[float | None]) -> float | None:
    done = [s for s in scores if s is not None]
    return float(np.mean(done)) if done else None


def _matrix(cells, algo, k, mode) -> np.ndarray | None:
    """``scores[fresh seed, task]`` (a failed seed scores the random policy's 0)."""
    columns = [
        [0.0 if s is None else s for s in c["modes"][mode]["scores"]]
        for c in cells
        if c["algo"] == algo and c["k"] == k
    ]
    return np.array(columns, dtype=np.float64).T if columns else None


def _aggregates(spec: SelectionSpec, cells) -> list[dict[str, Any]]:
    out = []
    for k in spec.ks:
        for algo in spec.algos:
            matrices = {m: _matrix(cells, algo, k, m) for m in MODES}
            if matrices["published"] is None:
                continue
            entry: dict[str, Any] = {"k": k, "algo": algo, "tasks": matrices["published"].shape[1]}
            for mode, matrix in matrices.items():
                ci = stratified_bootstrap_ci(
                    matrix,
                    n_resamples=N_RESAMPLES,
                    confidence=CONFIDENCE,
                    seed=_seed("iqm", algo, k, mode),
                    quantiles="linear",
                )
                entry[mode] = _interval(ci)
            entry["price"] = entry["oracle"]["estimate"] - entry["offline"]["estimate"]
            entry["p_offline_over_published"] = _interval(
                probability_of_improvement_ci(
                    matrices["offline"],
                    matrices["published"],
                    n_resamples=N_RESAMPLES,
                    confidence=CONFIDENCE,
                    seed=_seed("poi", algo, k),
                )
            )
            out.append(entry)
    return out


def _seconds(spec: SelectionSpec, root: Path, chosen) -> dict[str, float]:
    totals = {"select": 0.0, "final": 0.0}
    for phase in totals:
        for path in sorted((root / "units" / phase).glob("*.json")):
            record = read_unit(path)
            if record is not None:
                totals[phase] += record["train_seconds"] + record["eval_seconds"]
    wall = root / "wall.json"
    walls = json.loads(wall.read_text()) if wall.is_file() else []
    return {**totals, "wall": float(sum(w["seconds"] for w in walls)), "runs": walls}


# --- Markdown and figures ----------------------------------------------------------------


def _ci(entry: Mapping[str, float]) -> str:
    return f"{entry['estimate']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def _pick_text(mode: Mapping[str, Any]) -> str:
    options = ", ".join(f"{n} {v:g}" for n, v in mode["options"].items())
    return f"{options}, {mode['update']:,} updates"


def render_study_report(summary: Mapping[str, Any], figures: Mapping[int, str]) -> str:
    spec = summary["study"]
    lines = [
        "# Strictly batch model selection",
        "",
        f"Study preset `{spec['preset']}`: tasks {', '.join(spec['envs'])}; k in "
        f"{', '.join(map(str, spec['ks']))}; learners "
        f"{', '.join(DISPLAY_NAMES[a] for a in spec['algos'])} (decoupled EDM's policy is BC's, "
        "so its selection is BC's). Each learner has "
        f"{len(configurations(SelectionSpec.from_dict(spec), spec['algos'][0]))} configurations "
        "(its published learning rate and another, times its own coefficient's published value "
        f"and another; table below), {spec['options']['n_updates']:,} updates of "
        f"{spec['options']['batch_size']} pairs, every {spec['every_nth_step']}th step of "
        f"{spec['expert']} ({spec['expert_noise']}) demonstrations.",
        "",
        f"- **Selection**: seeds {', '.join(map(str, spec['selection_seeds']))}; checkpoints "
        f"every {spec['checkpoint_every']:,} updates. *Offline*: the configuration and "
        "checkpoint with the lowest mean held-out NLL of the expert's actions on "
        f"{spec['validation_episodes']} validation trajectories (no environment). *Oracle*: "
        f"the highest mean return over {spec['selection_eval_episodes']} episodes (information "
        "no strictly batch user has; not a guaranteed upper bound on fresh seeds, as a pick by "
        "a few seeds' returns carries their noise). *Published*: the published values at the "
        "full "
        "budget.",
        f"- **Validation, k = 1 included**: the {spec['validation_episodes']} validation "
        "trajectories are extra ones for every k (one trajectory cannot be split): a user "
        f"of this protocol holds k + {spec['validation_episodes']} trajectories. They are the "
        "dataset's last episodes; no seed trains on them and no evaluation plays them.",
        f"- **Fresh seeds**: each pick trains again on seeds "
        f"{', '.join(map(str, spec['final_seeds']))} (new initialisations and minibatches; "
        "sliding windows, seed r trains on episodes r to r + k - 1, so at k = 1 no fresh seed "
        "trains on a selection seed's trajectory) and plays "
        f"{spec['eval_episodes']} episodes. Scores are "
        "normalised returns (0 the random policy, 1 the expert). IQM over fresh seeds and "
        f"tasks with stratified-bootstrap {CONFIDENCE:.0%} intervals ({N_RESAMPLES} "
        "resamples); the price of no environment is oracle IQM minus offline IQM; a failed "
        "seed scores 0.",
        "",
    ]
    for k in spec["ks"]:
        entries = [a for a in summary["aggregates"] if a["k"] == k]
        if not entries:
            continue
        lines += [
            f"## k = {k} (+ {spec['validation_episodes']} validation)",
            "",
            "| learner | published | offline | oracle | price (oracle - offline) | "
            "P(offline > published) |",
            "|---|---|---|---|---:|---|",
        ]
        for a in entries:
            lines.append(
                f"| {DISPLAY_NAMES[a['algo']]} | {_ci(a['published'])} | {_ci(a['offline'])} | "
                f"{_ci(a['oracle'])} | {a['price']:+.2f} | {_ci(a['p_offline_over_published'])} |"
            )
        if k in figures:
            lines += [
                "",
                f"![IQM under each pick at k = {k}]({figures[k]})",
                "",
                "Each learner's IQM of normalised return under the published, offline and "
                "oracle picks, with 95% intervals.",
            ]
        lines.append("")
    lines += [
        "## Picks per task",
        "",
        "| task | k | learner | offline pick | oracle pick | published / offline / oracle "
        "mean score |",
        "|---|---:|---|---|---|---|",
    ]
    for c in summary["cells"]:
        means = " / ".join(
            "-" if c["modes"][m]["mean"] is None else f"{c['modes'][m]['mean']:.2f}" for m in MODES
        )
        lines.append(
            f"| {c['env_id']} | {c['k']} | {DISPLAY_NAMES[c['algo']]} | "
            f"{_pick_text(c['modes']['offline'])} | {_pick_text(c['modes']['oracle'])} | {means} |"
        )
    lines += ["", "## Configurations", "", "| learner | grid (first values: published) |"]
    lines.append("|---|---|")
    for algo in spec["algos"]:
        grid = "; ".join(f"{n} {values}" for n, values in spec["grids"][algo].items())
        lines.append(f"| {DISPLAY_NAMES[algo]} | {grid} |")
    seconds = summary["seconds"]
    lines += [
        "",
        "## Time",
        "",
        f"Training and evaluation, summed over units (CPU-seconds of one core each): "
        f"selection {seconds['select']:,.0f} s, fresh seeds {seconds['final']:,.0f} s; wall "
        f"time of the runs that made this folder {seconds['wall']:,.0f} s.",
    ]
    if summary["missing"]:
        lines += ["", f"Missing (not yet run, left out): {len(summary['missing'])} cell(s)."]
    return "\n".join(lines) + "\n"


def _figure(summary: Mapping[str, Any], k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [a for a in summary["aggregates"] if a["k"] == k]
    colours = {"published": "#7f7f7f", "offline": "#1f77b4", "oracle": "#d62728"}
    figure, axis = plt.subplots(figsize=(6.5, 0.55 * len(entries) + 1.2))
    for row, a in enumerate(reversed(entries)):
        for offset, mode in zip((0.22, 0.0, -0.22), MODES, strict=True):
            e = a[mode]
            axis.errorbar(
                e["estimate"],
                row + offset,
                xerr=[[e["estimate"] - e["low"]], [e["high"] - e["estimate"]]],
                fmt="o",
                color=colours[mode],
                capsize=3,
                label=mode if row == 0 else None,
            )
    axis.set_yticks(range(len(entries)), [DISPLAY_NAMES[a["algo"]] for a in reversed(entries)])
    axis.axvline(0, color="black", linewidth=0.5)
    axis.axvline(1, color="black", linewidth=0.5, linestyle=":")
    axis.set_xlabel("IQM of normalised return (0 random, 1 expert)")
    axis.set_title(f"Model selection at k = {k}")
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=120)
    plt.close(figure)


def write_study_report(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``summary.json``, ``REPORT.md`` and the figures of the study in ``folder``
    (into ``out``, default the folder itself); return the report's path."""
    root = Path(folder)
    target = root if out is None else Path(out)
    target.mkdir(parents=True, exist_ok=True)
    summary = summarise_study(root)
    figures = {}
    for k in summary["study"]["ks"]:
        if any(a["k"] == k for a in summary["aggregates"]):
            name = f"selection-k{k}.png"
            _figure(summary, k, target / name)
            figures[k] = name
    write_json_atomic(target / "summary.json", summary, allow_nan=True)
    return write_text_atomic(target / "REPORT.md", render_study_report(summary, figures))

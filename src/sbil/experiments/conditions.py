"""How the verdict depends on the data: P(EDM > BC) at few trajectories under several data
conditions (deterministic, epsilon-noisy and sampled experts), with regularised BC beside.

Each condition is one or more sweep folders (or committed results folders holding
``rows.jsonl.gz``) on the same data: the first gives BC and EDM, the others may add BC
variants (e.g. a grid over ``l2_coef`` and ``entropy_coef``, the control for whether EDM's
gain on noisy data is only regularisation against flipped labels). A cell present in several
folders (the same cell id: the same data, options and seed) is taken from the first.

Every figure is over the EDM paper's control tasks (:data:`sweeps.PAPER_TASKS`) at the
given ``ks``, with the statistics and bootstrap seeds of the sweep report
(:func:`sweeps.stats._improvement`), so a condition's P(EDM > BC) here equals its own report's.
:func:`compare_conditions` computes, :func:`write_conditions_report` writes ``REPORT.md``,
``summary.json`` and ``p-edm-over-bc.png``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sbil.experiments.io import save_figure_atomic
from sbil.experiments.sweeps import claim as sweep_claim
from sbil.experiments.sweeps import common as sweep_common
from sbil.experiments.sweeps import load as sweep_load
from sbil.experiments.sweeps import markdown as sweep_markdown
from sbil.experiments.sweeps import stats as sweep_stats
from sbil.files import write_json_atomic, write_text_atomic

#: Learner options that make a BC variant (regularisation), with their short names.
REGULARISERS = {"l2_coef": "weight decay", "entropy_coef": "entropy bonus"}


def _variant(row: Mapping[str, Any]) -> str:
    """``bc`` or ``edm``; a regularised BC as ``bc (l2_coef=0.001)``."""
    options = row.get("options") or {}
    parts = [f"{n}={options[n]:g}" for n in REGULARISERS if options.get(n)]
    return f"{row['algo']} ({', '.join(parts)})" if parts else str(row["algo"])


def load_condition(folders: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, list[str]]:
    """The rows of one condition (BC, EDM and BC variants; other learners left out) and the
    commits that made them."""
    frames, seen = [], set()
    for folder in folders:
        frame = sweep_load.load_rows(folder)
        frame = frame[frame["algo"].isin(["bc", "edm"]) & ~frame["cell_id"].isin(seen)].copy()
        seen |= set(frame["cell_id"])
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows["variant"] = [_variant(r) for r in rows.to_dict("records")]
    commits = sorted({str(c) for c in rows["git_commit"].dropna()})
    return rows, commits


def _entry(done, x, y, ks, boot) -> dict[str, Any] | None:
    entry = sweep_stats._improvement(done, x, y, ks, boot, *sweep_stats._scope_of(ks, done))
    return None if entry is None or entry["p"] is None else entry


def compare_conditions(
    conditions: Mapping[str, Sequence[str | os.PathLike]],
    *,
    ks: Sequence[int] = (1, 3),
    envs: Sequence[str] = sweep_common.PAPER_TASKS,
    seed: int = 0,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """Per condition: P(EDM > BC) over ``envs`` at ``ks`` (and per task), the IQM normalised
    score of each variant, and for each regularised BC P(EDM > it) and P(it > BC)."""
    boot = sweep_stats._Bootstrap(seed=seed, n_resamples=n_resamples)
    out = []
    for name, folders in conditions.items():
        rows, commits = load_condition(folders)
        done, _, _ = sweep_stats.usable_rows(rows[rows["env_id"].isin(list(envs))])
        if "edm" not in set(done["variant"]) or "bc" not in set(done["variant"]):
            raise ValueError(f"condition {name!r} has no finished BC and EDM rows in {folders}.")
        variants = sorted(set(done["variant"]), key=lambda v: (v != "bc", v != "edm", v))
        scope = sweep_stats._scope_of(ks, done)
        condition = {
            "name": name,
            "folders": [str(f) for f in folders],
            "git_commits": commits,
            "envs": sorted(set(done["env_id"])),
            "edm_over_bc": _entry(done, "edm", "bc", ks, boot),
            "per_env": {
                env: _entry(done[done["env_id"] == env], "edm", "bc", ks, boot)
                for env in sorted(set(done["env_id"]))
            },
            "iqm": {v: sweep_claim._small_k_iqm(done, v, ks, boot, scope) for v in variants},
            "regularised": [
                {
                    "variant": v,
                    "edm_over_it": _entry(done, "edm", v, ks, boot),
                    "it_over_bc": _entry(done, v, "bc", ks, boot),
                }
                for v in variants
                if v.startswith("bc (")
            ],
        }
        out.append(condition)
    found = sorted({e for c in out for e in c["envs"]}, key=list(envs).index)
    return {"ks": list(ks), "envs": found, "conditions": out}


def _p(entry: Mapping[str, Any] | None) -> str:
    return sweep_markdown._ci(entry, 2, "p")


def _iqm(entry: Mapping[str, Any] | None) -> str:
    return sweep_markdown._ci(entry, 2)


def render_conditions(summary: Mapping[str, Any], command: str, figure: str | None) -> str:
    ks = ", ".join(map(str, summary["ks"]))
    lines = [
        "# The verdict by data condition",
        "",
        f"P(EDM > BC) over {', '.join(summary['envs'])} at k in {{{ks}}}: the probability that "
        "a run of EDM returns more than a run of BC on the same task and k, with its 95% "
        "stratified bootstrap interval (2,000 resamples; the sweep reports' statistic and "
        "bootstrap seeds). IQM: interquartile mean of normalised return (0 random, 1 the "
        "condition's own expert) over seeds and those tasks.",
        "",
        f"Made by: `{command}`",
        "",
        "| condition | P(EDM > BC) | IQM EDM | IQM BC | "
        + " | ".join(f"P(EDM > BC) on {e}" for e in summary["envs"])
        + " |",
        "|---|---|---|---|" + "---|" * len(summary["envs"]),
    ]
    for c in summary["conditions"]:
        per_env = " | ".join(_p(c["per_env"].get(e)) for e in summary["envs"])
        lines.append(
            f"| {c['name']} | {_p(c['edm_over_bc'])} | {_iqm(c['iqm'].get('edm'))} | "
            f"{_iqm(c['iqm'].get('bc'))} | {per_env} |"
        )
    if figure:
        lines += ["", f"![P(EDM > BC) by data condition]({figure})", ""]
    regularised = [(c, r) for c in summary["conditions"] for r in c["regularised"]]
    if regularised:
        lines += [
            "",
            "## Regularised BC: is EDM's gain only regularisation?",
            "",
            "If EDM's advantage on noisy data were regularisation against flipped labels, a "
            "regularised BC would close it: P(EDM > regularised BC) would fall to 0.5 and "
            "P(regularised BC > BC) rise above it.",
            "",
            "| condition | BC variant | IQM | P(EDM > it) | P(it > BC) |",
            "|---|---|---|---|---|",
        ]
        for c, r in regularised:
            lines.append(
                f"| {c['name']} | {r['variant']} | {_iqm(c['iqm'].get(r['variant']))} | "
                f"{_p(r['edm_over_it'])} | {_p(r['it_over_bc'])} |"
            )
    lines += ["", "## Sources", ""]
    for c in summary["conditions"]:
        lines.append(
            f"- {c['name']}: {', '.join(f'`{f}`' for f in c['folders'])} (rows made at "
            f"{', '.join(f'`{g[:7]}`' for g in c['git_commits'])})"
        )
    return "\n".join(lines) + "\n"


def _figure(summary: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = summary["conditions"]
    figure, axis = plt.subplots(figsize=(6.0, 0.6 * len(conditions) + 1.2))
    for row, c in enumerate(reversed(conditions)):
        e = c["edm_over_bc"]
        axis.errorbar(
            e["p"], row, xerr=[[e["p"] - e["low"]], [e["high"] - e["p"]]], fmt="o", capsize=4
        )
    axis.set_yticks(range(len(conditions)), [c["name"] for c in reversed(conditions)])
    axis.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
    axis.set_xlim(0, 1)
    ks = ", ".join(map(str, summary["ks"]))
    axis.set_xlabel(f"P(EDM > BC) at k in {{{ks}}}, 95% interval")
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=120)
    plt.close(figure)


def write_conditions_report(
    conditions: Mapping[str, Sequence[str | os.PathLike]],
    out: str | os.PathLike,
    *,
    command: str,
    ks: Sequence[int] = (1, 3),
) -> Path:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = compare_conditions(conditions, ks=ks)
    name = "p-edm-over-bc.png"
    _figure(summary, folder / name)
    write_json_atomic(folder / "summary.json", {**summary, "command": command})
    return write_text_atomic(folder / "REPORT.md", render_conditions(summary, command, name))


def parse_condition(text: str) -> tuple[str, list[str]]:
    """``NAME=DIR[,DIR...]`` as given on the command line."""
    name, sep, folders = text.partition("=")
    parts = [f for f in folders.split(",") if f]
    if not sep or not name or not parts:
        raise ValueError(
            f"--condition must be NAME=DIR[,DIR...] (e.g. sampled=docs/results/edm-paper), got "
            f"{text!r}."
        )
    return name, parts

"""Study 4: where EDM's rho settles, and why; its claim, figure and table.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sbil.experiments.claims import Claim, fmt, table
from sbil.experiments.deep_critique.common import _ALGO_COLOURS, _ALGO_LABELS, _figure
from sbil.experiments.deep_critique.config import DeepCritiqueConfig
from sbil.experiments.deep_critique.study_ptheta import STATE_MODEL_ALGOS, TaskStudy


@dataclass(frozen=True)
class RhoSummary:
    """Where one learner's rho ended.

    Attributes:
        env_id, algo: the run.
        final: mean rho over the last 10% of updates.
        final_sd: its standard deviation there (update to update).
        factor: mean of ``|1 + 2 rho|`` there: the state term's gradient is
            ``(1 + 2 rho) grad rho``.
        first: mean rho over the first 1% of updates (at least 10).
    """

    env_id: str
    algo: str
    final: float
    final_sd: float
    factor: float
    first: float


def rho_summary(env_id: str, algo: str, rho: np.ndarray) -> RhoSummary:
    """Summarise a ``[n_updates]`` rho history (see :class:`RhoSummary`)."""
    rho = np.asarray(rho, dtype=np.float64)
    tail = rho[-max(1, len(rho) // 10) :]
    head = rho[: max(10, len(rho) // 100)]
    return RhoSummary(
        env_id=env_id,
        algo=algo,
        final=float(tail.mean()),
        final_sd=float(tail.std()),
        factor=float(np.abs(1 + 2 * tail).mean()),
        first=float(head.mean()),
    )


def rho_claim(tasks: Sequence[TaskStudy], config: DeepCritiqueConfig) -> Claim:
    """``deep_rho``: where EDM's rho settles and what that does to the state term."""
    summaries = [rho_summary(t.env_id, a, t.rho[a]) for t in tasks for a in STATE_MODEL_ALGOS]
    edm = [s for s in summaries if s.algo == "edm"]
    at_half = [s for s in edm if abs(s.final + 0.5) < 0.05]
    near_zero = [s for s in edm if abs(s.final) < 0.1]
    rows = []
    for task in tasks:
        e = next(s for s in summaries if s.env_id == task.env_id and s.algo == "edm")
        d = next(s for s in summaries if s.env_id == task.env_id and s.algo == "edm-decoupled")
        rows.append(
            [
                task.env_id,
                f"{fmt(e.first, 3)}",
                f"{fmt(e.final, 3)} ± {fmt(e.final_sd, 3)}",
                fmt(e.factor, 3),
                f"{fmt(d.final, 3)} ± {fmt(d.final_sd, 3)}",
                fmt(task.learner_returns["edm"], 1),
                fmt(task.learner_returns["edm-decoupled"], 1),
            ]
        )
    tail = max(1, config.updates // 10)

    def names(group):
        return ", ".join(s.env_id for s in group) or "none"

    text = (
        "EDM's loss adds `rho + rho**2` to the cross-entropy, with `rho = mean_q lse f - "
        "mean_D lse f` on detached SGLD samples `q`. Its gradient is `(1 + 2 rho) grad rho`: "
        "for fixed samples a step lowers rho while rho > -1/2 and raises it while rho < -1/2, "
        "so `rho = -1/2`, the minimiser of `rho + rho**2`, is where the state term's gradient "
        "factor `1 + 2 rho` vanishes. The chains pull the other way: they climb `lse f`, "
        "raising rho. So rho sits near -1/2 when the network's descent outpaces the chains, "
        "and the state term then switches itself off (its gradient averages near zero); it "
        "sits near 0, the contrastive-divergence balance, when the chains keep up, and the "
        "factor is then near 1. Which of the two happens on a task is measured here, not "
        f"predicted. Over the last {tail:,} of {config.updates:,} updates (mean ± update-to-"
        f"update sd), EDM's rho is within 0.05 of -1/2 on {names(at_half)} and within 0.1 of "
        f"0 on {names(near_zero)}; the state term's mean gradient factor abs(1 + 2 rho) is "
        f"above 1/2 (the term stays on) on {names([s for s in edm if s.factor > 0.5])}.\n\n"
        + table(
            [
                "task",
                "EDM rho, first updates",
                "EDM rho, end",
                "mean abs(1 + 2 rho), end",
                "decoupled rho, end",
                "EDM return",
                "decoupled (= BC policy) return",
            ],
            rows,
        )
        + f"\n\nReturns: greedy learners, {config.rollout_episodes} episodes each."
    )
    return Claim(
        id="deep_rho",
        title=(
            "EDM's rho does not stay near zero: on some tasks it settles at -1/2, the minimiser "
            "of rho + rho**2, where the state term's gradient factor 1 + 2 rho vanishes."
        ),
        value=float(len(at_half)),
        agrees=bool(at_half),
        text=text,
        check=(
            f"value = number of tasks where EDM's mean rho over the last {tail:,} updates is "
            "within 0.05 of -1/2; agrees when there is at least one"
        ),
        tolerance=0.05,
        details={
            f"{s.env_id} {s.algo}": {
                "final": s.final,
                "final_sd": s.final_sd,
                "factor": s.factor,
                "first": s.first,
            }
            for s in summaries
        },
        figures=("deep_rho.png",),
    )


def plot_rho(tasks: Sequence[TaskStudy]):
    """rho over updates (moving average of 100) per task, EDM and decoupled EDM."""
    fig, axes = _figure(1, len(tasks), width=3.6)
    for col, task in enumerate(tasks):
        ax = axes[0, col]
        for algo, rho in task.rho.items():
            window = max(1, min(100, len(rho) // 10))
            smooth = np.convolve(rho, np.ones(window) / window, mode="valid")
            ax.plot(
                np.arange(window, len(rho) + 1),
                smooth,
                color=_ALGO_COLOURS[algo],
                lw=1,
                label=_ALGO_LABELS[algo],
            )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axhline(-0.5, color="k", ls=":", lw=1, label="-1/2")
        ax.set_title(task.env_id, fontsize=9)
        ax.set_xlabel("update")
        ax.set_ylabel("rho (moving average)")
        ax.legend(fontsize=7)
    return fig


def _rho_frame(tasks: Sequence[TaskStudy]):
    import pandas as pd

    return pd.DataFrame(
        [
            dataclasses.asdict(rho_summary(t.env_id, algo, rho))
            for t in tasks
            for algo, rho in t.rho.items()
        ]
    )

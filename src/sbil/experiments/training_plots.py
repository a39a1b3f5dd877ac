"""Training curves of a run, one panel per loss term and one line per seed: ``sbil plot``.

:func:`plot_training_curves` draws the curves it is given; :func:`plot_run` reads them from a
run folder (``losses.npz``, with the task, learner and ``k`` from ``config.json``) and titles
the figure with them. Each seed is drawn twice in its colour: every update faintly, and a
running mean over ``1%`` of the updates boldly, so both the noise of single minibatches and the
trend read. A term that stays positive and spans more than a decade gets a log scale.


Its default file in a run folder is ``curves.png`` (:data:`sbil.experiments.runs.CURVES_FIGURE`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sbil.experiments.runs import load_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: What each term is, for its axis label (a term not listed is labelled by its name).
TERM_LABELS = {
    "loss": "loss (what Adam minimises)",
    "cross_entropy": r"cross-entropy $-\log\pi(a|s)$",
    "rho": r"$\rho$, EDM's state term",
    "objective": r"ValueDICE objective $J(\pi, \nu)$",
    "log_ratio_term": r"$\log E_D\, e^{\nu - \gamma E_\pi \nu'}$",
    "initial_term": r"$(1-\gamma)\, E_{s_0} E_\pi \nu$",
    "nu_gradient_penalty": r"$\nu$'s gradient penalty (unweighted)",
    "orthogonal_regularizer": "orthogonal regulariser (unweighted)",
    "policy_regularizer": "policy regulariser",
    "margin": "large-margin term",
    "reward_l1": r"$E|R(s,a)|$ of the implied reward",
    "reward_term": r"implied reward $E_D\, r$",
    "value_term": r"$E_D[V(s) - \gamma V(s')]$",
    "chi2_term": r"$\chi^2$ term $E_D\, r^2 / 4\alpha$",
    "kl": r"KL$(q(R)\,\|\,N(0,1))$",
    "td_nll": "TD-error negative log-likelihood",
}

_NAMES = {
    "bc": "BC",
    "edm": "EDM",
    "edm-decoupled": "decoupled EDM",
    "valuedice": "ValueDICE",
    "rcal": "RCAL",
    "iqlearn": "IQ-Learn",
    "avril": "AVRIL",
}


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` updates, skipping non-finite values (NaN where none)."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0), dtype=np.float64)])
    counts = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    n = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[ends] - sums[starts]) / n, np.nan)


def plot_training_curves(
    seeds: tuple[int, ...], curves: dict[str, np.ndarray], *, title: str
) -> Figure:
    """One panel per term (``curves[name]`` is ``[K, n_updates]``), one line per seed.

    Args:
        seeds: ``(K,)`` the seeds, in the curves' row order.
        curves: ``{term: [K, n_updates]}``.
        title: the figure's title.
    """
    from matplotlib.figure import Figure

    names = list(curves)
    if not names:
        raise ValueError("There are no training curves to plot.")
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    colours = [f"C{i % 10}" for i in range(len(seeds))]
    n_updates = next(iter(curves.values())).shape[1]
    updates = np.arange(1, n_updates + 1)
    window = max(1, n_updates // 100)
    for ax, name in zip(axes, names, strict=False):
        values = np.asarray(curves[name], dtype=np.float64)
        finite = values[np.isfinite(values)]
        for row, (seed, colour) in enumerate(zip(seeds, colours, strict=True)):
            if window > 1:
                ax.plot(updates, values[row], color=colour, alpha=0.15, lw=0.6)
            ax.plot(
                updates, _running_mean(values[row], window), color=colour, lw=1.4, label=f"{seed}"
            )
        if finite.size and (finite > 0).all() and finite.max() > 10 * finite.min():
            ax.set_yscale("log")  # positive over more than a decade
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("update")
        ax.set_ylabel(TERM_LABELS.get(name, name), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if not np.isfinite(values).all():
            ax.text(
                0.02,
                0.96,
                "gaps: NaN/inf (diverged)",
                transform=ax.transAxes,
                va="top",
                fontsize=8,
                color="red",
            )
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    smoothing = f"running mean over {window} updates (faint: each update)" if window > 1 else ""
    handles, labels = axes[0].get_legend_handles_labels()
    if len(seeds) <= 20:
        fig.legend(
            handles,
            labels,
            title="seed",
            loc="outside right upper",
            fontsize=8,
            title_fontsize=8,
        )
    fig.suptitle(title + (f"\n{smoothing}" if smoothing else ""), fontsize=11)
    return fig


def run_title(folder: str | os.PathLike) -> str:
    """``"EDM on CartPole-v1, k = 10 trajectories per seed, 5 seeds, 10000 updates (run)"``
    from a run folder's ``config.json`` (as much of it as is there)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return f"training curves of {folder}"
    spec = config.get("spec", {}) if isinstance(config, dict) else {}
    resolved = config.get("resolved", {}) if isinstance(config, dict) else {}
    learner = spec.get("learner", {}) or {}
    algo = learner.get("algo", "?")
    env = resolved.get("env_id") or spec.get("env_id") or "its data"
    episodes = resolved.get("train_episodes") or {}
    counts = sorted({len(e) for e in episodes.values() if isinstance(e, list)})
    k = spec.get("episodes") or (counts[0] if len(counts) == 1 else None)
    parts = [f"{_NAMES.get(algo, algo)} on {env}"]
    if k is not None:
        parts.append(f"k = {k} trajectories per seed")
    seeds = spec.get("seeds") or []
    parts.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
    if "n_updates" in learner:
        parts.append(f"{learner['n_updates']} updates")
    return ", ".join(parts) + f" ({folder.name})"


def plot_run(folder: str | os.PathLike) -> Figure:
    """The training curves of the run in ``folder``, titled with its task, learner and ``k``.

    Raises:
        RunError: if the folder holds no readable curves.
    """
    seeds, curves = load_curves(folder)
    return plot_training_curves(seeds, curves, title=run_title(folder))

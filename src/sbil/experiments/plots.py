"""Figures for the tabular report (matplotlib, Agg backend, no display needed).

Each function takes computed results and returns a Figure; saving is the caller's job
(:func:`sbil.experiments.io.save_figure_atomic`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sbil.experiments.landing import LandingResult

_COLOURS = {"bc": "tab:blue", "edm": "tab:red", "oracle": "tab:green"}
_LABELS = {"bc": "BC", "edm": "EDM", "oracle": "occupancy matching (oracle)"}


def _figure(ncols: int, width: float = 5.2, height: float = 4.2) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, ncols))
    return fig, axes


def plot_landing(
    result: LandingResult, curve_ks: tuple[float, ...] = (-1.0, 0.0, 0.5, 1.5, 2.0)
) -> Figure:
    """Heatmap of EDM's limit theta*(d_E(s1), k) and curves theta* against d_E(s1).

    The heatmap's colour scale is centred at 0: red where EDM's limiting policy agrees in sign
    with the expert (theta_E > 0), blue where it prefers the other action. The solid line is
    the set where EDM is consistent (theta* = theta_E), the dashed one theta* = 0.
    """
    from matplotlib.colors import TwoSlopeNorm

    fig, (ax, ax2) = _figure(2)
    theta = result.theta
    finite = theta[np.isfinite(theta)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    mesh = ax.pcolormesh(
        result.d1,
        result.k,
        theta,
        shading="nearest",
        cmap="RdBu_r",
        norm=TwoSlopeNorm(0.0, -lim, lim),
    )
    fig.colorbar(mesh, ax=ax, label=r"EDM limit $\theta^*$")
    if np.any(theta < 0) and np.any(theta > 0):
        ax.contour(
            result.d1, result.k, theta, levels=[0.0], colors="k", linestyles="--", linewidths=1.2
        )
    ok = np.isfinite(result.consistent_d1)
    ax.plot(
        result.consistent_d1[ok],
        result.k[ok],
        color="k",
        lw=1.8,
        label=r"consistent: $\theta^*=\theta_E$",
    )
    ax.axhline(1.0, color="k", lw=1.0, ls=":", label="$k = 1$: consistent for every $d_E$")
    ax.plot([], [], color="k", ls="--", label=r"$\theta^* = 0$ (policy flips where blue)")
    ax.set_xlabel(r"expert state distribution $d_E(s_1)$")
    ax.set_ylabel("$k$ (logit scale in $s_2$)")
    ax.set_title(rf"EDM's infinite-data limit, expert $\theta_E = {result.theta_expert:g}$")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.85)
    for kv in curve_ks:
        j = int(np.argmin(np.abs(result.k - kv)))
        ax2.plot(result.d1, theta[j], label=f"$k = {result.k[j]:g}$")
    ax2.axhline(result.theta_expert, color="k", lw=1.0, ls=":", label=r"expert $\theta_E$")
    ax2.axhline(0.0, color="grey", lw=0.8)
    ax2.set_xlabel(r"$d_E(s_1)$")
    ax2.set_ylabel(r"$\theta^*$")
    ax2.set_title("EDM limit against the expert's state distribution")
    ax2.legend(fontsize=7)
    return fig


def plot_consistency(summary: pd.DataFrame, limit_rows: pd.DataFrame) -> Figure:
    """Log-log IQM error ``||theta_hat - theta_E||`` against N, per problem kind and method.

    Bands are 95% stratified-bootstrap intervals; dotted horizontal lines are the IQM of the
    infinite-data limit's error (absent when it is ~0, as for BC). Points where the IQM is
    infinite (more than a quarter of fits had no finite minimiser) cannot be drawn on a log
    axis: they are marked by a triangle at the top edge labelled "IQM = ∞" with the count of
    fits without a minimiser; the report table gives the same counts.
    """
    from matplotlib.transforms import blended_transform_factory

    kinds = [k for k in ("example3", "random") if k in set(summary["problem"])]
    fig, axes = _figure(len(kinds))
    titles = {
        "example3": r"Example 3 MDP ($\theta_E = 1$, $k = 1/2$)",
        "random": "random MDPs (shared features)",
    }
    for ax, kind in zip(axes, kinds, strict=True):
        infinite = []
        for method in ("bc", "edm"):
            s = summary[(summary["problem"] == kind) & (summary["method"] == method)].sort_values(
                "n_samples"
            )
            if s.empty:
                continue
            fin = np.isfinite(s["iqm"]) & (s["iqm"] > 0)
            c = _COLOURS[method]
            ax.plot(s["n_samples"][fin], s["iqm"][fin], "o-", color=c, label=_LABELS[method])
            hi = np.where(np.isfinite(s["ci_high"]), s["ci_high"], np.nan)
            ax.fill_between(
                s["n_samples"][fin], s["ci_low"][fin].clip(lower=1e-16), hi[fin], color=c, alpha=0.2
            )
            infinite += [(method, row) for _, row in s[~fin].iterrows()]
            lim = limit_rows[(limit_rows["problem"] == kind) & (limit_rows["method"] == method)]
            lim_err = lim["error"].to_numpy()
            lim_err = lim_err[np.isfinite(lim_err)]
            if lim_err.size and np.median(lim_err) > 1e-6:
                from sbil.experiments.stats import iqm

                ax.axhline(
                    iqm(lim_err),
                    color=c,
                    ls=":",
                    lw=1.2,
                    label=rf"{_LABELS[method]} limit ($N = \infty$)",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        if infinite:
            # Headroom above the curves for the markers of infinite IQMs.
            low, high = ax.get_ylim()
            ax.set_ylim(low, high * 8)
            top = blended_transform_factory(ax.transData, ax.transAxes)
            for method, row in infinite:
                c = _COLOURS[method]
                ax.plot(row["n_samples"], 0.97, "^", color=c, ms=8, transform=top, clip_on=False)
                ax.annotate(
                    f"{_LABELS[method]}: IQM = ∞ ({int(row['n_no_minimiser'])}/"
                    f"{int(row['n_fits'])} fits without a finite minimiser)",
                    (row["n_samples"], 0.97),
                    xycoords=top,
                    xytext=(8, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color=c,
                )
        ax.set_xlabel("data size $N$ (iid draws from $d_E$)")
        ax.set_ylabel(r"IQM of $\|\hat\theta - \theta_E\|_2$")
        ax.set_title(titles[kind])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_limits(limit_rows: pd.DataFrame) -> Figure:
    """Distributions over random MDPs of infinite-data parameter error and visitation TV."""
    from matplotlib.ticker import MaxNLocator, NullFormatter

    fig, (ax, ax2) = _figure(2)
    lim = limit_rows[limit_rows["problem"] == "random"]
    edm = lim[(lim["method"] == "edm") & lim["converged"]]
    err = edm["error"].to_numpy()
    if err.size:
        bins = np.logspace(
            np.log10(max(err.min(), 1e-12)), np.log10(max(err.max(), 1e-11)) + 1e-9, 30
        )
        ax.hist(err, bins=bins, color=_COLOURS["edm"], alpha=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlabel(r"EDM limit error $\|\theta^*_{EDM} - \theta_E\|_2$")
    ax.set_ylabel("number of random MDPs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"EDM with infinite data ({len(edm)} MDPs)")
    for method in ("bc", "edm", "oracle"):
        m = lim[(lim["method"] == method) & lim["converged"]]
        if m.empty:
            continue
        # Exact zeros (to rounding) are drawn at 1e-16 so that a log axis can show them.
        v = np.sort(np.maximum(m["visitation_tv"].to_numpy(), 1e-16))
        ax2.step(
            v,
            np.arange(1, v.size + 1) / v.size,
            where="post",
            color=_COLOURS[method],
            label=f"{_LABELS[method] if method != 'oracle' else 'oracle'} ({v.size} MDPs)",
        )
    ax2.set_xscale("log")
    ax2.set_xlabel(r"TV$(d_{\pi_\theta}, d_E)$ of the learned policy's true visitation")
    ax2.set_ylabel("fraction of MDPs (cumulative)")
    ax2.set_title(r"distance to the expert's visitation, $N = \infty$")
    if ax2.get_legend_handles_labels()[0]:
        # Between BC's curve (far left, ~1e-16) and the others.
        ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(0.08, 0.75))
    return fig

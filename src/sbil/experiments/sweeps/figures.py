"""The figures of a sweep report, each made from the summary alone: return against k,
performance profiles and interval estimates.

Over the ~400-line guide (about 440 lines): four figures sharing one style table
(:func:`_styles`) and axis rule (:func:`_axis_limits`), kept together so every figure draws a
learner alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sbil.experiments.sweeps.common import (
    ALGO_NAMES,
    ALGO_ORDER,
    _key,
    _learner_scope_labels,
    _scope_labels,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# Ten distinct colours and markers (one per learner up to ten, then they repeat), so eight
# learners stay apart in colour and, where lines overlap or print in grey, in marker. Grey comes
# last: the per-learner profiles draw the other learners in grey.
_COLOURS = (
    "tab:blue",
    "tab:red",
    "tab:orange",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

_LINESTYLES = ("-", "--", "-.", ":")


def _styles(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant a colour, a marker and a line style of its own, fixed by its learner's place
    in the registry (so a learner looks the same in every report, whichever others are there);
    a learner's further option-sets, and learners outside the registry, take the places after."""
    counts: dict[str, int] = {}
    for v in summary["variants"]:
        counts[v["algo"]] = counts.get(v["algo"], 0) + 1
    known = [n for a, n in counts.items() if a in ALGO_ORDER]
    out, taken, extra = {}, {}, len(ALGO_ORDER) * max(known, default=1)
    for v in summary["variants"]:
        algo = v["algo"]
        if algo in ALGO_ORDER:
            place = ALGO_ORDER.index(algo) + len(ALGO_ORDER) * taken.get(algo, 0)
        else:
            place, extra = extra, extra + 1
        taken[algo] = taken.get(algo, 0) + 1
        out[v["variant"]] = {
            "color": _COLOURS[place % len(_COLOURS)],
            "marker": _MARKERS[place % len(_MARKERS)],
            "linestyle": _LINESTYLES[place % len(_LINESTYLES)],
        }
    return out


def _legend_below(fig: Figure, handles: Sequence[Any], labels: Sequence[str]) -> None:
    """One legend for the whole figure, under the panels, in at most two rows."""
    ncols = len(labels) if len(labels) <= 5 else math.ceil(len(labels) / 2)
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, ncols), fontsize=8)


#: How far (as a fraction of the span of the point estimates and the reference lines) an
#: interval may reach beyond that span before the return-against-k axis cuts it. The bootstrap
#: interval of an IQM over few seeds can reach one seed's extreme return (a resample that draws
#: it often enough keeps it inside the middle half); letting that set the axis would flatten
#: every other learner's curve.
_AXIS_MARGIN = 0.25


def _axis_limits(
    centres: Iterable[float], lows: Iterable[float], highs: Iterable[float]
) -> tuple[float, float, float, float]:
    """The y-range of a return-against-k panel: ``(clip_low, clip_high, y_low, y_high)``.

    ``centres`` are what must always show (the IQMs and the reference lines); intervals are cut
    at ``clip_low``/``clip_high``, :data:`_AXIS_MARGIN` of the centres' span beyond them;
    ``y_low``/``y_high`` are the axis limits, the drawn range with a small pad.

    Example:
        >>> _axis_limits([0.0, 1.0], [-0.1, -1e6], [1.1, 1.2])
        (-0.25, 1.25, -0.3225, 1.2725)
    """
    core = np.array([c for c in centres if np.isfinite(c)], dtype=float)
    lo, hi = (float(core.min()), float(core.max())) if core.size else (0.0, 1.0)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    clip_low, clip_high = lo - _AXIS_MARGIN * span, hi + _AXIS_MARGIN * span
    drawn_low = min(lo, max(clip_low, min((v for v in lows if np.isfinite(v)), default=lo)))
    drawn_high = max(hi, min(clip_high, max((v for v in highs if np.isfinite(v)), default=hi)))
    pad = 0.05 * ((drawn_high - drawn_low) or span)  # a flat panel (one value) still has height
    return clip_low, clip_high, drawn_low - pad, drawn_high + pad


def _plot_env(summary: Mapping[str, Any], env: str) -> Figure:
    """IQM return (and normalised score) against k per learner, with the summary's intervals.

    The y-axis spans the IQMs and the random and expert references (0 and 1 when normalised),
    and intervals up to :data:`_AXIS_MARGIN` of that span beyond; an interval reaching further
    is cut at the axis and its cut end marked by a triangle (gid ``"cut"``), so one seed's
    extreme return cannot flatten the figure. Each errorbar carries its variant as gid.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    cells = [c for c in summary["cells"] if c["env_id"] == env]
    has_norm = any(c["normalised"] is not None for c in cells)
    fig = Figure(figsize=(10.4 if has_norm else 6.4, 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 2 if has_norm else 1))
    panels = [("return", "IQM return")] + (
        [("normalised", "IQM normalised score")] if has_norm else []
    )
    n_variants = max(1, len(names))
    ks = sorted({c["k"] for c in cells})
    spread = (max(ks) - min(ks)) if len(ks) > 1 else 1.0
    ref = summary["references"].get(env, {})
    cut_any = False
    for ax, (key, label) in zip(axes, panels, strict=True):
        shown = [c[key] for c in cells if c[key] is not None]
        lines = [0.0, 1.0] if key == "normalised" else []
        if key == "return" and ref.get("usable"):
            lines = [ref["random"]["mean"], ref["expert"]["mean"]]
        clip_low, clip_high, y_low, y_high = _axis_limits(
            [*(e["iqm"] for e in shown), *lines],
            [e["low"] for e in shown],
            [e["high"] for e in shown],
        )
        for i, variant in enumerate(names):
            pts = [c for c in cells if c["variant"] == variant and c[key] is not None]
            if not pts:
                continue
            style = styles[variant]
            # Small horizontal offsets keep overlapping intervals readable.
            dx = (i - (n_variants - 1) / 2) * 0.012 * spread
            x = np.array([c["k"] for c in pts], dtype=float) + dx
            y = np.array([c[key]["iqm"] for c in pts])
            lo = np.clip([c[key]["low"] for c in pts], clip_low, None)
            hi = np.clip([c[key]["high"] for c in pts], None, clip_high)
            bars = ax.errorbar(
                x,
                y,
                yerr=np.vstack([y - lo, hi - y]),
                color=style["color"],
                marker=style["marker"],
                linestyle=style["linestyle"],
                markersize=5,
                lw=1.2,
                capsize=3,
                label=names[variant],
            )
            bars.lines[0].set_gid(variant)
            for ends, edge, marker in (
                ([c[key]["low"] for c in pts], clip_low, "v"),
                ([c[key]["high"] for c in pts], clip_high, "^"),
            ):
                cut = (np.array(ends) < edge) if marker == "v" else (np.array(ends) > edge)
                if cut.any():
                    cut_any = True
                    ax.plot(
                        x[cut],
                        np.full(int(cut.sum()), edge),
                        ls="none",
                        marker=marker,
                        markersize=7,
                        color=style["color"],
                        markeredgecolor="k",
                        markeredgewidth=0.6,
                        gid="cut",
                    )
        if key == "return" and ref.get("usable"):
            ax.axhline(ref["expert"]["mean"], color="k", ls=":", lw=1, label="expert")
            ax.axhline(ref["random"]["mean"], color="grey", ls="--", lw=1, label="random policy")
        if key == "normalised":
            ax.axhline(1.0, color="k", ls=":", lw=1)
            ax.axhline(0.0, color="grey", ls="--", lw=1)
        ax.set_ylim(y_low, y_high)
        ax.set_xticks(ks)
        ax.set_xlabel("k (expert trajectories)")
        ax.set_ylabel(f"{label} (95% CI over seeds)")
        ax.set_title(f"{env}: {label.split(' ', 1)[1]} against k")
    handles, labels = axes[0].get_legend_handles_labels()
    if cut_any:
        marker = Line2D([], [], ls="none", marker="v", color="w", markeredgecolor="k")
        handles, labels = [*handles, marker], [*labels, "interval cut at the axis"]
    _legend_below(fig, handles, labels)
    return fig


#: Above this many learners the overlaid performance profiles leave out their bands (they
#: would overlap into one grey mass); the per-learner figure draws each one's band instead.
_MAX_BANDED_PROFILES = 3


def _profile_variants(summary: Mapping[str, Any]) -> list[str]:
    """The variants with a performance profile, in learner order."""
    drawn = {c["variant"] for c in summary["profiles"]["curves"]}
    return [v["variant"] for v in summary["variants"] if v["variant"] in drawn]


def _plot_profiles(summary: Mapping[str, Any]) -> Figure:
    """Performance profiles overlaid, one panel per scope (all (env, k) tasks, then each k)."""
    from matplotlib.figure import Figure

    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    order_of = {v["variant"]: i for i, v in enumerate(summary["variants"])}
    taus = np.asarray(summary["profiles"]["taus"])
    curves = summary["profiles"]["curves"]
    scopes = _scope_labels(curves)
    # "all k" first, then each k.
    order = sorted(scopes, key=lambda k: (k[0] != "all", k[1] or 0))
    ncols = min(3, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    legend: dict[str, Any] = {}
    banded = len(_profile_variants(summary)) <= _MAX_BANDED_PROFILES
    for ax, key in zip(axes, order, strict=False):
        for c in curves:
            if _key(c) != key:
                continue
            style = styles[c["variant"]]
            i = order_of[c["variant"]]
            (line,) = ax.plot(
                taus,
                c["fraction"],
                **style,
                lw=1.3,
                markersize=4,
                # Markers every tenth tau, staggered so that coinciding curves show each one.
                markevery=(round(10 * i / len(names)) % 10, 10),
                label=names[c["variant"]],
                gid=c["variant"],
            )
            if banded:
                ax.fill_between(taus, c["low"], c["high"], color=style["color"], alpha=0.2, lw=0)
            legend.setdefault(c["variant"], line)
        ax.axvline(1.0, color="k", ls=":", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(r"normalised score $\tau$")
        ax.set_ylabel(r"fraction of runs with score $> \tau$")
        ax.set_title(scopes[key] if key[0] == "k" else "all (environment, k) tasks")
    for ax in axes[len(order) :]:
        ax.set_visible(False)
    ordered = sorted(legend, key=order_of.__getitem__)
    _legend_below(fig, [legend[v] for v in ordered], [names[v] for v in ordered])
    return fig


def _plot_profiles_per_learner(summary: Mapping[str, Any]) -> Figure | None:
    """Small multiples of the performance profiles over all (env, k) tasks: one panel per
    learner with its pointwise 95% band, the baseline's (BC's) curve dashed in black and the
    other learners' in light grey. None without a profile over all tasks."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    taus = np.asarray(summary["profiles"]["taus"])
    curves = {c["variant"]: c for c in summary["profiles"]["curves"] if c["scope"] == "all"}
    variants = [v for v in _profile_variants(summary) if v in curves]
    if not variants:
        return None
    baselines = [v for v in summary["learners"]["baseline_variants"] if v in curves]
    # Two rows of up to four: 6 learners as 2 x 3, 8 as 2 x 4.
    ncols = len(variants) if len(variants) <= 3 else min(4, math.ceil(len(variants) / 2))
    nrows = math.ceil(len(variants) / ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.9 * nrows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True))
    flat = axes.reshape(-1)
    for ax, variant in zip(flat, variants, strict=False):
        for other in variants:
            if other != variant and other not in baselines:
                ax.plot(taus, curves[other]["fraction"], color="0.78", lw=0.8, zorder=1)
        for base in baselines:
            if base != variant:
                ax.plot(taus, curves[base]["fraction"], color="k", ls="--", lw=1.0, zorder=2)
        c, style = curves[variant], styles[variant]
        ax.fill_between(taus, c["low"], c["high"], color=style["color"], alpha=0.3, lw=0)
        ax.plot(
            taus,
            c["fraction"],
            **style,
            lw=1.6,
            markersize=4,
            markevery=(0, 10),
            zorder=3,
            gid=variant,
        )
        ax.axvline(1.0, color="k", ls=":", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{names[variant]} ({c['n_tasks']} tasks × {c['n_seeds']} seeds)", fontsize=9)
        ax.grid(True, alpha=0.25)
    for ax in flat[len(variants) :]:
        ax.set_visible(False)
    for ax in flat[max(0, len(variants) - ncols) : len(variants)]:  # the lowest of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel(r"normalised score $\tau$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"fraction of runs $> \tau$")
    baseline = ALGO_NAMES.get(summary["learners"]["baseline"], summary["learners"]["baseline"])
    handles = [
        Patch(color="0.5", alpha=0.3, label="the panel's learner: 95% band"),
        Line2D([], [], color="k", ls="--", lw=1.0, label=baseline),
        Line2D([], [], color="0.78", lw=0.8, label="the other learners"),
    ]
    _legend_below(fig, handles, [h.get_label() for h in handles])
    fig.suptitle("Performance profiles over all (environment, k) tasks, one panel per learner")
    return fig


def _interval_rows(
    data: Mapping[str, Any], names: Mapping[str, str], scope: str
) -> tuple[list[tuple[str, str, Mapping[str, Any] | None]], list[tuple[str, str, Any]]]:
    """The rows of the interval figure at one scope of the summary's ``learners``: per
    variant its IQM normalised score, and per (variant, baseline variant) its P(X > BC)
    entry, or ``"baseline"`` for the baseline's own row; each as (label, variant, entry)."""
    several = len(data.get("baseline_variants", ())) > 1
    iqm_rows, p_rows = [], []
    for row in data["rows"]:
        name = names.get(row["variant"], row["name"])
        part = row[scope]
        norm = part["normalised"]
        iqm_rows.append((name, row["variant"], norm if norm and norm["iqm"] is not None else None))
        if row["algo"] == data["baseline"]:
            p_rows.append((name, row["variant"], "baseline"))
        elif not part["vs_baseline"]:
            p_rows.append((name, row["variant"], None))
        for e in part["vs_baseline"]:
            label = f"{name} vs {names.get(e['y'], e['y'])}" if several else name
            p_rows.append((label, row["variant"], e if e["p"] is not None else None))
    return iqm_rows, p_rows


def _plot_intervals(summary: Mapping[str, Any]) -> Figure:
    """rliable's interval estimates of the per-learner table: per scope (few k, all (env, k))
    a panel of IQM normalised scores and one of P(X > BC), a row per learner with its 95%
    stratified bootstrap interval (bar) and point estimate (black tick).

    Every number drawn is the summary's (``learners``, the same intervals as the aggregate and
    improvement tables); the bars (patches) and ticks (lines) carry their variant as gid, and
    each panel its (metric, scope) as gid, e.g. ``"iqm:few"``, ``"p:all"``.
    """
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    data = summary["learners"]
    names = {v["variant"]: v["name"] for v in summary["variants"]}
    styles = _styles(summary)
    baseline = ALGO_NAMES.get(data["baseline"], data["baseline"])
    labels = _learner_scope_labels(data, all_label="all (env, k)")
    rows = {s["name"]: _interval_rows(data, names, s["name"]) for s in data["scopes"]}
    height = max(max(len(i), len(p)) for i, p in rows.values())
    nrows = len(data["scopes"])
    fig = Figure(figsize=(10.4, nrows * (0.34 * height + 1.3) + 0.6), layout="constrained")
    # One x-axis per column, so that the scopes' panels read against each other.
    axes = fig.subplots(nrows, 2, squeeze=False, sharex="col")
    pooled = {
        env
        for row in data["rows"]
        for s in data["scopes"]
        for e in [row[s["name"]]["normalised"], *row[s["name"]]["vs_baseline"]]
        if e
        for env in e["envs"]
    }
    envs = [e for e in summary["headline_envs"] if e in pooled] + sorted(
        pooled - set(summary["headline_envs"])
    )
    for (ax_iqm, ax_p), scope in zip(axes, data["scopes"], strict=True):
        iqm_rows, p_rows = rows[scope["name"]]
        for ax, metric, entries in ((ax_iqm, "iqm", iqm_rows), (ax_p, "p", p_rows)):
            ax.set_gid(f"{metric}:{scope['name']}")
            note = blended_transform_factory(ax.transAxes, ax.transData)
            for y, (_, variant, entry) in enumerate(entries):
                if isinstance(entry, Mapping):
                    (bar,) = ax.barh(
                        y,
                        entry["high"] - entry["low"],
                        left=entry["low"],
                        height=0.6,
                        color=styles[variant]["color"],
                        alpha=0.75,
                    )
                    bar.set_gid(variant)
                    point = [entry[metric]] * 2
                    ax.plot(point, [y - 0.3, y + 0.3], color="k", lw=1.6, gid=variant)
                else:
                    text = (
                        "(the baseline)"
                        if entry == "baseline"
                        else "no normalised score"
                        if metric == "iqm"
                        else "no runs to compare"
                    )
                    ax.text(
                        0.5,
                        y,
                        text,
                        transform=note,
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="0.35",
                        style="italic",
                    )
            ax.set_yticks(range(len(entries)), [label for label, _, _ in entries], fontsize=9)
            ax.set_ylim(len(entries) - 0.5, -0.5)  # the first learner on top
            ax.grid(True, axis="x", alpha=0.3)
        ax_iqm.axvline(0.0, color="grey", ls="--", lw=1)
        ax_iqm.axvline(1.0, color="k", ls=":", lw=1)
        ax_iqm.set_title(f"IQM normalised score, {labels[scope['name']]}", fontsize=10)
        ax_p.axvline(0.5, color="k", ls=":", lw=1)
        ax_p.set_xlim(-0.03, 1.03)  # a P of exactly 0 or 1 stays in view
        ax_p.set_title(f"P(X > {baseline}), {labels[scope['name']]}", fontsize=10)
    axes[-1, 0].set_xlabel("normalised score (random policy 0, expert 1)")
    axes[-1, 1].set_xlabel(f"probability that a run of X beats a {baseline} run on the same task")
    fig.suptitle(
        f"Per learner over {', '.join(envs)}: point estimate (black) and 95% stratified "
        "bootstrap interval",
        fontsize=10,
    )
    return fig

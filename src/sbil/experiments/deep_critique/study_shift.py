"""Study 2: Example 2 on a trained network (a per-state shift of the logits leaves the policy
unchanged and changes p_theta's ranking of states); its claim and figure.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps

from sbil.experiments.claims import Claim, fmt, table
from sbil.experiments.deep_critique.common import _figure, _slice_coordinate, coordinate_name
from sbil.experiments.deep_critique.config import DeepCritiqueConfig
from sbil.experiments.deep_critique.networks import _forward, _logsumexp, _softmax, stacked_network
from sbil.experiments.deep_critique.rollouts import _draw_rows
from sbil.experiments.deep_critique.study_ptheta import TaskStudy

#: The shifts ``g(s)`` of study 2, as functions of ``lse(s) = logsumexp_a f(s)[a]``.
SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "g = -lse f": lambda lse: -lse,
    "g = -2 lse f": lambda lse: -2.0 * lse,
}


@dataclass(frozen=True)
class ShiftResult:
    """Example 2 on a trained network: ``f'(s) = f(s) + g(s)`` for each shift ``g``.

    Attributes:
        env_id: the task.
        n_states: states the numbers are computed on.
        max_policy_change: ``{shift: max_s max_a |pi'(a|s) - pi(a|s)|}`` (float64).
        spearman: ``{shift: rank correlation of log p_theta' with log p_theta}`` (NaN when
            ``log p_theta'`` is constant).
        kendall: the same with Kendall's tau.
        spread: ``{"original" or shift: max - min of log p_theta over the states}``.
        log_density: ``{"original" or shift: [n] log p_theta}``.
        slice_coordinate: the coordinate varied in :attr:`slice_states`.
        slice_states: ``[g, d]`` states along one coordinate through the mean expert state.
        slice_policy: ``{"original" or shift: [g, A]}`` action probabilities on the slice.
        slice_log_density: ``{"original" or shift: [g]}``.
    """

    env_id: str
    n_states: int
    max_policy_change: dict[str, float]
    spearman: dict[str, float]
    kendall: dict[str, float]
    spread: dict[str, float]
    log_density: dict[str, np.ndarray]
    slice_coordinate: int
    slice_states: np.ndarray
    slice_policy: dict[str, np.ndarray]
    slice_log_density: dict[str, np.ndarray]


def shifted_model(logits: np.ndarray, shift: Callable[[np.ndarray], np.ndarray]):
    """``(policy, log p_theta)`` of the logits ``f + g`` with ``g = shift(logsumexp f)``.

    Args:
        logits: ``[n, A]`` ``f(s)`` (float64).
        shift: maps ``logsumexp f`` ``[n]`` to ``g`` ``[n]``.

    Returns:
        ``([n, A] softmax(f + g), [n] logsumexp(f + g))``, computed from ``f + g`` itself.
    """
    shifted = logits + shift(_logsumexp(logits))[:, None]
    return _softmax(shifted), _logsumexp(shifted)


def shift_study(task: TaskStudy, config: DeepCritiqueConfig) -> ShiftResult:
    """Shift the trained EDM learner's logits per state; measure policy and p_theta ranking.

    The states: held-out expert states, the learner's own states, the finite final SGLD
    samples of both temperatures and uniform draws from the box spanned by the data, up to
    ``config.n_shift_states`` (float64 throughout).
    """
    learner = task.edm
    rng = np.random.default_rng([config.seed, 2])
    chains = [run.states[-1] for run in task.models["edm"].chains.values()]
    low, high = task.d_e.min(axis=0), task.d_e.max(axis=0)
    pieces = [task.d_e, task.d_pi["edm"], *(c[np.isfinite(c).all(axis=1)] for c in chains)]
    box = rng.uniform(
        low, high, size=(max(0, config.n_shift_states - sum(map(len, pieces))), len(low))
    )
    states = _draw_rows(np.concatenate([*pieces, box]), config.n_shift_states, rng)
    net = stacked_network(learner.policy_state)
    x = (states - learner.obs_mean) / learner.obs_std
    logits = _forward(net, x[None], dtype=torch.float64)[0]
    policy = _softmax(logits)
    log_p = {"original": _logsumexp(logits)}
    max_change, rho_s, tau = {}, {}, {}
    for name, shift in SHIFTS.items():
        shifted_policy, shifted_log_p = shifted_model(logits, shift)
        max_change[name] = float(np.abs(shifted_policy - policy).max())
        log_p[name] = shifted_log_p
        constant = np.ptp(shifted_log_p) == 0
        rho_s[name] = (
            math.nan if constant else float(sps.spearmanr(log_p["original"], shifted_log_p)[0])
        )
        tau[name] = (
            math.nan if constant else float(sps.kendalltau(log_p["original"], shifted_log_p)[0])
        )
    coordinate = _slice_coordinate(task.env_id, task.d_e.shape[1])
    grid = np.linspace(
        low[coordinate] - (high - low)[coordinate], high[coordinate] + (high - low)[coordinate], 201
    )
    slice_states = np.repeat(task.d_e.mean(axis=0)[None], len(grid), axis=0)
    slice_states[:, coordinate] = grid
    slice_logits = _forward(
        net, ((slice_states - learner.obs_mean) / learner.obs_std)[None], dtype=torch.float64
    )[0]
    slice_policy = {"original": _softmax(slice_logits)}
    slice_log_p = {"original": _logsumexp(slice_logits)}
    for name, shift in SHIFTS.items():
        slice_policy[name], slice_log_p[name] = shifted_model(slice_logits, shift)
    return ShiftResult(
        env_id=task.env_id,
        n_states=len(states),
        max_policy_change=max_change,
        spearman=rho_s,
        kendall=tau,
        spread={name: float(np.ptp(v)) for name, v in log_p.items()},
        log_density=log_p,
        slice_coordinate=coordinate,
        slice_states=slice_states,
        slice_policy=slice_policy,
        slice_log_density=slice_log_p,
    )


def shift_claim(shifts: Sequence[ShiftResult]) -> Claim:
    """``deep_shift_invariance``: Example 2 on trained networks."""
    max_change = max(max(s.max_policy_change.values()) for s in shifts)
    flat = [s.spread["g = -lse f"] / max(s.spread["original"], 1e-300) for s in shifts]
    reversed_rank = [s.spearman["g = -2 lse f"] for s in shifts]
    agrees = max_change < 1e-6 and max(flat) < 1e-9 and max(reversed_rank) < -0.999
    rows = [
        [
            s.env_id,
            f"{s.n_states:,}",
            fmt(max(s.max_policy_change.values())),
            fmt(s.spread["original"], 3),
            fmt(s.spread["g = -lse f"]),
            fmt(s.spearman["g = -lse f"], 3),
            fmt(s.spearman["g = -2 lse f"], 3),
            fmt(s.kendall["g = -2 lse f"], 3),
        ]
        for s in shifts
    ]
    text = (
        "Adding `g(s)` to every logit of state `s` leaves `softmax f(s)` unchanged and changes "
        "`log p_theta(s) = logsumexp f(s)` into `logsumexp f(s) + g(s)`. On the trained EDM "
        "networks (states: held-out expert states, the learner's own states, SGLD samples and "
        "uniform draws in the data's box, float64): the largest change of any action "
        f"probability is {fmt(max_change)}; with `g = -logsumexp f` every state gets the same "
        f"log density (spread at most {fmt(max(flat))} of the original), so p_theta's ranking "
        "of states is erased; with `g = -2 logsumexp f` it is reversed (Spearman "
        f"{fmt(max(reversed_rank), 4)} or lower). The policy therefore does not determine "
        "p_theta: a learner's state model carries information its policy does not, and two "
        "networks with one policy can have opposite state models.\n\n"
        + table(
            [
                "task",
                "states",
                "max change of pi",
                "spread of log p_theta",
                "spread, g = -lse f",
                "Spearman, g = -lse f",
                "Spearman, g = -2 lse f",
                "Kendall, g = -2 lse f",
            ],
            rows,
        )
    )
    return Claim(
        id="deep_shift_invariance",
        title=(
            "Shifting a trained network's logits per state leaves its policy unchanged while "
            "p_theta's ranking of states changes completely (the note's Example 2)."
        ),
        value=max_change,
        agrees=agrees,
        text=text,
        check=(
            "value = largest action-probability change over tasks, states and both shifts; "
            "agrees when it is below 1e-6, the spread of log p_theta under g = -lse f is below "
            "1e-9 of the original and Spearman's rank correlation under g = -2 lse f is below "
            "-0.999 on every task"
        ),
        tolerance=1e-6,
        details={
            s.env_id: {
                "max_policy_change": s.max_policy_change,
                "spearman": s.spearman,
                "kendall": s.kendall,
                "spread": s.spread,
                "n_states": s.n_states,
            }
            for s in shifts
        },
        figures=("deep_shift.png",),
    )


def plot_shift(shift: ShiftResult):
    """The policy and log p_theta along one coordinate, and log p_theta before and after."""
    fig, axes = _figure(1, 3)
    grid = shift.slice_states[:, shift.slice_coordinate]
    styles = {"original": "-", "g = -lse f": "--", "g = -2 lse f": ":"}
    for name, probs in shift.slice_policy.items():
        axes[0, 0].plot(
            grid, probs[:, -1], styles[name], lw=2 if name == "original" else 1.3, label=name
        )
        axes[0, 1].plot(grid, shift.slice_log_density[name], styles[name], label=name)
    coordinate = coordinate_name(shift.env_id, shift.slice_coordinate)
    axes[0, 0].set_xlabel(coordinate)
    axes[0, 0].set_ylabel("pi(last action | s)")
    axes[0, 0].set_title(f"{shift.env_id} EDM: policy, other coordinates at d_E's mean", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].set_xlabel(coordinate)
    axes[0, 1].set_ylabel("log p_theta(s) (unnormalised)")
    axes[0, 1].set_title("state model along the same line", fontsize=9)
    axes[0, 1].legend(fontsize=7)
    ax = axes[0, 2]
    original = shift.log_density["original"]
    for name in SHIFTS:
        ax.scatter(
            original,
            shift.log_density[name],
            s=2,
            alpha=0.4,
            label=f"{name} (Spearman {fmt(shift.spearman[name], 3)})",
        )
    ax.set_xlabel("log p_theta(s)")
    ax.set_ylabel("log p_theta'(s) after the shift")
    ax.set_title(f"{shift.n_states:,} states", fontsize=9)
    ax.legend(fontsize=7, markerscale=4)
    return fig

"""What the deep studies share: t intervals, number ranges in the wording, the learners'
colours and labels, a figure's frame, the observation coordinates a figure slices along.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from sbil.experiments.claims import fmt
from sbil.experiments.stats import Interval

#: Names of the observation coordinates of the built-in tasks (for tables and figures).
COORDINATES: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("cart position", "cart velocity", "pole angle", "pole angular velocity"),
    "Acrobot-v1": ("cos t1", "sin t1", "cos t2", "sin t2", "t1 velocity", "t2 velocity"),
    "MountainCar-v0": ("position", "velocity"),
    "LunarLander-v3": (
        "x",
        "y",
        "x velocity",
        "y velocity",
        "angle",
        "angular velocity",
        "left leg",
        "right leg",
    ),
}

# The coordinate each figure shows: the one the expert controls most tightly.
_SLICE_COORDINATE = {"CartPole-v1": 2, "Acrobot-v1": 5, "MountainCar-v0": 1, "LunarLander-v3": 4}


def _slice_coordinate(env_id: str, obs_dim: int) -> int:
    return _SLICE_COORDINATE.get(env_id, 0) if _SLICE_COORDINATE.get(env_id, 0) < obs_dim else 0


def coordinate_name(env_id: str, j: int) -> str:
    """The name of observation coordinate ``j`` of ``env_id`` (``"s[j]"`` if unknown)."""
    names = COORDINATES.get(env_id, ())
    return names[j] if j < len(names) else f"s[{j}]"


def t_interval(values: np.ndarray, *, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (e.g. one number per seed)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, confidence)
    half = float(
        sps.t.ppf(0.5 + confidence / 2, len(values) - 1)
        * values.std(ddof=1)
        / math.sqrt(len(values))
    )
    return Interval(mean, mean - half, mean + half, confidence)


def _range(values) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "—"
    low, high = min(values), max(values)
    return fmt(low, 3) if low == high else f"{fmt(low, 3)} to {fmt(high, 3)}"


def _mean_range(values: np.ndarray) -> str:
    """``mean (low to high)`` of per-seed values (a return's range, never outside its values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        return fmt(values[0], 1)
    return f"{fmt(values.mean(), 1)} ({fmt(values.min(), 1)} to {fmt(values.max(), 1)})"


def _mean_interval(values: np.ndarray, *, digits: int = 3, tv: bool = False) -> str:
    """``mean [low, high]`` (95% t-interval over seeds; a TV interval is clipped to [0, 1])."""
    ci = t_interval(values)
    if not np.isfinite(ci.low):
        return fmt(ci.estimate, digits)
    low, high = (max(ci.low, 0.0), min(ci.high, 1.0)) if tv else (ci.low, ci.high)
    return f"{fmt(ci.estimate, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


_ALGO_COLOURS = {"edm": "tab:red", "edm-decoupled": "tab:purple", "bc": "tab:blue"}
_ALGO_LABELS = {"edm": "EDM", "edm-decoupled": "decoupled EDM", "bc": "BC"}


def _figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes

"""Shared by the sweep report's modules: which learners it shows, in which order, against which
baseline, and small conversions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sbil.deep.learners.registry import ALGOS, DISPLAY_NAMES

if TYPE_CHECKING:
    pass


SUMMARY_SCHEMA = 1

CONFIDENCE = 0.95

ALGO_ORDER = ALGOS
"""The order of learners in every table and figure (the registry's); algorithms not listed
follow, by name."""

ALGO_NAMES = DISPLAY_NAMES
"""Display names (the registry's); an algorithm not listed is shown under its own name."""

BASELINE = "bc"
"""The learner every other one is compared with: P(X > BC) for each X present."""

COMPARISONS: tuple[tuple[str, str], ...] = (("edm", "bc"), ("edm-decoupled", "edm"))
"""(X, Y) pairs whose P(X > Y) the report gives whenever both are present, besides each
learner against :data:`BASELINE` (see :func:`comparisons`)."""


def comparisons(algos: Iterable[str]) -> list[tuple[str, str]]:
    """The (X, Y) algorithm pairs whose P(X > Y) the report gives, in learner order.

    Every algorithm present against :data:`BASELINE` (BC), and the :data:`COMPARISONS` pairs
    whose both sides are present.

    Example:
        >>> comparisons(["avril", "bc", "edm", "edm-decoupled"])
        [('edm', 'bc'), ('edm-decoupled', 'bc'), ('edm-decoupled', 'edm'), ('avril', 'bc')]
    """
    present = set(algos)
    pairs = {(a, BASELINE) for a in present if a != BASELINE and BASELINE in present}
    pairs |= {(x, y) for x, y in COMPARISONS if x in present and y in present}
    return sorted(pairs, key=lambda p: (_algo_rank(p[0]), _algo_rank(p[1])))


def _algo_rank(algo: str) -> tuple[int, str]:
    """Sort key of an algorithm: its place in :data:`ALGO_ORDER`, unknown ones after, by name."""
    return (ALGO_ORDER.index(algo) if algo in ALGO_ORDER else len(ALGO_ORDER), str(algo))


#: Presets that check the pipeline at a tiny budget: their reports state no verdict.
SMOKE_TEST_PRESETS = ("quick",)

#: The EDM paper's control tasks (Jarrett et al., 2020, section 5): in the ``edm-paper*``
#: presets' reports the verdict and every pooled figure are over these; the presets' other
#: tasks (MountainCar-v0, which the paper did not run) are reported beside them, not pooled.
PAPER_TASKS = ("CartPole-v1", "Acrobot-v1", "LunarLander-v3")

PAPER_PRESETS = ("edm-paper", "edm-paper-scripted", "edm-paper-epsilon")


def headline_envs(spec: Mapping[str, Any]) -> list[str]:
    """The tasks a sweep's verdict and pooled figures are over: for the ``edm-paper*`` presets
    the paper's control tasks among the spec's (:data:`PAPER_TASKS`), else every task."""
    envs = [str(e) for e in spec.get("envs", [])]
    if spec.get("preset") in PAPER_PRESETS:
        paper = [e for e in envs if e in PAPER_TASKS]
        if paper:
            return paper
    return envs


def smoke_test(spec: Mapping[str, Any]) -> str | None:
    """Why a sweep (its flat ``sweep.json``) is a smoke test whose report states no verdict
    about the paper (e.g. "the quick preset: 300 updates, 3 seeds, 10 evaluation episodes"),
    or None."""
    name = spec.get("preset")
    if name not in SMOKE_TEST_PRESETS:
        return None
    options = spec.get("options") if isinstance(spec.get("options"), dict) else {}
    budget = [
        f"{options['n_updates']} updates" if "n_updates" in options else None,
        f"{len(spec['seeds'])} seeds" if isinstance(spec.get("seeds"), list) else None,
        f"{spec['eval_episodes']} evaluation episodes" if "eval_episodes" in spec else None,
    ]
    shown = ", ".join(b for b in budget if b)
    return f"the {name} preset" + (f": {shown}" if shown else "")


def _display(variant: str, algo: str) -> str:
    return ALGO_NAMES.get(algo, algo) + variant[len(algo) :]


def _plain(value: Any) -> Any:
    """JSON-ready scalars: numpy numbers to Python, NaN to None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _a(name: str) -> str:
    """The indefinite article before a method's name as it is read ("an EDM", "a BC")."""
    return "an" if name[:1] in "AEIOU" else "a"


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.{digits}f}"


_INTERVAL_FIGURE = "interval-estimates.png"

_PROFILE_FIGURE = "performance-profiles.png"

_PROFILE_LEARNER_FIGURE = "performance-profiles-per-learner.png"


def _envs(summary: Mapping[str, Any]) -> list[str]:
    spec_envs = [str(e) for e in summary["protocol"]["spec"].get("envs", [])]
    seen = {c["env_id"] for c in summary["cells"]}
    return [e for e in spec_envs if e in seen] + sorted(seen - set(spec_envs))


def _key(entry: Mapping[str, Any]) -> tuple[str, int | None]:
    return (entry["scope"], entry["k"])


def _scope_labels(entries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int | None], str]:
    keys = sorted({_key(e) for e in entries}, key=lambda k: (k[0] == "all", k[1] or 0))
    return {k: ("all k" if k[0] == "all" else f"k = {k[1]}") for k in keys}


def _learner_scope_labels(data: Mapping[str, Any], *, all_label: str) -> dict[str, str]:
    """The label of each scope of a summary's ``learners``: ``all_label``, "k = 1", "k ≤ 3"."""
    return {
        s["name"]: all_label
        if s["name"] == "all"
        else f"k = {s['ks'][0]}"
        if len(s["ks"]) == 1
        else f"k ≤ {max(s['ks'])}"
        for s in data["scopes"]
    }

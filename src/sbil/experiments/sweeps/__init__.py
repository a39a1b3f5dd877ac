"""The sweep: its runner, and the report of a sweep folder (statistics over its tidy rows,
figures, and the EDM verdict).

The runner's modules (:mod:`sbil.experiments.sweep` is their public face and says how they
depend on each other): :mod:`.spec`, :mod:`.groups`, :mod:`.folder`, :mod:`.backends`,
:mod:`.pool` and :mod:`.run`; :mod:`.row` is the one type of a row, which both write and read.

The report's modules, in the order they depend on each other: :mod:`.common` (learner order,
baseline, scope), :mod:`.load` (the folder's spec, references and rows), :mod:`.stats` (intervals,
aggregates, improvements, profiles), :mod:`.claim` (the EDM verdict), :mod:`.summary` (every
figure as one dictionary), :mod:`.markdown` and :mod:`.figures` (rendering from the summary
alone) and :mod:`.report` (the report folder).

A sweep folder (written by :mod:`sbil.experiments.sweep`) holds ``sweep.json`` (the grid),
``references.json`` (per environment the random policy's and the expert's measured returns)
and ``rows/*.json`` (one tidy row per cell: env x algo x k x option-set x seed). This module
reads them, computes every figure the report quotes (:func:`summarise_sweep`), judges the EDM
paper's claim from those figures (:func:`judge_edm_claim`, the one home of that verdict and its
words), and renders Markdown and PNG figures that only show what the summary holds
(:func:`write_sweep_report`).

Statistics follow rliable (:mod:`sbil.experiments.stats`): a run's score is its mean return over
the evaluation episodes, normalised per environment so that the random policy scores 0 and the
expert 1; aggregates are interquartile means (IQM) of ``scores[seed, task]`` with 95% stratified
bootstrap percentile intervals, where a task is an environment (at one k) or an (environment, k)
pair (over all k). Probabilities of improvement P(X > Y) are Mann-Whitney statistics averaged
over tasks; they depend only on ranks within a task, so they need no normalisation.

Example:
    >>> from sbil.experiments.sweeps import write_sweep_report
    >>> write_sweep_report("runs/sweep-quick")  # doctest: +SKIP
    PosixPath('runs/sweep-quick/report/REPORT.md')
"""

import importlib
from typing import TYPE_CHECKING, Any

# The public names, by module: imported on first use, so that ``sweeps.row`` (which the sweep
# runner imports to write its rows) does not load pandas, matplotlib and the report with it.
_PUBLIC = {
    "claim": ("judge_edm_claim",),
    "common": (
        "ALGO_NAMES",
        "ALGO_ORDER",
        "BASELINE",
        "COMPARISONS",
        "PAPER_TASKS",
        "comparisons",
        "headline_envs",
        "smoke_test",
    ),
    "load": ("ROWS_ARCHIVE", "load_references", "load_rows", "load_spec"),
    "markdown": ("learner_table",),
    "report": ("render_sweep_report", "write_sweep_report"),
    "row": ("Row",),
    "summary": ("summarise_sweep",),
}
_OWNER = {name: module for module, names in _PUBLIC.items() for name in names}

if TYPE_CHECKING:
    from sbil.experiments.sweeps.claim import judge_edm_claim
    from sbil.experiments.sweeps.common import (
        ALGO_NAMES,
        ALGO_ORDER,
        BASELINE,
        COMPARISONS,
        PAPER_TASKS,
        comparisons,
        headline_envs,
        smoke_test,
    )
    from sbil.experiments.sweeps.load import ROWS_ARCHIVE, load_references, load_rows, load_spec
    from sbil.experiments.sweeps.markdown import learner_table
    from sbil.experiments.sweeps.report import render_sweep_report, write_sweep_report
    from sbil.experiments.sweeps.row import Row
    from sbil.experiments.sweeps.summary import summarise_sweep


def __getattr__(name: str) -> Any:
    if name in _OWNER:
        return getattr(importlib.import_module(f"{__name__}.{_OWNER[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALGO_NAMES",
    "ALGO_ORDER",
    "BASELINE",
    "COMPARISONS",
    "PAPER_TASKS",
    "ROWS_ARCHIVE",
    "Row",
    "comparisons",
    "headline_envs",
    "judge_edm_claim",
    "learner_table",
    "load_references",
    "load_rows",
    "load_spec",
    "render_sweep_report",
    "smoke_test",
    "summarise_sweep",
    "write_sweep_report",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *_OWNER})

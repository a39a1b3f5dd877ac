"""The sweep report's public names, kept at their old address: the code is in
:mod:`sbil.experiments.sweeps` (one module per part: loading, statistics, the claim, the
summary, Markdown, figures and the report folder).

Example:
    >>> from sbil.experiments.sweep_report import write_sweep_report
    >>> write_sweep_report("runs/sweep-quick")  # doctest: +SKIP
    PosixPath('runs/sweep-quick/report/REPORT.md')
"""

from __future__ import annotations

from sbil.experiments.sweeps import (
    ALGO_NAMES,
    ALGO_ORDER,
    BASELINE,
    COMPARISONS,
    PAPER_TASKS,
    ROWS_ARCHIVE,
    comparisons,
    headline_envs,
    judge_edm_claim,
    learner_table,
    load_references,
    load_rows,
    load_spec,
    render_sweep_report,
    smoke_test,
    summarise_sweep,
    write_sweep_report,
)

__all__ = [
    "ALGO_NAMES",
    "ALGO_ORDER",
    "BASELINE",
    "COMPARISONS",
    "PAPER_TASKS",
    "ROWS_ARCHIVE",
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

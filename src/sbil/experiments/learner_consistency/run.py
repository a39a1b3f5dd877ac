"""The learner-consistency study over all problems, on a process pool whose workers end with
their driver.

Part of :mod:`sbil.experiments.learner_consistency`.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pandas as pd

from sbil.experiments.consistency import Problem, random_problems
from sbil.experiments.learner_consistency.config import (
    LearnerConsistencyConfig,
    LearnerConsistencyResult,
)
from sbil.experiments.learner_consistency.fits import _problem_rows
from sbil.experiments.learner_consistency.side import (
    iqlearn_discount_rows,
    valuedice_action_independent_rows,
)
from sbil.files import git_commit
from sbil.progress import ProgressCallback
from sbil.tabular.estimators import _one_blas_thread


def _problem_rows_one_thread(
    problem: Problem, config: LearnerConsistencyConfig
) -> tuple[list[dict[str, Any]], ...]:
    """The main rows, the ValueDICE side study's and the gamma scan's, of one problem."""
    with _one_blas_thread():
        return (
            _problem_rows(problem, config),
            valuedice_action_independent_rows(problem, config),
            iqlearn_discount_rows(problem, config),
        )


def _worker_start() -> None:
    """Set up a worker process: Ctrl-C is left to the driver (which stops the pool, so the
    workers print no tracebacks of their own), and the worker exits as soon as its parent
    is gone, so a driver killed by SIGTERM or SIGKILL leaves no orphan computing on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def run_learner_consistency(
    config: LearnerConsistencyConfig,
    progress: ProgressCallback | None = None,
    *,
    workers: int = 1,
) -> LearnerConsistencyResult:
    """Fit every learner on every problem and data kind (one BLAS thread per process).

    Args:
        config: what to run.
        progress: optional ``progress(done, total)`` after each problem.
        workers: processes (1: in this process). The rows do not depend on it.

    Returns:
        LearnerConsistencyResult.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}.")
    start = time.perf_counter()
    problems = random_problems(config.problems_config)
    per_problem: list[tuple[list[dict[str, Any]], ...]] = []
    if workers == 1:
        for i, problem in enumerate(problems):
            per_problem.append(_problem_rows_one_thread(problem, config))
            if progress is not None:
                progress(i + 1, len(problems))
    else:
        # No more processes than problems; leaving the block (done, an error, Ctrl-C)
        # terminates the workers, and each exits by itself if the driver is killed.
        processes = min(workers, len(problems))
        fit = functools.partial(_problem_rows_one_thread, config=config)
        with multiprocessing.get_context().Pool(processes, initializer=_worker_start) as pool:
            # imap keeps the problem order, so the rows do not depend on the workers.
            for i, rows in enumerate(pool.imap(fit, problems)):
                per_problem.append(rows)
                if progress is not None:
                    progress(i + 1, len(problems))
    commit = git_commit()
    frames = []
    for part in range(3):
        frame = pd.DataFrame([row for rows in per_problem for row in rows[part]])
        if len(frame):
            frame["root_seed"] = config.seed
            frame["git_commit"] = commit
        frames.append(frame)
    return LearnerConsistencyResult(
        config,
        frames[0],
        time.perf_counter() - start,
        valuedice_action_independent=frames[1],
        iqlearn_discounts=frames[2],
    )

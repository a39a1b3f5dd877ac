"""The sweep itself: :func:`run_sweep` checks, prepares, schedules the units that are not
finished on a backend and records every row.

Part of the sweep runner (:mod:`sbil.experiments.sweep` is its entry point and module doc).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sbil.experiments.sweep_data import (
    SweepDataError,
)
from sbil.experiments.sweeps.backends import (
    _ray_session,
    _uses_gpu,
    check_backend,
    check_device,
    check_ray,
)
from sbil.experiments.sweeps.folder import (
    _check_folder,
    _finished,
    _stored_rows,
    check_tasks,
    prepare,
)
from sbil.experiments.sweeps.groups import (
    Group,
    _schedule,
    failed_rows,
    groups,
    run_unit,
    units,
    with_policy_twins,
)
from sbil.experiments.sweeps.pool import _WorkerPool
from sbil.experiments.sweeps.row import Row
from sbil.experiments.sweeps.spec import SweepError, SweepSpec
from sbil.files import lock, write_json_atomic


@dataclass(frozen=True)
class SweepSummary:
    """What a call of :func:`run_sweep` did."""

    sweep_dir: Path
    n_cells: int
    """Cells of the spec that was run."""
    done: int
    """Cells finished by this call."""
    failed: int
    """Cells that failed in this call."""
    skipped: int
    """Cells finished before (done, or recorded as failed and kept)."""
    ran_groups: int
    seconds: float
    failed_before: int = 0
    """Of ``skipped``, the cells kept as failed (an error of the cell itself, e.g. a diverged
    learner; ``retry_failed`` runs them again)."""
    errors: dict[str, str] = field(default_factory=dict)
    """cell_id -> error of every cell of the spec that is failed now (this call's and kept)."""


def run_sweep(
    spec: SweepSpec,
    sweep_dir: str | os.PathLike,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    device: str = "cpu",
    retry_failed: bool = False,
    stack_k: bool = True,
    log: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run (or resume) the sweep into ``sweep_dir``; see the module doc.

    Nothing is written before the spec, its tasks and experts, the folder, the backend and
    the device are checked (a Ray cluster is reached, and its token accepted, before any data
    is recorded).

    Args:
        spec: the grid.
        sweep_dir: the sweep folder (created if needed; the same folder resumes).
        workers: groups trained at once (processes, or Ray tasks of one CPU each).
        backend: ``"local"`` (a process pool; 1 worker runs in this process) or ``"ray"``.
        address: with ``backend="ray"``, an existing cluster's address (default: a local
            Ray started with ``workers`` CPUs). The sweep folder must be on a file system
            every node sees. A cluster that requires token authentication reads its token as
            Ray does (``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
            ``~/.ray/auth_token``; see docs/sweeps.md).
        device: the torch device every group trains and evaluates on (``cpu``, ``cuda``,
            ``cuda:N``); recorded in each row, and no part of a cell's id or hash. On Ray, a
            CUDA group is a task of one GPU.
        retry_failed: also run again the cells recorded as failed for a reason of their own
            (those that failed for an outside reason are always retried).
        stack_k: train the groups to run that differ only in ``k`` as one stacked model
            (:func:`units`; every row is what the group alone gives, bit for bit); False
            trains each group alone, smallest ``k`` first.
        log: called with one line per event (datasets, references, each finished group).
    """
    check_backend(workers, backend, address)
    check_device(device, backend, address)
    log = log or (lambda line: None)
    sweep = Path(sweep_dir)
    _check_folder(sweep)
    check_tasks(spec, sweep)
    own_data = None
    if spec.datasets:  # every dataset opened and checked before anything is written
        from sbil.experiments.sweep_data import load_sources

        try:
            own_data = load_sources(spec, spec.sources)
        except SweepDataError as error:
            raise SweepError(str(error)) from None
    if backend == "ray":
        check_ray(address)
    try:
        (sweep / "rows").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SweepError(f"Cannot create the sweep folder {sweep} ({error.strerror}).") from None
    started = time.perf_counter()
    with lock(sweep), contextlib.ExitStack() as backend_session:  # one process per folder
        if backend == "ray":
            backend_session.enter_context(_ray_session(workers, address, device))
        whole = prepare(spec, sweep, log, own_data)
        every = groups(whole, sweep)
        all_groups = [dataclasses.replace(g, device=device) for g in groups(spec, sweep)]
        all_groups = with_policy_twins(all_groups, every)
        stored, damaged = _stored_rows(sweep)
        cells = {g.cell_id(s) for g in every for s in g.run["seeds"]}
        if strays := sorted(set(stored) - cells):
            n = len(strays)
            log(
                f"{n} row{'s' if n > 1 else ''} in rows/ {'are' if n > 1 else 'is'} not "
                f"{'cells' if n > 1 else 'a cell'} of this sweep (left alone, not counted), "
                f"e.g. {strays[0]}"
            )
        if damaged := [d for d in damaged if d in cells]:
            log(f"{len(damaged)} damaged row file(s) are redone, e.g. rows/{damaged[0]}.json")
        errors: dict[str, str] = {}
        todo, retried = [], []
        n_cells_, skipped, failed_before = 0, 0, 0
        for group in all_groups:
            finished = 0
            for seed in spec.seeds:
                n_cells_ += 1
                row = stored.get(group.cell_id(seed))
                if _finished(row, group, seed, sweep, retry_failed):
                    finished += 1
                    if not row.done:
                        failed_before += 1
                        errors[group.cell_id(seed)] = str(row.error)
                elif (
                    row is not None
                    and not row.done
                    and row.config_hash == group.config_hash(seed)
                    and not retry_failed
                ):
                    retried.append(str(row.error))
            skipped += finished
            if finished < len(spec.seeds):
                todo.append(group)
        todo = _schedule(todo)
        if retried:
            log(
                f"retrying {len(retried)} cells that failed for reasons outside them, e.g. "
                f"{retried[0]}"
            )
        work = units(todo, stack_k)
        stacked = f" (as {len(work)} stacked units)" if len(work) < len(todo) else ""
        log(
            f"{n_cells_} cells in {len(all_groups)} groups; {skipped} already finished, "
            f"{len(todo)} groups to run{stacked} on {workers} {backend} worker(s)"
            + ("" if device == "cpu" else f" on {device}")
        )
        counts = {"done": 0, "failed": 0}
        position = [0]

        def record(unit: tuple[Group, ...], result: list[Row] | str, seconds: float) -> None:
            """Write a unit's rows (``result``, or the error that lost them), group by group."""
            for group in unit:
                if isinstance(result, str):
                    rows = failed_rows(group, sweep, result)
                else:
                    rows = [r for r in result if r.cell_id.startswith(f"{group.group_id}__s")]
                record_group(group, rows, seconds, len(unit))

        def record_group(group: Group, rows: list[Row], seconds: float, shared: int) -> None:
            """Write a group's rows; a row that stands (done with its checkpoint) is never
            replaced."""
            written = []
            for row in rows:
                if _finished(stored.get(row.cell_id), group, row.seed, sweep, retry_failed=True):
                    continue
                path = sweep / "rows" / f"{row.cell_id}.json"
                write_json_atomic(path, row.to_dict(), allow_nan=True)
                counts[row.status] = counts.get(row.status, 0) + 1
                if not row.done:
                    errors[row.cell_id] = str(row.error)
                written.append(row)
            position[0] += 1
            means = [r.return_mean for r in written if r.return_mean is not None]
            failed = [r for r in written if not r.done]
            line = (
                f"[{position[0]}/{len(todo)}] {group.env_id} {group.algo} k={group.k}: "
                f"{len(written) - len(failed)} done"
            )
            if means:
                line += f", mean return {np.mean(means):.1f}"
            if failed:
                line += f", {len(failed)} failed ({failed[0].error})"
            together = f", trained with {shared - 1} other group(s)" if shared > 1 else ""
            log(f"{line} ({seconds:.0f} s{together})")

        if backend == "ray":
            _run_ray(work, sweep, workers, record, gpus=1 if _uses_gpu(device) else 0)
        else:
            _run_local(work, sweep, workers, record)
    return SweepSummary(
        sweep_dir=sweep,
        n_cells=n_cells_,
        done=counts["done"],
        failed=counts["failed"],
        skipped=skipped,
        ran_groups=len(todo),
        seconds=time.perf_counter() - started,
        failed_before=failed_before,
        errors=errors,
    )


def _keep_busy(todo: Sequence[tuple[Group, ...]], workers: int, submit, wait_one, record) -> None:
    """Keep ``workers`` units (:func:`units`) in flight: ``submit(unit) -> handle``;
    ``wait_one(handles) -> [(handle, rows or error)]`` for the handles that finished. Shared by
    both backends, so they schedule (and record) identically. A unit with a group whose BC
    twin (:attr:`Group.policy_from`) is queued or running waits for it; the next ready one
    goes."""
    pending: dict = {}
    queue = list(todo)

    def ids(unit):
        return {g.group_id for g in unit}

    while queue or pending:
        while queue and len(pending) < workers:
            busy = set().union(*map(ids, queue), *(ids(u) for u, _ in pending.values()))
            unit = next((u for u in queue if all(g.policy_from not in busy for g in u)), None)
            if unit is None:
                if pending:
                    break  # every queued unit waits on a running twin
                unit = queue[0]  # never: a twin waits on nothing
            queue.remove(unit)
            pending[submit(unit)] = (unit, time.perf_counter())
        for handle, result in wait_one(list(pending)):
            unit, started = pending.pop(handle)
            record(unit, result, time.perf_counter() - started)


def _run_local(todo: Sequence[tuple[Group, ...]], sweep: Path, workers: int, record) -> None:
    if workers == 1:
        for unit in todo:
            started = time.perf_counter()
            record(unit, run_unit(str(sweep), unit), time.perf_counter() - started)
        return
    with _WorkerPool(sweep) as pool:
        _keep_busy(todo, workers, pool.submit, pool.wait_one, record)


def _run_ray(
    todo: Sequence[tuple[Group, ...]], sweep: Path, workers: int, record, *, gpus: int = 0
) -> None:
    import ray

    # A CUDA unit asks Ray for a GPU, which Ray assigns it (CUDA_VISIBLE_DEVICES).
    remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_unit)

    def wait_one(refs):
        done, _ = ray.wait(refs, num_returns=1)
        out = []
        for ref in done:
            try:
                out.append((ref, ray.get(ref)))
            except Exception as error:  # the task's process or node was lost
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                out.append(
                    (
                        ref,
                        f"WorkerLost: the Ray task running this group failed "
                        f"({type(error).__name__}: {first}); re-run the sweep to resume it "
                        "from its last checkpoint.",
                    )
                )
        return out

    _keep_busy(todo, workers, lambda g: remote.remote(str(sweep.absolute()), g), wait_one, record)

"""``sbil sweep``: a grid of runs (tasks x learners x k x options x seeds), resumable, on a local
process pool or on Ray, with one tidy row per cell.

A cell is one learner: (task, algorithm, ``k`` trajectories, learner options, seed). Cells that
differ only in seed form a *group* and train as one stacked model (one run folder, made by
:func:`sbil.experiments.runs.run_training`). The sweep folder ``DIR`` holds::

    DIR/sweep.json         the sweep's description (SweepSpec.to_dict())
    DIR/datasets/          the demonstrations, collected locally (Minari)
    DIR/references.json    per task: random-policy and expert returns (normalised score 0 and 1)
                           (own data: the dataset's recorded returns are the expert level; none
                           for env-free data)
    DIR/runs/<group>/      one run folder per group (checkpoints, losses, results)
    DIR/rows/<cell>.json   one tidy row per cell (see docs/sweeps.md), written atomically

A spec may name its own data instead of sbil's experts (``datasets``, ``dataset``:
:mod:`sbil.experiments.sweep_data`); an env-free task is measured on held-out metrics alone.

Decoupled EDM's policy is BC's bit for bit, so a decoupled EDM group whose BC twin (same task,
k, options, seeds and data: :func:`sbil.experiments.runs.policy_twin`) is a group of the sweep
runs after it and trains its state model alone, taking the policy's weights, terms, action
match and returns from the twin's run folder; its rows are those a full training gives.

Re-running the same command skips finished cells (and recorded failures, unless
``retry_failed``) and resumes interrupted groups from their last training checkpoint; a cell
that fails is recorded with its error and does not stop the others. Results do not depend on
the backend or the number of workers: every random number comes from the cell's seed.

The runner's modules, in the order they depend on each other, under :mod:`sbil.experiments.sweeps`:
:mod:`.spec` (the grid, limits, presets, spec files), :mod:`.groups` (groups, units and what a
worker runs for one), :mod:`.folder` (preparing and reading the sweep folder), :mod:`.backends`
(option, device and Ray checks), :mod:`.pool` (the local process pool) and :mod:`.run`
(:func:`run_sweep`). This module is their public face: import from here.
"""

from __future__ import annotations

from sbil.experiments.sweeps.backends import (
    BACKENDS,
    RAY_CONNECT_TIMEOUT_S,
    check_backend,
    check_device,
    check_ray,
    max_local_workers,
    ray_token_source,
)
from sbil.experiments.sweeps.folder import (
    check_tasks,
    extension,
    prepare,
    stored_spec,
    stray_rows,
)
from sbil.experiments.sweeps.groups import (
    RUN_LOCK_WAIT_S,
    Group,
    dataset_id,
    failed_rows,
    groups,
    is_environmental,
    run_group,
    run_unit,
    units,
    with_policy_twins,
)
from sbil.experiments.sweeps.run import (
    SweepSummary,
    run_sweep,
)
from sbil.experiments.sweeps.spec import (
    LIMITS,
    PRESETS,
    SCHEMA,
    SweepError,
    SweepSpec,
    limit,
    load_spec_file,
    n_cells,
    preset,
)

__all__ = [
    "BACKENDS",
    "LIMITS",
    "PRESETS",
    "RAY_CONNECT_TIMEOUT_S",
    "RUN_LOCK_WAIT_S",
    "SCHEMA",
    "Group",
    "SweepError",
    "SweepSpec",
    "SweepSummary",
    "check_backend",
    "check_device",
    "check_ray",
    "check_tasks",
    "dataset_id",
    "extension",
    "failed_rows",
    "groups",
    "is_environmental",
    "limit",
    "load_spec_file",
    "max_local_workers",
    "n_cells",
    "prepare",
    "preset",
    "ray_token_source",
    "run_group",
    "run_sweep",
    "run_unit",
    "stored_spec",
    "stray_rows",
    "units",
    "with_policy_twins",
]

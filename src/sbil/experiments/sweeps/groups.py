"""A sweep's groups (cells that differ only in seed) and units (groups stacked across k), and
what a worker runs for one: training, evaluation and the tidy rows.

Part of the sweep runner (:mod:`sbil.experiments.sweep` is its entry point and module doc).
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sbil.deep.learners.registry import learner_spec
from sbil.experiments.sweep_data import (
    portable_run,
)
from sbil.experiments.sweeps.row import SCHEMA as ROW_SCHEMA
from sbil.experiments.sweeps.row import Row
from sbil.experiments.sweeps.spec import SweepSpec, _json_key
from sbil.files import lock, write_json_atomic
from sbil.machine import cpu_description


def _sha256(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Group:
    """Cells that differ only in seed: one run folder, one stacked model."""

    group_id: str
    env_id: str
    algo: str
    k: int
    options: dict
    run: dict
    """The run's RunSpec.to_dict() (dataset paths relative to the sweep folder resolved), on
    the CPU: what the cells are, which ids and hashes are made of."""
    held_out_metrics: bool = False
    """Own data: each row also holds the held-out metrics (``held_out``) of its learner."""
    device: str = "cpu"
    """The torch device the group trains and evaluates on (``run_sweep(device=...)``). Where a
    cell runs is not what it is: its id and hash are those of ``run``, so rows of a cell run
    on the CPU and on a GPU are rows of the same cell."""
    policy_from: str | None = None
    """Decoupled EDM: the group id of its BC twin in the sweep (:func:`with_policy_twins`),
    whose finished run gives it its policy; no part of its id or hash either."""

    def cell_id(self, seed: int) -> str:
        return f"{self.group_id}__s{seed}"

    def config_hash(self, seed: int) -> str:
        # Where the data lies may change (the sweep moved with it); the data is the same.
        payload = {**portable_run(self.run), "seeds": [seed]}
        payload.pop("root", None)
        return _sha256(payload)


def dataset_id(env_id: str, expert: str, noise: str = "none") -> str:
    """The id of a task's demonstrations in a sweep (as ``sbil collect`` names them)."""
    from sbil.deep.data import default_dataset_id
    from sbil.deep.experts import ExpertNoise

    tag = ExpertNoise.parse(noise).tag
    return default_dataset_id(env_id, f"{expert}-{tag}" if tag else expert)


def groups(spec: SweepSpec, sweep_dir: Path) -> list[Group]:
    """The sweep's groups, smallest ``k`` first (so an unfinished sweep holds complete
    comparisons of every learner at the small ``k`` that EDM's claim is about), and within a
    ``k`` the most expensive first (so a pool's last tasks are short)."""
    from sbil.deep.learners import LearnerConfig
    from sbil.experiments.runs import RunSpec

    out = []
    root = str((sweep_dir / "datasets").absolute())
    own = {source.task: source for source in spec.sources}
    for env_id, algo, k, options in itertools.product(
        spec.envs, spec.algos, spec.ks, spec.option_sets()
    ):
        if env_id in own:
            data = own[env_id].run_fields()
            played = data["env_id"] is not None
        else:
            data = {
                "dataset": dataset_id(env_id, spec.expert, spec.expert_noise),
                "root": root,
                "env_id": env_id,
            }
            played = True
        run = RunSpec(
            learner=LearnerConfig(algo=algo, **options),
            seeds=spec.seeds,
            **data,
            episodes=k,
            windows=spec.windows,
            holdout=spec.holdout,
            every_nth_step=spec.every_nth_step,
            eval_episodes=spec.eval_episodes if played else 0,
            eval_seed=spec.eval_seed,
            checkpoint_every=spec.checkpoint_every,
        ).to_dict()
        digest = _sha256({**portable_run(run), "root": None})[:8]
        group_id = f"{env_id}__{algo}__k{k}__{digest}"
        out.append(Group(group_id, env_id, algo, k, options, run, held_out_metrics=bool(own)))
    heavy = {"LunarLander-v3": 3, "CartPole-v1": 2}

    def cost(g: Group) -> int:  # the learner's relative cost (the registry's) and the task's
        return learner_spec(g.algo).relative_cost + heavy.get(g.env_id, 1)

    return sorted(out, key=lambda g: (g.k, -cost(g)))


def with_policy_twins(todo: Sequence[Group], every: Sequence[Group]) -> list[Group]:
    """``todo`` with each decoupled EDM group's :attr:`Group.policy_from` set to its BC twin
    among ``every`` (the sweep's groups; :func:`sbil.experiments.runs.policy_twin`), if any."""
    from sbil.experiments.runs import RunSpec, policy_twin

    bc = {_json_key(g.run): g.group_id for g in every if g.algo == "bc"}
    out = []
    for group in todo:
        twin = policy_twin(RunSpec.from_dict(group.run))
        twin_id = None if twin is None else bc.get(_json_key(twin.to_dict()))
        out.append(dataclasses.replace(group, policy_from=twin_id))
    return out


def _schedule(todo: Sequence[Group]) -> list[Group]:
    """``todo`` in order, but each BC twin that a group takes its policy from (and runs) moved
    just before the first such group, so that a single worker meets it first."""
    twins = {g.policy_from for g in todo if g.policy_from is not None}
    moved = {g.group_id: g for g in todo if g.group_id in twins}
    out: list[Group] = []
    for group in todo:
        if group.group_id in moved and group in out:
            continue
        if group.policy_from in moved and moved[group.policy_from] not in out:
            out.append(moved[group.policy_from])
        if group not in out:
            out.append(group)
    return out


# --- one group: what a worker runs ---------------------------------------------------------------

#: Seconds a group waits for its run folder's lock before failing: a worker of an earlier sweep
#: that was killed may still be saving its training checkpoint (it ends with its driver).
RUN_LOCK_WAIT_S = 120.0

#: Errors that come from outside a cell (files and disks, locks, lost workers, memory): a cell
#: recorded with one is retried by a plain re-run; others (a diverged learner, a bad option)
#: are results, run again only with ``retry_failed``.
_ENVIRONMENTAL = frozenset(
    {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, OSError)
    }
    | {"MemoryError", "LockHeldError", "NotWritableError", "WorkerLost"}
)


def is_environmental(error: str | None) -> bool:
    """Whether a row's ``error`` (``"Type: message"``) came from outside its cell (see
    :data:`_ENVIRONMENTAL`), so that re-running the sweep can fix it."""
    return isinstance(error, str) and error.split(":", 1)[0].strip() in _ENVIRONMENTAL


def _error_text(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _checkpoint_exists(folder: Path) -> bool:
    """Whether a learner's checkpoint folder holds both of its files."""
    from sbil.deep.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def run_group(sweep_dir: str, group: Group) -> list[Row]:
    """Train and evaluate one group (resuming its run folder) and return its tidy rows.

    Never raises for a failing cell: its rows carry ``status: "failed"`` and the error.
    """
    from sbil.experiments.runs import RunSpec, is_run_folder, run_training
    from sbil.files import provenance

    sweep = Path(sweep_dir)
    folder = sweep / "runs" / group.group_id
    started = time.perf_counter()
    info = provenance()
    try:
        spec = RunSpec.from_dict({**group.run, "device": group.device})
        _ready(folder, spec)
        resume = folder.is_dir() and is_run_folder(folder)
        twin = None if group.policy_from is None else sweep / "runs" / group.policy_from
        outcome = run_training(
            spec, folder, resume=resume, stop_on_divergence=False, policy_from=twin
        )
        held_out = {}
        if group.held_out_metrics:
            from sbil.experiments.sweep_data import held_out_rows

            held_out = held_out_rows(spec, folder, [s.seed for s in outcome.seeds])
    except KeyboardInterrupt:
        raise
    except Exception as error:  # recorded in the rows; the sweep goes on
        return failed_rows(group, sweep, _error_text(error), info)
    share = (time.perf_counter() - started) / len(outcome.seeds)
    return _outcome_rows(group, outcome, info, folder, sweep, share, held_out)


def _outcome_rows(group, outcome, info, folder, sweep, wall_share, held_out) -> list[Row]:
    """A group's rows from its run's outcome; ``wall_share``: each learner's share of the
    wall time (a stacked group's time is shared by its seeds, a unit's by its learners)."""
    k = len(outcome.seeds)
    info = {**info, "cpu": cpu_description()}  # after training, so torch's kernels are known
    return [
        _row(
            group,
            s.seed,
            info,
            folder,
            sweep,
            status=s.status,
            error=s.error,
            train_episodes=s.train_episodes,
            n_pairs=s.n_pairs,
            returns=s.returns or [],
            action_match=s.action_match,
            action_match_episodes=outcome.held_out_episodes,
            train_seconds=outcome.train_seconds / k,
            eval_seconds=outcome.eval_seconds / k,
            wall_seconds=wall_share,
            extra={"held_out": held_out.get(s.seed)} if group.held_out_metrics else {},
        )
        for s in outcome.seeds
    ]


def run_unit(sweep_dir: str, unit: tuple[Group, ...]) -> list[Row]:
    """Run a unit of work (:func:`units`): one group as :func:`run_group`, or the groups of one
    task and learner that differ only in ``k`` as one stacked training
    (:func:`sbil.experiments.runs.run_training_together`: each group's folder and rows as it
    alone gives them, bit for bit). If the shared training fails, each group runs alone, so
    that one group's failure is its own. Never raises for a failing cell."""
    if len(unit) == 1:
        return run_group(sweep_dir, unit[0])
    from sbil.experiments.runs import RunSpec, run_training_together
    from sbil.files import provenance

    sweep = Path(sweep_dir)
    started = time.perf_counter()
    info = provenance()
    folders = [sweep / "runs" / g.group_id for g in unit]
    try:
        specs = [RunSpec.from_dict({**g.run, "device": g.device}) for g in unit]
        for folder, spec in zip(folders, specs, strict=True):
            _ready(folder, spec)
        state = sweep / "stacks" / _sha256([g.group_id for g in unit])[:16]
        twins = [None if g.policy_from is None else sweep / "runs" / g.policy_from for g in unit]
        outcomes = run_training_together(
            specs, folders, state_dir=state, stop_on_divergence=False, policy_from=twins
        )
        held_out = {}
        if unit[0].held_out_metrics:
            from sbil.experiments.sweep_data import held_out_rows

            for g, spec, folder, outcome in zip(unit, specs, folders, outcomes, strict=True):
                held_out[g.group_id] = held_out_rows(spec, folder, [s.seed for s in outcome.seeds])
    except KeyboardInterrupt:
        raise
    except Exception:  # each group alone: its own rows, failed or not
        return [row for g in unit for row in run_group(sweep_dir, g)]
    share = (time.perf_counter() - started) / sum(len(o.seeds) for o in outcomes)
    return [
        row
        for g, folder, outcome in zip(unit, folders, outcomes, strict=True)
        for row in _outcome_rows(
            g, outcome, info, folder, sweep, share, held_out.get(g.group_id, {})
        )
    ]


def units(todo: Sequence[Group], stack_k: bool = True) -> list[tuple[Group, ...]]:
    """``todo``'s groups as units of work, in ``todo``'s order (of each unit's first group):
    with ``stack_k`` the groups that differ only in ``k`` (same task, data source, learner,
    options, seeds and device) form one unit, trained as one stack; decoupled EDM groups that
    take their policies from BC twins form units of their own (their state models stacked),
    which wait for the twins."""
    if not stack_k:
        return [(g,) for g in todo]
    by_key: dict[str, list[Group]] = {}
    order: list[str] = []
    for group in todo:
        key = _json_key([{**group.run, "episodes": None}, group.device, group.policy_from is None])
        if key not in by_key:
            by_key[key] = []
            order.append(key)
        by_key[key].append(group)
    return [tuple(by_key[key]) for key in order]


def _ready(folder: Path, spec) -> None:
    """Before a group's run folder trains: take up a moved run, reopen one whose checkpoints
    are gone (under the folder's lock)."""
    with lock(folder, wait=RUN_LOCK_WAIT_S):
        _adopt_moved_run(folder, spec)
        _reopen_if_checkpoints_missing(folder)


def failed_rows(group: Group, sweep: Path, error: str, info: dict | None = None) -> list[Row]:
    """The rows of a group that failed as a whole with ``error`` (``"Type: message"``)."""
    folder = sweep / "runs" / group.group_id
    info = info if info is not None else {}
    extra = {"held_out": None} if group.held_out_metrics else {}
    return [
        _row(group, seed, info, folder, sweep, status="failed", error=error, extra=extra)
        for seed in group.run["seeds"]
    ]


def _adopt_moved_run(folder: Path, spec) -> None:
    """Point a run folder that moved with its sweep (``mv``, ``cp -r``) at this sweep's
    datasets, or that this sweep runs on another device, so it resumes, or is read back,
    instead of counting as a different run.

    A run's ``config.json`` names its datasets folder (``RunSpec.root``) and an own ``.npz``
    (``RunSpec.data``) by absolute path, and its device; a stored description that differs from
    ``spec`` in those alone (the same file name for the ``.npz``) is rewritten with this one.
    One that differs in anything else is left for ``run_training`` to refuse."""
    from sbil.experiments.runs import CONFIG_FILE, RunSpec

    path = folder / CONFIG_FILE
    moved = {"root": spec.root, "data": spec.data, "device": spec.device}
    try:
        doc = json.loads(path.read_text())
        stored = doc["spec"]
        if (stored.get("data") is None) != (spec.data is None) or (
            spec.data is not None and Path(stored["data"]).name != Path(spec.data).name
        ):
            return
        same = RunSpec.from_dict({**stored, **moved}).digest() == spec.digest()
    except (OSError, ValueError, KeyError, TypeError):
        return  # none yet, or damaged: run_training says what is wrong
    if not same or all(stored.get(key) == value for key, value in moved.items()):
        return
    stored.update(moved)
    resolved = doc.get("resolved")
    if isinstance(resolved, dict):
        resolved.update({key: value for key, value in moved.items() if key in resolved})
    write_json_atomic(path, doc)


def _reopen_if_checkpoints_missing(folder: Path) -> None:
    """Make a finished run whose learner checkpoints were deleted train again.

    A cell is done only while its checkpoint exists (``sbil evaluate`` reads it). Removing the
    run's ``results.json`` makes ``run_training`` train the group again from its seeds, which
    reproduces the same learners, and rewrite every checkpoint."""
    from sbil.experiments.runs import RESULTS_FILE

    path = folder / RESULTS_FILE
    try:
        learners = json.loads(path.read_text())["learners"]
        missing = [
            learner
            for learner in learners
            if learner["status"] == "done"
            and not _checkpoint_exists(folder / str(learner["checkpoint"]))
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if missing:
        path.unlink()


def _row(group: Group, seed: int, info: dict, folder: Path, sweep: Path, **fields) -> Row:
    """The row of ``group``'s cell ``seed``; ``fields``: its result (status, returns, ...)."""
    returns = fields.pop("returns", [])
    return Row(
        schema=ROW_SCHEMA,
        cell_id=group.cell_id(seed),
        config_hash=group.config_hash(seed),
        env_id=group.env_id,
        algo=group.algo,
        k=group.k,
        seed=seed,
        windows=group.run["windows"],
        options={**group.options, "every_nth_step": group.run["every_nth_step"]},
        returns=returns,
        return_mean=float(np.mean(returns)) if returns else None,
        eval_episodes=group.run["eval_episodes"],
        eval_seed=group.run["eval_seed"],
        device=group.device,
        cpu=info.get("cpu"),
        git_commit=info.get("git_commit"),
        sbil_version=(info.get("versions") or {}).get("sbil"),
        run_dir=str(folder.relative_to(sweep)),
        **fields,
    )

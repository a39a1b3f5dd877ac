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
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import dataclasses
import hashlib
import itertools
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sbil.deep.learners.registry import ALGOS, learner_spec
from sbil.experiments.sweep_data import (
    DATA_KEYS,
    EXPERT_KEYS,
    SweepDataError,
    check_sources,
    expand_shorthand,
    from_stored,
    portable_run,
    to_stored,
)
from sbil.experiments.sweeps.row import SCHEMA as ROW_SCHEMA
from sbil.experiments.sweeps.row import Row
from sbil.files import lock, write_json_atomic
from sbil.seeds import MAX_SEED, check_seed_range

SCHEMA = 1
BACKENDS: tuple[str, ...] = ("local", "ray")
_ALGOS = ALGOS  # the registry's list (sbil.deep.learners.registry imports without torch)
#: Grid axes a finished sweep can be extended along without touching its cells.
_EXTENSIBLE = ("envs", "ks", "algos")


class SweepError(ValueError):
    """A sweep description, folder or backend that cannot be used as asked."""


#: The largest size of each part of a sweep, refused past it before any work as a likely typo
#: (``0-999999`` for ``0-9``): each is raised on purpose with the environment variable
#: ``SBIL_SWEEP_MAX_<NAME>``, e.g. ``SBIL_SWEEP_MAX_CELLS=500000``. Seeds as ``--seeds``.
LIMITS: dict[str, int] = {
    "cells": 100_000,
    "seeds": 10_000,
    "ks": 1_000,
    "eval_episodes": 100_000,
    "dataset_episodes": 100_000,
}


def limit(name: str) -> int:
    """The limit on ``name`` (:data:`LIMITS`), or its ``SBIL_SWEEP_MAX_<NAME>`` override."""
    from sbil.machine import env_limit

    try:
        return env_limit(f"SBIL_SWEEP_MAX_{name.upper()}", LIMITS[name])
    except ValueError as error:
        raise SweepError(str(error)) from None


def _check_at_most(name: str, count: int, what: str) -> None:
    allowed = limit(name)
    if count > allowed:
        raise SweepError(
            f"The sweep has {count:,} {what}, more than the {allowed:,} allowed; shrink it, or "
            f"set SBIL_SWEEP_MAX_{name.upper()}={count} to run it anyway."
        )


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _check_distinct(name: str, values: Sequence[Any]) -> None:
    seen: set[str] = set()
    for value in values:
        key = _json_key(value)
        if key in seen:
            raise SweepError(
                f"{name} repeats {value!r}; each value makes its own cells, so give it once."
            )
        seen.add(key)


def n_cells(spec: SweepSpec) -> int:
    """The number of cells (learners) of ``spec``, counted without expanding the grid."""
    count = len(spec.envs) * len(spec.algos) * len(spec.ks) * len(spec.seeds)
    for values in spec.grid.values():
        count *= len(values)
    return count


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs. Field docstrings are the spec file's keys (TOML)."""

    envs: tuple[str, ...]
    """Gymnasium tasks with discrete actions, e.g. ["CartPole-v1", "Acrobot-v1"]."""
    ks: tuple[int, ...]
    """Numbers of expert trajectories each learner trains on."""
    seeds: tuple[int, ...]
    """Seeds; seed r's trajectories depend on ``windows``."""
    algos: tuple[str, ...] = _ALGOS
    """Learners: names from :data:`sbil.deep.learners.registry.ALGOS`."""
    windows: str = "sliding"
    """first | sliding | random: which k trajectories seed r trains on."""
    holdout: int = 10
    """The dataset's last episodes, never trained on, that measure the action match."""
    every_nth_step: int = 20
    """Keep every n-th step of each trajectory (20 in the EDM reference)."""
    eval_episodes: int = 300
    """Seeded evaluation episodes per learner."""
    eval_seed: int = 0
    """Evaluation episode i starts from reset(seed=eval_seed + i)."""
    options: dict = field(default_factory=dict)
    """Learner options for every cell (LearnerConfig fields, e.g. n_updates = 10000)."""
    grid: dict = field(default_factory=dict)
    """Learner options to sweep over: name -> list of values (a product with the rest)."""
    expert: str = "scripted"
    """The expert that records the demonstrations (sbil expert list)."""
    expert_noise: str = "none"
    """none (the deterministic expert), epsilon:E, or sample (SB3 experts): see
    docs/experts.md; the reference recorded a stochastic PPO expert."""
    collect_seed: int = 10_000
    """Demonstration episode i starts from reset(seed=collect_seed + i)."""
    dataset_episodes: int | None = None
    """Episodes to record per task (default: max(ks) + len(seeds) - 1 + holdout)."""
    checkpoint_every: int = 1000
    """Training state saved every this many updates (for resume)."""
    preset: str | None = None
    """The preset this spec came from, if any."""
    datasets: dict = field(default_factory=dict)
    """Your own data instead of an expert's: task -> Minari dataset id or path.npz (the task is
    the Gymnasium id it is played in, or a name when env_free); ``dataset = SOURCE`` in a spec
    file is the one-task shorthand. See docs/own-data.md."""
    dataset_root: str | None = None
    """The Minari datasets folder of ``datasets``' ids (default: $MINARI_DATASETS_PATH)."""
    env_free: bool = False
    """true: the data has no environment; learners are compared on held-out metrics."""
    n_actions: int | None = None
    """Env-free .npz data: its number of discrete actions."""
    held_out_metric: str = "action_match"
    """Env-free data: what the statistics rank on: action_match, auc, apr or nll."""

    def __post_init__(self) -> None:
        from sbil.deep.learners import LearnerConfig

        for name in ("envs", "ks", "seeds", "algos"):
            value = getattr(self, name)
            if isinstance(value, (str, int)):
                value = (value,)
            if not isinstance(value, (list, tuple)):
                raise SweepError(f"{name} must be a list of values, got {value!r}.")
            object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise SweepError(f"{name} must name at least one value.")
        # Counts first, so that an absurd size is refused before anything is built from it.
        _check_at_most("seeds", len(self.seeds), "seeds")
        _check_at_most("ks", len(self.ks), "k values (ks)")
        for env_id in self.envs:
            if not isinstance(env_id, str) or not env_id.strip():
                raise SweepError(f"envs must be task ids like 'CartPole-v1', got {env_id!r}.")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise SweepError(f"seeds must be integers in 0..{MAX_SEED}, got {seed!r}.")
        for k in self.ks:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise SweepError(f"ks must be positive integers, got {k!r}.")
        for algo in self.algos:
            if algo not in _ALGOS:
                raise SweepError(f"algos must be among {', '.join(_ALGOS)}, got {algo!r}.")
        for name in ("envs", "seeds", "ks", "algos"):
            _check_distinct(name, getattr(self, name))
        for name in ("options", "grid"):
            if not isinstance(getattr(self, name), dict):
                raise SweepError(f"{name} must be a table of learner options.")
        known = {f.name for f in dataclasses.fields(LearnerConfig)} - {"algo"}
        for name in (*self.options, *self.grid):
            if name not in known:
                raise SweepError(
                    f"Unknown learner option {name!r}; options are {', '.join(sorted(known))}."
                )
        for name, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"grid.{name} must be a non-empty list of values.")
            _check_distinct(f"grid.{name}", values)
        for name, low in (
            ("holdout", 0),
            ("every_nth_step", 1),
            ("eval_episodes", 1),
            ("eval_seed", 0),
            ("collect_seed", 0),
            ("checkpoint_every", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SweepError(f"{name} must be an integer >= {low}, got {value!r}.")
        if self.dataset_episodes is not None and (
            isinstance(self.dataset_episodes, bool) or not isinstance(self.dataset_episodes, int)
        ):
            raise SweepError(
                "dataset_episodes must be an integer or absent (max(ks) + len(seeds) - 1 + "
                f"holdout), got {self.dataset_episodes!r}."
            )
        if self.windows not in ("first", "sliding", "random"):
            raise SweepError(f"windows must be first, sliding or random, got {self.windows!r}.")
        if not isinstance(self.expert, str) or not self.expert:
            raise SweepError(
                f"expert must be an expert's name (scripted, sb3-ppo, ...), got {self.expert!r}."
            )
        if self.preset is not None and not isinstance(self.preset, str):
            raise SweepError(f"preset must be a preset's name, got {self.preset!r}.")
        from sbil.deep.experts import ExpertNoise

        try:
            ExpertNoise.parse(self.expert_noise)
        except (TypeError, ValueError) as error:
            raise SweepError(f"expert_noise: {error}") from None
        if (
            self.dataset_episodes is not None
            and self.dataset_episodes < max(self.ks) + self.holdout
        ):
            raise SweepError(
                f"dataset_episodes {self.dataset_episodes} is less than max(ks) + holdout "
                f"= {max(self.ks) + self.holdout}."
            )
        _check_at_most(
            "eval_episodes", self.eval_episodes, "evaluation episodes per learner (eval_episodes)"
        )
        _check_at_most(
            "dataset_episodes",
            self.n_dataset_episodes,
            "episodes per dataset (dataset_episodes, by default max(ks) + len(seeds) - 1 + "
            "holdout)",
        )
        _check_at_most("cells", n_cells(self), "cells (envs x algos x ks x grid x seeds)")
        for name, first, count, unit in (
            ("eval_seed", self.eval_seed, self.eval_episodes, "evaluation episodes"),
            ("collect_seed", self.collect_seed, self.n_dataset_episodes, "recorded episodes"),
        ):
            if count > MAX_SEED + 1:  # one seed per episode: not even seed 0 leaves room
                raise SweepError(
                    f"{unit} need a seed each: at most {MAX_SEED + 1} (2**32), got {count}."
                )
            try:
                check_seed_range(first, count, name=name, unit=unit)
            except ValueError as error:
                raise SweepError(str(error)) from None
        _ = self.sources  # own data: checked without opening it (load_sources opens it)
        for combo in self.option_sets():  # at most the cell limit of them
            for algo in self.algos:
                try:
                    LearnerConfig(algo=algo, **combo)
                except (TypeError, ValueError) as error:
                    raise SweepError(f"Learner options {combo}: {error}") from None

    @property
    def sources(self):
        """Own data's :class:`~sbil.experiments.sweep_data.DataSource` per task (() for a
        sweep of sbil's experts)."""
        try:
            return check_sources(self)
        except SweepDataError as error:
            raise SweepError(str(error)) from None

    @property
    def n_dataset_episodes(self) -> int:
        """Episodes recorded per task."""
        if self.dataset_episodes is not None:
            return self.dataset_episodes
        return max(self.ks) + len(self.seeds) - 1 + self.holdout

    def option_sets(self) -> list[dict]:
        """Every combination of ``grid`` values, each merged over ``options``."""
        names = sorted(self.grid)
        combos = itertools.product(*(self.grid[n] for n in names))
        return [{**self.options, **dict(zip(names, values, strict=True))} for values in combos]

    def canonical(self) -> dict:
        """:meth:`to_dict` without what does not change the grid: the order of envs, algos, ks
        and grid values (the cells are the same; only the order they run in differs) and the
        preset's name."""
        out = self.to_dict()
        out.pop("preset")
        for name in ("envs", "algos", "ks"):
            out[name] = sorted(out[name])
        out["grid"] = {name: sorted(values, key=_json_key) for name, values in out["grid"].items()}
        return out

    def same_grid(self, other: SweepSpec) -> bool:
        """Whether ``other`` names the same cells with the same settings (:meth:`canonical`)."""
        return self.canonical() == other.canonical()

    def to_dict(self) -> dict:
        """The spec's keys: with own data (``datasets``) its data keys and not the expert's,
        else the expert's alone (so a sweep of sbil's experts keeps its description)."""
        out = dataclasses.asdict(self)
        for name in ("envs", "ks", "seeds", "algos"):
            out[name] = list(out[name])
        for name in EXPERT_KEYS if self.datasets else DATA_KEYS:
            out.pop(name)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        if not isinstance(data, dict):
            raise SweepError(
                f"A sweep spec must be a table of keys (envs, ks, seeds, ...), got {data!r}."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SweepError(f"Unknown sweep keys {unknown}; known keys: {sorted(known)}.")
        datasets = data.get("datasets")
        if isinstance(datasets, dict) and datasets and "envs" not in data:
            data = {**data, "envs": list(datasets)}  # own data's tasks are its keys
        return cls(**data)


def _seeds(first: int, count: int) -> tuple[int, ...]:
    return tuple(range(first, first + count))


#: The EDM paper's control-task grid, shared by the ``edm-paper*`` presets: only the expert that
#: records the demonstrations differs between them.
_EDM_PAPER_GRID: dict[str, Any] = {
    "envs": ["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0"],
    "ks": [1, 3, 7, 10, 15],
    "algos": list(_ALGOS),
    "seeds": list(_seeds(0, 10)),
    "windows": "sliding",
    "holdout": 10,
    "every_nth_step": 20,
    "eval_episodes": 300,
    # One budget for every learner: the EDM harness's 10,000 updates of 32 pairs (ValueDICE
    # and AVRIL publish larger batches, 256 and 64; docs/sweeps.md says why not here).
    "options": {"n_updates": 10_000, "batch_size": 32},
}

#: Presets. ``edm-paper``: the EDM paper's control-task comparison at its published settings on
#: the reference's kind of data, demonstrations sampled from RL-Zoo-tuned PPO experts (the
#: shipped ``ppo-zoo``; the reference rolls out a Zoo PPO agent with ``deterministic=False``).
#: ``edm-paper-scripted``: the same grid on sbil's deterministic scripted experts (the data of
#: sbil's first comparison); ``edm-paper-epsilon``: the scripted experts with 20% of their
#: actions replaced by uniformly random ones. docs/sweeps.md says what the paper ran that these
#: do not. ``quick``: the same shape, tiny (a smoke test: its report states no verdict).
PRESETS: dict[str, dict[str, Any]] = {
    "edm-paper": {**_EDM_PAPER_GRID, "expert": "ppo-zoo", "expert_noise": "sample"},
    "edm-paper-scripted": {**_EDM_PAPER_GRID, "expert": "scripted", "expert_noise": "none"},
    "edm-paper-epsilon": {**_EDM_PAPER_GRID, "expert": "scripted", "expert_noise": "epsilon:0.2"},
    "quick": {
        "envs": ["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0"],
        "ks": [1, 3],
        "algos": list(_ALGOS),
        "seeds": list(_seeds(0, 3)),
        "windows": "sliding",
        "holdout": 2,
        "every_nth_step": 20,
        "eval_episodes": 10,
        "options": {"n_updates": 300, "sgld_buffer_size": 1000},
        "checkpoint_every": 100,
    },
}


def preset(name: str, **overrides: Any) -> SweepSpec:
    """The preset ``name`` (:data:`PRESETS`: ``edm-paper``, ``edm-paper-scripted``,
    ``edm-paper-epsilon`` or ``quick``), with any field overridden."""
    if name not in PRESETS:
        raise SweepError(f"Unknown preset {name!r}; presets are {', '.join(PRESETS)}.")
    return SweepSpec.from_dict({**PRESETS[name], **overrides, "preset": name})


def load_spec_file(path: str | os.PathLike) -> SweepSpec:
    """A :class:`SweepSpec` from a TOML file (keys as the fields; ``preset = "quick"`` starts
    from a preset and overrides its fields)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"The sweep file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SweepError(f"Cannot read the sweep file {path} ({error}).") from None
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"The sweep file {path} is not valid TOML ({error}).") from None
    try:  # own data: the shorthand expanded, paths taken from the file's folder
        data = expand_shorthand(data, path.absolute().parent)
    except SweepDataError as error:
        raise SweepError(f"{path}: {error}") from None
    name = data.pop("preset", None)
    if name is not None:
        if not isinstance(name, str):
            raise SweepError(
                f"preset must be a preset's name ({', '.join(PRESETS)}), got {name!r}."
            )
        return preset(name, **data)
    try:
        return SweepSpec.from_dict(data)
    except TypeError as error:
        raise SweepError(f"The sweep file {path} is incomplete ({error}).") from None


# --- groups and cells ---------------------------------------------------------------------------


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
        outcomes = run_training_together(specs, folders, state_dir=state, stop_on_divergence=False)
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
    options, seeds and device) form one unit, trained as one stack; a decoupled EDM group
    that takes its policy from a BC twin stays alone."""
    if not stack_k:
        return [(g,) for g in todo]
    by_key: dict[str, list[Group]] = {}
    order: list[str] = []
    for number, group in enumerate(todo):
        key = (
            f"alone-{number}"
            if group.policy_from is not None
            else _json_key([{**group.run, "episodes": None}, group.device])
        )
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
        git_commit=info.get("git_commit"),
        sbil_version=(info.get("versions") or {}).get("sbil"),
        run_dir=str(folder.relative_to(sweep)),
        **fields,
    )


# --- the sweep folder -----------------------------------------------------------------------------


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


def _random_policy(n_actions: int, seed: int):
    rng = np.random.default_rng(seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        return rng.integers(0, n_actions, size=len(obs), dtype=np.int64)

    return policy


def _read_json(path: Path, fix: str) -> Any:
    """``path`` parsed, or a SweepError naming the file and ``fix`` (what to do about it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise SweepError(f"Cannot read {path} as JSON ({reason}); {fix}.") from None


def stored_spec(sweep_dir: str | os.PathLike) -> SweepSpec:
    """The sweep a folder holds (its ``sweep.json``).

    Raises:
        SweepError: naming the file, if it is missing, damaged or not a sweep description.
    """
    path = Path(sweep_dir) / "sweep.json"
    fix = "restore it from a copy, or run the sweep in a new folder"
    data = _read_json(path, fix)
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise SweepError(
            f'{path} is not a sweep description ({{"schema": 1, "spec": {{...}}}}); {fix}.'
        )
    try:
        return SweepSpec.from_dict(from_stored(data["spec"], Path(sweep_dir)))
    except (SweepError, TypeError) as error:
        raise SweepError(f"{path} holds a sweep that cannot be used ({error}); {fix}.") from None


def _read_references(sweep_dir: Path) -> dict:
    path = sweep_dir / "references.json"
    if not path.is_file():
        return {}
    fix = "delete it and re-run the sweep to measure the references again"
    references = _read_json(path, fix)
    if not isinstance(references, dict) or not all(
        isinstance(entry, dict)
        and all(isinstance(entry.get(kind), dict) for kind in ("random", "expert"))
        for entry in references.values()
    ):
        raise SweepError(f"{path} is not a table of task -> random and expert returns; {fix}.")
    return references


def _relation(stored: SweepSpec, spec: SweepSpec, sweep_dir: Path) -> tuple[str, str]:
    """How ``spec`` relates to the sweep a folder holds: ``"same"`` (the same grid, in any
    order), ``"extension"`` (every stored cell is a cell of ``spec`` with the same id and run
    description: it adds envs, ks or algos, or options that leave the stored learners
    unchanged; with a description of what it adds), ``"part"`` (every cell of ``spec`` is a
    stored one) or ``"different"``."""
    if stored.same_grid(spec):
        return "same", ""
    old, new = stored.canonical(), spec.canonical()
    if set(old) != set(new) or any(
        old[name] != new[name] for name in old if name not in (*_EXTENSIBLE, "options", "datasets")
    ):
        return "different", ""
    old_runs = {g.group_id: g.run for g in groups(stored, sweep_dir)}
    new_runs = {g.group_id: g.run for g in groups(spec, sweep_dir)}
    if all(new_runs.get(group_id) == run for group_id, run in old_runs.items()):
        added = []
        if extra := [task for task in spec.datasets if task not in stored.datasets]:
            added.append(f"datasets {', '.join(extra)}")
        for name in _EXTENSIBLE:
            before = getattr(stored, name)
            if name == "envs":
                before = (*before, *spec.datasets)  # named as datasets already
            if extra := [str(v) for v in getattr(spec, name) if v not in before]:
                added.append(f"{name} {', '.join(extra)}")
        return "extension", "; ".join(added) or "options that leave its cells unchanged"
    if all(old_runs.get(group_id) == run for group_id, run in new_runs.items()):
        return "part", ""
    return "different", ""


def extension(stored: SweepSpec, spec: SweepSpec, sweep_dir: Path) -> str | None:
    """What ``spec`` adds to ``stored`` (e.g. "algos valuedice, rcal") if it extends it (see
    :func:`_relation`), else None."""
    relation, added = _relation(stored, spec, sweep_dir)
    return added if relation == "extension" else None


def _write_spec(path: Path, spec: SweepSpec) -> None:
    stored = to_stored(spec.to_dict(), path.parent)  # own data's paths relative to the folder
    write_json_atomic(path, {"schema": SCHEMA, "spec": stored})


def prepare(
    spec: SweepSpec,
    sweep_dir: Path,
    log: Callable[[str], None],
    own_data: dict[str, Any] | None = None,
) -> SweepSpec:
    """Write sweep.json (or check it), collect missing datasets, measure missing references.

    ``own_data``: with own data (``spec.datasets``), each task's demonstrations as
    :func:`~sbil.experiments.sweep_data.load_sources` read them.

    Returns:
        The sweep the folder holds: ``spec``, or the stored sweep that ``spec`` is part of.
    """
    from sbil.deep.data import collect, load_demonstrations
    from sbil.deep.envs import env_spec
    from sbil.deep.evaluation import evaluate
    from sbil.deep.experts import get_expert

    spec_file = sweep_dir / "sweep.json"
    whole = spec
    if spec_file.is_file():
        stored = stored_spec(sweep_dir)
        relation, added = _relation(stored, spec, sweep_dir)
        if relation == "different":
            raise SweepError(
                f"{sweep_dir} holds a different sweep (its sweep.json); re-run it with the "
                "same preset/spec or a part of it, extend it only by adding envs, ks or algos, "
                "or give a new folder."
            )
        if relation == "extension":
            log(f"extending the sweep with {added}; its finished cells are kept")
            _write_spec(spec_file, spec)
        else:
            whole = stored
        if relation == "part":
            log(
                f"running {n_cells(spec)} of the {n_cells(stored)} cells of the sweep in "
                f"{sweep_dir} (this spec names part of it)"
            )
    else:
        _write_spec(spec_file, spec)
    root = sweep_dir / "datasets"
    references_file = sweep_dir / "references.json"
    references = _read_references(sweep_dir)
    if spec.datasets:
        from sbil.experiments.sweep_data import dataset_references

        for source in spec.sources:
            if source.env_id is None or source.task in references:
                continue  # env-free data has no return to anchor
            log(
                f"measuring random returns on {source.task} ({spec.eval_episodes} episodes); "
                f"the expert level is {source.label}'s recorded returns"
            )
            references[source.task] = dataset_references(
                source,
                (own_data or {})[source.task],
                eval_episodes=spec.eval_episodes,
                eval_seed=spec.eval_seed,
            )
            write_json_atomic(references_file, references)
        return whole
    for env_id in spec.envs:
        name = dataset_id(env_id, spec.expert, spec.expert_noise)
        if not (root / name / "data").is_dir():
            log(f"recording {spec.n_dataset_episodes} {spec.expert} episodes of {env_id}")
            collect(
                env_id,
                spec.n_dataset_episodes,
                expert=spec.expert,
                seed=spec.collect_seed,
                root=root,
                noise=spec.expert_noise,
            )
        demos = load_demonstrations(name, root=root)
        if demos.n_episodes < spec.n_dataset_episodes:
            raise SweepError(
                f"The dataset {name} in {root} has {demos.n_episodes} episodes, fewer than the "
                f"{spec.n_dataset_episodes} this sweep needs; delete it to record it again."
            )
        if env_id not in references:
            log(f"measuring random and expert returns on {env_id} ({spec.eval_episodes} episodes)")
            n = spec.eval_episodes
            random = evaluate(
                _random_policy(env_spec(env_id).n_actions, spec.eval_seed),
                env_id,
                n,
                spec.eval_seed,
                vectorize=False,
            )
            demonstrator = get_expert(
                env_id, spec.expert, noise=spec.expert_noise, seed=spec.eval_seed
            )
            expert = evaluate(demonstrator, env_id, n, spec.eval_seed)
            references[env_id] = {
                "random": {
                    "mean": random.mean,
                    "returns": random.returns.tolist(),
                    "episodes": n,
                    "seed": spec.eval_seed,
                },
                "expert": {
                    "mean": expert.mean,
                    "returns": expert.returns.tolist(),
                    "episodes": n,
                    "seed": spec.eval_seed,
                    "name": spec.expert,
                    "noise": spec.expert_noise,
                },
            }
            write_json_atomic(references_file, references)
    return whole


def _stored_rows(sweep_dir: Path) -> tuple[dict[str, Row], list[str]]:
    """The readable rows of ``rows/`` by file name (cell id), and the names of damaged ones:
    not JSON, not a sweep row (:meth:`Row.from_dict`), or not naming the cell its file is
    named after."""
    rows, damaged = {}, []
    for path in sorted((sweep_dir / "rows").glob("*.json")):
        try:
            row = Row.from_dict(json.loads(path.read_text(encoding="utf-8")), path)
        except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
            row = None
        if row is not None and row.cell_id == path.stem:
            rows[path.stem] = row
        else:
            damaged.append(path.stem)
    return rows, damaged


def stray_rows(sweep_dir: str | os.PathLike) -> list[str]:
    """The files of ``rows/`` (cell ids) that are not cells of the sweep the folder holds:
    left alone by the sweep and not counted in its summary."""
    sweep = Path(sweep_dir)
    cells = {g.cell_id(s) for g in groups(stored_spec(sweep), sweep) for s in g.run["seeds"]}
    return sorted(p.stem for p in (sweep / "rows").glob("*.json") if p.stem not in cells)


def _finished(row: Row | None, group: Group, seed: int, sweep: Path, retry_failed: bool) -> bool:
    """Whether a cell's stored row stands: done with its checkpoint in place, or failed for a
    reason of its own (unless ``retry_failed``)."""
    if row is None or row.config_hash != group.config_hash(seed):
        return False
    if row.done:
        return _checkpoint_exists(sweep / "runs" / group.group_id / f"seed-{seed}")
    return not retry_failed and not is_environmental(row.error)


def _check_folder(sweep: Path) -> None:
    if sweep.exists() and not sweep.is_dir():
        raise SweepError(f"{sweep} is a file; give a folder for the sweep.")
    if not sweep.is_dir() or (sweep / "sweep.json").is_file():
        return
    # An empty rows/ is what a spec rejected by an earlier sbil left behind: not foreign files.
    entries = [e for e in sweep.iterdir() if not (e.name == "rows" and not any(e.iterdir()))]
    if entries:
        raise SweepError(f"{sweep} holds files that are not an sbil sweep; give a new folder.")


def check_tasks(spec: SweepSpec, sweep_dir: str | os.PathLike) -> None:
    """Check that every task exists and that the expert can be made where the folder still
    needs it (a dataset or references to record), before anything is written.

    Raises:
        SweepError: for an unknown or unsupported task, or an unknown expert.
    """
    from sbil.deep.envs import env_spec
    from sbil.deep.experts import get_expert

    sweep = Path(sweep_dir)
    if spec.datasets:
        return  # own data: its tasks were checked with the spec (sources), no expert is made
    try:
        references = json.loads((sweep / "references.json").read_text())
    except (OSError, ValueError):
        references = {}  # none yet (or damaged: prepare names the file)
    for env_id in spec.envs:
        recorded = (
            sweep / "datasets" / dataset_id(env_id, spec.expert, spec.expert_noise)
        ).is_dir()
        try:
            env_spec(env_id)
            if not recorded or not isinstance(references, dict) or env_id not in references:
                get_expert(env_id, spec.expert, noise=spec.expert_noise, seed=spec.eval_seed)
        except ModuleNotFoundError:
            raise  # a missing extra: the command line names it
        except ValueError as error:
            raise SweepError(str(error)) from None


# --- backends -------------------------------------------------------------------------------------

#: Seconds to wait for a Ray cluster's port to answer before giving up on it.
RAY_CONNECT_TIMEOUT_S = 5.0


def max_local_workers() -> int:
    """The most worker processes a sweep starts on this machine: ``SBIL_MAX_WORKERS``, else
    4 per CPU this process may use and at least 8 (a typo such as 100000 would fork that many
    processes of a few hundred MB each)."""
    from sbil.machine import env_limit, max_workers

    try:  # the same variable and default as sbil consistency's --workers
        return env_limit("SBIL_MAX_WORKERS", max_workers)
    except ValueError as error:
        raise SweepError(str(error)) from None


def check_backend(workers: int, backend: str, address: str | None) -> None:
    """Check the backend options alone (no connection is made): a bad one is a usage error.

    Raises:
        SweepError: naming the option and what it accepts.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers must be a positive integer, got {workers!r}.")
    if address is None and workers > (most := max_local_workers()):
        raise SweepError(
            f"--workers {workers} would start that many processes on this machine, more than "
            f"its limit of {most} (4 per CPU, at least 8: more only share the same cores); set "
            "SBIL_MAX_WORKERS to go past it, or give a Ray cluster with --address."
        )
    if backend not in BACKENDS:
        raise SweepError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if address is None:
        return
    if backend != "ray":
        raise SweepError("--address is for --backend ray.")
    if address != "auto":
        _host_port(address)


def _host_port(address: str) -> tuple[str, int]:
    """``host:port`` of a Ray address (``host:port`` or ``ray://host:port``)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(
            f"--address must be auto, HOST:PORT (the head node's GCS, e.g. 10.0.0.1:6379) or "
            f"ray://HOST:PORT (Ray Client), got {address!r}."
        )
    return host.strip("[]"), int(port)


def _ray_client_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("grpc") is not None  # what ray[client] adds to Ray


def check_device(device: str, backend: str = "local", address: str | None = None) -> None:
    """Check that ``device`` can train here: ``cpu``, or ``cuda``/``cuda:N`` where this
    machine's torch sees a GPU. On a Ray cluster (``address``) the GPUs are the workers': they
    are checked once connected (:func:`_ray_session`).

    Raises:
        SweepError: for an unknown device, or CUDA where there is none, in one line.
    """
    if not isinstance(device, str) or not device.strip():
        raise SweepError(f"--device must be cpu or cuda, got {device!r}.")
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise SweepError(f"--device must be cpu, cuda or cuda:N, got {device!r}.") from None
    if kind not in ("cpu", "cuda"):
        raise SweepError(f"--device must be cpu, cuda or cuda:N, got {device!r}.")
    if kind == "cpu" or (backend == "ray" and address is not None):
        return
    from sbil.deep.learners import LearnerInputError, resolve_device

    try:
        resolve_device(device)
    except LearnerInputError as error:
        raise SweepError(f"--device {device}: {error}") from None


#: Ray's token authentication (https://docs.ray.io/en/latest/ray-security/token-auth.html):
#: the mode, then where the token is read from, highest precedence first.
_RAY_AUTH_MODE = "RAY_AUTH_MODE"
_RAY_TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
_RAY_TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
_RAY_TOKEN_WHERE = (
    "give the cluster's token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in "
    "~/.ray/auth_token (`ray get-auth-token` on the head node prints it)"
)


def _ray_default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def ray_token_source() -> str | None:
    """Where Ray takes this process's authentication token from when ``RAY_AUTH_MODE=token``
    (the first of ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``'s file, ``~/.ray/auth_token``),
    or None when there is none.

    Raises:
        SweepError: when ``RAY_AUTH_TOKEN_PATH`` names a file that cannot be read or is empty
            (Ray aborts the process on it).
    """
    if os.environ.get(_RAY_TOKEN_VARIABLE):
        return _RAY_TOKEN_VARIABLE
    named = os.environ.get(_RAY_TOKEN_PATH_VARIABLE)
    if named is not None:
        try:
            text = Path(named).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise SweepError(
                f"{_RAY_TOKEN_PATH_VARIABLE}={named} cannot be read ({reason}); point it at "
                "the file holding the cluster's token, or unset it."
            ) from None
        if not text.strip():
            raise SweepError(
                f"{_RAY_TOKEN_PATH_VARIABLE}={named} is empty; put the cluster's token in it "
                "(`ray get-auth-token` on the head node prints it), or unset it."
            )
        return f"{_RAY_TOKEN_PATH_VARIABLE} ({named})"
    default = _ray_default_token_path()
    try:
        if default.read_text(encoding="utf-8").strip():
            return str(default)
    except (OSError, UnicodeDecodeError):
        pass
    return None


def _token_auth_on() -> bool:
    return os.environ.get(_RAY_AUTH_MODE, "").strip().lower() == "token"


def _check_ray_token() -> None:
    """With ``RAY_AUTH_MODE=token``, check that this process has a token to send."""
    if _token_auth_on() and ray_token_source() is None:
        raise SweepError(
            f"RAY_AUTH_MODE=token but no Ray authentication token is set: {_RAY_TOKEN_WHERE}."
        )


def _ray_refused(address: str) -> SweepError:
    """The one-line error for a cluster that refused this process's (missing) token."""
    if not _token_auth_on():
        return SweepError(
            f"The Ray cluster at {address} requires token authentication and this process "
            f"sends no token: set RAY_AUTH_MODE=token and {_RAY_TOKEN_WHERE}."
        )
    return SweepError(
        f"The Ray cluster at {address} refused the authentication token from "
        f"{ray_token_source()}: {_RAY_TOKEN_WHERE}."
    )


def _is_auth_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) is Ray refusing this process's token."""
    seen: BaseException | None = error
    for _ in range(8):  # a chain of causes, never a cycle
        if seen is None:
            return False
        text = str(seen)
        if type(seen).__name__ == "AuthenticationError" or "InvalidAuthToken" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: Run in a child process by :func:`_probe_ray_auth`: one request to the cluster's GCS, with
#: this process's environment (so its token, if any), printing how it went as one JSON line.
_RAY_AUTH_PROBE = """
import json, sys
try:
    from ray._raylet import GcsClient
    GcsClient(address=sys.argv[1]).internal_kv_get(b"sbil-probe", None, timeout=float(sys.argv[2]))
except Exception as error:
    name = type(error).__name__
    refused = name == "AuthenticationError" or "InvalidAuthToken" in str(error)
    print(json.dumps({"refused": refused, "error": name + ": " + " ".join(str(error).split())}))
else:
    print(json.dumps({"refused": False, "error": None}))
"""


def _probe_ray_auth(address: str) -> None:
    """Ask the cluster's GCS at ``address`` (``host:port``) one question, as this process would
    ask it, to learn within seconds whether it refuses this process's token (``ray.init``
    retries a refused connection for about 20 s, printing a warning a second).

    Anything but a refusal (Ray's internals changed, a slow cluster) is left to ``ray.init``.

    Raises:
        SweepError: when the cluster refuses the token (or its absence), saying what to set.
    """
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-c", _RAY_AUTH_PROBE, address, str(RAY_CONNECT_TIMEOUT_S)],
            capture_output=True,
            text=True,
            timeout=3 * RAY_CONNECT_TIMEOUT_S,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return
    if isinstance(answer, dict) and answer.get("refused") is True:
        raise _ray_refused(address)


def _ray_bootstrap_address(address: str) -> str:
    """The ``host:port`` Ray itself connects to for ``address``: Ray replaces a loopback host
    by this machine's address (so a head node that listens on loopback alone is reached only
    where Ray is told to use loopback too)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(address) or address
    except Exception:  # Ray's internals moved: the address as given
        return address


def check_ray(address: str | None) -> None:
    """Check that Ray is installed and, for an ``address``, that the cluster answers there and
    accepts this process's authentication token (Ray's token authentication), within seconds
    (Ray itself retries a dead address for minutes, a refused token for about 20 s).

    Raises:
        SweepError: saying what to install, that nothing answers at ``address``, or which
            token to set.
    """
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        raise SweepError(
            "--backend ray needs Ray: pip install 'sbil[ray]' (or pip install ray)."
        ) from None
    _check_ray_token()
    if address is None or address == "auto":
        return
    _host_port(address)
    if address.startswith("ray://") and not _ray_client_installed():
        raise SweepError(
            f"--address {address} is a Ray Client address, which needs pip install "
            "'ray[client]' (sbil[ray] installs Ray without its client); or give the head "
            "node's GCS address, HOST:6379."
        )
    gcs = address if address.startswith("ray://") else _ray_bootstrap_address(address)
    host, port = _host_port(gcs)
    try:
        socket.create_connection((host, port), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        via = f" (Ray connects to it as {gcs})" if gcs != address else ""
        raise SweepError(
            f"Cannot reach a Ray cluster at {address}{via} ({reason}); check the address and "
            "that its head node runs (ray start --head), or leave out --address for a local "
            "Ray."
        ) from None
    if not address.startswith("ray://"):  # Ray Client authenticates in its own server
        _probe_ray_auth(gcs)


@contextlib.contextmanager
def _ray_session(workers: int, address: str | None, device: str = "cpu") -> Iterator[None]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                # A small object store: tasks pass only group descriptions and rows.
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    object_store_memory=256 * 1024**2,
                )
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as error:
            if address is not None and _is_auth_failure(error):
                raise _ray_refused(address) from None
            where = f" at {address}" if address else ""
            raise SweepError(f"Cannot start Ray{where} ({_error_text(error)}).") from None
    try:
        if _uses_gpu(device) and ray.cluster_resources().get("GPU", 0) < 1:
            where = f"The Ray cluster at {address}" if address else "This machine's Ray"
            raise SweepError(
                f"--device {device}: {where} has no GPU (its resources list none); start its "
                "nodes with GPUs (ray start --num-gpus N) or use --device cpu."
            )
        yield
    finally:
        if started_here:
            ray.shutdown()


def _uses_gpu(device: str) -> bool:
    return device.split(":", 1)[0] == "cuda"


# --- the sweep ------------------------------------------------------------------------------------


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


# --- the local process pool ---------------------------------------------------------------------

#: prctl(2) option: the signal the kernel sends this process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
#: Seconds between a worker's checks that its driver still runs (where prctl is missing).
_WATCH_S = 0.5
#: Seconds a worker whose driver died has to save its checkpoint before it is ended.
_GRACE_S = 30.0


@dataclass(eq=False)
class _Worker:
    process: Any
    connection: Any


class _WorkerPool:
    """Worker processes (``spawn``: no torch state forked) that run one group at a time.

    Each worker ends with its driver however the driver ends (see :func:`_end_with_driver`),
    and the driver knows which group each one runs: a worker that dies fails its group only
    (``WorkerLost``, retried by the next run); the others go on.
    """

    def __init__(self, sweep: Path) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._sweep = str(sweep)
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(interrupted=kind is not None)

    def submit(self, unit: tuple[Group, ...]) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            try:
                worker.connection.send(unit)
                return worker
            except OSError:  # it died while idle
                self._discard(worker)
        worker = self._start()
        worker.connection.send(unit)
        return worker

    def wait_one(self, busy: list[_Worker]) -> list[tuple[_Worker, list[dict] | str]]:
        from multiprocessing.connection import wait

        ready = set(wait([w.connection for w in busy] + [w.process.sentinel for w in busy]))
        out = []
        for worker in busy:
            if worker.connection not in ready and worker.process.sentinel not in ready:
                continue
            try:
                if worker.connection.poll():
                    out.append((worker, worker.connection.recv()))
                    self._idle.append(worker)
                    continue
            except (EOFError, OSError):
                pass
            out.append((worker, _lost(worker.process)))
            self._discard(worker)
        return out

    def close(self, *, interrupted: bool) -> None:
        """Stop every worker: asked to (the sweep is over), or with SIGTERM when the driver
        was interrupted, which training answers by saving its checkpoint; waited for."""
        for worker in self._workers:
            if interrupted:
                if worker.process.is_alive():
                    worker.process.terminate()
            else:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
        for worker in list(self._workers):
            self._discard(worker)

    def _start(self) -> _Worker:
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(there, self._sweep, os.getpid()),
            name="sbil-sweep-worker",
            daemon=True,
        )
        process.start()
        there.close()  # so that the worker's death reads as the end of the pipe here
        worker = _Worker(process, here)
        self._workers.append(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.process.join(timeout=_GRACE_S)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
        self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)


def _lost(process) -> str:
    process.join(timeout=_GRACE_S)
    code = process.exitcode
    if code is None:
        how = "it stopped answering"
    elif code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    else:
        how = f"exit status {code}"
    return (
        f"WorkerLost: the worker process running this group ended ({how}) before returning "
        "its rows; re-run the sweep to resume the group from its last checkpoint."
    )


def _worker_main(connection, sweep_dir: str, driver: int) -> None:
    """A pool worker: run the groups the driver sends until it sends None or is gone."""
    _end_with_driver(driver)
    try:
        while (unit := connection.recv()) is not None:
            connection.send(run_unit(sweep_dir, unit))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # interrupted (training saved its checkpoint), or the driver is gone


def _end_with_driver(driver: int, *, kernel: bool = True) -> None:
    """Make this worker end when its driver does, even by SIGKILL.

    On Linux the kernel sends it SIGTERM then (prctl PR_SET_PDEATHSIG), which training turns
    into a saved checkpoint and a clean exit. Elsewhere, and as a backstop, a thread polls the
    parent's id (it changes when the parent dies) and does the same, then ends the process
    after a grace period. ``kernel=False`` leaves the thread alone (to test it).
    """
    if kernel and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != driver:  # the driver died before prctl took effect
        os._exit(1)
    threading.Thread(
        target=_watch_driver, args=(driver,), name="sbil-watch-driver", daemon=True
    ).start()


def _watch_driver(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(_WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_GRACE_S)
    os._exit(1)

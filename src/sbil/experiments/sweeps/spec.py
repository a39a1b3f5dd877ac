"""A sweep's description: :class:`SweepSpec` (the grid), its limits, presets and spec files.

Part of the sweep runner (:mod:`sbil.experiments.sweep` is its entry point and module doc).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbil.deep.learners.registry import ALGOS
from sbil.experiments.sweep_data import (
    DATA_KEYS,
    EXPERT_KEYS,
    SweepDataError,
    check_sources,
    expand_shorthand,
)
from sbil.seeds import MAX_SEED, check_seed_range

SCHEMA = 1
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

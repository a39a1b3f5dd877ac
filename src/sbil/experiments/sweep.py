"""``sbil sweep``: a grid of runs (tasks x learners x k x options x seeds), resumable, on a local
process pool or on Ray, with one tidy row per cell.

A cell is one learner: (task, algorithm, ``k`` trajectories, learner options, seed). Cells that
differ only in seed form a *group* and train as one stacked model (one run folder, made by
:func:`sbil.experiments.runs.run_training`). The sweep folder ``DIR`` holds::

    DIR/sweep.json         the sweep's description (SweepSpec.to_dict())
    DIR/datasets/          the demonstrations, collected locally (Minari)
    DIR/references.json    per task: random-policy and expert returns (normalised score 0 and 1)
    DIR/runs/<group>/      one run folder per group (checkpoints, losses, results)
    DIR/rows/<cell>.json   one tidy row per cell (see docs/sweeps.md), written atomically

Re-running the same command skips finished cells (and recorded failures, unless
``retry_failed``) and resumes interrupted groups from their last training checkpoint; a cell
that fails is recorded with its error and does not stop the others. Results do not depend on
the backend or the number of workers: every random number comes from the cell's seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sbil.files import lock, write_json_atomic
from sbil.seeds import MAX_SEED, check_seed_range

SCHEMA = 1
BACKENDS: tuple[str, ...] = ("local", "ray")
# As sbil.deep.config.ALGOS (not imported: that module needs torch).
_ALGOS = ("bc", "edm", "edm-decoupled", "valuedice", "rcal", "iqlearn", "avril")
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
    variable = f"SBIL_SWEEP_MAX_{name.upper()}"
    text = os.environ.get(variable)
    if text is None:
        return LIMITS[name]
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise SweepError(f"{variable} must be a positive integer, got {text!r}.")
    return value


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
    """Learners: bc, edm, edm-decoupled, valuedice, rcal, iqlearn, avril."""
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
        for combo in self.option_sets():  # at most the cell limit of them
            for algo in self.algos:
                try:
                    LearnerConfig(algo=algo, **combo)
                except (TypeError, ValueError) as error:
                    raise SweepError(f"Learner options {combo}: {error}") from None

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
        out = dataclasses.asdict(self)
        for name in ("envs", "ks", "seeds", "algos"):
            out[name] = list(out[name])
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
        return cls(**data)


def _seeds(first: int, count: int) -> tuple[int, ...]:
    return tuple(range(first, first + count))


#: Presets. ``edm-paper``: the EDM paper's control-task comparison at its published settings
#: (docs/sweeps.md says what the paper ran that this does not). ``quick``: the same shape, tiny.
PRESETS: dict[str, dict[str, Any]] = {
    "edm-paper": {
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
    },
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
    """The preset ``name`` (``edm-paper`` or ``quick``), with any field overridden."""
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
    """The run's RunSpec.to_dict() (dataset paths relative to the sweep folder resolved)."""

    def cell_id(self, seed: int) -> str:
        return f"{self.group_id}__s{seed}"

    def config_hash(self, seed: int) -> str:
        payload = {**self.run, "seeds": [seed]}
        payload.pop("root", None)  # the sweep folder may move; the data is the same
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
    for env_id, algo, k, options in itertools.product(
        spec.envs, spec.algos, spec.ks, spec.option_sets()
    ):
        run = RunSpec(
            learner=LearnerConfig(algo=algo, **options),
            seeds=spec.seeds,
            dataset=dataset_id(env_id, spec.expert, spec.expert_noise),
            root=root,
            env_id=env_id,
            episodes=k,
            windows=spec.windows,
            holdout=spec.holdout,
            every_nth_step=spec.every_nth_step,
            eval_episodes=spec.eval_episodes,
            eval_seed=spec.eval_seed,
            checkpoint_every=spec.checkpoint_every,
        ).to_dict()
        digest = _sha256({**run, "root": None})[:8]
        group_id = f"{env_id}__{algo}__k{k}__{digest}"
        out.append(Group(group_id, env_id, algo, k, options, run))
    cost = {
        "bc": 1,
        "rcal": 1,
        "iqlearn": 1,
        "avril": 2,
        "valuedice": 4,
        "edm": 4,
        "edm-decoupled": 5,
    }
    heavy = {"LunarLander-v3": 3, "CartPole-v1": 2}
    return sorted(out, key=lambda g: (g.k, -(cost[g.algo] + heavy.get(g.env_id, 1))))


# --- one group: what a worker runs ---------------------------------------------------------------


def run_group(sweep_dir: str, group: Group) -> list[dict]:
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
        spec = RunSpec.from_dict(group.run)
        resume = folder.is_dir() and is_run_folder(folder)
        outcome = run_training(spec, folder, resume=resume, stop_on_divergence=False)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # recorded in the rows; the sweep goes on
        message = " ".join(f"{type(error).__name__}: {error}".split())
        return [
            _row(group, seed, info, folder, sweep, status="failed", error=message)
            for seed in group.run["seeds"]
        ]
    wall = time.perf_counter() - started
    k = len(outcome.seeds)
    rows = []
    for s in outcome.seeds:
        rows.append(
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
                # a stacked group's time is shared by its seeds
                train_seconds=outcome.train_seconds / k,
                eval_seconds=outcome.eval_seconds / k,
                wall_seconds=wall / k,
            )
        )
    return rows


def _row(group: Group, seed: int, info: dict, folder: Path, sweep: Path, **fields) -> dict:
    returns = fields.pop("returns", [])
    options = {**group.options, "every_nth_step": group.run["every_nth_step"]}
    row = {
        "schema": SCHEMA,
        "cell_id": group.cell_id(seed),
        "config_hash": group.config_hash(seed),
        "env_id": group.env_id,
        "algo": group.algo,
        "k": group.k,
        "seed": seed,
        "windows": group.run["windows"],
        "train_episodes": [],
        "options": options,
        "n_pairs": None,
        "status": "failed",
        "error": None,
        "returns": returns,
        "return_mean": float(np.mean(returns)) if returns else None,
        "eval_episodes": group.run["eval_episodes"],
        "eval_seed": group.run["eval_seed"],
        "action_match": None,
        "action_match_episodes": 0,
        "train_seconds": None,
        "eval_seconds": None,
        "wall_seconds": None,
        "git_commit": info.get("git_commit"),
        "sbil_version": (info.get("versions") or {}).get("sbil"),
        "run_dir": str(folder.relative_to(sweep)),
    }
    row.update(fields)
    return row


# --- the sweep ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSummary:
    """What a call of :func:`run_sweep` did."""

    sweep_dir: Path
    n_cells: int
    done: int
    failed: int
    skipped: int
    ran_groups: int
    seconds: float


def _random_policy(n_actions: int, seed: int):
    rng = np.random.default_rng(seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        return rng.integers(0, n_actions, size=len(obs), dtype=np.int64)

    return policy


def extension(stored: SweepSpec, spec: SweepSpec, sweep_dir: Path) -> str | None:
    """What ``spec`` adds to ``stored`` (e.g. "algos valuedice, rcal") if every cell of
    ``stored`` is also a cell of ``spec`` with the same id and run description (it adds envs,
    ks or algos, or options that leave the stored cells' learners unchanged), else None."""
    same_rest = all(
        getattr(stored, f.name) == getattr(spec, f.name)
        for f in dataclasses.fields(SweepSpec)
        if f.name not in (*_EXTENSIBLE, "options", "preset")
    )
    if not same_rest:
        return None
    new_groups = {g.group_id: g.run for g in groups(spec, sweep_dir)}
    if any(new_groups.get(g.group_id) != g.run for g in groups(stored, sweep_dir)):
        return None
    added = []
    for name in _EXTENSIBLE:
        old, new = getattr(stored, name), getattr(spec, name)
        if extra := [str(v) for v in new if v not in old]:
            added.append(f"{name} {', '.join(extra)}")
    return "; ".join(added) or None


def prepare(spec: SweepSpec, sweep_dir: Path, log: Callable[[str], None]) -> None:
    """Write sweep.json (or check it), collect missing datasets, measure missing references."""
    from sbil.deep.data import collect, load_demonstrations
    from sbil.deep.envs import env_spec
    from sbil.deep.evaluation import evaluate
    from sbil.deep.experts import get_expert

    spec_file = sweep_dir / "sweep.json"
    if spec_file.is_file():
        stored_data = json.loads(spec_file.read_text())
        try:  # compared as specs, so a field added later with its default still matches
            stored = SweepSpec.from_dict(stored_data.get("spec", {}))
        except (SweepError, TypeError):
            stored = None
        if stored != spec:
            added = extension(stored, spec, sweep_dir) if stored is not None else None
            if added is None:
                raise SweepError(
                    f"{sweep_dir} holds a different sweep (its sweep.json); re-run it with the "
                    "same preset/spec, extend it only by adding envs, ks or algos, or give a "
                    "new folder."
                )
            log(f"extending the sweep with {added}; its finished cells are kept")
            write_json_atomic(spec_file, {"schema": SCHEMA, "spec": spec.to_dict()})
    else:
        write_json_atomic(spec_file, {"schema": SCHEMA, "spec": spec.to_dict()})
    root = sweep_dir / "datasets"
    references_file = sweep_dir / "references.json"
    references = json.loads(references_file.read_text()) if references_file.is_file() else {}
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


def _finished_cells(sweep_dir: Path, retry_failed: bool) -> dict[str, str]:
    """cell_id -> config_hash of rows that count as finished."""
    finished = {}
    for path in (sweep_dir / "rows").glob("*.json"):
        try:
            row = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged row is redone
        if row.get("status") == "done" or (row.get("status") == "failed" and not retry_failed):
            finished[row["cell_id"]] = row.get("config_hash")
    return finished


def check_backend(workers: int, backend: str, address: str | None) -> None:
    """Check the backend options alone (no connection is made): a bad one is a usage error.

    Raises:
        SweepError: naming the option and what it accepts.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers must be a positive integer, got {workers!r}.")
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


def run_sweep(
    spec: SweepSpec,
    sweep_dir: str | os.PathLike,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run (or resume) the sweep into ``sweep_dir``; see the module doc.

    Args:
        spec: the grid.
        sweep_dir: the sweep folder (created if needed; the same folder resumes).
        workers: groups trained at once (processes, or Ray tasks of one CPU each).
        backend: ``"local"`` (a process pool; 1 worker runs in this process) or ``"ray"``.
        address: with ``backend="ray"``, an existing cluster's address (default: a local
            Ray started with ``workers`` CPUs). The sweep folder must be on a file system
            every node sees.
        retry_failed: run cells recorded as failed again.
        log: called with one line per event (datasets, references, each finished group).
    """
    check_backend(workers, backend, address)
    log = log or (lambda line: None)
    sweep = Path(sweep_dir)
    if sweep.exists() and not sweep.is_dir():
        raise SweepError(f"{sweep} is a file; give a folder for the sweep.")
    if sweep.is_dir() and any(sweep.iterdir()) and not (sweep / "sweep.json").is_file():
        raise SweepError(f"{sweep} holds files that are not an sbil sweep; give a new folder.")
    try:
        (sweep / "rows").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SweepError(f"Cannot create the sweep folder {sweep} ({error.strerror}).") from None
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise SweepError(
                "--backend ray needs Ray: pip install 'sbil[ray]' (or pip install ray)."
            ) from None
    started = time.perf_counter()
    with lock(sweep):  # one process per sweep folder; a second fails at once
        prepare(spec, sweep, log)
        all_groups = groups(spec, sweep)
        finished = _finished_cells(sweep, retry_failed)
        todo = [
            g
            for g in all_groups
            if any(finished.get(g.cell_id(s)) != g.config_hash(s) for s in spec.seeds)
        ]
        n_cells = len(all_groups) * len(spec.seeds)
        skipped = n_cells - len(todo) * len(spec.seeds)
        log(
            f"{n_cells} cells in {len(all_groups)} groups; {skipped} already finished, "
            f"{len(todo)} groups to run on {workers} {backend} worker(s)"
        )
        counts = {"done": 0, "failed": 0}
        position = [0]

        def record(group: Group, rows: list[dict], seconds: float) -> None:
            for row in rows:
                write_json_atomic(sweep / "rows" / f"{row['cell_id']}.json", row, allow_nan=True)
                counts[row["status"]] = counts.get(row["status"], 0) + 1
            position[0] += 1
            means = [r["return_mean"] for r in rows if r["return_mean"] is not None]
            failed = [r for r in rows if r["status"] != "done"]
            line = (
                f"[{position[0]}/{len(todo)}] {group.env_id} {group.algo} k={group.k}: "
                f"{len(rows) - len(failed)} done"
            )
            if means:
                line += f", mean return {np.mean(means):.1f}"
            if failed:
                line += f", {len(failed)} failed ({failed[0]['error']})"
            log(f"{line} ({seconds:.0f} s)")

        if backend == "ray":
            _run_ray(todo, sweep, workers, address, record)
        else:
            _run_local(todo, sweep, workers, record)
    return SweepSummary(
        sweep_dir=sweep,
        n_cells=n_cells,
        done=counts["done"],
        failed=counts["failed"],
        skipped=skipped,
        ran_groups=len(todo),
        seconds=time.perf_counter() - started,
    )


def _keep_busy(todo: Sequence[Group], workers: int, submit, wait_one, record) -> None:
    """Keep ``workers`` groups in flight: ``submit(group) -> handle``;
    ``wait_one(handles) -> [(handle, rows)]`` for the handles that finished. Shared by both
    backends, so they schedule (and record) identically."""
    pending: dict = {}
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < workers:
            group = queue.pop(0)
            pending[submit(group)] = (group, time.perf_counter())
        for handle, rows in wait_one(list(pending)):
            group, started = pending.pop(handle)
            record(group, rows, time.perf_counter() - started)


def _run_local(todo: Sequence[Group], sweep: Path, workers: int, record) -> None:
    if workers == 1:
        for group in todo:
            started = time.perf_counter()
            record(group, run_group(str(sweep), group), time.perf_counter() - started)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    def wait_one(futures):
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        return [(future, future.result()) for future in done]

    context = multiprocessing.get_context("spawn")  # no torch state forked into workers
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            _keep_busy(
                todo, workers, lambda g: pool.submit(run_group, str(sweep), g), wait_one, record
            )
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_ray(todo: Sequence[Group], sweep: Path, workers: int, address: str | None, record) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
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
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_group)

        def wait_one(refs):
            done, _ = ray.wait(refs, num_returns=1)
            return [(ref, ray.get(ref)) for ref in done]

        _keep_busy(
            todo, workers, lambda g: remote.remote(str(sweep.absolute()), g), wait_one, record
        )
    finally:
        if started_here:
            ray.shutdown()

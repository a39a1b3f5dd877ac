"""Strictly batch model selection: which configuration and checkpoint would a user pick with
no environment, and what does that cost against picking by return?

A study (:class:`SelectionSpec`) holds, per task and number of trajectories ``k``, every
learner with the same number of configurations (:data:`GRIDS`: two learning rates times two
values of the learner's own coefficient, the published values first) and one update budget.

1. **Selection** (``selection_seeds``): each configuration trains as one stacked model on the
   seeds' ``k`` trajectories (the sweep's sliding windows); at every ``checkpoint_every``
   updates each seed's policy is measured on the *validation* trajectories (the dataset's last
   ``validation_episodes``, which no seed trains on and no evaluation plays) by the held-out
   negative log-likelihood of the expert's actions and the action match, and, for the oracle
   only, by its mean return over ``selection_eval_episodes`` environment episodes.
2. **The three picks** (:func:`picks`), per learner: *published* (configuration 0 at the full
   budget: the defaults a comparison at published settings reports); *offline* (the
   configuration and checkpoint with the lowest mean validation NLL over the selection seeds:
   what a strictly batch user can do); *oracle* (the highest mean return on the selection
   seeds: information no strictly batch user has; not a guaranteed upper bound on fresh seeds,
   since a pick by a few seeds' returns carries their noise). A candidate with a diverged seed
   is never picked.
3. **Fresh seeds** (``final_seeds``): each picked configuration trains again on new seeds (new
   initialisations, minibatches and trajectory windows) and the picked checkpoints play
   ``eval_episodes`` episodes. Its returns, normalised by the random policy's and the expert's
   (measured on the same episodes), are what the report compares.

``k = 1``: one trajectory cannot be split, so for every ``k`` the validation trajectories are
extra ones, the same ``validation_episodes`` for all ``k`` (the report labels them: a user of
this protocol holds ``k`` training plus ``validation_episodes`` validation trajectories).

The study folder::

    OUT/study.json                the spec
    OUT/data/                     datasets and references (``sbil.experiments.sweep.prepare``)
    OUT/units/select/*.json       one per (task, k, learner, configuration)
    OUT/units/final/*.json        one per (task, k, learner, picked configuration)
    OUT/REPORT.md, OUT/summary.json, OUT/*.png

Every unit is written atomically when it finishes; running the study again skips finished
units, so an interrupted study resumes where it stopped. The report is
:mod:`sbil.experiments.selection_report`.

Longer than ~400 lines: the study's specification and its checks, its units of training, the
three picks and the resumable runner; its report is apart
(:mod:`sbil.experiments.selection_report`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sbil.deep.learners.registry import ALGO_DEFAULTS, ALGOS
from sbil.files import provenance, write_json_atomic

SCHEMA = 1
STUDY_FILE = "study.json"

#: Learners a study selects for: every learner but decoupled EDM, whose policy is BC's by
#: construction (its selection is BC's).
SELECTABLE = tuple(a for a in ALGOS if a != "edm-decoupled")

#: Each learner's own coefficient: (config field, published value, the other value tried).
OWN_COEFFICIENT: dict[str, tuple[str, Any, Any]] = {
    "bc": ("l2_coef", 0.0, 1e-4),  # weight decay: also the regularisation control of BC
    "edm": ("sgld_noise", 0.01, 0.1),  # SGLD temperature 0.005 (published) against 0.5
    "valuedice": ("gradient_penalty", 10.0, 1.0),
    "rcal": ("reward_l1_coef", 1.0, 0.1),
    "iqlearn": ("soft_q_temperature", 0.01, 0.001),  # 0.001: the authors' run_offline.sh
    "avril": ("td_likelihood_weight", 1.0, 0.1),
    "dsfn": ("transition_weight", 1.4, 0.7),  # 1.4: its appendix; 0.7: its code
}


def _other_rate(published: float) -> float:
    """The second learning rate tried: 1e-3 (the EDM harness's) for a learner published with a
    smaller one, else 3e-4."""
    return 1e-3 if published < 1e-3 else 3e-4


def grid(algo: str) -> dict[str, list]:
    """Learner ``algo``'s configurations: its published learning rate and another, times its
    own coefficient's published value and another (:data:`OWN_COEFFICIENT`); published first."""
    rate = float(ALGO_DEFAULTS[algo]["learning_rate"])
    name, published, other = OWN_COEFFICIENT[algo]
    return {"learning_rate": [rate, _other_rate(rate)], name: [published, other]}


#: The configurations of every selectable learner (4 each).
GRIDS: dict[str, dict[str, list]] = {algo: grid(algo) for algo in SELECTABLE}


class SelectionError(ValueError):
    """A study that cannot run as asked (the message says what to change)."""


@dataclass(frozen=True)
class SelectionSpec:
    """A model-selection study; the fields are the keys of ``study.json``."""

    envs: tuple[str, ...]
    ks: tuple[int, ...]
    algos: tuple[str, ...] = SELECTABLE
    grids: dict = field(default_factory=lambda: {a: dict(g) for a, g in GRIDS.items()})
    """Per learner: config field -> values (a product); the first combination is published."""
    options: dict = field(default_factory=lambda: {"n_updates": 10_000, "batch_size": 32})
    """Learner options of every configuration (the sweep preset's budget)."""
    selection_seeds: tuple[int, ...] = (0, 1, 2)
    final_seeds: tuple[int, ...] = tuple(range(3, 13))
    """Fresh seeds: with sliding windows (seed r trains on episodes r, ..., r + k - 1) their
    trajectories differ from the selection seeds' too (at k = 1 they share none)."""
    validation_episodes: int = 2
    checkpoint_every: int = 2000
    selection_eval_episodes: int = 50
    eval_episodes: int = 300
    eval_seed: int = 0
    every_nth_step: int = 20
    expert: str = "ppo-zoo"
    expert_noise: str = "sample"
    collect_seed: int = 10_000
    preset: str | None = None

    def __post_init__(self) -> None:
        for name in ("envs", "ks", "algos", "selection_seeds", "final_seeds"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value:
                raise SelectionError(f"{name} must be a non-empty list, got {value!r}.")
            object.__setattr__(self, name, tuple(value))
        for algo in self.algos:
            if algo not in SELECTABLE:
                raise SelectionError(
                    f"algos must be among {', '.join(SELECTABLE)} (decoupled EDM's policy is "
                    f"BC's), got {algo!r}."
                )
            if algo not in self.grids:
                raise SelectionError(f"grids has no configurations for {algo!r}.")
        sizes = {a: len(configurations(self, a)) for a in self.algos}
        if len(set(sizes.values())) != 1:
            raise SelectionError(
                f"every learner needs the same number of configurations, got {sizes}."
            )
        if set(self.selection_seeds) & set(self.final_seeds):
            raise SelectionError("final_seeds must be fresh: none of them a selection seed.")
        n_updates = self.options.get("n_updates", 10_000)
        if self.checkpoint_every < 1 or n_updates % self.checkpoint_every:
            raise SelectionError(
                f"checkpoint_every ({self.checkpoint_every}) must divide n_updates ({n_updates})."
            )
        for name in ("validation_episodes", "selection_eval_episodes", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SelectionError(f"{name} must be a positive integer, got {value!r}.")
        for algo in self.algos:  # every configuration is a valid learner
            from sbil.deep.learners import LearnerConfig

            for options in configurations(self, algo):
                try:
                    LearnerConfig(algo=algo, **options)
                except (TypeError, ValueError) as error:
                    raise SelectionError(f"{algo} configuration {options}: {error}") from None

    @property
    def n_updates(self) -> int:
        return int(self.options.get("n_updates", 10_000))

    @property
    def checkpoints(self) -> tuple[int, ...]:
        return tuple(range(self.checkpoint_every, self.n_updates + 1, self.checkpoint_every))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for name in ("envs", "ks", "algos", "selection_seeds", "final_seeds"):
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SelectionError(f"Unknown study keys {unknown}; known keys: {sorted(known)}.")
        return cls(**data)


#: Presets. ``edm-paper``: the faithful sweep's whole grid (4 tasks x 5 k; about 8 hours on
#: 2 cores, see docs/results/model-selection). ``small``: the paper's claim's regime on the two
#: cheapest control tasks (CartPole and Acrobot, k = 1 and 3) with 5 fresh seeds, what
#: docs/results holds (sized to an afternoon on 2 cores).
#: ``tiny``: a smoke test of the mechanics (no conclusion).
SELECTION_PRESETS: dict[str, dict[str, Any]] = {
    "edm-paper": {
        "envs": ["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "MountainCar-v0"],
        "ks": [1, 3, 7, 10, 15],
    },
    "small": {
        "envs": ["CartPole-v1", "Acrobot-v1"],
        "ks": [1, 3],
        "final_seeds": list(range(3, 8)),
    },
    "tiny": {
        "envs": ["CartPole-v1"],
        "ks": [1],
        "options": {"n_updates": 40, "batch_size": 32, "sgld_buffer_size": 100},
        "selection_seeds": [0, 1],
        "final_seeds": [2, 3],
        "checkpoint_every": 20,
        "selection_eval_episodes": 2,
        "eval_episodes": 3,
        "validation_episodes": 1,
    },
}


def selection_preset(name: str, **overrides: Any) -> SelectionSpec:
    if name not in SELECTION_PRESETS:
        raise SelectionError(
            f"Unknown study preset {name!r}; presets are {', '.join(SELECTION_PRESETS)}."
        )
    return SelectionSpec.from_dict({**SELECTION_PRESETS[name], **overrides, "preset": name})


def configurations(spec: SelectionSpec, algo: str) -> list[dict]:
    """Learner ``algo``'s configurations: the product of its grid over ``spec.options``;
    index 0 takes every grid field's first (published) value."""
    names = list(spec.grids[algo])
    values = itertools.product(*(spec.grids[algo][n] for n in names))
    return [{**spec.options, **dict(zip(names, v, strict=True))} for v in values]


# --- units: one stacked training, measured at its checkpoints ------------------------------


@dataclass(frozen=True)
class Unit:
    phase: str  # "select" or "final"
    env_id: str
    k: int
    algo: str
    config: int
    evaluate_at: tuple[int, ...]
    """Checkpoints whose policies play episodes (every checkpoint when selecting)."""

    @property
    def name(self) -> str:
        tail = "" if self.phase == "select" else "__u" + "-".join(map(str, self.evaluate_at))
        return f"{self.env_id}__{self.algo}__k{self.k}__c{self.config}{tail}"

    def path(self, folder: Path) -> Path:
        return folder / "units" / self.phase / f"{self.name}.json"


def data_spec(spec: SelectionSpec):
    """The sweep spec whose ``prepare`` records the study's datasets and references: every
    seed's sliding window lies before the last ``validation_episodes`` episodes."""
    from sbil.experiments.sweep import SweepSpec

    return SweepSpec(
        envs=spec.envs,
        ks=spec.ks,
        seeds=spec.selection_seeds + spec.final_seeds,
        algos=("bc",),
        holdout=spec.validation_episodes,
        every_nth_step=spec.every_nth_step,
        eval_episodes=spec.eval_episodes,
        eval_seed=spec.eval_seed,
        expert=spec.expert,
        expert_noise=spec.expert_noise,
        collect_seed=spec.collect_seed,
    )


def _run_spec(spec: SelectionSpec, unit: Unit, folder: Path):
    from sbil.deep.learners import LearnerConfig
    from sbil.experiments.runs import RunSpec
    from sbil.experiments.sweep import dataset_id

    return RunSpec(
        learner=LearnerConfig(algo=unit.algo, **configurations(spec, unit.algo)[unit.config]),
        seeds=spec.selection_seeds if unit.phase == "select" else spec.final_seeds,
        dataset=dataset_id(unit.env_id, spec.expert, spec.expert_noise),
        root=str((folder / "data" / "datasets").absolute()),
        env_id=unit.env_id,
        episodes=unit.k,
        windows="sliding",
        holdout=spec.validation_episodes,
        every_nth_step=spec.every_nth_step,
    )


def run_unit(folder: str, spec_dict: dict, unit: Unit) -> dict:
    """Train one unit's seeds, measure every checkpoint, write the unit's record atomically."""
    import torch

    from sbil.deep.evaluation import evaluate_group
    from sbil.deep.learners import train
    from sbil.deep.metrics import policy_held_out_metrics
    from sbil.experiments.runs import load_run_data

    torch.set_num_threads(1)
    spec = SelectionSpec.from_dict(spec_dict)
    root = Path(folder)
    run = _run_spec(spec, unit, root)
    data = load_run_data(run)
    started = time.perf_counter()
    result = train(
        data.per_seed,
        run.learner,
        seeds=run.seeds,
        n_actions=data.n_actions,
        env_id=unit.env_id,
        stop_on_divergence=False,
        snapshot_every=spec.checkpoint_every,
    )
    train_seconds = time.perf_counter() - started
    episodes = spec.selection_eval_episodes if unit.phase == "select" else spec.eval_episodes
    checkpoints, eval_seconds = [], 0.0
    for update, state in result.snapshots:
        at = dataclasses.replace(result, policy_state=state)
        seeds: dict[str, dict] = {}
        alive = []
        for index, seed in enumerate(run.seeds):
            diverged = result.diverged.get(seed)
            if diverged is not None and diverged[0] <= update:
                seeds[str(seed)] = {"status": "failed", "error": f"diverged at {diverged[0]}"}
                continue
            learner = at.learner(index)
            try:
                metrics = policy_held_out_metrics(learner, data.held_out_demos)
            except ValueError as error:  # non-finite logits
                seeds[str(seed)] = {"status": "failed", "error": str(error)}
                continue
            seeds[str(seed)] = {
                "status": "done",
                "nll": metrics.nll,
                "action_match": metrics.action_match,
            }
            alive.append((seed, learner))
        if update in unit.evaluate_at and alive:
            clock = time.perf_counter()
            played = evaluate_group([lr for _, lr in alive], unit.env_id, episodes, spec.eval_seed)
            eval_seconds += time.perf_counter() - clock
            for (seed, _), outcome in zip(alive, played, strict=True):
                returns = [float(r) for r in outcome.returns]
                seeds[str(seed)]["return_mean"] = float(np.mean(returns))
                if unit.phase == "final":
                    seeds[str(seed)]["returns"] = returns
        checkpoints.append({"update": int(update), "seeds": seeds})
    record = {
        "schema": SCHEMA,
        **dataclasses.asdict(unit),
        "options": configurations(spec, unit.algo)[unit.config],
        "seeds": list(run.seeds),
        "train_episodes": {str(s): e for s, e in data.train_episodes.items()},
        "validation_episodes": data.held_out,
        "validation_states": int(data.held_out_demos.n_steps),
        "eval_episodes": episodes,
        "checkpoints": checkpoints,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "provenance": provenance(),
    }
    write_json_atomic(unit.path(root), record)
    return record


# --- the three picks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    mode: str  # "published", "offline" or "oracle"
    config: int
    update: int
    score: float
    """What it was picked by: mean validation NLL (offline), mean return (oracle), nan."""


def _mean(values: Iterable[float | None]) -> float:
    values = list(values)
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return math.nan
    return float(np.mean(values))


def picks(records: Sequence[Mapping[str, Any]], n_updates: int) -> dict[str, Pick]:
    """The published, offline and oracle picks of one learner on one (task, k) from its
    selection units' records (one per configuration). Ties go to the first candidate in
    (configuration, update) order; a candidate with a failed seed is never picked."""
    offline = oracle = None
    for record in sorted(records, key=lambda r: r["config"]):
        for checkpoint in record["checkpoints"]:
            seeds = checkpoint["seeds"].values()
            if any(s["status"] != "done" for s in seeds):
                continue
            nll = _mean(s["nll"] for s in seeds)
            ret = _mean(s.get("return_mean") for s in seeds)
            candidate = (record["config"], checkpoint["update"])
            if math.isfinite(nll) and (offline is None or nll < offline[2]):
                offline = (*candidate, nll)
            if math.isfinite(ret) and (oracle is None or ret > oracle[2]):
                oracle = (*candidate, ret)
    # With every candidate failed nothing can be picked: the published one stands (score nan).
    out = {"published": Pick("published", 0, n_updates, math.nan)}
    for mode, chosen in (("offline", offline), ("oracle", oracle)):
        out[mode] = Pick(mode, *(chosen or (0, n_updates, math.nan)))
    return out


def final_units(spec: SelectionSpec, chosen: Mapping[str, Pick], env_id: str, k: int, algo: str):
    """One final unit per picked configuration, evaluated at the updates picked with it."""
    by_config: dict[int, set[int]] = {}
    for pick in chosen.values():
        by_config.setdefault(pick.config, set()).add(pick.update)
    return [
        Unit("final", env_id, k, algo, config, tuple(sorted(updates)))
        for config, updates in sorted(by_config.items())
    ]


# --- running a study ---------------------------------------------------------------------


def read_unit(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == SCHEMA else None


def selection_units(spec: SelectionSpec) -> list[Unit]:
    """Every selection unit, task by task and within a task ``k`` by ``k`` (the order they
    run in: the first tasks' cells complete first)."""
    n = len(configurations(spec, spec.algos[0]))
    return [
        Unit("select", env_id, k, algo, config, spec.checkpoints)
        for env_id, k, algo, config in itertools.product(spec.envs, spec.ks, spec.algos, range(n))
    ]


def study_picks(spec: SelectionSpec, folder: Path) -> dict[tuple[str, int, str], dict[str, Pick]]:
    """The picks of every (task, k, learner) whose selection units are all finished."""
    out = {}
    units = selection_units(spec)
    for key, members in itertools.groupby(units, key=lambda u: (u.env_id, u.k, u.algo)):
        records = [read_unit(u.path(folder)) for u in members]
        if all(r is not None for r in records):
            out[key] = picks(records, spec.n_updates)
    return out


def _check_study(spec: SelectionSpec, folder: Path) -> None:
    path = folder / STUDY_FILE
    if path.is_file():
        stored = SelectionSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if stored.to_dict() != spec.to_dict():
            raise SelectionError(
                f"{folder} holds a different study ({STUDY_FILE}); re-run it with the same "
                "preset and options, or give a new --out."
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, spec.to_dict())


def run_study(
    spec: SelectionSpec,
    folder: str | os.PathLike,
    *,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> float:
    """Run (or resume) the study in ``folder``; return its wall seconds this time.

    A learner's fresh seeds start as soon as its selection units on that task and ``k`` have
    finished, so a study stopped early holds complete cells of its first tasks and ``k``."""
    from sbil.experiments.sweep import prepare

    started = time.perf_counter()
    root = Path(folder)
    _check_study(spec, root)
    prepare(data_spec(spec), root / "data", log)
    selecting = [u for u in selection_units(spec) if read_unit(u.path(root)) is None]
    pending: dict[tuple[str, int, str], set[Unit]] = {}  # its selection units not yet finished
    for unit in selecting:
        pending.setdefault((unit.env_id, unit.k, unit.algo), set()).add(unit)
    todo = []  # fresh seeds of finished selections first, then the selections
    for key, chosen in study_picks(spec, root).items():
        todo += [u for u in final_units(spec, chosen, *key) if read_unit(u.path(root)) is None]
    todo += selecting
    log(f"{len(todo)} unit(s) to train now, more as selections finish; {workers} at once")

    def finished(unit: Unit) -> list[Unit]:
        """The units that ``unit``'s finishing makes ready."""
        key = (unit.env_id, unit.k, unit.algo)
        if unit.phase != "select":
            return []
        pending[key].discard(unit)
        if pending[key]:
            return []
        chosen = study_picks(spec, root)[key]
        return [u for u in final_units(spec, chosen, *key) if read_unit(u.path(root)) is None]

    _run_all(root, spec, todo, workers, log, finished)
    seconds = time.perf_counter() - started
    walls = root / "wall.json"
    runs = json.loads(walls.read_text(encoding="utf-8")) if walls.is_file() else []
    runs.append({"seconds": seconds, "workers": workers, "git_commit": provenance()["git_commit"]})
    write_json_atomic(walls, runs)
    return seconds


def _run_all(root: Path, spec: SelectionSpec, todo: list[Unit], workers, log, finished) -> None:
    """Train ``todo`` and what ``finished(unit)`` adds, ``workers`` at a time."""
    payload = spec.to_dict()
    queue, number = list(todo), 0
    if workers == 1:
        while queue:
            unit = queue.pop(0)
            record = run_unit(str(root), payload, unit)
            number += 1
            log(_done_text(number, unit, record))
            queue[:0] = finished(unit)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        running: dict[concurrent.futures.Future, Unit] = {}
        while queue or running:
            while queue and len(running) < workers:  # no more in flight than workers
                unit = queue.pop(0)
                running[pool.submit(run_unit, str(root), payload, unit)] = unit
            done, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
            for future in done:
                unit = running.pop(future)
                number += 1
                log(_done_text(number, unit, future.result()))
                queue[:0] = finished(unit)  # a cell's fresh seeds before further selections


def _done_text(number: int, unit: Unit, record: Mapping[str, Any]) -> str:
    seconds = record["train_seconds"] + record["eval_seconds"]
    return f"[{number}] {unit.phase} {unit.name} ({seconds:.0f} s)"

"""The sweep folder: preparing it (spec, datasets, references), extending it, and reading
what it holds (the stored spec, the finished rows).

Part of the sweep runner (:mod:`sbil.experiments.sweep` is its entry point and module doc).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sbil.experiments.sweep_data import (
    from_stored,
    to_stored,
)
from sbil.experiments.sweeps.groups import (
    Group,
    _checkpoint_exists,
    dataset_id,
    groups,
    is_environmental,
)
from sbil.experiments.sweeps.row import Row
from sbil.experiments.sweeps.spec import _EXTENSIBLE, SCHEMA, SweepError, SweepSpec, n_cells
from sbil.files import write_json_atomic


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

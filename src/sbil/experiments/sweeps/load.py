"""Reading a sweep folder: its spec (``sweep.json``), references and rows (``rows/*.json`` or a
committed ``rows.jsonl.gz``), checked, as one frame; and the grid the spec expects."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sbil.experiments.stats import (
    normalised_score,
)
from sbil.experiments.sweeps.common import _algo_rank, _plain
from sbil.experiments.sweeps.row import FIELDS as ROW_FIELDS
from sbil.experiments.sweeps.row import REQUIRED, Row

if TYPE_CHECKING:
    pass


def load_spec(sweep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The sweep's description from ``sweep.json`` (the grid it was asked to run), flat.

    Both ``{"schema": 1, "spec": {...}}`` (as :mod:`sbil.experiments.sweep` writes it) and a
    flat object are read; the result is ``{"schema": ..., "envs": ..., "ks": ..., ...}``.
    """
    path = Path(sweep_dir) / "sweep.json"
    if not Path(sweep_dir).is_dir():
        raise ValueError(f"no sweep folder at {sweep_dir}; pass the folder `sbil sweep` wrote.")
    if not path.is_file():
        raise ValueError(
            f"{sweep_dir} has no sweep.json, so it is not a sweep folder; pass the folder "
            "`sbil sweep` wrote."
        )
    stored = _read_json(path)
    if not isinstance(stored, dict):
        raise ValueError(f"{path} must hold a JSON object; it holds {type(stored).__name__}.")
    if "spec" in stored:  # {"schema": 1, "spec": SweepSpec.to_dict()}
        if not isinstance(stored["spec"], dict):
            raise ValueError(f"{path}: its spec must be a JSON object{_FIX_SPEC}")
        stored = {"schema": stored.get("schema"), **stored["spec"]}
    _check_spec(path, stored)
    return stored


_FIX_SPEC = "; it is damaged: restore it, or re-run the sweep's `sbil sweep` command to rewrite it."

# The fields of sweep.json the report reads, and the JSON type each must have.
_SPEC_LISTS = {"envs": str, "algos": str, "ks": int, "seeds": int}


def _check_spec(path: Path, spec: Mapping[str, Any]) -> None:
    """Refuse a ``sweep.json`` whose fields the report reads have the wrong JSON types."""
    for key, kind in _SPEC_LISTS.items():
        values = spec.get(key, [])
        if not isinstance(values, list) or not all(_is(v, kind) for v in values):
            raise ValueError(
                f"{path}: {key} must be a list of {'strings' if kind is str else 'integers'}, "
                f"got {_short(values)}{_FIX_SPEC}"
            )
    for key in ("options", "grid"):
        if not isinstance(spec.get(key) or {}, dict):
            raise ValueError(
                f"{path}: {key} must be a JSON object, got {_short(spec[key])}{_FIX_SPEC}"
            )
    for name, values in (spec.get("grid") or {}).items():
        if not isinstance(values, list):
            raise ValueError(
                f"{path}: grid.{name} must be a list of values, got {_short(values)}{_FIX_SPEC}"
            )
    if spec.get("preset") is not None and not isinstance(spec["preset"], str):
        raise ValueError(f"{path}: preset must be a name, got {_short(spec['preset'])}{_FIX_SPEC}")


def _is(value: Any, kind: type) -> bool:
    """Whether a JSON value is a ``kind`` (a bool is no integer)."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_references(sweep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The sweep's ``references.json`` (random and expert returns per env); {} when absent."""
    path = Path(sweep_dir) / "references.json"
    if not path.is_file():
        return {}
    refs = _read_json(path)
    if not isinstance(refs, dict):
        raise ValueError(f"{path} must hold a JSON object keyed by env id.")
    return refs


def load_rows(sweep_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The rows of the sweep's grid, one per cell, failed ones kept with their status and error.

    A row file whose cell is not in the grid of ``sweep.json`` (another env, learner, k, seed
    or option-set: left over from an earlier grid, or copied in) is left out;
    :func:`summarise_sweep` lists those under ``outside_grid``. Without a ``sweep.json``
    every row is read.

    Args:
        sweep_dir: the sweep folder (its ``rows/*.json`` are read).

    Returns:
        One row per file with the schema's fields (absent optional fields filled with None),
        plus ``variant``: the algorithm's name, followed by the learner options that differ
        between that algorithm's rows when the sweep varies them (e.g. ``edm (lr=0.001)``), and
        ``normalised_score``: ``return_mean`` normalised by ``references.json`` (NaN where the
        cell failed or the env has no usable reference). Sorted by env, algorithm, k, seed.
    """
    return _read_rows(sweep_dir)[0]


_GRID_AXES = (("envs", "env_id", "env"), ("algos", "algo", "learner"), ("ks", "k", "k"))

_GRID_AXES += (("seeds", "seed", "seed"),)


def _read_rows(sweep_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """:func:`load_rows`'s frame, and a record (file, cell, reason) per row outside the grid."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"no sweep folder at {sweep_dir}; pass the folder `sbil sweep` wrote.")
    spec = load_spec(sweep_dir) if (sweep_dir / "sweep.json").is_file() else {}
    records, outside = [], []
    for path, row in _row_files(sweep_dir):
        record = {**Row.from_dict(row, path).to_dict(), "row_file": path.name}
        reason = next(
            (
                f"its {what} {record[field]} is not among the grid's {axis}"
                for axis, field, what in _GRID_AXES
                if axis in spec and record[field] not in spec[axis]
            ),
            None,
        )
        if reason is None:
            records.append(record)
        else:
            outside.append(_outside_record(record, reason))
    # device and cpu: last, and only where rows have them (older rows' tables stay as they were)
    schema = [f for f in ROW_FIELDS if f not in REQUIRED and f not in ("device", "cpu")]
    columns = [*REQUIRED, *schema, "row_file", "variant", "normalised_score"]
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), outside
    frame = pd.DataFrame.from_records(records)
    frame["k"] = frame["k"].astype(int)
    frame["seed"] = frame["seed"].astype(int)
    frame["return_mean"] = pd.to_numeric(frame["return_mean"], errors="coerce").astype(float)
    frame["action_match"] = pd.to_numeric(frame["action_match"], errors="coerce").astype(float)
    grid = spec.get("grid") or {}
    frame["variant"] = _variant_labels(frame, grid)
    if grid:  # the option-sets the grid asks for; any other one is outside it
        expected = {(env, variant, k) for env, _, variant, k in _expected_grid(spec, frame)}
        inside = [
            (e, v, k) in expected
            for e, v, k in zip(frame["env_id"], frame["variant"], frame["k"], strict=True)
        ]
        outside += [
            _outside_record(r, f"its learner options ({r['variant']}) are not in the grid")
            for r in frame[[not i for i in inside]].to_dict("records")
        ]
        frame = frame[inside].reset_index(drop=True)
        if not len(frame):
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), outside
        frame["variant"] = _variant_labels(frame, grid)  # without the others' options
    anchors = _anchors(load_references(sweep_dir))
    frame["normalised_score"] = [
        float(normalised_score(r, random_return=anchors[e][0], expert_return=anchors[e][1]))
        if s == "done" and e in anchors and np.isfinite(r)
        else math.nan
        for e, r, s in zip(frame["env_id"], frame["return_mean"], frame["status"], strict=True)
    ]
    frame["_algo_order"] = frame["algo"].map(lambda a: _algo_rank(str(a))[0])
    frame = frame.sort_values(["env_id", "_algo_order", "variant", "k", "seed", "row_file"])
    frame = frame.drop(columns="_algo_order").reset_index(drop=True)[
        [*columns, *[c for c in frame.columns if c not in columns and c != "_algo_order"]]
    ]
    return frame, sorted(outside, key=lambda r: r["row_file"])


#: A committed results folder's rows, one JSON object per line (``docs/results/*/``).
ROWS_ARCHIVE = "rows.jsonl.gz"


def _row_files(sweep_dir: Path) -> Iterator[tuple[Path, Any]]:
    """``(path, row)`` of every row file in ``rows/``; a folder without ``rows/`` that holds
    :data:`ROWS_ARCHIVE` (a committed results folder) gives its lines, each named as the file
    it was (``rows/<cell_id>.json``)."""
    archive = sweep_dir / ROWS_ARCHIVE
    if not (sweep_dir / "rows").is_dir() and archive.is_file():
        try:
            with gzip.open(archive, "rt", encoding="utf-8") as lines:
                rows = [json.loads(line) for line in lines if line.strip()]
        except (OSError, UnicodeDecodeError, EOFError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read {archive} ({err}); restore it from git.") from None
        for number, row in enumerate(rows, 1):
            name = row.get("cell_id") if isinstance(row, dict) else None
            yield sweep_dir / "rows" / f"{name or f'line-{number}'}.json", row
        return
    for path in sorted((sweep_dir / "rows").glob("*.json")):
        yield path, _read_json(path)


def _outside_record(row: Mapping[str, Any], reason: str) -> dict[str, Any]:
    keys = ("row_file", "cell_id", "env_id", "algo", "k", "seed")
    return {**{key: _plain(row[key]) for key in keys}, "reason": reason}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path} as JSON ({err}); delete or rewrite it.") from None


def _variant_keys(frame: pd.DataFrame, grid: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per algorithm, the learner options that tell its option-sets apart: the spec's grid
    options with more than one value, and any option whose value differs between its rows."""
    swept = {k for k, values in grid.items() if isinstance(values, list) and len(values) > 1}
    out = {}
    for algo, group in frame.groupby("algo", sort=False):
        keys = sorted({k for opts in group["options"] for k in (opts or {})} | swept)
        out[str(algo)] = [
            k
            for k in keys
            if k in swept
            or len({json.dumps((o or {}).get(k), sort_keys=True) for o in group["options"]}) > 1
        ]
    return out


def _variant_label(algo: str, options: Mapping[str, Any] | None, keys: Sequence[str]) -> str:
    shown = [f"{k}={_option_text((options or {}).get(k))}" for k in keys]
    return f"{algo} ({', '.join(shown)})" if shown else str(algo)


def _variant_labels(frame: pd.DataFrame, grid: Mapping[str, Any]) -> list[str]:
    """Algorithm name plus the options that tell its option-sets apart (see _variant_keys)."""
    keys = _variant_keys(frame, grid)
    return [
        _variant_label(algo, opts, keys[algo])
        for algo, opts in zip(frame["algo"], frame["options"], strict=True)
    ]


def _option_text(value: Any) -> str:
    return (
        "default" if value is None else json.dumps(value) if not isinstance(value, str) else value
    )


def _anchors(references: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """(random mean, expert mean) of each env whose references allow a normalised score."""
    out = {}
    for env, ref in references.items():
        if _reference_problem(ref) is None:
            out[env] = (float(ref["random"]["mean"]), float(ref["expert"]["mean"]))
    return out


def _reference_problem(ref: Any) -> str | None:
    """Why an env's references give no normalised score, or None when they do."""
    if (
        isinstance(ref, dict)
        and isinstance(ref.get("expert"), dict)
        and ref["expert"].get("problem")
    ):
        return str(ref["expert"]["problem"])  # own data that records no returns (sweep_data)
    try:
        random_mean = float(ref["random"]["mean"])
        expert_mean = float(ref["expert"]["mean"])
    except (KeyError, TypeError, ValueError):
        return "references.json lacks its random or expert mean"
    if not (np.isfinite(random_mean) and np.isfinite(expert_mean)):
        return "a reference mean is not finite"
    if expert_mean == random_mean:
        return "the expert's mean return equals the random policy's"
    return None


def _expected_grid(spec: Mapping[str, Any], frame: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """(env, algo, variant, k) combinations the spec asks for: envs x algos x option-sets x ks.

    A variant is one option-set of an algorithm: one per combination of the spec's ``grid``
    values, named as :func:`load_rows` names rows; without a grid, the variants the rows show
    (an algorithm with no row yet counts as one variant named after it).
    """
    grid = {k: v for k, v in (spec.get("grid") or {}).items() if isinstance(v, list) and v}
    names = sorted(grid)
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(grid[n] for n in names))
    ]
    keys = _variant_keys(frame, grid) if len(frame) else {}
    variants_of: dict[str, list[str]] = {}
    for variant, algo in zip(frame["variant"], frame["algo"], strict=True):
        variants_of.setdefault(algo, [])
        if variant not in variants_of[algo]:
            variants_of[algo].append(variant)
    swept = [n for n in names if len(grid[n]) > 1]
    out = []
    for env in spec.get("envs", []):
        for algo in spec.get("algos", []):
            if grid:
                algo_keys = keys.get(algo, swept)
                options = {**(spec.get("options") or {})}
                variants = list(
                    dict.fromkeys(_variant_label(algo, {**options, **c}, algo_keys) for c in combos)
                )
            else:
                variants = variants_of.get(algo, [algo])
            for variant in variants:
                for k in spec.get("ks", []):
                    out.append((str(env), str(algo), variant, int(k)))
    return out


def _expected_count(spec: Mapping[str, Any], frame: pd.DataFrame) -> int:
    return len(_expected_grid(spec, frame)) * len(spec.get("seeds", []))


def _missing_cells(spec: Mapping[str, Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Cells of the spec's grid with no row, grouped by (env, variant, k)."""
    present = {
        (str(e), v, int(k), int(s))
        for e, v, k, s in zip(
            frame["env_id"], frame["variant"], frame["k"], frame["seed"], strict=True
        )
    }
    seeds = [int(s) for s in spec.get("seeds", [])]
    out = []
    for env, algo, variant, k in _expected_grid(spec, frame):
        absent = [s for s in seeds if (env, variant, k, s) not in present]
        if absent:
            out.append({"env_id": env, "algo": algo, "variant": variant, "k": k, "seeds": absent})
    return out

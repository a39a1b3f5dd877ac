"""A sweep's tidy row: one cell (env x learner x k x option-set x seed), its result and its
provenance. :mod:`sbil.experiments.sweep` writes rows with :meth:`Row.to_dict` and reads them
back (to resume) with :meth:`Row.from_dict`; the report (:mod:`sbil.experiments.sweeps.load`)
reads them with the same method, so the schema is declared once, here. ``docs/sweeps.md``
describes each field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from sbil.seeds import MAX_SEED

SCHEMA = 1
"""The row schema's version, written in every row."""

REQUIRED = ("env_id", "algo", "k", "seed", "status")
"""The fields every row has, which the report groups, sorts and normalises by (with
``cell_id``)."""

STATUSES = ("done", "failed")

_FIX_ROW = " (delete the file, or re-run the sweep to rewrite it)."


@dataclass(frozen=True, kw_only=True)
class Row:
    """One cell's row, fields in the order a row file holds them."""

    schema: int | None = None
    """:data:`SCHEMA` in every row sbil writes."""
    cell_id: str
    config_hash: str | None = None
    env_id: str
    algo: str
    k: int
    seed: int
    windows: str | None = None
    train_episodes: list[int] = field(default_factory=list)
    """The dataset episodes the seed trained on."""
    options: dict[str, Any] = field(default_factory=dict)
    """The learner options that differ from the defaults, and ``every_nth_step``."""
    n_pairs: int | None = None
    status: str = "failed"
    error: str | None = None
    """``"Type: message"`` of a failed cell."""
    returns: list[float] = field(default_factory=list)
    """Per evaluation episode, in episode-seed order."""
    return_mean: float | None = None
    eval_episodes: int | None = None
    eval_seed: int | None = None
    action_match: float | None = None
    """On the held-out trajectories."""
    action_match_episodes: int = 0
    train_seconds: float | None = None
    eval_seconds: float | None = None
    wall_seconds: float | None = None
    device: str | None = None
    """Where it trained; rows written before the field existed have none (and
    :meth:`to_dict` then leaves it out, as they did)."""
    cpu: str | None = None
    """The CPU that wrote the row and torch's SIMD kernels on it
    (:func:`sbil.machine.cpu_description`): float32 results are bit-identical only between
    machines with the same kernels. Rows written before the field existed have none (and
    :meth:`to_dict` then leaves it out, as they did)."""
    git_commit: str | None = None
    sbil_version: str | None = None
    run_dir: str | None = None
    """The group's run folder, relative to the sweep folder."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields beyond the schema, written after it (own data's ``held_out`` metrics)."""

    def to_dict(self) -> dict[str, Any]:
        """The row as its file holds it (JSON-ready, fields in order, then :attr:`extra`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for optional in ("device", "cpu"):
            if out[optional] is None:
                del out[optional]
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: object = "a row") -> Row:
        """A row from its file's JSON object, checked (``where`` names the file in errors).

        Raises:
            ValueError: ``data`` is not a sweep row, saying what is wrong and how to fix it.
        """
        check(data, where)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {name: value for name, value in data.items() if name in known}
        for name in ("train_episodes", "options", "returns"):  # null in some old rows
            if values.get(name) is None:
                values.pop(name, None)
        extra = {name: value for name, value in data.items() if name not in known}
        return cls(**values, extra=extra)

    @property
    def done(self) -> bool:
        return self.status == "done"


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row) if f.name != "extra")
"""Every schema field, in file order."""


def check(row: Any, where: object = "a row") -> None:
    """Refuse an object that is not a sweep row as :mod:`sbil.experiments.sweep` writes it:
    the fields the report groups, sorts and normalises by must be there, with their types."""
    if not isinstance(row, dict):
        raise ValueError(
            f"{where} must hold one JSON object (a sweep row), not {type(row).__name__}{_FIX_ROW}"
        )
    missing = [key for key in (*REQUIRED, "cell_id") if key not in row]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}: it is not a sweep row{_FIX_ROW}")
    for key in ("cell_id", "env_id", "algo"):
        if not isinstance(row[key], str) or not row[key]:
            raise ValueError(f"{where} has {key} = {_short(row[key])}, not a name{_FIX_ROW}")
    if not _is_int(row["k"]) or row["k"] < 1:
        raise ValueError(f"{where} has k = {_short(row['k'])}, not an integer >= 1{_FIX_ROW}")
    if not _is_int(row["seed"]) or not 0 <= row["seed"] <= MAX_SEED:
        raise ValueError(
            f"{where} has seed = {_short(row['seed'])}, not an integer in 0..{MAX_SEED}{_FIX_ROW}"
        )
    if row["status"] not in STATUSES:
        raise ValueError(f"{where} has status {_short(row['status'])}, not 'done' or 'failed'.")
    if not isinstance(row.get("options") or {}, dict):
        raise ValueError(
            f"{where} has options = {_short(row['options'])}, not a JSON object of learner "
            f"options{_FIX_ROW}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

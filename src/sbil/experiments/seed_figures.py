"""Tidy per-seed figures: one row per learner, as CSV and JSON side by side.

``sbil train`` writes ``OUT/training.csv`` and ``OUT/training.json``
(:func:`sbil.experiments.runs.training_rows`); ``sbil evaluate`` writes ``evaluation.csv``
and ``evaluation.json`` (:func:`evaluation_row`) into the run folder it evaluates, or into
``--out``. All four hold rows of one type, :class:`SeedFigures`, with the same columns
(None, or empty in the CSV, where a figure was not measured), so either loads in one line::

    pandas.read_csv("run/training.csv")
    json.loads(Path("run/evaluation.json").read_text())   # a list of row objects
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sbil.files import write_json_atomic, write_text_atomic


@dataclass(frozen=True)
class SeedFigures:
    """What one learner (one seed) of a run measured."""

    env_id: str | None
    """The task."""
    algo: str | None
    """The learner (None for an expert)."""
    k: int | None
    """Trajectories the learner trained on."""
    seed: int | None
    """The learner's seed."""
    status: str
    """``done``, or ``failed`` (the learner diverged; see ``error``)."""
    error: str | None
    """Why the learner failed, else None."""
    n_updates: int | None
    """Adam updates it trained for."""
    n_pairs: int | None
    """State-action pairs it trained on."""
    final_loss: float | None
    """Mean training loss over the last 100 updates."""
    final_cross_entropy: float | None
    """Mean cross-entropy over the last 100 updates."""
    final_rho: float | None
    """Mean EDM ``rho`` over the last 100 updates (None for the learners without one)."""
    action_match: float | None
    """Fraction of held-out expert states where it picks the expert's action."""
    action_match_states: int | None
    """The number of held-out states the action match counts."""
    n_episodes: int
    """Evaluation episodes played (0: the return was not measured)."""
    eval_seed: int | None
    """Evaluation episode ``i`` started from ``reset(seed=eval_seed + i)``."""
    mean_return: float | None
    """Mean return over the evaluation episodes."""
    std_return: float | None
    """Standard deviation of the returns (ddof 0)."""
    policy: str
    """What was evaluated: the checkpoint folder, or the expert."""
    git_commit: str | None
    """The sbil commit that wrote the row."""
    sbil_version: str | None
    """The sbil version that wrote the row."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: The columns of both files, in order.
COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SeedFigures))


def write_seed_figures(
    folder: str | os.PathLike, name: str, rows: list[SeedFigures]
) -> tuple[Path, Path]:
    """Write ``rows`` to ``folder/name.csv`` and ``folder/name.json``, each atomically.

    Returns:
        The two paths (CSV, JSON).
    """
    folder = Path(folder)
    records = [row.to_dict() for row in rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    csv_path = write_text_atomic(folder / f"{name}.csv", text.getvalue())
    json_path = write_json_atomic(folder / f"{name}.json", records, allow_nan=True)
    return csv_path, json_path


def read_seed_figures(path: str | os.PathLike) -> list[SeedFigures]:
    """The rows of a ``.json`` file written by :func:`write_seed_figures`."""
    return [SeedFigures(**record) for record in json.loads(Path(path).read_text())]


def provenance_fields(info: dict | None = None) -> dict:
    """``git_commit`` and ``sbil_version`` for a row, from a :func:`sbil.files.provenance`
    record (default: the running sbil's)."""
    if info is None:
        from sbil.files import provenance

        info = provenance(["sbil"])
    versions = info.get("versions") or {}
    return {"git_commit": info.get("git_commit"), "sbil_version": versions.get("sbil")}


def evaluation_row(
    policy,
    result,
    *,
    policy_name: str,
    seed: int | None,
    checkpoint: str | os.PathLike | None,
    action_match: float | None = None,
    action_match_states: int | None = None,
) -> SeedFigures:
    """The row of one evaluated policy (``evaluation.csv``/``.json``).

    Args:
        policy: the evaluated policy: a :class:`~sbil.deep.learner.Learner` (its algorithm,
            seed and updates are recorded) or an expert.
        result: its :class:`~sbil.deep.evaluation.EvalResult`.
        policy_name: what was evaluated, e.g. the checkpoint folder or ``scripted expert``.
        seed: the learner's seed in its run (None: the learner's own, or none for an expert).
        checkpoint: the learner's checkpoint folder (its metadata gives ``k``), or None.
        action_match, action_match_states: the held-out action match and its state count.
    """
    from sbil.deep.learner import Learner

    learner = policy if isinstance(policy, Learner) else None
    return SeedFigures(
        env_id=result.env_id,
        algo=None if learner is None else learner.config.algo,
        k=None if checkpoint is None else _trained_k(checkpoint),
        seed=seed if seed is not None or learner is None else learner.seed,
        status="done",
        error=None,
        n_updates=None if learner is None else learner.config.n_updates,
        n_pairs=None,
        final_loss=None,
        final_cross_entropy=None,
        final_rho=None,
        action_match=action_match,
        action_match_states=action_match_states,
        n_episodes=result.n_episodes,
        eval_seed=result.seed,
        mean_return=result.mean,
        std_return=result.std,
        policy=policy_name,
        **provenance_fields(),
    )


def _trained_k(checkpoint: str | os.PathLike) -> int | None:
    """How many trajectories a checkpoint's learner trained on, from its metadata."""
    try:
        metadata = json.loads((Path(checkpoint) / "learner.json").read_text())["metadata"]
        episodes = metadata.get("train_episodes")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return len(episodes) if isinstance(episodes, list) else None

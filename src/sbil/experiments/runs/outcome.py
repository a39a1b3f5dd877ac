"""A run's outcome: per seed and per run, its curves, its tidy rows, read back from a folder.

Part of :mod:`sbil.experiments.runs`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbil.experiments.runs.folder import load_spec
from sbil.experiments.runs.spec import _LEGACY_CURVES, LOSSES_FILE, RESULTS_FILE, RunError, RunSpec
from sbil.experiments.seed_figures import (
    SeedFigures,
    provenance_fields,
)
from sbil.files import write_bytes_atomic
from sbil.progress import ProgressCallback


@dataclass(frozen=True)
class SeedOutcome:
    """What one learner of a run produced (``status`` "done" or "failed")."""

    seed: int
    status: str
    error: str | None
    train_episodes: list[int]
    n_pairs: int
    final_loss: float | None
    final_cross_entropy: float | None
    final_rho: float | None
    action_match: float | None
    returns: list[float] | None
    checkpoint: str | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its folder, its per-seed outcomes and timings."""

    folder: Path
    spec: RunSpec
    env_id: str | None
    held_out_episodes: int
    held_out_states: int
    seeds: list[SeedOutcome]
    train_seconds: float
    eval_seconds: float
    resumed: bool


def _tail_mean(values: np.ndarray) -> float | None:
    values = values[-100:]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


#: Called with a seed, returns a context manager that yields the progress callback of that
#: seed's evaluation (or None), e.g. ``lambda seed: progress_bar(True, f"seed {seed}")``.
EvalProgress = Callable[[int], AbstractContextManager[ProgressCallback | None]]


def save_curves(path: str | os.PathLike, result) -> Path:
    """Write a training result's curves to ``path`` (``losses.npz``) atomically.

    The file holds ``seeds`` ``[K]``, ``terms`` (the learner's term names, in order) and one
    ``[K, n_updates]`` float32 array per term (:attr:`sbil.deep.training.TrainResult.curves`),
    plus, for readers of older runs, ``loss``, ``cross_entropy`` and ``rho`` always (``rho``
    NaN for the learners without one; ValueDICE's ``loss`` is its ``objective``).
    """
    arrays = {"loss": result.loss, "cross_entropy": result.cross_entropy, "rho": result.rho}
    arrays.update(result.curves)
    buffer = io.BytesIO()
    np.savez(buffer, seeds=np.asarray(result.seeds), terms=np.array(list(result.curves)), **arrays)
    return write_bytes_atomic(path, buffer.getvalue())


def load_curves(folder: str | os.PathLike) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
    """``(seeds, {term: [K, n_updates]})`` from a run folder's ``losses.npz``; a run written
    before the terms were named gives its ``loss``, ``cross_entropy`` and (where finite)
    ``rho``.

    Raises:
        RunError: if the run has no readable curves.
    """
    path = Path(folder) / LOSSES_FILE
    try:
        with np.load(path) as saved:  # allow_pickle=False: never runs code from the file
            seeds = tuple(int(s) for s in saved["seeds"])
            if "terms" in saved.files:
                names = [str(n) for n in saved["terms"]]
            else:
                names = [n for n in _LEGACY_CURVES if not np.isnan(saved[n]).all()]
            return seeds, {name: saved[name] for name in names}
    except FileNotFoundError:
        raise RunError(
            f"{folder} holds no training curves ({LOSSES_FILE}); give a run folder written by "
            "`sbil train` (a finished run)."
        ) from None
    except Exception as error:  # a damaged file fails in many ways inside numpy/zipfile
        raise RunError(
            f"Cannot read {path} ({type(error).__name__}); re-run the training."
        ) from None


def training_rows(outcome: RunOutcome, provenance: dict | None = None) -> list[SeedFigures]:
    """The tidy rows of a finished run, one per seed (``training.csv``/``.json``).

    Args:
        outcome: the run.
        provenance: the run's :func:`sbil.files.provenance` (its ``config.json`` holds the one
            it started with); default the running sbil's.
    """
    spec = outcome.spec
    stamp = provenance_fields(provenance)
    rows = []
    for s in outcome.seeds:
        returns = s.returns or []
        rows.append(
            SeedFigures(
                env_id=outcome.env_id,
                algo=spec.learner.algo,
                k=len(s.train_episodes),
                seed=s.seed,
                status=s.status,
                error=s.error,
                n_updates=spec.learner.n_updates,
                n_pairs=s.n_pairs,
                final_loss=s.final_loss,
                final_cross_entropy=s.final_cross_entropy,
                final_rho=s.final_rho,
                action_match=s.action_match,
                action_match_states=outcome.held_out_states if s.action_match is not None else None,
                n_episodes=len(returns),
                eval_seed=spec.eval_seed if returns else None,
                mean_return=float(np.mean(returns)) if returns else None,
                std_return=float(np.std(returns)) if returns else None,
                policy=s.checkpoint or f"seed-{s.seed}",
                **stamp,
            )
        )
    return rows


def _outcome(path: Path, spec: RunSpec, results: dict, resumed: bool) -> RunOutcome:
    return RunOutcome(
        folder=path,
        spec=spec,
        env_id=results["env_id"],
        held_out_episodes=results["held_out_episodes"],
        held_out_states=results["held_out_states"],
        seeds=[SeedOutcome(**s) for s in results["learners"]],
        train_seconds=results["train_seconds"],
        eval_seconds=results["eval_seconds"],
        resumed=resumed,
    )


def load_outcome(folder: str | os.PathLike) -> RunOutcome:
    """The outcome of a finished run, read from its folder."""
    path = Path(folder)
    try:
        results = json.loads((path / RESULTS_FILE).read_text())
    except FileNotFoundError:
        raise RunError(f"The run in {path} is not finished (no {RESULTS_FILE}).") from None
    except (OSError, json.JSONDecodeError) as error:
        raise RunError(f"Cannot read {path / RESULTS_FILE} ({error}).") from None
    return _outcome(path, load_spec(path), results, resumed=True)

"""Learner checkpoints: a JSON config beside a ``torch.save`` state dict, written atomically.

A checkpoint is a folder::

    learner.json   format, version, LearnerConfig, seed, obs_dim, n_actions, env_id,
                   normalisation statistics, free-form metadata
    weights.pt     state dict of plain tensors (loaded with ``torch.load(weights_only=True)``)

Each file is written to a temporary file in the same folder and moved into place with
``os.replace``; ``weights.pt`` is written first, so a folder with ``learner.json`` is complete.
:func:`save_run` writes what ``sbil train`` produces: the run's ``config.json``, one checkpoint
per seed (``seed-<s>/``), the loss curves (``losses.npz``) and a ``results.json`` summary.

Example:
    >>> from sbil.deep.checkpoint import load_learner, save_learner
    >>> save_learner("/tmp/bc-seed0", learner)  # doctest: +SKIP
    >>> policy = load_learner("/tmp/bc-seed0")  # doctest: +SKIP
    >>> policy(obs)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from sbil.deep.learners import Learner, LearnerConfig, LearnerInputError, TrainResult

FORMAT = "sbil-learner"
VERSION = 1
CONFIG_FILE = "learner.json"
WEIGHTS_FILE = "weights.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or not one sbil wrote."""


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path``, atomically."""
    _write_atomically(Path(path), (json.dumps(payload, indent=2) + "\n").encode())


def save_learner(
    path: str | os.PathLike, learner: Learner, *, metadata: dict | None = None
) -> Path:
    """Save ``learner`` into the folder ``path`` (created if needed); return the folder.

    Args:
        path: checkpoint folder; existing checkpoint files in it are replaced.
        learner: a trained :class:`~sbil.deep.learners.Learner`.
        metadata: extra JSON-ready information to keep (dataset, losses, ...).
    """
    if not isinstance(learner, Learner):
        raise CheckpointError(f"save_learner needs a Learner, got {type(learner).__name__}.")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; a checkpoint is a folder.")
    state = {f"policy.{name}": value for name, value in learner.policy_state.items()}
    if learner.energy_state is not None:
        state.update({f"energy.{name}": value for name, value in learner.energy_state.items()})
    buffer = io.BytesIO()
    torch.save({name: value.detach().cpu().contiguous() for name, value in state.items()}, buffer)
    _write_atomically(folder / WEIGHTS_FILE, buffer.getvalue())
    write_json(
        folder / CONFIG_FILE,
        {
            "format": FORMAT,
            "version": VERSION,
            "algo": learner.config.algo,
            "config": learner.config.to_dict(),
            "seed": learner.seed,
            "obs_dim": learner.obs_dim,
            "n_actions": learner.n_actions,
            "hidden_sizes": list(learner.config.hidden_sizes),
            "env_id": learner.env_id,
            "obs_mean": learner.obs_mean.tolist(),
            "obs_std": learner.obs_std.tolist(),
            "has_energy_network": learner.energy_state is not None,
            "weights": WEIGHTS_FILE,
            "metadata": metadata or {},
        },
    )
    return folder


def load_learner(path: str | os.PathLike) -> Learner:
    """Load a learner saved by :func:`save_learner` (or ``sbil train``); it acts identically.

    Args:
        path: the checkpoint folder, or its ``learner.json``.

    Raises:
        CheckpointError: if the files are missing, unreadable or inconsistent.
    """
    path = Path(path)
    folder = path.parent if path.name == CONFIG_FILE else path
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        hint = ""
        if folder.is_dir() and any(folder.glob(f"seed-*/{CONFIG_FILE}")):
            example = next(folder.glob("seed-*"))
            hint = f" It holds a training run; pick one learner, e.g. {example}."
        raise CheckpointError(
            f"No learner checkpoint at {folder}: {CONFIG_FILE} is missing (checkpoints are "
            f"folders written by `sbil train` or save_learner).{hint}"
        )
    try:
        doc = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"Cannot read {config_path}: {error}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not an sbil learner checkpoint.")
    if doc.get("version") != VERSION:
        raise CheckpointError(
            f"{config_path} has checkpoint version {doc.get('version')}; this sbil reads "
            f"version {VERSION}."
        )
    if not weights_path.is_file():
        raise CheckpointError(f"The checkpoint at {folder} is incomplete: no {WEIGHTS_FILE}.")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CheckpointError(f"Cannot load weights from {weights_path}: {error}") from None
    policy = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
    energy = {k.removeprefix("energy."): v for k, v in state.items() if k.startswith("energy.")}
    try:
        return Learner(
            config=LearnerConfig.from_dict(doc["config"]),
            seed=int(doc["seed"]),
            obs_dim=int(doc["obs_dim"]),
            n_actions=int(doc["n_actions"]),
            obs_mean=np.asarray(doc["obs_mean"], dtype=np.float32),
            obs_std=np.asarray(doc["obs_std"], dtype=np.float32),
            policy_state=policy,
            energy_state=energy or None,
            env_id=doc.get("env_id"),
        )
    except (KeyError, TypeError, LearnerInputError) as error:
        raise CheckpointError(f"The checkpoint at {folder} is inconsistent: {error}") from None


def save_run(
    out_dir: str | os.PathLike,
    result: TrainResult,
    *,
    run_config: dict,
    extra_results: dict | None = None,
) -> Path:
    """Write a training run: ``config.json``, ``seed-<s>/`` checkpoints, ``losses.npz``,
    ``results.json``. Returns ``out_dir``.

    Args:
        out_dir: output folder (created if needed).
        result: the trained learners.
        run_config: how the run was made (data, algorithm, seeds, ...); saved in
            ``config.json`` with the learner config and in every checkpoint's metadata.
        extra_results: more JSON-ready figures for ``results.json`` (e.g. training time).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file; give a folder.")
    config = {**run_config, "learner_config": result.config.to_dict(), "seeds": list(result.seeds)}
    write_json(out / "config.json", config)
    per_seed = []
    for index, seed in enumerate(result.seeds):
        tail = slice(max(0, result.loss.shape[1] - 100), None)
        summary = {
            "seed": seed,
            "checkpoint": f"seed-{seed}",
            "final_loss_mean_last_100": _mean_or_none(result.loss[index, tail]),
            "final_cross_entropy_mean_last_100": _mean_or_none(result.cross_entropy[index, tail]),
            "final_rho_mean_last_100": _mean_or_none(result.rho[index, tail]),
        }
        metadata = {"run": config, **summary}
        save_learner(out / f"seed-{seed}", result.learner(index), metadata=metadata)
        per_seed.append(summary)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        seeds=np.asarray(result.seeds),
        loss=result.loss,
        cross_entropy=result.cross_entropy,
        rho=result.rho,
    )
    _write_atomically(out / "losses.npz", buffer.getvalue())
    write_json(out / "results.json", {"learners": per_seed, **(extra_results or {})})
    return out


def _mean_or_none(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None

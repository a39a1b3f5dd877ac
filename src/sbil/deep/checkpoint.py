"""Learner checkpoints: a JSON config beside a ``torch.save`` state dict, written atomically.

A checkpoint is a folder::

    learner.json   format, version, LearnerConfig, seed, obs_dim, n_actions, env_id,
                   normalisation statistics, free-form metadata
    weights.pt     state dict of plain tensors (loaded with ``torch.load(weights_only=True)``)

Each file is written to a temporary file in the same folder and moved into place with
``os.replace``; ``weights.pt`` is written first, so a folder with ``learner.json`` is complete.
Run folders (``config.json``, one checkpoint per seed, losses and
results) are written by :func:`sbil.experiments.runs.run_training`. Files get the permissions
of the user's umask, as ``open`` would give.

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
from pathlib import Path

import numpy as np
import torch

from sbil.deep.learners import Learner, LearnerConfig
from sbil.files import write_bytes_atomic, write_json_atomic

FORMAT = "sbil-learner"
VERSION = 1
CONFIG_FILE = "learner.json"
WEIGHTS_FILE = "weights.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or not one sbil wrote."""


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
    write_bytes_atomic(folder / WEIGHTS_FILE, buffer.getvalue())
    write_json_atomic(
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
        allow_nan=True,
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
    not_sbil = (
        f"{weights_path} is not a weights file saved by sbil (it should hold a dict of "
        "tensors); re-run `sbil train` to recreate it."
    )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except OSError as error:
        if not os.access(weights_path, os.R_OK):
            raise CheckpointError(
                f"Cannot read {weights_path}: {error.strerror or error}; check its permissions."
            ) from None
        # torch reports a truncated or damaged archive as e.g. "Invalid argument".
        raise CheckpointError(
            f"{weights_path} is damaged or truncated ({error.strerror or error}); re-run "
            "`sbil train` to recreate it."
        ) from None
    except Exception:
        # An arbitrary file makes torch's unpickler raise almost anything (UnpicklingError,
        # IndexError, KeyError, UnicodeDecodeError, ...), and torch's own message suggests
        # weights_only=False, i.e. loading an untrusted file unsafely: never pass that on.
        raise CheckpointError(not_sbil) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(not_sbil)
    missing = [key for key in _REQUIRED_FIELDS if key not in doc]
    if missing:
        raise CheckpointError(
            f"The checkpoint at {folder} is inconsistent: {CONFIG_FILE} lacks the field(s) "
            f"{', '.join(map(repr, missing))}; re-run `sbil train` to recreate it."
        )
    if not isinstance(doc["config"], dict):
        raise CheckpointError(
            f"The checkpoint at {folder} is inconsistent: its 'config' field is not a mapping "
            "of learner settings; re-run `sbil train` to recreate it."
        )
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
    except (TypeError, ValueError) as error:  # LearnerInputError is a ValueError
        raise CheckpointError(f"The checkpoint at {folder} is inconsistent: {error}") from None


_REQUIRED_FIELDS = ("config", "seed", "obs_dim", "n_actions", "obs_mean", "obs_std")

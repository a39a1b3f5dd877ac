"""Learner checkpoints: a JSON config beside a ``torch.save`` state dict, written atomically.

A checkpoint is a folder::

    learner.json   format, version, LearnerConfig, seed, obs_dim, n_actions, env_id,
                   normalisation statistics, free-form metadata
    weights.pt     state dict of plain tensors (loaded with ``torch.load(weights_only=True)``)

Each file is written to a temporary file in the same folder and moved into place with
``os.replace``; ``weights.pt`` is written first, so a folder with ``learner.json`` is complete.
:func:`save_run` writes what ``sbil train`` produces: the run's ``config.json`` (with the git
commit and package versions), one checkpoint per seed (``seed-<s>/``), the loss curves
(``losses.npz``) and a ``results.json`` summary, staged in a sibling folder and renamed into
place. Files and folders get the permissions of the user's umask, as ``open`` would give.

Example:
    >>> from sbil.deep.checkpoint import load_learner, save_learner
    >>> save_learner("/tmp/bc-seed0", learner)  # doctest: +SKIP
    >>> policy = load_learner("/tmp/bc-seed0")  # doctest: +SKIP
    >>> policy(obs)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from sbil.deep.learners import Learner, LearnerConfig, TrainResult
from sbil.files import git_commit, umask, write_bytes_atomic, write_json_atomic

FORMAT = "sbil-learner"
VERSION = 1
CONFIG_FILE = "learner.json"
WEIGHTS_FILE = "weights.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or not one sbil wrote."""


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path``, atomically (a diverged loss is kept as
    NaN rather than losing the record)."""
    write_json_atomic(path, payload, allow_nan=True)


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
    not_sbil = (
        f"{weights_path} is not a weights file saved by sbil (it should hold a dict of "
        "tensors); re-run `sbil train` to recreate it."
    )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise CheckpointError(f"Cannot read {weights_path}: {error.strerror or error}.") from None
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


def check_run_folder(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before training, that a run can be written to ``out_dir``; return it as a Path.

    Creates missing parent folders and probes that a sibling folder can be written there (where
    :func:`save_run` stages the run), so that a bad folder fails in a second, not after training.

    Raises:
        CheckpointError: if ``out_dir`` is a file, is a non-empty folder and ``overwrite`` is
            False, or cannot be written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file; give a folder for the run.")
    if out.resolve() in (Path.cwd(), *Path.cwd().parents):
        raise CheckpointError(
            f"--out {out} is the current folder or one of its parents; give a new subfolder."
        )
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(
                f"--out {out} already holds files; give a new folder, or pass --overwrite to "
                "replace the whole folder with this run."
            )
        if not _is_run(out):
            raise CheckpointError(
                f"--out {out} holds files that are not an sbil training run; --overwrite only "
                "replaces an earlier run, so give a new folder."
            )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent))
    except OSError as error:
        raise CheckpointError(
            f"Cannot write the run folder {out} ({error.strerror or error}); give a writable --out."
        ) from None
    return out


def _is_run(folder: Path) -> bool:
    """Whether ``folder`` holds only what :func:`save_run` writes (safe to replace)."""
    names = {"config.json", "results.json", "losses.npz"}
    return (
        all(
            entry.name in names or (entry.is_dir() and entry.name.startswith("seed-"))
            for entry in folder.iterdir()
        )
        and (folder / "config.json").is_file()
    )


def provenance() -> dict:
    """Where a run came from: the git commit of sbil's checkout (None outside one) and the
    versions of sbil, torch, gymnasium and numpy."""
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    for package in ("sbil", "gymnasium"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"git_commit": git_commit(), "versions": dict(sorted(versions.items()))}


def save_run(
    out_dir: str | os.PathLike,
    result: TrainResult,
    *,
    run_config: dict,
    extra_results: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a training run: ``config.json``, ``seed-<s>/`` checkpoints, ``losses.npz``,
    ``results.json``. Returns ``out_dir``.

    The run is written to a temporary sibling folder and renamed to ``out_dir`` when complete,
    so ``out_dir`` never mixes learners of two runs: with ``overwrite`` the old folder is moved
    aside, replaced, then deleted.

    Args:
        out_dir: output folder; must not exist, be empty, or ``overwrite`` must be True.
        result: the trained learners.
        run_config: how the run was made (data, algorithm, seeds, ...); saved in
            ``config.json`` with the learner config, the seeds and :func:`provenance`, and in
            every checkpoint's metadata.
        extra_results: more JSON-ready figures for ``results.json`` (e.g. training time).
        overwrite: replace an existing non-empty ``out_dir``.

    Raises:
        CheckpointError: see :func:`check_run_folder`.
    """
    out = check_run_folder(out_dir, overwrite=overwrite)
    config = {
        **run_config,
        "learner_config": result.config.to_dict(),
        "seeds": list(result.seeds),
        "provenance": provenance(),
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes it private (0700)
        _write_run(staging, result, config, extra_results)
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_run(folder: Path, result: TrainResult, config: dict, extra: dict | None) -> None:
    write_json(folder / "config.json", config)
    per_seed = []
    tail = slice(max(0, result.loss.shape[1] - 100), None)
    for index, seed in enumerate(result.seeds):
        summary = {
            "seed": seed,
            "checkpoint": f"seed-{seed}",
            "final_loss_mean_last_100": _mean_or_none(result.loss[index, tail]),
            "final_cross_entropy_mean_last_100": _mean_or_none(result.cross_entropy[index, tail]),
            "final_rho_mean_last_100": _mean_or_none(result.rho[index, tail]),
        }
        metadata = {"run": config, **summary}
        save_learner(folder / f"seed-{seed}", result.learner(index), metadata=metadata)
        per_seed.append(summary)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        seeds=np.asarray(result.seeds),
        loss=result.loss,
        cross_entropy=result.cross_entropy,
        rho=result.rho,
    )
    write_bytes_atomic(folder / "losses.npz", buffer.getvalue())
    write_json(folder / "results.json", {"learners": per_seed, **(extra or {})})


def _replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    old = None
    if target.exists():
        if any(target.iterdir()):
            aside = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            old = Path(aside)
            os.replace(target, old)  # renames over the empty placeholder
        else:
            target.rmdir()
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _mean_or_none(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None

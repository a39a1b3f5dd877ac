"""Export a training run: every learner of an ``sbil train`` folder as TorchScript or ONNX.

:func:`export_run` reads a run folder (or one learner checkpoint) and writes::

    OUT/export.json          what was exported: format, source run, seeds, skipped seeds
    OUT/seed-<s>/            one learner's files (sbil.deep.export.export_learner):
        policy.{pt,onnx}     observations -> greedy actions
        logits.{pt,onnx}     observations -> logits
        policy.json          sidecar: spaces, normalisation, training provenance

``OUT`` defaults to ``<RUN_DIR>-<format>`` beside the run (never inside it: a run folder holds
only what ``sbil train`` writes). The whole folder is staged and swapped in when complete, so
an interrupted export leaves nothing half-written. Each sidecar's ``training`` block carries
the run's provenance: algo, task, seed, the git commit that trained it and the run's whole
``config.json``. ``docs/export.md`` describes the files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sbil.experiments.runs import CONFIG_FILE, RESULTS_FILE, RunError, load_outcome

MANIFEST_FILE = "export.json"
MANIFEST_FORMAT = "sbil-export"
MANIFEST_VERSION = 1
_CHECKPOINT_FILE = "learner.json"


@dataclass(frozen=True)
class RunExport:
    """What :func:`export_run` wrote.

    Attributes:
        folder: the export folder ``OUT``.
        format: ``"torchscript"`` or ``"onnx"``.
        source: the run folder or checkpoint that was exported.
        learners: per seed, what :func:`sbil.deep.export.export_learner` wrote (in ``folder``).
        skipped: per seed, why a learner of the run was not exported (it failed in training).
    """

    folder: Path
    format: str
    source: Path
    learners: dict = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)


def default_out(source: str | os.PathLike, format: str) -> Path:
    """``<run>-<format>`` beside the run that holds ``source`` (or beside ``source``)."""
    source = Path(source)
    run = _run_of(source) or source
    return run.with_name(f"{run.name}-{format}")


def export_run(
    path: str | os.PathLike,
    format: str,
    *,
    out: str | os.PathLike | None = None,
    seeds: list[int] | None = None,
    overwrite: bool = False,
) -> RunExport:
    """Export every learner of a finished run (or one checkpoint) as ``format`` files.

    Args:
        path: a run folder written by ``sbil train`` or one of its ``seed-<s>/`` checkpoints.
        format: ``"torchscript"`` or ``"onnx"`` (the latter needs the ``export`` extra).
        out: the export folder (default :func:`default_out`).
        seeds: export only these learners of the run (default: all that finished).
        overwrite: replace an earlier export in ``out``.

    Raises:
        ExportError: for an unknown format, missing ONNX packages, a missing, unfinished or
            incomplete run, unknown seeds, or a destination that is not free.
    """
    from sbil.deep.checkpoint import load_learner
    from sbil.deep.export import ExportError, check_format, export_learner, require_onnx
    from sbil.files import lock, provenance, staged_folder, write_json_atomic

    check_format(format)
    if format == "onnx":
        require_onnx()  # before anything is read: the message names the extra
    source = Path(path)
    run, checkpoints, skipped = _learners(source)
    if seeds is not None:
        for seed in seeds:
            if seed in skipped:
                raise ExportError(
                    f"The learner of seed {seed} in {source} failed in training "
                    f"({skipped[seed]}); there is nothing to export for it."
                )
        unknown = [s for s in seeds if s not in checkpoints]
        if unknown:
            have = ", ".join(map(str, checkpoints)) or "none"
            raise ExportError(
                f"{source} has no finished learner of seed(s) {', '.join(map(str, unknown))}; "
                f"its learners have seeds {have}."
            )
        checkpoints = {s: checkpoints[s] for s in seeds}
        skipped = {s: why for s, why in skipped.items() if s in seeds}
    if not checkpoints:
        raise ExportError(
            f"{source} has no learner to export: every seed failed in training "
            f"({'; '.join(f'seed {s}: {why}' for s, why in skipped.items())})."
        )
    out = Path(out) if out is not None else default_out(source, format)
    run_config = _run_config(run) if run is not None else None
    recorded = (run_config or {}).get("provenance")
    commit = recorded.get("git_commit") if isinstance(recorded, dict) else None
    written = {}
    with lock(out):
        _check_out(out, source, run, overwrite)
        with staged_folder(out, overwrite=True) as staging:
            for seed, checkpoint in checkpoints.items():
                training = {
                    "git_commit": commit,
                    "run": None if run is None else str(run.resolve()),
                    "checkpoint": str(checkpoint.resolve()),
                    "checkpoint_metadata": _checkpoint_metadata(checkpoint),
                    "run_config": run_config,
                }
                written[seed] = export_learner(
                    load_learner(checkpoint), staging / f"seed-{seed}", format, training=training
                )
            write_json_atomic(
                staging / MANIFEST_FILE,
                {
                    "format": MANIFEST_FORMAT,
                    "version": MANIFEST_VERSION,
                    "export_format": format,
                    "source": str(source.resolve()),
                    "run": None if run is None else str(run.resolve()),
                    "git_commit": commit,
                    "seeds": {str(s): f"seed-{s}" for s in written},
                    "skipped": {str(s): why for s, why in skipped.items()},
                    "exported_by": provenance(),
                },
            )
    learners = {seed: _moved(export, out) for seed, export in written.items()}
    return RunExport(folder=out, format=format, source=source, learners=learners, skipped=skipped)


def _moved(export, out: Path):
    """``export``'s paths once its staging folder has become ``out``."""
    folder = out / export.folder.name
    return dataclasses.replace(
        export,
        folder=folder,
        policy=folder / export.policy.name,
        logits=folder / export.logits.name,
        sidecar=folder / export.sidecar.name,
    )


def _run_of(path: Path) -> Path | None:
    """The run folder ``path`` is or belongs to (a checkpoint's parent), else None."""
    if (path / CONFIG_FILE).is_file() and not (path / _CHECKPOINT_FILE).is_file():
        return path
    if (path / _CHECKPOINT_FILE).is_file() and (path.parent / CONFIG_FILE).is_file():
        return path.parent
    return None


def _learners(source: Path) -> tuple[Path | None, dict[int, Path], dict[int, str]]:
    """``(run folder or None, {seed: checkpoint folder}, {seed: why skipped})``."""
    from sbil.deep.export import ExportError

    if source.name == _CHECKPOINT_FILE:
        source = source.parent
    if not source.exists():
        raise ExportError(
            f"{source} does not exist; give a run folder written by `sbil train` (or one of "
            "its seed-<s>/ checkpoints)."
        )
    if (source / _CHECKPOINT_FILE).is_file():  # one checkpoint
        doc = _read_json(source / _CHECKPOINT_FILE)
        seed = doc.get("seed") if isinstance(doc, dict) else None
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ExportError(f"{source / _CHECKPOINT_FILE} is not an sbil learner checkpoint.")
        return _run_of(source), {seed: source}, {}
    if not (source / CONFIG_FILE).is_file():
        raise ExportError(
            f"{source} is not an sbil training run (no {CONFIG_FILE}) nor a learner checkpoint "
            f"(no {_CHECKPOINT_FILE}); give a folder written by `sbil train`."
        )
    if not (source / RESULTS_FILE).is_file():
        raise ExportError(
            f"The run in {source} is not finished (no {RESULTS_FILE}); finish it with "
            f"`sbil train --resume --out {source}`, then export it."
        )
    try:
        outcome = load_outcome(source)
    except (RunError, TypeError, KeyError) as error:
        raise ExportError(f"Cannot read the run in {source}: {error}") from None
    checkpoints, skipped = {}, {}
    for learner in outcome.seeds:
        if learner.status != "done" or learner.checkpoint is None:
            skipped[learner.seed] = learner.error or learner.status
            continue
        folder = source / learner.checkpoint
        if not (folder / _CHECKPOINT_FILE).is_file():
            raise ExportError(
                f"The run in {source} is incomplete: its learner of seed {learner.seed} has no "
                f"checkpoint {folder}; re-run `sbil train --overwrite --out {source}`."
            )
        checkpoints[learner.seed] = folder
    return source, checkpoints, skipped


def _check_out(out: Path, source: Path, run: Path | None, overwrite: bool) -> None:
    from sbil.deep.export import ExportError

    resolved = out.resolve()
    for inside in (source, run):
        if inside is not None and inside.resolve() in (resolved, *resolved.parents):
            raise ExportError(
                f"--out {out} is inside {inside}, which holds only what `sbil train` writes; "
                "give a folder outside it."
            )
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder for the export.")
    if out.is_dir() and any(out.iterdir()):
        manifest = _read_json(out / MANIFEST_FILE)
        if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT):
            raise ExportError(
                f"--out {out} holds files that are not an sbil export; give a new folder."
            )
        if not overwrite:
            raise ExportError(
                f"--out {out} already holds an export; pass --overwrite to replace it, or give "
                "another --out."
            )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_config(run: Path) -> dict:
    from sbil.deep.export import ExportError

    doc = _read_json(run / CONFIG_FILE)
    if not isinstance(doc, dict):
        raise ExportError(f"Cannot read the run description {run / CONFIG_FILE}.")
    return doc


def _checkpoint_metadata(checkpoint: Path) -> dict:
    doc = _read_json(checkpoint / _CHECKPOINT_FILE)
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    return metadata if isinstance(metadata, dict) else {}

"""A run folder: claimed (locked, resumable), recognised and read.

Part of :mod:`sbil.experiments.runs`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sbil.experiments.runs.spec import _RUN_NAMES, CONFIG_FILE, RESULTS_FILE, RunError, RunSpec


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only what :func:`run_training` writes (safe to replace)."""
    return (folder / CONFIG_FILE).is_file() and all(
        entry.name in _RUN_NAMES or (entry.is_dir() and entry.name.startswith("seed-"))
        for entry in folder.iterdir()
    )


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether a run folder holds a finished run (its ``results.json``)."""
    return (Path(folder) / RESULTS_FILE).is_file()


def load_spec(folder: str | os.PathLike) -> RunSpec:
    """The :class:`RunSpec` stored in a run folder's ``config.json``."""
    path = Path(folder) / CONFIG_FILE
    try:
        doc = json.loads(path.read_text())
        return RunSpec.from_dict(doc["spec"])
    except FileNotFoundError:
        raise RunError(f"{folder} is not an sbil run: it has no {CONFIG_FILE}.") from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunError(f"Cannot read the run description {path} ({error}).") from None


def claim_run_folder(out: str | os.PathLike, *, overwrite: bool, resume: bool) -> Path:
    """Check that a run may be written to ``out`` (call it holding :func:`sbil.files.lock`).

    New or empty folders are fine; an interrupted run only with ``resume``; an earlier run is
    replaced only with ``overwrite``; anything else is refused before any data is loaded.
    """
    from sbil.files import check_writable_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a folder for the run.")
    if out.resolve() in (Path.cwd(), *Path.cwd().parents):  # resolve: also "..", symlinks
        raise RunError(
            f"--out {out} is the current folder or one of its parents; give a new subfolder."
        )
    if out.is_dir() and any(out.iterdir()):
        if not is_run_folder(out):
            raise RunError(
                f"--out {out} holds files that are not an sbil training run; give a new "
                "folder (--overwrite only replaces an earlier run)."
            )
        if overwrite:
            _remove_run(out)
        elif not resume:
            state = "a finished run" if is_complete(out) else "an interrupted run"
            raise RunError(
                f"--out {out} already holds {state}; pass --resume to continue it, "
                "--overwrite to replace it, or give a new folder."
            )
    check_writable_folder(out, what="the run folder")
    return out


def _remove_run(folder: Path) -> None:
    """Delete an earlier run's files (only names a run writes)."""
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()

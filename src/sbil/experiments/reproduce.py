"""``sbil reproduce``: recompute the note's claims and the studies beyond it, write a report.

Outputs in the report folder:

- ``REPORT.md``: every result explained in plain words, with figures;
- ``landing.png``, ``consistency.png``, ``limits.png``: the figures;
- ``results.json``: for each claim its id, the note's value as the note prints it (null where
  the note has none), sbil's value, whether they agree and the report's wording, plus
  configuration, commit and runtime;
- ``consistency.csv``, ``consistency_summary.csv``, ``tabular_onehot.csv``: tidy tables;
- with ``--deep``, the deep section's files (:mod:`sbil.experiments.deep_critique`).

As each stage finishes, ``log`` (the CLI: stderr) gets one line per claim it decided, and the
deep studies report their progress through it, so a long run is never silent.

The whole report is written into a hidden staging folder beside the report folder and swapped
in when complete (:func:`sbil.files.staged_folder`), so an interrupted run leaves the previous
report as it was and never a mix of two runs; a lock (:func:`sbil.files.lock`) keeps two runs
from writing one folder at once.

Longer than ~400 lines: the command's configuration and checks, the tabular stages, the deep
studies' entries and the staged writing of one report; each study's computation lives in its
own module.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sbil import files as sbil_files
from sbil.experiments.claims import Claim, ClaimSection
from sbil.experiments.claims_beyond import (
    BEYOND_CLAIM_IDS,
    beyond_section,
    consistency_claims,
    landing_claims,
    per_state_shift_claim,
)
from sbil.experiments.claims_note import NOTE_CLAIM_IDS, all_note_claims, note_section
from sbil.experiments.consistency import (
    ConsistencyConfig,
    limits,
    oracle_subset,
    run_consistency,
    summarise,
)
from sbil.experiments.io import save_figure_atomic, write_csv_atomic
from sbil.experiments.landing import DEFAULT_D1_GRID, DEFAULT_K_GRID, edm_landing
from sbil.files import write_json_atomic, write_text_atomic
from sbil.progress import ProgressCallback
from sbil.seeds import check_seed_range

__all__ = [
    "BEYOND_CLAIM_IDS",
    "NOTE_CLAIM_IDS",
    "REPORT_FILES",
    "STAGES",
    "ReportPathError",
    "ReproduceConfig",
    "ReproduceResult",
    "check_out_dir",
    "run_reproduce",
]

REPORT_TITLE = "sbil report: does EDM learn the expert?"

PREAMBLE = (
    "The note's claims and the results beyond them are computed exactly on finite MDPs "
    "(float64) by `sbil.tabular`.\n\n"
    "BC maximises log pi(a|s) on the expert's pairs. EDM (Jarrett, Bica & van der Schaar, "
    "2020) adds a state model built from the same logits, p_theta(s) ∝ exp(logsumexp_a f(s, a)), "
    "and maximises log pi(a|s) + log p_theta(s). The note by Swamy, Choudhury, Bagnell & Wu "
    "argues that p_theta need not say anything about the policy's true state visitation d_pi, "
    "and that because EDM uses the same parameters for the policy and for p_theta it can be "
    "inconsistent even with infinite data, while BC is not. Below, sbil finds what makes EDM "
    "consistent: not parameters that are specific to each state, but a class that contains a "
    "free per-state shift of the logits (`edm_per_state_shift`)."
)

#: Packages whose versions results.json records (read from metadata; nothing is imported).
REPORT_PACKAGES = ("matplotlib", "numpy", "pandas", "sbil", "scipy")

#: The stages ``progress(done, total)`` counts, in order (``--deep`` adds one).
STAGES = (
    "note's claims: examples 1-3, theorem 1",
    "where EDM lands (Example 3 class)",
    "consistency study",
    "statistics and the per-state class",
    "figures and tables",
)
DEEP_STAGE = "deep studies (sbil.experiments.deep_critique)"

#: Files the tabular sections write (``tabular_onehot.csv`` when computed).
TABULAR_FILES = (
    "landing.png",
    "consistency.png",
    "limits.png",
    "consistency.csv",
    "consistency_summary.csv",
    "tabular_onehot.csv",
)
#: Files every plain run may write into the report folder.
REPORT_FILES = ("REPORT.md", "results.json", *TABULAR_FILES)


class ReportPathError(ValueError):
    """The report folder cannot be used (e.g. it is an existing file)."""


@dataclass(frozen=True)
class ReproduceConfig:
    """Configuration of ``sbil reproduce``.

    Attributes:
        out: folder to write the report into (created if missing; a leading ``~`` is
            expanded, see :attr:`out_dir`); must not be empty.
        quick: a reduced run (fewer MDPs, coarser grids) for tests and smoke checks; the
            note's four claims are computed in full either way.
        seed: root seed of the random MDPs and data sets, in ``0 .. 2**32 - 1``
            (:mod:`sbil.seeds`).
        deep: also run the deep studies (``sbil.experiments.deep_critique``; needs torch).
    """

    out: Path | str = Path("report")
    quick: bool = False
    seed: int = 0
    deep: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.out, (str, os.PathLike)):
            raise ValueError(f"out must be a folder path; got {self.out!r}.")
        if not os.fspath(self.out).strip():
            raise ValueError("--out is empty; pass a folder path, e.g. --out report.")
        for name in ("quick", "deep"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}.")
        if isinstance(self.seed, np.bool_):
            raise ValueError(f"--seed must be an integer, got {self.seed!r}.")
        check_seed_range(self.seed, name="--seed")  # sbil's one seed rule: 0 .. 2**32 - 1

    @property
    def out_dir(self) -> Path:
        """The report folder as a path, with a leading ``~`` expanded to the home folder."""
        return Path(self.out).expanduser()

    @property
    def consistency(self) -> ConsistencyConfig:
        """The consistency study's configuration."""
        if self.quick:
            return ConsistencyConfig(
                n_mdps=12,
                n_seeds=3,
                n_seeds_example3=10,
                n_oracle=3,
                n_oracle_seeds=2,
                n_tabular=5,
                seed=self.seed,
            )
        return ConsistencyConfig(seed=self.seed)

    @property
    def landing_grid(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(d_E(s1) grid, k grid) of the landing study."""
        if self.quick:
            d1 = tuple(float(x) for x in np.round(np.linspace(0.05, 0.95, 19), 10))
            k = tuple(float(x) for x in np.round(np.linspace(-2.0, 2.0, 41), 10))
            return d1, k
        return DEFAULT_D1_GRID, DEFAULT_K_GRID


@dataclass(frozen=True)
class ReproduceResult:
    """What ``sbil reproduce`` computed and wrote.

    Attributes:
        sections: the report's sections, in order.
        runtime_s: wall-clock seconds of the whole run.
        out: the report folder.
        files: paths written (in the report folder).
    """

    sections: tuple[ClaimSection, ...]
    runtime_s: float
    out: Path
    files: tuple[Path, ...]

    @property
    def claims(self) -> tuple[Claim, ...]:
        """Every claim of every section, in report order."""
        return tuple(c for s in self.sections for c in s.claims)


def _earlier_report_files(out: Path) -> set[str]:
    """File names an earlier ``sbil reproduce`` wrote in ``out`` (from its results.json)."""
    try:
        data = json.loads((out / "results.json").read_text())
        listed = data.get("files", []) if isinstance(data, dict) else []
        return {name for name in listed if isinstance(name, str)}
    except (OSError, ValueError, UnicodeDecodeError):
        return set()


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Validate (and create) the report folder, raising ReportPathError with a fix.

    Checks up front what would otherwise fail only after the computation: an empty path, a
    path that is an existing file, a folder that cannot be created, a parent folder that cannot
    hold the staging folder, a folder that holds anything but an earlier report (which a new
    run replaces as a whole), and a report file name (e.g. ``REPORT.md``) taken by a folder. A
    leading ``~`` is expanded.

    Returns:
        The folder's path.
    """
    if not os.fspath(out).strip():
        raise ReportPathError("--out is empty; pass a folder path, e.g. --out report.")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ReportPathError(
            f"--out {out} is an existing file, not a folder; pass a folder path (it is created "
            "if missing)."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportPathError(
            f"cannot create report folder {out}: {exc.strerror or exc}; pass a writable path."
        ) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise ReportPathError(f"report folder {out} is not writable; pass a writable path.")
    parent = Path(os.path.abspath(out)).parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportPathError(
            f"cannot write in {parent}: the report is written into a hidden folder beside "
            f"{out.name} and swapped in when complete; pass --out inside a writable folder."
        )
    for name in REPORT_FILES:
        if (out / name).is_dir():
            raise ReportPathError(
                f"{out / name} is a folder, but the report writes a file there; move it away "
                "or pass another --out."
            )
    known = set(REPORT_FILES) | _earlier_report_files(out)
    others = sorted(p.name for p in out.iterdir() if p.name not in known or p.is_dir())
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ReportPathError(
            f"--out {out} already holds files that are not an sbil report ({shown}); a new "
            "report replaces the whole folder. Pass a new or empty folder, e.g. --out report."
        )
    return out


@contextmanager
def report_write(path: Path) -> Iterator[Path]:
    """Context for writing one report file: an OSError inside becomes a ReportPathError.

    Example:
        >>> with report_write(out / "REPORT.md") as path:  # doctest: +SKIP
        ...     write_text_atomic(path, text)

    Raises:
        ReportPathError: the file cannot be written (a folder in the way, no permission, disk
            full, ...), with the path and a fix.
    """
    try:
        yield path
    except IsADirectoryError as exc:
        raise ReportPathError(
            f"cannot write {path}: it is an existing folder; move it away or pass another --out."
        ) from exc
    except OSError as exc:
        raise ReportPathError(
            f"cannot write {path}: {exc.strerror or exc}; pass a writable --out folder."
        ) from exc


def claim_line(claim: Claim) -> str:
    """``"claim theorem1: agrees (sbil -0.2449; the note: approximately -0.245)"``."""
    note = "" if claim.note_value is None else f"; the note: {claim.note_value}"
    return f"claim {claim.id}: {claim.verdict} (sbil {claim.value:.4g}{note})"


def tabular_sections(
    config: ReproduceConfig,
    folder: Path,
    stage_done: Callable[[], None] | None = None,
    claims_done: Callable[[Sequence[Claim]], None] | None = None,
) -> tuple[ClaimSection, ClaimSection]:
    """Compute the note's claims and the studies beyond it; write their figures and tables.

    Args:
        config: how much to compute.
        folder: where the figures and tables go (the staging folder of a run).
        stage_done: called after each of the :data:`STAGES`.
        claims_done: called with the claims decided, as soon as they are.

    Returns:
        (the note's section, the section beyond the note).
    """
    from sbil.experiments.plots import plot_consistency, plot_landing, plot_limits

    done = stage_done or (lambda: None)
    decided = claims_done or (lambda claims: None)
    note = note_section(all_note_claims())
    decided(note.claims)
    done()
    d1_grid, k_grid = config.landing_grid
    landing = edm_landing(d1_grid, k_grid)
    done()
    study = run_consistency(config.consistency)
    done()
    summary = summarise(study, seed=config.seed)
    oracle_rows = oracle_subset(study)
    oracle_summary = None if oracle_rows.rows.empty else summarise(oracle_rows, seed=config.seed)
    claims = [
        *landing_claims(landing),
        *consistency_claims(study, summary, oracle_summary),
        per_state_shift_claim(config.consistency),
    ]
    decided(claims)
    done()
    written = []
    limit_rows = limits(study)
    figures = {
        "landing.png": plot_landing(landing),
        "consistency.png": plot_consistency(summary, limit_rows),
        "limits.png": plot_limits(limit_rows),
    }
    for name, fig in figures.items():
        with report_write(folder / name) as path:
            save_figure_atomic(fig, path, dpi=110)
        written.append(name)
    tables = {"consistency.csv": study.rows, "consistency_summary.csv": summary}
    if not study.tabular.empty:
        tables["tabular_onehot.csv"] = study.tabular
    for name, frame in tables.items():
        with report_write(folder / name) as path:
            write_csv_atomic(frame, path)
        written.append(name)
    beyond = beyond_section(
        landing=landing,
        study=study,
        summary=summary,
        oracle_summary=oracle_summary,
        claims=claims,
        files=written,
    )
    beyond = _with_config(
        beyond,
        {
            "consistency": asdict(config.consistency),
            "landing": {
                "n_d1": len(d1_grid),
                "n_k": len(k_grid),
                "theta_expert": landing.theta_expert,
            },
        },
    )
    done()
    return note, beyond


def _with_config(section: ClaimSection, config: dict[str, Any]) -> ClaimSection:
    from dataclasses import replace

    return replace(section, config=config)


def deep_entry() -> Callable[..., ClaimSection]:
    """``sbil.experiments.deep_critique.deep_claims``, imported here only, so that a plain run
    never imports torch (see ``/work/notes/CLAIMS_API.md`` for its contract).

    Raises:
        ValueError: one sentence when the deep studies are not available in this sbil.
        ModuleNotFoundError: for a missing optional dependency (e.g. torch), which the CLI
            turns into the name of the extra to install.
    """
    import importlib

    name = "sbil.experiments.deep_critique"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        module = None
    entry = getattr(module, "deep_claims", None)
    if entry is None:
        raise ValueError(
            f"--deep needs {name}.deep_claims, which this version of sbil does not have yet; "
            "run without --deep for the tabular report."
        )
    return entry


def deep_section(
    folder: Path,
    config: ReproduceConfig,
    progress: ProgressCallback | None = None,
    *,
    entry: Callable[..., ClaimSection] | None = None,
) -> ClaimSection:
    """The deep section, computed by :func:`deep_entry` into ``folder`` (a staging folder).

    Raises:
        ValueError: one sentence when the deep studies are not available, or return
            something that does not fit the report (not a ClaimSection, a file name the
            tabular report owns, a listed file that was not written).
    """
    entry = entry or deep_entry()
    section = entry(folder, seed=config.seed, quick=config.quick, progress=progress)
    if not isinstance(section, ClaimSection):
        raise ValueError(
            f"deep_claims returned {type(section).__name__}, not a ClaimSection; see "
            "sbil.experiments.claims."
        )
    clash = sorted(set(section.files) & set(REPORT_FILES))
    if clash:
        raise ValueError(f"the deep section writes {clash}, which the tabular report owns.")
    missing = [name for name in section.files if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"the deep section lists files it did not write: {missing}.")
    return section


def run_reproduce(
    config: ReproduceConfig,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> ReproduceResult:
    """Compute every claim and study, write the report folder, return what was done.

    The report is written into a staging folder and swapped in whole at the end; on any error
    or interrupt the previous report folder is left as it was.

    Args:
        config: where to write and how much to compute.
        progress: optional ``progress(done, total)`` over :data:`STAGES` (and the deep stage
            with ``config.deep``).
        log: optional ``log(line)``: one line per claim as it is decided (:func:`claim_line`)
            and the deep studies' progress.

    Returns:
        ReproduceResult.

    Raises:
        ReportPathError: if ``config.out`` cannot be used as a folder or a file in it cannot
            be written.
        sbil.files.LockHeldError: another run is writing the same report folder.
    """
    from sbil.experiments.report import render_report

    entry = deep_entry() if config.deep else None  # before any work or folder
    out = check_out_dir(config.out_dir)
    total = len(STAGES) + int(config.deep)
    done = 0

    def stage_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def claims_done(claims: Sequence[Claim]) -> None:
        if log is not None:
            for claim in claims:
                log(claim_line(claim))

    start = time.perf_counter()
    target = Path(os.path.abspath(out))
    with sbil_files.lock(target):
        check_out_dir(out)  # again, now that no other run can write it
        try:
            with sbil_files.staged_folder(target) as staging:
                sections = list(tabular_sections(config, staging, stage_done, claims_done))
                if config.deep:
                    deep_progress = None
                    if log is not None:
                        from sbil.experiments.run_log import progress_lines

                        deep_progress = progress_lines(DEEP_STAGE, log)
                    sections.append(deep_section(staging, config, deep_progress, entry=entry))
                    claims_done(sections[-1].claims)
                    stage_done()
                _check_unique_ids(sections)
                runtime = time.perf_counter() - start
                report_files = [name for s in sections for name in s.files]
                meta = {
                    "command": "sbil reproduce"
                    + (" --quick" if config.quick else "")
                    + (" --deep" if config.deep else "")
                    + (f" --seed {config.seed}" if config.seed else ""),
                    "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    **sbil_files.provenance(REPORT_PACKAGES),
                    "runtime_s": round(runtime, 2),
                    "config": {
                        "quick": config.quick,
                        "seed": config.seed,
                        "deep": config.deep,
                        **{k: v for s in sections for k, v in s.config.items()},
                    },
                }
                markdown = render_report(
                    title=REPORT_TITLE, preamble=PREAMBLE, sections=sections, meta=meta
                )
                with report_write(staging / "REPORT.md") as path:
                    write_text_atomic(path, markdown)
                results = {
                    **meta,
                    "files": ["REPORT.md", "results.json", *report_files],
                    "sections": [
                        {"id": s.id, "title": s.title, "claims": [c.id for c in s.claims]}
                        for s in sections
                    ],
                    "claims": [
                        {**c.to_dict(), "section": s.id} for s in sections for c in s.claims
                    ],
                }
                with report_write(staging / "results.json") as path:
                    write_json_atomic(path, results)
        except OSError as exc:
            raise ReportPathError(
                f"cannot write the report folder {out}: {exc.strerror or exc}; pass a writable "
                "--out."
            ) from exc
    written = tuple(out / name for name in ("REPORT.md", "results.json", *report_files))
    return ReproduceResult(
        sections=tuple(sections),
        runtime_s=time.perf_counter() - start,
        out=out,
        files=written,
    )


def _check_unique_ids(sections: list[ClaimSection]) -> None:
    seen: set[str] = set()
    for section in sections:
        for claim in section.claims:
            if claim.id in seen:
                raise ValueError(f"claim id {claim.id!r} appears twice in the report.")
            seen.add(claim.id)

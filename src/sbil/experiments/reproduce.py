"""``sbil reproduce``: recompute the note's claims and the studies beyond it, write a report.

Outputs in the report folder (each written atomically):

- ``REPORT.md``: every result explained in plain words, with figures;
- ``landing.png``, ``consistency.png``, ``limits.png``: the figures;
- ``results.json``: for each claim its id, the note's value (null where the note has none),
  sbil's value and whether they agree, plus configuration, commit and runtime;
- ``consistency.csv``, ``consistency_summary.csv``, ``tabular_onehot.csv``: tidy tables.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage

from sbil.experiments.consistency import (
    ConsistencyConfig,
    ConsistencyResult,
    error_slope,
    inconsistency_summary,
    limits,
    oracle_subset,
    run_consistency,
    summarise,
)
from sbil.experiments.io import (
    git_commit,
    save_figure_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from sbil.experiments.landing import (
    DEFAULT_D1_GRID,
    DEFAULT_K_GRID,
    LandingResult,
    edm_landing,
    edm_state_model_s1,
)
from sbil.tabular.claims import NOTE_CLAIM_IDS as NOTE_CLAIM_IDS
from sbil.tabular.claims import Claim, all_note_claims

#: Identifiers of the results beyond the note.
BEYOND_CLAIM_IDS = (
    "edm_consistent_set",
    "edm_policy_flip",
    "bc_consistent",
    "edm_inconsistent_fraction",
    "edm_visitation_gap",
    "oracle_recovers_expert",
    "tabular_edm_equals_bc",
)

Progress = Callable[[str], None]


class ReportPathError(ValueError):
    """The report folder cannot be used (e.g. it is an existing file)."""


#: Files every run writes into the report folder (``tabular_onehot.csv`` when computed).
REPORT_FILES = (
    "REPORT.md",
    "results.json",
    "landing.png",
    "consistency.png",
    "limits.png",
    "consistency.csv",
    "consistency_summary.csv",
    "tabular_onehot.csv",
)


@dataclass(frozen=True)
class ReproduceConfig:
    """Configuration of ``sbil reproduce``.

    Attributes:
        out: folder to write the report into (created if missing; a leading ``~`` is
            expanded, see :attr:`out_dir`); must not be empty.
        quick: a reduced run (fewer MDPs, coarser grids) for tests and smoke checks; the
            note's four claims are computed in full either way.
        seed: root seed of the random MDPs and data sets, a non-negative integer.
    """

    out: Path | str = Path("report")
    quick: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.out, (str, os.PathLike)):
            raise ValueError(f"out must be a folder path; got {self.out!r}.")
        if not os.fspath(self.out).strip():
            raise ValueError("--out is empty; pass a folder path, e.g. --out report.")
        if not isinstance(self.quick, (bool, np.bool_)):
            raise ValueError(f"quick must be True or False; got {self.quick!r}.")
        if (
            isinstance(self.seed, (bool, np.bool_))
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise ValueError(
                f"--seed must be a non-negative integer (numpy seeds cannot be negative); "
                f"got {self.seed!r}."
            )

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
        claims: every checked claim, note's first.
        runtime_s: wall-clock seconds of the whole run.
        out: the report folder.
        files: paths written.
    """

    claims: tuple[Claim, ...]
    runtime_s: float
    out: Path
    files: tuple[Path, ...]


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Validate (and create) the report folder, raising ReportPathError with a fix.

    Checks up front what would otherwise fail only after the computation: an empty path, a
    path that is an existing file, a folder that cannot be created or written, a folder that
    holds anything but an earlier report (which a new run replaces), and an output name (e.g.
    ``REPORT.md``) taken by a folder. A leading ``~`` is expanded.

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
    others = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ReportPathError(
            f"--out {out} already holds files that are not an sbil report ({shown}); the report "
            "would be mixed with them. Pass a new or empty folder, e.g. --out report."
        )
    for name in REPORT_FILES:
        if (out / name).is_dir():
            raise ReportPathError(
                f"{out / name} is a folder, but the report writes a file there; move it away "
                "or pass another --out."
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


# --------------------------------------------------------------------------------------
# Beyond the note: results as claims
# --------------------------------------------------------------------------------------


def flip_regions(landing: LandingResult) -> list[dict[str, Any]]:
    """Connected regions of the grid where EDM's limiting policy flips, largest first.

    Grid points are neighbours when adjacent in d_E(s1) or in k (4-connectivity).

    Returns:
        One dict per region: n_points, k_min, k_max, d1_min, d1_max (its bounding box),
        theta_min (most negative theta* in it), and d1_max_by_k (for each k in the region,
        the largest flipping d_E(s1), as [k, d1] pairs).
    """
    flips = landing.flips & landing.converged
    labels, n = scipy.ndimage.label(flips)
    regions = []
    for r in range(1, n + 1):
        j, i = np.nonzero(labels == r)
        ks = landing.k[j]
        regions.append(
            {
                "n_points": int(j.size),
                "k_min": float(ks.min()),
                "k_max": float(ks.max()),
                "d1_min": float(landing.d1[i].min()),
                "d1_max": float(landing.d1[i].max()),
                "theta_min": float(np.min(landing.theta[j, i])),
                "d1_max_by_k": [
                    [float(landing.k[jj]), float(landing.d1[i[j == jj]].max())]
                    for jj in np.unique(j)
                ],
            }
        )
    return sorted(regions, key=lambda reg: -reg["n_points"])


def landing_claims(
    landing: LandingResult,
    *,
    headline_k: float = 0.5,
    tolerance: float = 1e-6,
    away_band: float = 0.02,
) -> list[Claim]:
    """Claims from the landing study: the consistent set and policy flips.

    Args:
        landing: the landing study.
        headline_k: the k whose consistent d_E(s1) is the headline.
        tolerance: agreement tolerance on parameters and probabilities.
        away_band: grid points within this distance in d_E(s1) of the consistent set are left
            out when reporting EDM's smallest error "away from the set" (next to the set the
            error goes to 0 continuously, so any band gives a different minimum).
    """
    j = int(np.argmin(np.abs(landing.k - headline_k)))
    k = float(landing.k[j])
    q_star = float(landing.consistent_d1[j])
    p_s1 = edm_state_model_s1(k, theta_expert=landing.theta_expert, convention=landing.convention)
    # Fit EDM exactly at the consistent d_E(s1): it must return the expert.
    at_star = edm_landing(
        [q_star], [k], theta_expert=landing.theta_expert, convention=landing.convention
    )
    theta_at_star = float(at_star.theta[0, 0])
    ok_set = (
        abs(q_star - p_s1) <= tolerance and abs(theta_at_star - landing.theta_expert) <= tolerance
    )
    # Away from the consistent set EDM's limit must differ from the expert.
    away = np.abs(landing.d1[None, :] - landing.consistent_d1[:, None]) > away_band
    away &= np.abs(landing.k - 1.0)[:, None] > 1e-9
    min_err_away = float(np.nanmin(np.where(away, landing.error, np.nan)))
    k1 = np.abs(landing.k - 1.0) <= 1e-9
    max_err_k1 = float(np.nanmax(landing.error[k1])) if k1.any() else float("nan")
    consistent_claim = Claim(
        id="edm_consistent_set",
        description=(
            "In the Example 3 class (expert theta_E = 1), EDM's infinite-data limit equals the "
            "expert only when the expert's state distribution equals EDM's own state model, "
            f"d_E(s1) = p_theta_E(s1); at k = {k:g} that is d_E(s1) = {q_star:.4f}."
        ),
        note_value=None,
        sbil_value=q_star,
        agrees=bool(ok_set and min_err_away > tolerance),
        tolerance=tolerance,
        expectation=(
            "the root of EDM's gradient at the expert equals p_theta_E(s1) (moment matching), "
            "fit_edm at that d_E(s1) returns theta_E, and the limit differs from theta_E "
            "everywhere on the grid away from that set (k != 1)"
        ),
        details={
            "k": k,
            "p_theta_expert_s1": p_s1,
            "edm_limit_at_consistent_d1": theta_at_star,
            "min_error_away_from_set": min_err_away,
            "away_band_d1": away_band,
            "max_error_at_k_equal_1": max_err_k1,
            "n_grid_points": int(landing.theta.size),
            "n_not_converged": int((~landing.converged).sum()),
        },
    )
    flips = landing.flips & landing.converged
    frac = float(flips.mean())
    regions = flip_regions(landing)
    flip_claim = Claim(
        id="edm_policy_flip",
        description=(
            "EDM's limiting policy prefers the other action from the expert (sign of theta* "
            "opposite to theta_E) on part of the (d_E(s1), k) grid."
        ),
        note_value=None,
        sbil_value=frac,
        agrees=bool(frac > 0),
        tolerance=0.0,
        expectation="fraction of grid points where sign(theta*) = -sign(theta_E) is above 0",
        details={
            "n_grid_points": int(flips.size),
            "n_flips": int(flips.sum()),
            "regions": regions,
            "flips_for_positive_k": bool(flips[landing.k > 0].any()),
            "min_theta_star": float(np.nanmin(landing.theta)),
            "max_theta_star": float(np.nanmax(landing.theta)),
        },
    )
    return [consistent_claim, flip_claim]


def consistency_claims(
    result: ConsistencyResult,
    summary: Any,
    oracle_summary: Any = None,
    *,
    max_bc_slope: float = -0.3,
) -> list[Claim]:
    """Claims from the consistency study (BC consistent, EDM not, oracle, one-hot).

    Args:
        result: the consistency study.
        summary: :func:`summarise` of ``result``.
        oracle_summary: :func:`summarise` of :func:`oracle_subset` of ``result`` (the oracle's
            finite-data comparison), or None.
        max_bc_slope: BC's fitted log-log slope of error against N must be below this for
            "its error shrinks with N" (the parametric rate is -1/2).
    """
    cfg = result.config
    tol = cfg.limit_tolerance
    lim = limits(result)
    random = inconsistency_summary(result, "random")
    ex3 = inconsistency_summary(result, "example3")
    bc_lim = lim[lim["method"] == "bc"]
    bc_max = float(bc_lim["error"].max())
    smallest = min(cfg.sizes)
    first = summary[
        (summary["n_samples"] == smallest)
        & (summary["method"] == "bc")
        & (summary["problem"] == "random")
    ]
    slopes = {kind: error_slope(summary, kind, "bc") for kind in ("random", "example3")}
    claims = [
        Claim(
            id="bc_consistent",
            description=(
                "BC is consistent: with infinite data (the exact d_E) its estimate equals the "
                "expert's theta_E on every problem, and its error shrinks with N."
            ),
            note_value=None,
            sbil_value=bc_max,
            agrees=bool(
                bc_max <= tol
                and random["bc"]["n_no_minimiser"] == 0
                and all(slope < max_bc_slope for slope in slopes.values())
            ),
            tolerance=tol,
            expectation=(
                "max over problems of ||theta_BC(d_E) - theta_E|| <= tolerance, and the "
                "least-squares slope of log IQM error against log N (N >= 1000) is below "
                f"{max_bc_slope:g} on the random MDPs and on the Example 3 MDP"
            ),
            details={
                "n_problems": len(bc_lim),
                "log_log_slope_random": slopes["random"],
                "log_log_slope_example3": slopes["example3"],
                "max_slope_allowed": max_bc_slope,
                "no_minimiser_at_smallest_n_random": int(first["n_no_minimiser"].sum())
                if len(first)
                else 0,
                "fits_at_smallest_n_random": int(first["n_fits"].sum()) if len(first) else 0,
            },
        )
    ]
    edm = random["edm"]
    claims.append(
        Claim(
            id="edm_inconsistent_fraction",
            description=(
                f"Fraction of {edm['n_problems']} random MDPs with shared features (realisable "
                "expert) on which EDM's infinite-data limit differs from the expert."
            ),
            note_value=None,
            sbil_value=edm["fraction_inconsistent"],
            agrees=bool(edm["fraction_inconsistent"] > 0),
            tolerance=tol,
            expectation=(
                "the note says EDM can be inconsistent with infinite data: the fraction with "
                "||theta_EDM(d_E) - theta_E|| > tolerance is above 0"
            ),
            details={
                "n_inconsistent": edm["n_inconsistent"],
                "n_no_minimiser": edm["n_no_minimiser"],
                "fraction_ci95": edm["fraction_ci95"],
                "error_quantiles_min_q1_median_q3_max": edm["error_quantiles"],
                "policy_tv_quantiles": edm["policy_tv_quantiles"],
                "example3_edm_limit_error": ex3["edm"]["error_quantiles"][2]
                if ex3["edm"]["error_quantiles"]
                else None,
            },
        )
    )
    claims.append(
        Claim(
            id="edm_visitation_gap",
            description=(
                "EDM's limiting policy does not reproduce the expert's visitation: median TV "
                "between its true d_pi(s, a) and d_E(s, a) on the random MDPs."
            ),
            note_value=None,
            sbil_value=edm["visitation_tv_quantiles"][2]
            if edm["visitation_tv_quantiles"]
            else float("nan"),
            agrees=bool(edm["visitation_tv_quantiles"] and edm["visitation_tv_quantiles"][2] > tol),
            tolerance=tol,
            expectation="median TV(d_pi_EDM, d_E) above tolerance while BC's is ~0",
            details={
                "edm_visitation_tv_quantiles": edm["visitation_tv_quantiles"],
                "bc_visitation_tv_quantiles": random["bc"]["visitation_tv_quantiles"],
                "edm_kl_quantiles": edm["kl_quantiles"],
            },
        )
    )
    if "oracle" in random:
        orc = random["oracle"]
        err_q = orc["error_quantiles"]
        ex3_lim = lim[lim["problem"] == "example3"].set_index("method")
        ex3_oracle_err = (
            float(ex3_lim.loc["oracle", "error"]) if "oracle" in ex3_lim.index else None
        )
        finite = _oracle_finite_table(oracle_summary) if oracle_summary is not None else {}
        ok = bool(
            err_q
            and err_q[-1] <= tol
            and orc["n_no_minimiser"] == 0
            and orc["n_other_failures"] == 0
            and ex3_oracle_err is not None
            and ex3_oracle_err <= tol
        )
        claims.append(
            Claim(
                id="oracle_recovers_expert",
                description=(
                    "Occupancy matching with known dynamics (minimising KL(d_E || d_pi_theta), "
                    "the objective EDM approximates) recovers the expert with infinite data, "
                    f"like BC and unlike EDM, on {orc['n_problems']} random MDPs and the "
                    "Example 3 MDP."
                ),
                note_value=None,
                sbil_value=err_q[-1] if err_q else float("nan"),
                agrees=ok,
                tolerance=tol,
                expectation=(
                    "max ||theta_oracle(d_E) - theta_E|| <= tolerance on those random MDPs and "
                    "on the Example 3 MDP, every fit converged (the expert is realisable)"
                ),
                details={
                    "n_problems": orc["n_problems"],
                    "n_no_minimiser": orc["n_no_minimiser"],
                    "n_other_failures": orc["n_other_failures"],
                    "visitation_tv_quantiles": orc["visitation_tv_quantiles"],
                    "edm_error_quantiles_same_mdps": _subset_quantiles(
                        lim, "edm", orc["n_problems"]
                    ),
                    "example3_limit_error_by_method": {
                        m: float(ex3_lim.loc[m, "error"]) for m in ex3_lim.index
                    },
                    "example3_oracle_error": ex3_oracle_err,
                    "finite_data_n_mdps": cfg.n_oracle,
                    "finite_data_n_seeds": cfg.oracle_seeds,
                    "finite_data_n_seeds_example3": cfg.n_seeds_example3,
                    "finite_data_slope_random": error_slope(oracle_summary, "random", "oracle")
                    if oracle_summary is not None
                    else None,
                    "finite_data_iqm_by_n": finite,
                    "finite_data_slope_random_bc_same_data": error_slope(
                        oracle_summary, "random", "bc"
                    )
                    if oracle_summary is not None
                    else None,
                    "finite_data_failures_by_status": _oracle_failures(result),
                    "finite_data_smallest_n_max_converged_error": _oracle_worst(result),
                },
            )
        )
    if not result.tabular.empty:
        tab = result.tabular
        both = tab["converged_bc"] & tab["converged_edm"]
        diff = float(tab["max_policy_diff"].max()) if both.any() else float("nan")
        claims.append(
            Claim(
                id="tabular_edm_equals_bc",
                description=(
                    "With fully tabular (one-hot) features EDM's and BC's infinite-data policies "
                    f"coincide (both equal d_E(a|s)), on {len(tab)} random MDPs."
                ),
                note_value=None,
                sbil_value=diff,
                agrees=bool(both.all() and diff <= 1e-8),
                tolerance=1e-8,
                expectation="max |pi_BC - pi_EDM| <= tolerance on every MDP, all fits converged",
                details={
                    "n_problems": len(tab),
                    "n_not_converged": int((~both).sum()),
                    "max_policy_tv_to_expert_bc": float(tab["policy_tv_bc"].max()),
                    "max_policy_tv_to_expert_edm": float(tab["policy_tv_edm"].max()),
                },
            )
        )
    return claims


def _oracle_finite_rows(result: ConsistencyResult) -> Any:
    rows = result.rows
    return rows[(rows["method"] == "oracle") & np.isfinite(rows["n_samples"])]


def _oracle_failures(result: ConsistencyResult) -> dict[str, int]:
    """Counts of the oracle's finite-data fits that did not converge, by status."""
    rows = _oracle_finite_rows(result)
    return {str(k): int(v) for k, v in rows[~rows["converged"]]["status"].value_counts().items()}


def _oracle_worst(result: ConsistencyResult) -> float | None:
    """Largest error among the oracle's converged fits at the smallest N (random MDPs)."""
    rows = _oracle_finite_rows(result)
    rows = rows[(rows["problem"] == "random") & rows["converged"]]
    if rows.empty:
        return None
    return float(rows[rows["n_samples"] == rows["n_samples"].min()]["error"].max())


def _oracle_finite_table(oracle_summary: Any) -> dict[str, Any]:
    """IQM error per (problem kind, method, N) on the oracle's subset, JSON-ready."""
    out: dict[str, Any] = {}
    for kind in ("random", "example3"):
        s = oracle_summary[oracle_summary["problem"] == kind]
        out[kind] = {
            method: {
                str(int(r["n_samples"])): {
                    "iqm": float(r["iqm"]),
                    "n_fits": int(r["n_fits"]),
                    "n_failed": int(r["n_no_minimiser"] + r["n_other_failures"]),
                }
                for _, r in s[s["method"] == method].sort_values("n_samples").iterrows()
            }
            for method in ("bc", "edm", "oracle")
        }
    return out


def _subset_quantiles(lim: Any, method: str, n: int) -> list[float]:
    m = lim[(lim["problem"] == "random") & (lim["method"] == method) & (lim["problem_id"] < n)]
    err = m["error"].to_numpy()
    err = err[np.isfinite(err)]
    return [float(x) for x in np.quantile(err, [0.0, 0.5, 1.0])] if err.size else []


# --------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------


def run_reproduce(config: ReproduceConfig, progress: Progress | None = None) -> ReproduceResult:
    """Compute every claim and study, write the report folder, return what was done.

    Args:
        config: where to write and how much to compute.
        progress: optional callback receiving a short description of each stage.

    Returns:
        ReproduceResult.

    Raises:
        ReportPathError: if ``config.out`` cannot be used as a folder or a file in it cannot
            be written.
    """
    from sbil.experiments.plots import plot_consistency, plot_landing, plot_limits
    from sbil.experiments.report import render_report

    say = progress or (lambda _msg: None)
    out = check_out_dir(config.out_dir)
    start = time.perf_counter()
    say("note's claims: examples 1-3, theorem 1")
    note_claims = all_note_claims()
    say("where EDM lands (Example 3 class)")
    d1_grid, k_grid = config.landing_grid
    landing = edm_landing(d1_grid, k_grid)
    beyond = landing_claims(landing)
    say("consistency study")
    study = run_consistency(config.consistency, progress=lambda m: say(f"consistency study: {m}"))
    say("statistics")
    summary = summarise(study, seed=config.seed)
    oracle_rows = oracle_subset(study)
    oracle_summary = None if oracle_rows.rows.empty else summarise(oracle_rows, seed=config.seed)
    beyond += consistency_claims(study, summary, oracle_summary)
    claims = tuple(note_claims + beyond)
    say("figures")
    files = []
    limit_rows = limits(study)
    figures = {
        "landing.png": plot_landing(landing),
        "consistency.png": plot_consistency(summary, limit_rows),
        "limits.png": plot_limits(limit_rows),
    }
    for name, fig in figures.items():
        with report_write(out / name) as path:
            files.append(save_figure_atomic(fig, path, dpi=110))
    say("tables and report")
    tables = {"consistency.csv": study.rows, "consistency_summary.csv": summary}
    if not study.tabular.empty:
        tables["tabular_onehot.csv"] = study.tabular
    for name, table in tables.items():
        with report_write(out / name) as path:
            files.append(write_csv_atomic(table, path))
    runtime = time.perf_counter() - start
    meta = {
        "command": "sbil reproduce" + (" --quick" if config.quick else ""),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": git_commit(),
        "runtime_s": round(runtime, 2),
        "config": {
            "quick": config.quick,
            "seed": config.seed,
            "consistency": asdict(config.consistency),
            "landing": {
                "n_d1": len(d1_grid),
                "n_k": len(k_grid),
                "theta_expert": landing.theta_expert,
            },
        },
    }
    markdown = render_report(
        claims=claims,
        landing=landing,
        study=study,
        summary=summary,
        oracle_summary=oracle_summary,
        meta=meta,
        figures=tuple(figures),
    )
    with report_write(out / "REPORT.md") as path:
        files.append(write_text_atomic(path, markdown))
    results = {**meta, "claims": [c.to_dict() for c in claims]}
    with report_write(out / "results.json") as path:
        files.append(write_json_atomic(path, _json_safe(results)))
    return ReproduceResult(
        claims=claims, runtime_s=time.perf_counter() - start, out=out, files=tuple(files)
    )


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value

"""The section of the claims beyond the note: its prose, tables and figure links.

Part of :mod:`sbil.experiments.claims_beyond`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from sbil.experiments.claims import Claim, ClaimSection, fmt, table
from sbil.experiments.claims_beyond.oracle import _oracle_table
from sbil.experiments.consistency import (
    ConsistencyResult,
    inconsistency_summary,
    limits,
)
from sbil.experiments.landing import LandingResult


def _summary_table(summary: pd.DataFrame, problem: str) -> str:
    s = summary[summary["problem"] == problem]
    rows = []
    for n in sorted(set(s["n_samples"])):
        row = [f"{int(n):,}"]
        for method in ("bc", "edm"):
            r = s[(s["n_samples"] == n) & (s["method"] == method)]
            if r.empty:
                row += ["—", "—"]
                continue
            r = r.iloc[0]
            row.append(f"{fmt(r['iqm'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]")
            failed = f" (+{int(r['n_other_failures'])} failed)" if r["n_other_failures"] else ""
            row.append(f"{int(r['n_no_minimiser'])}/{int(r['n_fits'])}{failed}")
        rows.append(row)
    return table(
        [
            "N",
            "BC IQM error [95% CI]",
            "BC no minimiser",
            "EDM IQM error [95% CI]",
            "EDM no minimiser",
        ],
        rows,
    )


def _limits_table(study: ConsistencyResult) -> str:
    rnd = inconsistency_summary(study, "random")
    rows = []
    for method in ("bc", "edm", "oracle"):
        if method not in rnd:
            continue
        m = rnd[method]
        q = m["error_quantiles"]
        v = m["visitation_tv_quantiles"]
        rows.append(
            [
                method,
                str(m["n_problems"]),
                str(m["n_no_minimiser"]),
                f"{m['n_inconsistent']} ({fmt(m['fraction_inconsistent'], 3)})",
                fmt(q[2]) if q else "—",
                fmt(q[4]) if q else "—",
                fmt(v[2]) if v else "—",
                fmt(m["policy_tv_quantiles"][2]) if m["policy_tv_quantiles"] else "—",
            ]
        )
    return table(
        [
            "method",
            "MDPs",
            "no minimiser",
            "inconsistent",
            "median error",
            "max error",
            "median TV(d_pi, d_E)",
            "median policy TV",
        ],
        rows,
    )


def _by_id(claims: Sequence[Claim]) -> dict[str, Claim]:
    return {c.id: c for c in claims}


def beyond_section(
    *,
    landing: LandingResult,
    study: ConsistencyResult,
    summary: pd.DataFrame,
    oracle_summary: pd.DataFrame | None,
    claims: Sequence[Claim],
    files: Sequence[str],
) -> ClaimSection:
    """The report's "Beyond the note" section: prose, tables, figure links and claims.

    Args:
        landing: the landing study.
        study: the consistency study.
        summary: its :func:`~sbil.experiments.consistency.summarise`.
        oracle_summary: ``summarise`` of its oracle subset, or None.
        claims: :func:`landing_claims`, :func:`consistency_claims` and
            :func:`per_state_shift_claim`, computed from the same studies.
        files: the figures and tables written for it (landing.png, consistency.png,
            limits.png, the CSVs).
    """
    cfg = study.config
    by_id = _by_id(claims)
    blocks: list[str | Claim] = [
        "### Where EDM lands",
        f"The Example 3 class with the expert theta_E = {landing.theta_expert:g}: the next "
        "state is s1 with probability q whatever the state and action, so the expert visits s1 "
        "with probability d_E(s1) = q. EDM's infinite-data limit theta* was fitted on a grid of "
        f"{landing.d1.size} values of d_E(s1) times {landing.k.size} values of k "
        f"({int((~landing.converged).sum())} fits without a finite minimiser). With the "
        "reference convention EDM's objective is the likelihood of the joint softmax "
        "p(s, a) ∝ exp f(s, a), so theta* matches feature moments: E_p[Phi] = E_{d_E}[Phi].",
        "![EDM's limit](landing.png)",
    ]
    blocks += [by_id[c] for c in ("edm_consistent_set", "edm_policy_flip") if c in by_id]
    lim = limits(study)
    blocks += [
        "### Consistency: error against data size",
        f"Problems: the Example 3 MDP of Theorem 1 (k = 1/2, theta_E = 1, "
        f"{cfg.n_seeds_example3} data sets per N) and {cfg.n_mdps} random MDPs with "
        f"|S| = {cfg.n_states}, |A| = {cfg.n_actions} and {cfg.n_params} random features shared "
        f"across states; the expert is a random theta_E ~ N(0, {cfg.theta_scale:g}²) in the same "
        f"class, so BC is realisable ({cfg.n_seeds} data sets per MDP and N). The expert's data "
        "distribution d_E(s, a) is its exact visitation; **a data set of size N is N iid "
        "draws of (s, a) pairs from d_E (multinomial counts), not sampled trajectories**, so "
        "finite-sample errors are those of iid data. “Infinite data” means fitting on d_E "
        f"itself. Errors are ||theta_hat − theta_E||_2; a limit counts as inconsistent if its "
        f"error exceeds {fmt(cfg.limit_tolerance)}. Aggregates are interquartile means with 95% "
        "stratified-bootstrap intervals (MDPs as strata, data seeds as runs). A fit with no "
        "finite minimiser counts as infinite error (so the IQM is ∞ once more than a quarter of "
        "fits have none); the tables count them. `consistency.csv` holds one tidy row per "
        f"problem, method, N and seed, with config and commit ({len(study.rows)} rows, "
        f"{len(lim)} of them infinite-data limits); `consistency_summary.csv` the IQMs and "
        "intervals.",
        "![consistency](consistency.png)",
        "Random MDPs:",
        _summary_table(summary, "random"),
        "Example 3 MDP:",
        _summary_table(summary, "example3"),
    ]
    blocks += [
        by_id[c]
        for c in ("bc_consistent", "edm_inconsistent_fraction", "edm_visitation_gap")
        if c in by_id
    ]
    blocks += [
        "![limits](limits.png)",
        "Infinite-data limits on the random MDPs (medians over MDPs):",
        _limits_table(study),
    ]
    if "oracle_recovers_expert" in by_id:
        blocks += ["### The oracle EDM approximates", by_id["oracle_recovers_expert"]]
        if oracle_summary is not None and not oracle_summary.empty:
            for kind, label in (("random", "random MDPs"), ("example3", "Example 3 MDP")):
                if kind in set(oracle_summary["problem"]):
                    blocks += [
                        f"Same data sets, {label} (IQM error [95% CI]; fits without a finite "
                        "minimiser or otherwise failed / fits):",
                        _oracle_table(oracle_summary, kind),
                    ]
    shift = [by_id[c] for c in ("tabular_edm_equals_bc", "edm_per_state_shift") if c in by_id]
    if shift:
        blocks += ["### What makes EDM consistent: a per-state shift", *shift]
        if "tabular_edm_equals_bc" in by_id:
            blocks.append("`tabular_onehot.csv` holds the one-hot comparison, one row per MDP.")
    caveats = (
        "Data sets are iid (s, a) draws from the expert's exact (stationary) visitation, not "
        "trajectories. Trajectories of finite length T started from rho0 would add "
        "within-episode correlation and, more importantly, estimate the T-step average "
        "visitation from rho0 rather than the stationary d_E: BC's limit would still be "
        "theta_E (the expert is realisable and BC is consistent under any state weighting), "
        "but EDM's limit, which depends on the state distribution, would be the one for that "
        "T-step visitation, not the one reported here.",
        "Random MDPs have dense Dirichlet(1) transition rows (every next state reachable) and "
        "are analysed under their stationary distribution. Occupancy matching (one fit at a "
        "time, not batched) ran on a subset: the first "
        f"{cfg.n_oracle} random MDPs with infinite data and with the first {cfg.oracle_seeds} "
        f"of the {cfg.n_seeds} data sets per N, and the Example 3 MDP with all "
        f"{cfg.n_seeds_example3} data sets per N; the one-hot comparison used "
        f"{cfg.n_tabular} MDPs.",
        "BC and EDM are fitted by Newton's method on the exact objectives to gradient norm "
        "1e-10; the oracle by L-BFGS-B finished with Newton steps (Hessian by central "
        "differences of the exact gradient) to gradient norm 1e-8, whatever L-BFGS-B's own "
        "stopping reason; “no finite minimiser” is the estimator's own diagnosis (gradient "
        "vanishing while Newton steps stay large).",
        "EDM's state term is computed exactly here; the published method estimates its "
        "gradient with SGLD samples. These are the limits of the objective EDM optimises, "
        "free of sampling error.",
    )
    return ClaimSection(
        id="beyond",
        title="Beyond the note",
        blocks=tuple(blocks),
        files=tuple(files),
        caveats=caveats,
        claim_style="paragraph",
    )

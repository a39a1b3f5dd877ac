"""Where EDM lands: the regions where its policy flips, and their claims.

Part of :mod:`sbil.experiments.claims_beyond`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.ndimage

from sbil.experiments.claims import Claim, fmt
from sbil.experiments.landing import LandingResult, edm_landing, edm_state_model_s1


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


def describe_region(r: dict[str, Any]) -> str:
    """One flip region in words: a single point, or its extent in k and d_E(s1)."""
    if r["n_points"] == 1:
        return (
            f"a single grid point at k = {r['k_min']:g}, d_E(s1) = {fmt(r['d1_min'], 2)} "
            f"(theta* = {fmt(r['theta_min'], 4)})"
        )
    edge = r["d1_max_by_k"]
    widest = max(edge, key=lambda kd: kd[1])
    return (
        f"{r['n_points']} points with k from {r['k_min']:g} to {r['k_max']:g} and d_E(s1) "
        f"from {fmt(r['d1_min'], 2)} up to at most {fmt(widest[1], 2)} (reached at "
        f"k = {widest[0]:g}; at k = {edge[0][0]:g} up to {fmt(edge[0][1], 2)}, at "
        f"k = {edge[-1][0]:g} up to {fmt(edge[-1][1], 2)}), theta* down to "
        f"{fmt(r['theta_min'], 4)}"
    )


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
        title=(
            "In the Example 3 class (expert theta_E = 1), EDM's infinite-data limit equals the "
            "expert only when the expert's state distribution equals EDM's own state model, "
            f"d_E(s1) = p_theta_E(s1); at k = {k:g} that is d_E(s1) = {q_star:.4f}."
        ),
        value=q_star,
        agrees=bool(ok_set and min_err_away > tolerance),
        tolerance=tolerance,
        check=(
            "the root of EDM's gradient at the expert equals p_theta_E(s1) (moment matching), "
            "fit_edm at that d_E(s1) returns theta_E, and the limit differs from theta_E "
            "everywhere on the grid away from that set (k != 1)"
        ),
        text=(
            "EDM recovers the expert only if the expert happens to visit s1 with probability "
            f"{fmt(q_star)} (at k = {k:g}), which is exactly EDM's own state model at the "
            f"expert, p_theta_E(s1) = {fmt(p_s1)} — the moment-matching condition of the joint "
            f"softmax. Fitting EDM at that d_E gives theta = {fmt(theta_at_star, 8)}. Elsewhere "
            f"on the grid — more than {fmt(away_band, 2)} in d_E(s1) from that curve, and "
            f"k ≠ 1 — its limit is at least {fmt(min_err_away)} from the expert (closer to the "
            "curve the error falls continuously to 0, so this bound depends on the band). At "
            "k = 1 the two states share one logit pattern, the state term's gradient vanishes "
            f"and EDM is consistent for every d_E (largest error {fmt(max_err_k1)})."
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
        figures=("landing.png",),
    )
    flips = landing.flips & landing.converged
    frac = float(flips.mean())
    regions = flip_regions(landing)
    if not regions:
        where = "This never happens on the grid."
    else:
        where = (
            f"The flips form {len(regions)} connected region{'s' if len(regions) > 1 else ''} "
            "of the grid: " + "; ".join(describe_region(r) for r in regions) + "."
        )
    d1_range = (float(landing.d1.min()), float(landing.d1.max()))
    k_range = (float(landing.k.min()), float(landing.k.max()))
    flip_claim = Claim(
        id="edm_policy_flip",
        title=(
            "EDM's limiting policy prefers the other action from the expert (sign of theta* "
            "opposite to theta_E) on part of the (d_E(s1), k) grid."
        ),
        value=frac,
        agrees=bool(frac > 0),
        tolerance=0.0,
        check="fraction of grid points where sign(theta*) = -sign(theta_E) is above 0",
        text=(
            f"On {fmt(100 * frac, 1)}% of the (d_E(s1), k) grid ({int(flips.sum())} of "
            f"{flips.size} points) EDM's infinite-data policy prefers the action the expert "
            f"avoids (theta* < 0 while theta_E = {landing.theta_expert:g}). {where} The "
            "fraction is that of this grid, d_E(s1) from "
            f"{fmt(d1_range[0], 2)} to {fmt(d1_range[1], 2)} and k from {k_range[0]:g} to "
            f"{k_range[1]:g}: it depends on those ranges (a wider range of k would change it); "
            "the regions above are what does not."
        ),
        details={
            "n_grid_points": int(flips.size),
            "n_flips": int(flips.sum()),
            "regions": regions,
            "flips_for_positive_k": bool(flips[landing.k > 0].any()),
            "min_theta_star": float(np.nanmin(landing.theta)),
            "max_theta_star": float(np.nanmax(landing.theta)),
            "d1_range": list(d1_range),
            "k_range": list(k_range),
        },
        figures=("landing.png",),
    )
    return [consistent_claim, flip_claim]

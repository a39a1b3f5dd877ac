"""Tests for sbil.experiments.claims_beyond: the results beyond the note, each against numbers
computed independently here (on the shared small consistency study, conftest.py)."""

import math

import numpy as np
import pytest

from sbil.experiments import claims_beyond as beyond
from sbil.experiments import claims_note as note
from sbil.experiments import consistency as cs
from sbil.experiments.claims import fmt
from sbil.experiments.landing import LandingResult, edm_landing


def _landing_with_two_flip_regions() -> LandingResult:
    theta = np.ones((3, 4))
    theta[0, :2] = theta[1, :2] = -0.5
    theta[2, 3] = -0.01
    return LandingResult(
        d1=np.array([0.1, 0.2, 0.5, 0.9]),
        k=np.array([-1.0, 0.0, 2.0]),
        theta=theta,
        converged=np.ones((3, 4), dtype=bool),
        consistent_d1=np.array([0.3, 0.4, np.nan]),
        theta_expert=1.0,
        convention="reference",
    )


def test_flip_regions_are_described_from_the_data():
    flip = beyond.landing_claims(_landing_with_two_flip_regions(), headline_k=0.0)[1]
    regions = flip.details["regions"]
    assert [r["n_points"] for r in regions] == [4, 1]
    assert regions[0]["k_min"] == -1.0 and regions[0]["k_max"] == 0.0
    assert regions[0]["d1_max"] == 0.2
    assert "2 connected regions" in flip.text
    assert "a single grid point at k = 2, d_E(s1) = 0.90 (theta* = -0.0100)" in flip.text
    assert "k from -1 to 0" in flip.text
    assert flip.value == pytest.approx(5 / 12)


def test_flip_fraction_says_it_depends_on_the_grid():
    landing = edm_landing([0.05, 0.2, 0.5, 0.8], [-1.0, 0.5, 1.0, 2.0])
    flip = beyond.landing_claims(landing)[1]
    assert "d_E(s1) from 0.05 to 0.80 and k from -1 to 2: it depends on those ranges" in flip.text
    assert flip.details["k_range"] == [-1.0, 2.0]


@pytest.fixture(scope="module")
def study_claims(small_study):
    summary = cs.summarise(small_study, n_resamples=100)
    oracle_summary = cs.summarise(cs.oracle_subset(small_study), n_resamples=100)
    return {
        c.id: c
        for c in beyond.consistency_claims(small_study, summary, oracle_summary, n_resamples=200)
    }


def test_bc_slope_has_a_bootstrap_interval(study_claims, small_study):
    c = study_claims["bc_consistent"]
    assert c.agrees
    d = c.details
    for kind in ("random", "example3"):
        low, high = d[f"log_log_slope_{kind}_ci95"]
        assert low <= d[f"log_log_slope_{kind}"] <= high
        expected = cs.error_slope_interval(small_study, kind, "bc", n_resamples=200, seed=7)
        assert [low, high] == [expected.low, expected.high]
    low, high = d["log_log_slope_random_ci95"]
    assert f"[95% CI {fmt(low, 2)}, {fmt(high, 2)}]" in c.text


def test_oracle_headline_is_over_every_fit(study_claims, small_study):
    c = study_claims["oracle_recovers_expert"]
    assert c.agrees
    lim = cs.limits(small_study)
    oracle = lim[(lim["method"] == "oracle") & (lim["problem"] == "random")]
    assert c.value == oracle["error"].max()
    # One failed limit fit: the headline becomes infinite and the verdict flips.
    rows = small_study.rows.copy()
    failed = rows.index[
        (rows["method"] == "oracle")
        & (rows["problem"] == "random")
        & ~np.isfinite(rows["n_samples"])
    ][0]
    rows.loc[failed, ["converged", "status", "error"]] = [False, "line search failed", np.inf]
    broken = cs.ConsistencyResult(config=small_study.config, rows=rows, tabular=small_study.tabular)
    summary = cs.summarise(broken, n_resamples=50)
    bad = {c.id: c for c in beyond.consistency_claims(broken, summary, None, n_resamples=50)}
    assert bad["oracle_recovers_expert"].value == np.inf
    assert not bad["oracle_recovers_expert"].agrees


def test_one_hot_wording_names_the_shift_not_shared_parameters(study_claims):
    c = study_claims["tabular_edm_equals_bc"]
    assert c.agrees
    assert "needs parameters shared across states" not in c.text
    assert "free per-state shift of the logits" in c.text


def test_per_state_class_is_not_consistent_the_shift_is(small_config):
    c = beyond.per_state_shift_claim(small_config)
    assert c.agrees
    d = c.details
    # EDM matches one moment per parameter: p(s, 1) = d_E(s, 1) in both states, and on
    # Theorem 1's MDP those are equal (flow balance), so theta1 = theta2 = log(2m / (1 - 2m)).
    s1 = d["d_E_s1"]
    m = s1 / (1 + math.exp(-1.0))
    t = math.log(2 * m / (1 - 2 * m))
    np.testing.assert_allclose(d["per_state_edm_limit"], [t, t], atol=1e-9)
    assert c.value == pytest.approx(math.hypot(t - 1.0, t - 0.5), abs=1e-9)
    assert c.value > 0.1
    assert d["per_state_with_shift_max_policy_diff"] <= 1e-10
    assert d["example3_with_shift_max_policy_diff"] <= 1e-10
    assert d["random_mdps_with_shift_n"] == small_config.n_mdps
    assert d["random_mdps_with_shift_max_policy_diff"] <= 1e-8
    assert d["random_mdps_with_shift_max_theta_error"] <= 1e-6


def test_beyond_section_places_every_claim_and_figure(small_study, study_claims):
    landing = edm_landing([0.05, 0.2, 0.5, 0.8], [-1.0, 0.5, 1.0, 2.0])
    claims = [*beyond.landing_claims(landing), *study_claims.values()]
    section = beyond.beyond_section(
        landing=landing,
        study=small_study,
        summary=cs.summarise(small_study, n_resamples=50),
        oracle_summary=cs.summarise(cs.oracle_subset(small_study), n_resamples=50),
        claims=claims,
        files=["landing.png", "consistency.png", "limits.png"],
    )
    assert [c.id for c in section.claims] == [c.id for c in claims]
    text = "\n".join(b for b in section.blocks if isinstance(b, str))
    for name in ("landing.png", "consistency.png", "limits.png"):
        assert f"]({name})" in text
    assert "occupancy matching (oracle)" in text
    assert any("iid" in c and "draws" in c for c in section.blocks if isinstance(c, str))
    assert len(section.caveats) == 4


def test_no_claim_text_is_empty_or_keyed_elsewhere(study_claims):
    for c in [*note.all_note_claims(), *study_claims.values()]:
        assert c.title and c.text and c.check, c.id


def test_claim_ids_are_the_documented_ones(study_claims):
    landing_and_shift = {"edm_consistent_set", "edm_policy_flip", "edm_per_state_shift"}
    assert set(study_claims) | landing_and_shift == set(beyond.BEYOND_CLAIM_IDS)

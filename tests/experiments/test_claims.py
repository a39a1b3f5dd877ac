"""Tests for the claims of ``sbil reproduce``: the types, the note's four claims and the
results beyond the note, each against numbers computed independently here."""

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.experiments import claims_beyond as beyond
from sbil.experiments import claims_note as note
from sbil.experiments import consistency as cs
from sbil.experiments.claims import Claim, ClaimSection, fmt, json_safe, plain
from sbil.experiments.landing import LandingResult, edm_landing

# --------------------------------------------------------------------------------------
# The types
# --------------------------------------------------------------------------------------


def _claim(**overrides) -> Claim:
    fields = {"id": "c", "title": "T.", "value": 1.0, "agrees": True, "text": "x"}
    return Claim(**{**fields, **overrides})


def test_claim_to_dict_is_plain_json():
    c = _claim(
        value=np.float64(np.inf),
        note_value="approximately 1",
        details={"a": np.arange(3), "b": np.bool_(True), "c": [np.float32(0.5), {"d": np.nan}]},
    )
    data = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert data["sbil_value"] is None  # inf is not JSON
    assert data["details"] == {"a": [0, 1, 2], "b": True, "c": [0.5, {"d": None}]}
    assert data["note_value"] == "approximately 1"
    assert set(data) == {
        "id",
        "description",
        "note_value",
        "sbil_value",
        "agrees",
        "tolerance",
        "expectation",
        "text",
        "figures",
        "details",
    }


def test_claim_refuses_a_numeric_note_value_and_an_empty_id():
    with pytest.raises(ValueError, match="as printed"):
        _claim(note_value=-0.245)
    with pytest.raises(ValueError, match="non-empty string id"):
        _claim(id=" ")


def test_section_collects_its_claims_and_checks_its_parts():
    a, b = _claim(id="a"), _claim(id="b", agrees=False)
    section = ClaimSection(id="s", title="S", blocks=["intro", a, "more", b], files=["f.png"])
    assert section.claims == (a, b)
    assert b.verdict == "disagrees" and a.verdict == "agrees"
    with pytest.raises(ValueError, match="flat file names"):
        ClaimSection(id="s", title="S", blocks=(), files=("sub/f.png",))
    with pytest.raises(ValueError, match="Markdown strings or Claims"):
        ClaimSection(id="s", title="S", blocks=(3,))
    with pytest.raises(ValueError, match="claim_style"):
        ClaimSection(id="s", title="S", blocks=(), claim_style="table")


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "—"),
        (0.0, "0"),
        (np.inf, "∞"),
        (-np.inf, "−∞"),
        (1.5e-5, "1.50e-05"),
        (0.25, "0.2500"),
        (3, "3"),
        (2e5, "2.00e+05"),
    ],
)
def test_fmt(value, expected):
    assert fmt(value) == expected


def test_plain_and_json_safe():
    assert plain((np.int64(2), [np.float64(1.5)])) == [2, [1.5]]
    assert json_safe({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}


# --------------------------------------------------------------------------------------
# The note's claims
# --------------------------------------------------------------------------------------


def test_example1_tv_is_one_minus_one_over_s_everywhere():
    c = note.example1(n_states=(2, 3, 7, 20), n_actions=(1, 2, 5))
    assert c.agrees
    assert c.details["max_abs_deviation"] <= 1e-12
    assert c.value == pytest.approx(1 - 1 / 20, abs=1e-12)
    assert c.details["n_cases"] == 4 * 3 * 2  # |S| x |A| x conventions
    assert c.note_value == "1 − 1/|S|"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_example2_policy_unchanged_p_uniform_d_pi_not_under_both_conventions(seed):
    c = note.example2(seed=seed)
    assert c.agrees
    d = c.details
    assert d["policy_max_abs_diff"] <= 1e-12
    assert d["shift_logits_vs_extended_class_max_abs_diff"] <= 1e-12
    for convention in ("reference", "note"):
        assert d[f"{convention}_p_max_abs_dev_from_uniform"] <= 1e-12
        assert d[f"{convention}_tv_p_before_shift_vs_uniform"] > 1e-3
        assert d[f"{convention}_tv_p_vs_d_pi"] > 1e-3
    assert d["tv_d_pi_vs_uniform"] == pytest.approx(d["reference_tv_p_vs_d_pi"], abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(n_states=st.integers(2, 12), n_actions=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_example2_holds_for_random_mdps_and_logits(n_states, n_actions, seed):
    d = note.example2(n_states, n_actions, n_params=3, seed=seed).details
    assert d["policy_max_abs_diff"] <= 1e-12
    assert d["reference_p_max_abs_dev_from_uniform"] <= 1e-12
    assert d["note_p_max_abs_dev_from_uniform"] <= 1e-12


def test_example3_gradient_is_k_minus_one_over_four_on_a_grid():
    ks = np.linspace(-3.0, 4.0, 29)
    c = note.example3(ks=ks)
    assert c.agrees
    grads = np.asarray(c.details["reference_gradient"])
    grid = np.asarray(c.details["k_grid"])
    np.testing.assert_allclose(grads, (grid - 1) / 4, rtol=0, atol=1e-12)
    assert np.all(grads[grid < 1] < 0)
    assert c.value == pytest.approx(-0.125, abs=1e-12)
    assert c.note_value == "(k − 1)/4"


def test_example3_says_what_the_state_term_does():
    """The whole state term's gradient at 0 is -(1-k)/4 (d_E(s1) - d_E(s2)): it pushes theta
    down only when d_E(s1) < 1/2 (for k < 1); the text says so and nothing stronger."""
    c = note.example3()
    assert c.details["state_term_gradient_max_abs_deviation"] <= 1e-12
    assert "−(1 − k)/4 · (d_E(s1) − d_E(s2))" in c.text
    assert "only when k < 1 and d_E(s1) < 1/2" in c.text
    assert "even where the policy term is balanced" not in c.text


def test_theorem1_against_the_note_as_printed():
    c = note.theorem1()
    assert c.agrees
    assert c.note_value == "approximately -0.245"  # what the note prints
    # sbil's value against the closed form, differentiated by hand here:
    theta, k = 1.0, 0.5
    by_hand = k / (1 + math.exp(-k * theta)) - (math.exp(theta) + k * math.exp(k * theta)) / (
        2 + math.exp(theta) + math.exp(k * theta)
    )
    assert c.value == pytest.approx(by_hand, abs=1e-12)
    printed = float(c.note_value.split()[-1])
    assert f"{c.value:.3f}" == f"{printed:.3f}"  # reads as the note prints it
    d = c.details
    assert abs(d["edm_gradient_at_expert"]) > 1e-3
    assert abs(d["bc_gradient_at_expert"]) < 1e-12
    assert abs(d["bc_limit_theta"] - 1.0) < 1e-8
    assert abs(d["edm_limit_theta"] - 1.0) > 1e-3
    assert "which the note prints as approximately -0.245" in c.text


def test_theorem1_disagrees_if_the_gradient_were_another():
    c = note.theorem1(k=0.6)  # the gradient is then about -0.21, not the note's
    assert not c.agrees


def test_note_section_has_the_four_claims_in_order():
    section = note.note_section()
    assert [c.id for c in section.claims] == list(note.NOTE_CLAIM_IDS)
    assert section.claim_style == "heading"
    assert any("Every number the note states is reproduced" in b for b in section.blocks[4:])
    bad = [dataclasses.replace(c, agrees=False) for c in section.claims]
    texts = note.note_section(bad).blocks
    assert not any("Every number the note states" in b for b in texts if isinstance(b, str))


# --------------------------------------------------------------------------------------
# Beyond the note
# --------------------------------------------------------------------------------------


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

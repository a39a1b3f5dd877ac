"""Tests for sbil.experiments.claims_note: the note's four claims, each against numbers computed
independently here."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbil.experiments import claims_note as note


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

"""Tests for sbil.experiments.report: rendering from small computed results."""

import dataclasses

import numpy as np
import pytest

from sbil.experiments import consistency as cs
from sbil.experiments import report
from sbil.experiments.landing import LandingResult, edm_landing
from sbil.experiments.reproduce import consistency_claims, landing_claims
from sbil.tabular.claims import all_note_claims

CONFIG = cs.ConsistencyConfig(
    n_mdps=3,
    n_states=5,
    n_actions=3,
    n_params=2,
    sizes=(50, 5_000, 500_000),
    n_seeds=2,
    n_seeds_example3=3,
    n_oracle=1,
    n_oracle_seeds=1,
    n_tabular=2,
    seed=3,
)
META = {
    "command": "test",
    "date_utc": "2026-01-01 00:00 UTC",
    "git_commit": "abc",
    "runtime_s": 1.0,
    "config": {},
}
FIGURES = ("landing.png", "consistency.png", "limits.png")


@pytest.fixture(scope="module")
def inputs():
    landing = edm_landing([0.05, 0.2, 0.5, 0.8], [-1.0, 0.5, 1.0, 2.0])
    study = cs.run_consistency(CONFIG)
    summary = cs.summarise(study, n_resamples=100)
    oracle_summary = cs.summarise(cs.oracle_subset(study), n_resamples=100)
    claims = (
        all_note_claims()
        + landing_claims(landing)
        + consistency_claims(study, summary, oracle_summary)
    )
    return {
        "claims": claims,
        "landing": landing,
        "study": study,
        "summary": summary,
        "oracle_summary": oracle_summary,
    }


def _render(inputs, **overrides):
    kwargs = {**inputs, "meta": META, "figures": FIGURES, **overrides}
    return report.render_report(**kwargs)


def test_every_claim_has_a_verdict_and_its_value(inputs):
    text = _render(inputs)
    for c in inputs["claims"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{c.id}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2] == report._fmt(c.sbil_value)
        assert cells[3] == ("agrees" if c.agrees else "**DISAGREES**")
    assert "occupancy matching (oracle)" in text  # the finite-data comparison table


def test_a_failing_claim_renders_as_disagrees(inputs):
    claims = list(inputs["claims"])
    claims[3] = dataclasses.replace(claims[3], agrees=False)  # theorem1
    text = _render(inputs, claims=claims)
    assert "| `theorem1` | -0.2452 | -0.2452 | **DISAGREES** |" in text
    assert "### `theorem1` — **DISAGREES**" in text
    section = text.split("## What disagrees with the note, and why")[1].split("## Scope")[0]
    assert "- `theorem1`:" in section
    assert "Every number the note states is reproduced" not in text


def test_convention_wording_is_consistent(inputs):
    text = _render(inputs)
    # 'note' is the sign of eqs. (4)-(5), p ∝ exp(-lse f); never "the opposite sign of" them.
    assert "opposite sign of the note's eqs" not in text
    assert "p(s) ∝ exp(−logsumexp f(s)) (the sign of the note's eqs. (4)-(5))" in text


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "—"),
        (0.0, "0"),
        (np.inf, "∞"),
        (-np.inf, "−∞"),
        (1.5e-5, "1.50e-05"),
        (0.25, "0.2500"),
    ],
)
def test_fmt(value, expected):
    assert report._fmt(value) == expected


def test_flip_regions_are_described_from_the_data():
    # Two regions: a 2x2 block at small d_E(s1) and one isolated corner point.
    theta = np.ones((3, 4))
    theta[0, :2] = theta[1, :2] = -0.5
    theta[2, 3] = -0.01
    landing = LandingResult(
        d1=np.array([0.1, 0.2, 0.5, 0.9]),
        k=np.array([-1.0, 0.0, 2.0]),
        theta=theta,
        converged=np.ones((3, 4), dtype=bool),
        consistent_d1=np.array([0.3, 0.4, np.nan]),
        theta_expert=1.0,
        convention="reference",
    )
    flip = landing_claims(landing)[1]
    regions = flip.details["regions"]
    assert [r["n_points"] for r in regions] == [4, 1]
    assert regions[0]["k_min"] == -1.0 and regions[0]["k_max"] == 0.0
    assert regions[0]["d1_max"] == 0.2
    text = report._explain(flip)
    assert "2 connected regions" in text
    assert "a single grid point at k = 2, d_E(s1) = 0.90 (theta* = -0.0100)" in text
    assert "k from -1 to 0" in text

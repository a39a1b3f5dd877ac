"""Tests for sbil.experiments.claims: the claim and section types and their formatting."""

import json

import numpy as np
import pytest

from sbil.experiments.claims import Claim, ClaimSection, fmt, json_safe, plain


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

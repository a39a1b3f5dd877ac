"""Tests for sbil.experiments.report: it renders what it is given and nothing else."""

import dataclasses

import numpy as np

from sbil.experiments import report
from sbil.experiments.claims import Claim, ClaimSection, fmt

META = {
    "command": "sbil reproduce --quick",
    "date_utc": "2026-01-01 00:00 UTC",
    "git_commit": "abc123",
    "runtime_s": 1.25,
    "config": {"quick": True},
}


def _sections():
    note_claim = Claim(
        id="theorem1",
        title="A statement of the note.",
        value=-0.245177,
        agrees=True,
        text="Why, with -0.2452 filled in.",
        check="it reads the same",
        note_value="approximately -0.245",
        tolerance=5e-4,
    )
    other = Claim(
        id="beyond_one",
        title="A result beyond it.",
        value=np.inf,
        agrees=True,
        text="Explained.",
        check="above 0",
    )
    formula = Claim(
        id="example1",
        title="TV is a formula.",
        value=0.98,
        agrees=True,
        text="At |S| = 50.",
        note_value="1 − 1/|S|",
    )
    return [
        ClaimSection(
            id="note",
            title="The note's claims",
            blocks=(formula, note_claim, "A closing paragraph."),
            claim_style="heading",
            caveats=("Caveat one.",),
        ),
        ClaimSection(
            id="beyond",
            title="Beyond the note",
            blocks=("### A sub-heading", "![fig](fig.png)", other),
            files=("fig.png", "table.csv"),
            caveats=("Caveat two.",),
        ),
    ]


def _render(sections=None, meta=META):
    return report.render_report(
        title="Title", preamble="Preamble.", sections=sections or _sections(), meta=meta
    )


def test_summary_has_every_claim_with_the_note_value_as_printed():
    text = _render()
    assert "| `theorem1` | approximately -0.245 | -0.2452 | agrees |" in text
    assert "| `beyond_one` | — | ∞ | agrees |" in text
    assert "| `example1` | 1 − 1/\\|S\\| | 0.9800 | agrees |" in text  # '|' escaped in a cell


def test_claims_render_in_their_sections_style_and_order():
    text = _render()
    heading = (
        "### `theorem1` — agrees\n\n*A statement of the note.*\n\nWhy, with -0.2452 filled in."
        "\n\nChecked: it reads the same (tolerance 5.00e-04)."
    )
    assert heading in text
    assert "Checked: ." not in text and "### `example1` — agrees" in text
    assert "**`beyond_one` — agrees.** Explained." in text
    order = [
        text.index(s)
        for s in (
            "## The note's claims",
            "### `example1`",
            "### `theorem1`",
            "A closing paragraph.",
            "## Beyond the note",
            "### A sub-heading",
            "![fig](fig.png)",
            "**`beyond_one`",
            "## What disagrees",
            "## Scope and caveats",
            "## Files",
        )
    ]
    assert order == sorted(order)


def test_a_failing_claim_is_listed_as_disagreeing():
    sections = _sections()
    bad = dataclasses.replace(sections[0].blocks[1], agrees=False)
    sections[0] = dataclasses.replace(sections[0], blocks=(sections[0].blocks[0], bad))
    text = _render(sections)
    assert "| `theorem1` | approximately -0.245 | -0.2452 | **DISAGREES** |" in text
    assert "### `theorem1` — **DISAGREES**" in text
    part = text.split("## What disagrees, and why")[1].split("## Scope")[0]
    assert "- `theorem1`: A statement of the note. sbil: -0.2452" in part
    assert "Nothing: every claim above agrees" not in text


def test_caveats_files_and_provenance_come_from_the_inputs():
    text = _render()
    assert "- Caveat one.\n- Caveat two." in text
    assert "`fig.png`, `table.csv`." in text
    assert "sbil commit `abc123`, in 1.2 s" in text or "sbil commit `abc123`, in 1.3 s" in text
    assert "Configuration: `{'quick': True}`." in text
    assert "no git commit" in _render(meta={**META, "git_commit": None})


def test_the_renderer_computes_nothing():
    """Every number in the report is in a claim, a block or the meta given."""
    text = _render()
    assert fmt(-0.245177) in text and "0.9800" in text
    for word in ("inconsisten", "oracle", "BC", "EDM"):
        assert word not in text  # no wording of its own about the claims

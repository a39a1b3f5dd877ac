"""Render REPORT.md from claim sections; nothing here computes, judges or words a claim.

The report is: a title and a preamble, a summary table of every claim of every section, each
section's Markdown blocks and claims in order, the claims that disagree, the sections' caveats,
and the list of files. A claim's words and numbers come from its
:class:`~sbil.experiments.claims.Claim`; a section's prose, tables and figure links from its
:class:`~sbil.experiments.claims.ClaimSection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sbil.experiments.claims import Claim, ClaimSection, fmt, table


def verdict_text(claim: Claim) -> str:
    """The verdict as the report prints it: ``agrees`` or a bold ``DISAGREES``."""
    return "agrees" if claim.agrees else "**DISAGREES**"


def table_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (a literal ``|`` would split the cell)."""
    return text.replace("|", "\\|")


def render_claim(claim: Claim, style: str) -> str:
    """One claim in the section's style (see :data:`sbil.experiments.claims.ClaimStyle`)."""
    if style == "heading":
        parts = [f"### `{claim.id}` — {verdict_text(claim)}", f"*{claim.title}*", claim.text]
        if claim.check:
            tolerance = "" if claim.tolerance is None else f" (tolerance {fmt(claim.tolerance)})"
            parts.append(f"Checked: {claim.check}{tolerance}.")
        return "\n\n".join(parts)
    return f"**`{claim.id}` — {verdict_text(claim)}.** {claim.text}"


def summary_table(claims: Sequence[Claim]) -> str:
    """Every claim: its id, the note's value as printed, sbil's value and the verdict."""
    rows = [
        [
            f"`{c.id}`",
            table_cell(c.note_value) if c.note_value is not None else "—",
            fmt(c.value),
            verdict_text(c),
        ]
        for c in claims
    ]
    return table(["claim", "note's value", "sbil's value", "verdict"], rows)


def render_report(
    *,
    title: str,
    preamble: str,
    sections: Sequence[ClaimSection],
    meta: Mapping[str, Any],
) -> str:
    """The Markdown report.

    Args:
        title: the report's title.
        preamble: Markdown after the provenance line (what the report is about).
        sections: the claim sections, in order.
        meta: ``command``, ``date_utc``, ``git_commit`` (None outside a checkout),
            ``runtime_s`` and ``config``.

    Returns:
        The report text.
    """
    claims = [c for s in sections for c in s.claims]
    commit = meta.get("git_commit")
    commit_text = f"sbil commit `{commit}`" if commit else "no git commit (not a git checkout)"
    lines = [
        f"# {title}",
        "",
        f"Produced by `{meta['command']}` on {meta['date_utc']}, {commit_text}, in "
        f"{meta['runtime_s']:.1f} s. `results.json` holds the same numbers.",
        "",
        preamble,
        "",
        "## Summary",
        "",
        summary_table(claims),
        "",
        "“agrees” means sbil's computation supports the statement as described under each "
        "result (the check is stated there). The note's value is shown as the note prints it; "
        "“—” where the note states no number.",
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            text = block if isinstance(block, str) else render_claim(block, section.claim_style)
            lines += [text, ""]
    disagree = [c for c in claims if not c.agrees]
    lines += ["## What disagrees, and why", ""]
    if disagree:
        lines += [
            f"- `{c.id}`: {c.title} sbil: {fmt(c.value)}, note: "
            f"{c.note_value if c.note_value is not None else '—'}; the check was: {c.check}."
            for c in disagree
        ]
    else:
        lines.append("Nothing: every claim above agrees with the statement it checks.")
    caveats = [c for s in sections for c in s.caveats]
    if caveats:
        lines += ["", "## Scope and caveats", ""]
        lines += [f"- {c}" for c in caveats]
    files = [name for s in sections for name in s.files]
    lines += [
        "",
        "## Files",
        "",
        "`REPORT.md` (this report), `results.json` (every claim with its numbers, the "
        "configuration, commit and runtime)"
        + ("" if not files else ", " + ", ".join(f"`{name}`" for name in files))
        + ".",
        "",
        f"Configuration: `{meta['config']}`.",
        "",
    ]
    return "\n".join(lines)

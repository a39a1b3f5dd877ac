"""The claim and section types of ``sbil reproduce``, and the number format their texts use.

A :class:`Claim` is one checked statement with everything the report says about it: the
statement, sbil's number, the note's value as the note prints it, the verdict, what the verdict
checks and the explanation, every number already filled in. A :class:`ClaimSection` is a part
of the report: its heading, its Markdown paragraphs and claims in reading order, the files it
wrote and its caveats. The modules that compute claims (:mod:`sbil.experiments.claims_note`,
:mod:`sbil.experiments.claims_beyond`, and ``sbil.experiments.deep_critique`` for
``--deep``) build these; :mod:`sbil.experiments.report` only renders them.

``/work/notes/CLAIMS_API.md`` (in the development notes) describes how a new section plugs into
``sbil reproduce``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: How a section shows its claims: ``"heading"`` gives each claim a ``###`` heading, its title
#: in italics, the explanation and the check; ``"paragraph"`` one bold-led paragraph.
ClaimStyle = Literal["heading", "paragraph"]


@dataclass(frozen=True)
class Claim:
    """One checked statement, computed, judged and worded in one place.

    Attributes:
        id: short stable identifier, e.g. ``"example3"`` (the key in ``results.json``).
        title: the statement in one sentence.
        value: sbil's computed number for the headline quantity (NaN allowed).
        agrees: whether sbil's computation supports the statement (see ``check``).
        text: the explanation in Markdown, with every number filled in.
        check: what ``agrees`` checks, in words.
        note_value: the note's value as the note prints it (e.g. ``"approximately -0.245"``,
            ``"(k - 1)/4"``), or None where the note states no number.
        tolerance: the tolerance of the check, or None where it has none.
        details: further computed numbers (JSON-serialisable after :func:`plain`).
        figures: file names, in the report folder, of the figures the claim refers to.
    """

    id: str
    title: str
    value: float
    agrees: bool
    text: str
    check: str = ""
    note_value: str | None = None
    tolerance: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"a claim needs a non-empty string id; got {self.id!r}.")
        if self.note_value is not None and not isinstance(self.note_value, str):
            raise ValueError(
                f"claim {self.id}: note_value is the note's value as printed (a string) or "
                f"None; got {self.note_value!r}."
            )

    @property
    def verdict(self) -> str:
        """``"agrees"`` or ``"disagrees"``."""
        return "agrees" if self.agrees else "disagrees"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (numpy scalars and arrays converted, NaN and inf as None).

        Keys: id, description (the title), note_value, sbil_value (the value), agrees,
        tolerance, expectation (the check), text, figures, details.
        """
        return json_safe(
            {
                "id": self.id,
                "description": self.title,
                "note_value": self.note_value,
                "sbil_value": plain(self.value),
                "agrees": bool(self.agrees),
                "tolerance": plain(self.tolerance),
                "expectation": self.check,
                "text": self.text,
                "figures": list(self.figures),
                "details": {str(k): plain(v) for k, v in self.details.items()},
            }
        )


@dataclass(frozen=True)
class ClaimSection:
    """One ``##`` section of the report: prose, claims and the files behind them.

    Attributes:
        id: key of the section in ``results.json`` (e.g. ``"note"``, ``"deep"``).
        title: the section's heading.
        blocks: Markdown paragraphs (str) and claims, in reading order; a figure is shown by
            a Markdown block ``![alt](name.png)``.
        files: every file the section wrote into the report folder (flat names).
        caveats: bullets for the report's "Scope and caveats".
        config: JSON-ready configuration of the section, saved in ``results.json``.
        claim_style: how its claims are shown (:data:`ClaimStyle`).
    """

    id: str
    title: str
    blocks: tuple[str | Claim, ...]
    files: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    claim_style: ClaimStyle = "paragraph"

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "caveats", tuple(self.caveats))
        for block in self.blocks:
            if not isinstance(block, (str, Claim)):
                raise ValueError(
                    f"section {self.id}: blocks are Markdown strings or Claims; got "
                    f"{type(block).__name__}."
                )
        for name in self.files:
            if not isinstance(name, str) or not name or "/" in name or "\\" in name:
                raise ValueError(
                    f"section {self.id}: files are flat file names in the report folder; got "
                    f"{name!r}."
                )
        if self.claim_style not in ("heading", "paragraph"):
            raise ValueError(
                f"section {self.id}: claim_style must be 'heading' or 'paragraph'; got "
                f"{self.claim_style!r}."
            )

    @property
    def claims(self) -> tuple[Claim, ...]:
        """The claims among the blocks, in order."""
        return tuple(b for b in self.blocks if isinstance(b, Claim))


def fmt(x: Any, digits: int = 4) -> str:
    """A number as the report prints it: ``—`` for None, ``∞``, 4 decimals, or 2e-notation
    for very small or large magnitudes."""
    if x is None:
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return "∞" if x > 0 else ("−∞" if x < 0 else "n/a")
    if abs(x) < 1e-3 or abs(x) >= 1e5:
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def table(headers: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """Replace NaN and infinity (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

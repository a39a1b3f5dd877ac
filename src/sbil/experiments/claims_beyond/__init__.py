"""Results beyond the note: where EDM lands, consistency, the oracle and the class that fixes EDM.

Each claim here is computed from the studies of :mod:`sbil.experiments.landing` and
:mod:`sbil.experiments.consistency`, judged, and worded in the same function; the section's
prose, tables and figure links sit next to them in :func:`beyond_section`. The report only
renders what this package returns.

Modules: :mod:`.ids` (the claims in report order), :mod:`.landing` (where EDM lands),
:mod:`.oracle` (the oracle's claim and tables), :mod:`.consistency` (consistency, the tabular
class and the per-state shift) and :mod:`.section` (the section). Import from here.
"""

from __future__ import annotations

from sbil.experiments.claims_beyond.consistency import (
    consistency_claims,
    per_state_shift_claim,
)
from sbil.experiments.claims_beyond.ids import (
    BEYOND_CLAIM_IDS,
)
from sbil.experiments.claims_beyond.landing import (
    describe_region,
    flip_regions,
    landing_claims,
)
from sbil.experiments.claims_beyond.section import (
    beyond_section,
)

__all__ = [
    "BEYOND_CLAIM_IDS",
    "beyond_section",
    "consistency_claims",
    "describe_region",
    "flip_regions",
    "landing_claims",
    "per_state_shift_claim",
]

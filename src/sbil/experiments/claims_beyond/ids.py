"""The claims beyond the note, in report order.

Part of :mod:`sbil.experiments.claims_beyond`.
"""

from __future__ import annotations

#: Identifiers of the results beyond the note, in report order.
BEYOND_CLAIM_IDS = (
    "edm_consistent_set",
    "edm_policy_flip",
    "bc_consistent",
    "edm_inconsistent_fraction",
    "edm_visitation_gap",
    "oracle_recovers_expert",
    "tabular_edm_equals_bc",
    "edm_per_state_shift",
)

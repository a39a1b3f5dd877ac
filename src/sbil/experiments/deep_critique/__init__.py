"""The critique of EDM at deep scale: studies on trained networks, their claims and figures.

The note (Swamy et al.) proves two things about EDM on finite MDPs: its state model
``p_theta(s) ∝ sum_a exp f(s)[a]`` is not the learner's state distribution (Claim 1; Example 2
shows it is not even identified by the policy), and EDM can leave a learner that already is
the expert (Theorem 1). This module asks whether that matters for the networks EDM is trained
with, on the four built-in Gymnasium tasks, with sbil's public pieces (learners, SGLD,
rollouts, scripted experts):

1. :func:`ptheta_study`: ``p_theta`` of trained EDM and decoupled-EDM learners against the
   learner's own visitation ``d_pi`` and the expert's ``d_E``. ``p_theta`` is sampled by SGLD
   at temperature 1 (noise ``sqrt(2 * step)``) and at the published temperature 0.005, with
   mixing diagnostics (several chain lengths, chains from two starting distributions,
   rank-normalised split-R-hat); whether ``exp(logsumexp f)`` is integrable at all is read
   off the network's growth along rays (:func:`asymptotic_slopes`).
2. :func:`shift_study`: Example 2 on a trained network: shifting the logits per state by
   ``g(s)`` leaves the policy unchanged and changes ``p_theta``'s ranking of states.
3. :func:`drift_study` and :func:`consistency_study`: Theorem 1 with a realisable expert (a
   network of the learner's own architecture acting by softmax, :func:`realisable_expert`).
4. :func:`rho_summary`: where EDM's ``rho`` settles, and why (``rho + rho**2`` is smallest at
   ``rho = -1/2``, where the state term's gradient factor ``1 + 2 rho`` vanishes).

:func:`deep_claims` runs everything (``sbil reproduce --deep``) and returns the report
section.

The package's modules, in the order they depend on each other: :mod:`.config` (the studies'
settings and thresholds), :mod:`.networks` and :mod:`.rollouts` (networks, softmax policies and
their visitation), :mod:`.mixing` (SGLD chains and their diagnostics), :mod:`.common` (what
the claims and figures share), one module per study that owns its computation, claim, figure
and table (:mod:`.study_ptheta`, :mod:`.study_shift`, :mod:`.study_realisable`,
:mod:`.study_rho`), and :mod:`.report` (the section and its files). Import from here.
"""

from __future__ import annotations

from sbil.experiments.deep_critique.common import (
    COORDINATES,
    coordinate_name,
    t_interval,
)
from sbil.experiments.deep_critique.config import (
    ALPHA,
    DEEP_CLAIM_IDS,
    GROWTH_TOLERANCE,
    PUBLISHED_TEMPERATURE,
    RHAT_THRESHOLD,
    TEMPERATURES,
    DeepCritiqueConfig,
)
from sbil.experiments.deep_critique.mixing import (
    ChainRun,
    asymptotic_slopes,
    run_chains,
    split_rhat,
)
from sbil.experiments.deep_critique.networks import (
    policy_tv,
    stacked_network,
)
from sbil.experiments.deep_critique.report import (
    DEEP_FILES,
    deep_claims,
    run_deep_critique,
)
from sbil.experiments.deep_critique.rollouts import (
    Rollouts,
    recorded_episodes,
    softmax_rollouts,
)
from sbil.experiments.deep_critique.study_ptheta import (
    STATE_MODEL_ALGOS,
    Comparison,
    StateModel,
    TaskStudy,
    chain_distances,
    compare,
    plot_ptheta,
    ptheta_claim,
    ptheta_frame,
    ptheta_study,
    ptheta_tables,
)
from sbil.experiments.deep_critique.study_realisable import (
    ConsistencyResult,
    DriftResult,
    RealisableExpert,
    consistency_claim,
    consistency_study,
    drift_claim,
    drift_study,
    plot_consistency,
    plot_drift,
    realisable_expert,
)
from sbil.experiments.deep_critique.study_rho import (
    RhoSummary,
    plot_rho,
    rho_claim,
    rho_summary,
)
from sbil.experiments.deep_critique.study_shift import (
    SHIFTS,
    ShiftResult,
    plot_shift,
    shift_claim,
    shift_study,
    shifted_model,
)

__all__ = [
    "ALPHA",
    "COORDINATES",
    "DEEP_CLAIM_IDS",
    "DEEP_FILES",
    "GROWTH_TOLERANCE",
    "PUBLISHED_TEMPERATURE",
    "RHAT_THRESHOLD",
    "SHIFTS",
    "STATE_MODEL_ALGOS",
    "TEMPERATURES",
    "ChainRun",
    "Comparison",
    "ConsistencyResult",
    "DeepCritiqueConfig",
    "DriftResult",
    "RealisableExpert",
    "RhoSummary",
    "Rollouts",
    "ShiftResult",
    "StateModel",
    "TaskStudy",
    "asymptotic_slopes",
    "chain_distances",
    "compare",
    "consistency_claim",
    "consistency_study",
    "coordinate_name",
    "deep_claims",
    "drift_claim",
    "drift_study",
    "plot_consistency",
    "plot_drift",
    "plot_ptheta",
    "plot_rho",
    "plot_shift",
    "policy_tv",
    "ptheta_claim",
    "ptheta_frame",
    "ptheta_study",
    "ptheta_tables",
    "realisable_expert",
    "recorded_episodes",
    "rho_claim",
    "rho_summary",
    "run_chains",
    "run_deep_critique",
    "shift_claim",
    "shift_study",
    "shifted_model",
    "softmax_rollouts",
    "split_rhat",
    "stacked_network",
    "t_interval",
]

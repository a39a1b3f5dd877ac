"""Is each strictly batch learner consistent where BC is? Infinite-data optima on random MDPs.

The critique's question (:mod:`sbil.experiments.consistency` asks it of EDM) asked of the
learners of :mod:`sbil.tabular.learners`: on the same random MDPs with shared linear features
``Phi[s, a, k]`` and a realisable expert ``theta_E`` (the same seeds and sizes as the
consistency study, so the same problems), with infinite expert data, does the learner's
optimum recover the expert policy ``pi_E``?

Two data distributions per problem:

* ``"discounted"``: ``d_E`` is ``pi_E``'s normalised discounted occupancy from the MDP's start
  distribution (uniform) with the objectives' own discount (default 0.99). This is the
  setting of the papers' derivations (same gamma in the data and in the objectives).
* ``"stationary"``: ``d_E`` is the consistency study's own ``d_E``, ``pi_E``'s stationary
  distribution (those MDPs carry no discount), with the objectives at the same discount.

Per (problem, data, learner) the optimum is fitted from the uniform policy (``theta = 0``);
it *recovers* ``pi_E`` when the fit converged (gradient norm at most ``fit_tolerance``) and
the policy TV averaged over the expert's states is at most ``recovery_tolerance``. Because
the outer problems are not convex, each row also carries the gradient of the learner's
objective at the expert (after minimising over everything that leaves the policy at
``pi_E``: ValueDICE's critic, AVRIL's posterior, a tabular ``Q``'s per-state shift): when it
is not zero, no parameter that gives ``pi_E`` is even a stationary point, whatever the
optimiser does.

Two side studies test the explanations of the verdicts (:data:`EXPLANATIONS`):

* ValueDICE with action-independent transitions: the same problems with ``P(s'|s, a)``
  replaced by its average over actions, stationary data, started at the MDP's start or at
  one state. The flow equation from the start fails, and ValueDICE still recovers the expert
  (the flow equation is sufficient, not necessary); the problems as drawn are the control.
* IQ-Learn's miss to first order in ``tau / (4 alpha)``
  (:func:`sbil.tabular.learners.iqlearn_first_order_step`), in every IQ-Learn row, and
  against gamma on the first problems (stationary data, the same for every gamma).

Re-create the committed results (minutes; ``--workers`` processes, rows independent of it)::

    sbil consistency --out docs/results/learner-consistency --workers 2

(or ``python -m sbil.experiments.learner_consistency`` with the same options).

Modules, in the order they depend on each other: :mod:`.config` (the learners, the settings
and the result), :mod:`.fits` (one problem's rows), :mod:`.side` (the two side studies),
:mod:`.run` (all problems, on a process pool), :mod:`.summary` (the tables and verdicts) and
:mod:`.writing` (the README, the study's files and the argparse command line). Import from
here.
"""

from __future__ import annotations

from sbil.experiments.learner_consistency.config import (
    DATA_KINDS,
    LEARNERS,
    LearnerConsistencyConfig,
    LearnerConsistencyResult,
)
from sbil.experiments.learner_consistency.fits import (
    expert_visitation,
    flow_residual,
)
from sbil.experiments.learner_consistency.run import (
    run_learner_consistency,
)
from sbil.experiments.learner_consistency.side import (
    SIDE_LEARNERS,
    SIDE_STARTS,
    SIDE_TRANSITIONS,
    action_independent_transitions,
    iqlearn_discount_rows,
    valuedice_action_independent_rows,
)
from sbil.experiments.learner_consistency.summary import (
    EXPLANATIONS,
    summarise_action_independent,
    summarise_discount_scan,
    summarise_first_order,
    summarise_learners,
)
from sbil.experiments.learner_consistency.writing import (
    COMMAND,
    STUDY_FILES,
    check_out_folder,
    main,
    render_readme,
    write_learner_consistency,
)

__all__ = [
    "COMMAND",
    "DATA_KINDS",
    "EXPLANATIONS",
    "LEARNERS",
    "SIDE_LEARNERS",
    "SIDE_STARTS",
    "SIDE_TRANSITIONS",
    "STUDY_FILES",
    "LearnerConsistencyConfig",
    "LearnerConsistencyResult",
    "action_independent_transitions",
    "check_out_folder",
    "expert_visitation",
    "flow_residual",
    "iqlearn_discount_rows",
    "main",
    "render_readme",
    "run_learner_consistency",
    "summarise_action_independent",
    "summarise_discount_scan",
    "summarise_first_order",
    "summarise_learners",
    "valuedice_action_independent_rows",
    "write_learner_consistency",
]

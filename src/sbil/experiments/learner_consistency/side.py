"""The side studies of the learner-consistency study: ValueDICE with action-independent
transitions, and IQ-Learn's first-order miss against gamma.

Part of :mod:`sbil.experiments.learner_consistency`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sbil.experiments.consistency import Problem, policy_tv
from sbil.experiments.learner_consistency.config import LearnerConsistencyConfig
from sbil.experiments.learner_consistency.fits import _fit_one, expert_visitation, flow_residual
from sbil.tabular import learners as lr
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.policies import policy_probs
from sbil.tabular.visitation import discounted_visitation, state_action_visitation

#: The starts of the ValueDICE side study: the MDP's (uniform) start, and all mass on state 0
#: (the flow residual of stationary data is then near its largest, 2 (1 - gamma)).
SIDE_STARTS: tuple[str, ...] = ("uniform", "state 0")
#: Its transitions: averaged over actions (the counterexample), and as drawn (the control).
SIDE_TRANSITIONS: tuple[str, ...] = ("action-independent", "as drawn")
SIDE_LEARNERS: tuple[str, ...] = ("valuedice-initial", "valuedice-initial-expected")


def action_independent_transitions(transitions: np.ndarray) -> np.ndarray:
    """``P[s, a, s']`` replaced by its average over actions, ``mean_b P[s, b, s']``, for every
    ``a``: the next state no longer depends on the action."""
    return np.repeat(transitions.mean(axis=1, keepdims=True), transitions.shape[1], axis=1)


def valuedice_action_independent_rows(
    problem: Problem, config: LearnerConsistencyConfig
) -> list[dict[str, Any]]:
    """ValueDICE started at ``mu0`` (``-initial``, both forms) on stationary data, with the
    transitions action-independent or as drawn, for both :data:`SIDE_STARTS`.

    Rows: problem_id, transitions, start, learner, flow_residual_initial (from ``mu0``),
    state_kl (``KL(rho || d_E(s))``, ``rho`` the discounted state occupancy from ``mu0``,
    the same for every policy when the transitions ignore the action), converged,
    policy_tv, recovered, value (``-min_nu J`` at the fit), expert_value (at ``theta_E``)
    and expert_grad_norm.
    """
    gamma, phi, theta_e = config.discount, problem.features, problem.theta_expert
    pi_e = policy_probs(phi, theta_e)
    drawn = problem.mdp.dense_transitions()
    n_s = drawn.shape[0]
    starts = {"uniform": np.asarray(problem.mdp.initial), "state 0": np.eye(n_s)[0]}
    rows = []
    for kind in SIDE_TRANSITIONS:
        p = action_independent_transitions(drawn) if kind == "action-independent" else drawn
        # The stationary d_E does not depend on the start: one per transitions.
        d = state_action_visitation(TabularMDP(p, problem.mdp.initial), pi_e)
        for start in SIDE_STARTS:
            mdp = TabularMDP(p, starts[start])
            rho = discounted_visitation(mdp, pi_e, discount=gamma)
            d_state = d.sum(-1)
            for learner in SIDE_LEARNERS:
                options = {
                    "discount": gamma,
                    "start": "initial",
                    "next_state": "expected" if learner.endswith("expected") else "sampled",
                }
                fit = lr.fit_valuedice(mdp, phi, d, tol=config.fit_tolerance, **options)
                value, grad = lr.valuedice_policy_objective(mdp, phi, d, theta_e, **options)
                tv = float(policy_tv(fit.policy, d, pi_e))
                rows.append(
                    {
                        "problem_id": problem.index,
                        "transitions": kind,
                        "start": start,
                        "learner": learner,
                        "flow_residual_initial": flow_residual(mdp, d, starts[start], gamma),
                        "state_kl": float(np.sum(rho * np.log(rho / d_state))),
                        "converged": bool(fit.converged),
                        "policy_tv": tv,
                        "recovered": bool(fit.converged and tv <= config.recovery_tolerance),
                        "value": float(fit.value),
                        "expert_value": float(value),
                        "expert_grad_norm": float(np.linalg.norm(grad)),
                    }
                )
    return rows


def iqlearn_discount_rows(
    problem: Problem, config: LearnerConsistencyConfig
) -> list[dict[str, Any]]:
    """IQ-Learn (both learners) on the stationary data at every discount of
    ``config.discount_scan`` (the data do not depend on gamma, only the objective does).

    Rows: problem_id, discount, learner and :func:`_fit_one`'s fields with policy_tv and
    theta_error; none unless ``problem.index < config.discount_scan_mdps``.
    """
    if problem.index >= config.discount_scan_mdps:
        return []
    d = expert_visitation(problem, "stationary", config.discount)
    pi_e = policy_probs(problem.features, problem.theta_expert)
    rows = []
    for gamma in config.discount_scan:
        scan_config = replace(config, discount=gamma)
        for learner in ("iqlearn-tabular", "iqlearn-shared"):
            fields, pi, theta = _fit_one(learner, problem, d, scan_config)
            rows.append(
                {
                    "problem_id": problem.index,
                    "discount": gamma,
                    "learner": learner,
                    **fields,
                    "policy_tv": float(policy_tv(pi, d, pi_e)),
                    "theta_error": float(np.linalg.norm(theta - problem.theta_expert))
                    if theta is not None
                    else float("nan"),
                }
            )
    return rows

"""One problem of the learner-consistency study: each learner's fit, its recovery of the
expert and its profiled gradient at the expert.

Part of :mod:`sbil.experiments.learner_consistency`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize

from sbil.experiments.consistency import Problem, policy_tv
from sbil.experiments.learner_consistency.config import LearnerConsistencyConfig
from sbil.tabular import learners as lr
from sbil.tabular.estimators import fit_bc
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.objectives import bc_objective
from sbil.tabular.policies import policy_probs, tabular_features
from sbil.tabular.visitation import state_action_visitation


def expert_visitation(problem: Problem, data: str, discount: float) -> np.ndarray:
    """``d_E[s, a]`` of the data kind (module docstring) for one problem."""
    if data == "stationary":
        return problem.d_expert
    pi_e = policy_probs(problem.features, problem.theta_expert)
    mdp = TabularMDP(problem.mdp.transitions, problem.mdp.initial, discount=discount)
    return state_action_visitation(mdp, pi_e)


def _visitation_mdp(problem: Problem, data: str, discount: float) -> TabularMDP:
    if data == "stationary":
        return problem.mdp
    return TabularMDP(problem.mdp.transitions, problem.mdp.initial, discount=discount)


def flow_residual(mdp: TabularMDP, d: np.ndarray, start: np.ndarray, discount: float) -> float:
    """``sum_s |d(s) - (1 - gamma) mu0(s) - gamma (P^T d)(s)|``: zero exactly when ``d`` is
    the discounted occupancy of its own policy from ``mu0`` (sufficient for ValueDICE's
    consistency, not necessary; see :data:`EXPLANATIONS`)."""
    inflow = np.einsum("sa,sat->t", d, mdp.dense_transitions())
    return float(np.abs(d.sum(-1) - (1.0 - discount) * start - discount * inflow).sum())


def _profiled_gradient_norm(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], base: np.ndarray, basis: np.ndarray
) -> float:
    """``|grad fun|`` at ``base + basis @ z*`` with ``z*`` minimising ``fun`` along ``basis``.

    The expert's set in a learner's parameters is ``base + span(basis)`` (e.g. a tabular Q's
    per-state shifts, AVRIL's posterior); if the full gradient is not zero at the best point
    of that set, no parameter with the expert's policy is stationary.
    """
    return float(np.linalg.norm(fun(_profiled_point(fun, base, basis))[1]))


def _profiled_point(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], base: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    """``base + basis @ z*`` with ``z*`` minimising ``fun`` along ``basis`` (``base`` when the
    basis is empty)."""
    if basis.shape[1] == 0:
        return base

    def reduced(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = fun(base + basis @ z)
        return value, basis.T @ grad

    res = scipy.optimize.minimize(
        reduced,
        np.zeros(basis.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-12, "ftol": 1e-16, "maxcor": 30},
    )
    return base + basis @ res.x


def _linear_policy_tv(pi: np.ndarray, features: np.ndarray, step: np.ndarray, d: np.ndarray):
    """``sum_s d(s) TV`` of the policy change ``softmax(f + Phi . step) - softmax(f)`` to first
    order: ``dpi = pi (Phi . step - E_pi[Phi . step])``."""
    df = features @ step
    dpi = pi * (df - np.sum(pi * df, axis=-1, keepdims=True))
    return float(np.sum(d.sum(-1) * 0.5 * np.abs(dpi).sum(-1)))


def _iqlearn_first_order(
    fit: lr.LearnerFit,
    point: np.ndarray,
    mdp: TabularMDP,
    features: np.ndarray,
    d: np.ndarray,
    shared: bool,
    options: dict[str, float],
) -> dict[str, float]:
    """IQ-Learn's optimum predicted to first order from the expert's best BC optimum
    ``point`` (``theta_E``; a tabular Q's shift-profiled ``tau log pi_E + c(s)``): the
    predicted ``|theta* - theta_E|`` (shared features; a tabular Q has no unique one), the
    linearised policy TV, and the cosine between the predicted and the fitted displacement
    in BC's Hessian metric ``<x, y> = x^T H_BC y`` (the policy's Fisher metric: a tabular
    Q's per-state shifts, which leave the policy, have norm zero in it, and so do the
    logits of states the data hardly visit, which the fit leaves where they are)."""
    step = lr.iqlearn_first_order_step(mdp, features, d, point, **options)
    hess = bc_objective(point, features, d).hess
    moved = fit.theta - point
    norms = np.sqrt(max(moved @ hess @ moved, 0.0) * max(step @ hess @ step, 0.0))
    return {
        "first_order_theta_error": float(np.linalg.norm(step)) if shared else float("nan"),
        "first_order_policy_tv": _linear_policy_tv(lr.expert_policy(d), features, step, d),
        "first_order_cosine": float(moved @ hess @ step / norms) if norms > 0 else float("nan"),
        "logit_level": float(np.sum(d * (features @ fit.theta))),
    }


_NO_FIRST_ORDER = {
    "first_order_theta_error": float("nan"),
    "first_order_policy_tv": float("nan"),
    "first_order_cosine": float("nan"),
    "logit_level": float("nan"),
}


def _fit_one(
    learner: str, problem: Problem, d: np.ndarray, config: LearnerConsistencyConfig
) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """Fit one learner; returns (fields, policy, theta of a shared-feature model or None)."""
    mdp, phi, theta_e = problem.mdp, problem.features, problem.theta_expert
    n_s, n_a = d.shape
    gamma, tol = config.discount, config.fit_tolerance
    pi_e = policy_probs(phi, theta_e)
    tabular = tabular_features(n_s, n_a)
    state_shifts = np.repeat(np.eye(n_s), n_a, axis=0)  # theta[s * A + a] += c[s]
    if learner == "bc":
        fit = fit_bc(phi, d, tol=tol * 1e-2)
        theta = np.asarray(fit.theta)
        grad = bc_objective(theta_e, phi, d, order=1).grad
        out = {
            "converged": bool(fit.converged),
            "status": str(fit.status),
            "value": float(fit.value),
            "grad_norm": float(fit.grad_norm),
            "gradient_check": float("nan"),
            "n_iter": int(fit.n_iter),
            "expert_grad_norm": float(np.linalg.norm(grad)),
            **_NO_FIRST_ORDER,
        }
        return out, policy_probs(phi, theta), theta
    if learner.startswith("valuedice"):
        _, start, *form = learner.split("-")
        next_state = "expected" if form else "sampled"
        options = {"discount": gamma, "start": start, "next_state": next_state}
        fit = lr.fit_valuedice(mdp, phi, d, tol=tol, **options)
        _, grad = lr.valuedice_policy_objective(mdp, phi, d, theta_e, **options)
        expert_grad = float(np.linalg.norm(grad))
        shared = True
        first_order = _NO_FIRST_ORDER
    elif learner.startswith("iqlearn"):
        shared = learner.endswith("shared")
        features = phi if shared else tabular
        options = {
            "discount": gamma,
            "temperature": config.temperature,
            "alpha": config.chi2_alpha,
        }
        fit = lr.fit_iqlearn(mdp, features, d, tol=tol, **options)

        def iq(theta: np.ndarray) -> tuple[float, np.ndarray]:
            return lr.iqlearn_parameter_objective(mdp, features, d, theta, **options)

        if shared:
            point = _profiled_point(iq, theta_e, np.zeros((theta_e.size, 0)))
        else:
            point = _profiled_point(iq, np.log(pi_e).reshape(-1), state_shifts)
        expert_grad = float(np.linalg.norm(iq(point)[1]))
        first_order = _iqlearn_first_order(fit, point, mdp, features, d, shared, options)
    elif learner.startswith("avril"):
        shared = learner.endswith("shared")
        features = phi if shared else tabular
        options = {"discount": gamma, "likelihood_weight": config.likelihood_weight}
        fit = lr.fit_avril(mdp, features, d, tol=tol, **options)

        def avril(x: np.ndarray) -> tuple[float, np.ndarray]:
            return lr.avril_parameter_objective(mdp, features, d, x, **options)

        base = theta_e if shared else np.log(pi_e).reshape(-1)
        n_k = base.size
        posterior = np.vstack([np.zeros((n_k, 2 * n_s)), np.eye(2 * n_s)])
        shifts = (
            np.zeros((n_k + 2 * n_s, 0))
            if shared
            else np.vstack([state_shifts, np.zeros((2 * n_s, n_s))])
        )
        expert_grad = _profiled_gradient_norm(
            avril, np.concatenate([base, np.zeros(2 * n_s)]), np.hstack([shifts, posterior])
        )
        first_order = _NO_FIRST_ORDER
    else:  # pragma: no cover - the config validates learners
        raise ValueError(f"unknown learner {learner!r}.")
    out = {
        "converged": bool(fit.converged),
        "status": fit.status,
        "value": float(fit.value),
        "grad_norm": float(fit.grad_norm),
        "gradient_check": float(fit.gradient_check),
        "n_iter": int(fit.n_iter),
        "expert_grad_norm": expert_grad,
        **first_order,
    }
    return out, fit.policy, (fit.theta if shared else None)


def _problem_rows(problem: Problem, config: LearnerConsistencyConfig) -> list[dict[str, Any]]:
    rows = []
    pi_e = policy_probs(problem.features, problem.theta_expert)
    for data in config.data:
        d = expert_visitation(problem, data, config.discount)
        vmdp = _visitation_mdp(problem, data, config.discount)
        per_problem = {
            "problem_id": problem.index,
            "data": data,
            "flow_residual_initial": flow_residual(
                problem.mdp, d, np.asarray(problem.mdp.initial), config.discount
            ),
            "flow_residual_expert": flow_residual(problem.mdp, d, d.sum(-1), config.discount),
            "greedy_tv_floor": lr.greedy_policy_tv_floor(d),
        }
        for learner in config.learners:
            start = time.perf_counter()
            fields, pi, theta = _fit_one(learner, problem, d, config)
            tv = float(policy_tv(pi, d, pi_e))
            d_pi = state_action_visitation(vmdp, pi)
            rows.append(
                {
                    **per_problem,
                    "learner": learner,
                    **fields,
                    "policy_tv": tv,
                    "theta_error": float(np.linalg.norm(theta - problem.theta_expert))
                    if theta is not None
                    else float("nan"),
                    "visitation_tv": float(0.5 * np.abs(d_pi - d).sum()),
                    "recovered": bool(fields["converged"] and tv <= config.recovery_tolerance),
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows

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
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize

from sbil.experiments.consistency import ConsistencyConfig, Problem, policy_tv, random_problems
from sbil.experiments.stats import stratified_bootstrap_ci, wilson_interval
from sbil.files import git_commit, lock, staged_folder, write_json_atomic, write_text_atomic
from sbil.progress import ProgressCallback
from sbil.tabular import learners as lr
from sbil.tabular.estimators import _one_blas_thread, fit_bc
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.objectives import bc_objective
from sbil.tabular.policies import policy_probs, tabular_features
from sbil.tabular.visitation import discounted_visitation, state_action_visitation

#: The learners, in report order. ``valuedice-*``: the policy is softmax(Phi theta), the
#: critic tabular; ``-initial``/``-expert`` is the start distribution of the (1 - gamma) term;
#: ``-expected`` is the paper's Bellman-operator form, the others the sampled loss's limit.
LEARNERS: tuple[str, ...] = (
    "bc",
    "valuedice-initial",
    "valuedice-expert",
    "valuedice-initial-expected",
    "valuedice-expert-expected",
    "iqlearn-tabular",
    "iqlearn-shared",
    "avril-tabular",
    "avril-shared",
)
DATA_KINDS: tuple[str, ...] = ("discounted", "stationary")


@dataclass(frozen=True)
class LearnerConsistencyConfig:
    """Configuration of the learner consistency study.

    Attributes:
        n_mdps: random MDPs (the consistency study's first ``n_mdps``).
        n_states: states per MDP (the consistency study's).
        n_actions: actions per MDP.
        n_params: shared parameters K.
        theta_scale: the expert's theta_E ~ N(0, theta_scale^2) per coordinate.
        seed: root seed of the problems (the consistency study's ``seed``).
        discount: gamma of every objective and of the ``"discounted"`` data.
        temperature: IQ-Learn's soft-Q temperature tau.
        chi2_alpha: IQ-Learn's chi-squared coefficient alpha.
        likelihood_weight: AVRIL's lambda.
        data: data distributions, a subset of ``("discounted", "stationary")``.
        learners: learners, a subset of :data:`LEARNERS`.
        fit_tolerance: gradient-norm tolerance of every fit.
        recovery_tolerance: a converged fit with policy TV at most this recovers pi_E.
        stationarity_tolerance: an expert gradient norm above this means pi_E is not a
            stationary point of the learner's objective.
        n_resamples: bootstrap resamples of the TV intervals.
        discount_scan: the discounts of IQ-Learn's gamma scan.
        discount_scan_mdps: the scan's problems (the first ones; at most ``n_mdps``).
    """

    n_mdps: int = 200
    n_states: int = 20
    n_actions: int = 4
    n_params: int = 5
    theta_scale: float = 1.0
    seed: int = 0
    discount: float = 0.99
    temperature: float = 0.01
    chi2_alpha: float = 0.5
    likelihood_weight: float = 1.0
    data: tuple[str, ...] = DATA_KINDS
    learners: tuple[str, ...] = LEARNERS
    fit_tolerance: float = 1e-8
    recovery_tolerance: float = 1e-6
    stationarity_tolerance: float = 1e-6
    n_resamples: int = 2000
    discount_scan: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    discount_scan_mdps: int = 20

    def __post_init__(self) -> None:
        self.problems_config  # noqa: B018 - validates the shared fields (one message source)
        if not (0.0 <= self.discount < 1.0):
            raise ValueError(f"discount must lie in [0, 1); got {self.discount!r}.")
        for name in (
            "temperature",
            "chi2_alpha",
            "likelihood_weight",
            "fit_tolerance",
            "recovery_tolerance",
            "stationarity_tolerance",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
        for name, allowed in (("data", DATA_KINDS), ("learners", LEARNERS)):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values or set(values) - set(allowed):
                raise ValueError(
                    f"{name} must be a non-empty tuple drawn from {', '.join(allowed)}; got "
                    f"{values!r}."
                )
        if not isinstance(self.n_resamples, int) or self.n_resamples < 1:
            raise ValueError(f"n_resamples must be a positive integer; got {self.n_resamples!r}.")
        scan = self.discount_scan
        if not isinstance(scan, tuple) or not all(
            isinstance(g, (int, float)) and 0.0 <= g < 1.0 for g in scan
        ):
            raise ValueError(f"discount_scan must be a tuple of discounts in [0, 1); got {scan!r}.")
        if not isinstance(self.discount_scan_mdps, int) or self.discount_scan_mdps < 0:
            raise ValueError(
                "discount_scan_mdps must be a non-negative integer; got "
                f"{self.discount_scan_mdps!r}."
            )

    @property
    def problems_config(self) -> ConsistencyConfig:
        """The consistency study's configuration that generates the same problems."""
        return ConsistencyConfig(
            n_mdps=self.n_mdps,
            n_states=self.n_states,
            n_actions=self.n_actions,
            n_params=self.n_params,
            theta_scale=self.theta_scale,
            seed=self.seed,
            n_oracle=0,
            n_tabular=0,
        )


@dataclass(frozen=True)
class LearnerConsistencyResult:
    """Tidy rows of :func:`run_learner_consistency`.

    Attributes:
        config: the configuration.
        rows: one row per (problem, data, learner): problem_id, data, learner, converged,
            status, policy_tv (sum_s d_E(s) TV(pi(.|s), pi_E(.|s))), theta_error
            (|theta - theta_E|, shared-feature learners only), visitation_tv (TV between the
            learnt policy's visitation of the data's kind and d_E), value, grad_norm,
            gradient_check, n_iter, expert_grad_norm (see the module docstring), recovered,
            flow_residual_initial / flow_residual_expert (L1 norm of d_E(s) - (1 - gamma)
            mu0(s) - gamma (P^T d_E)(s) for mu0 = the MDP's start / d_E(s)),
            greedy_tv_floor, seconds, plus the root seed and git commit; IQ-Learn rows also
            first_order_theta_error (shared features), first_order_policy_tv and
            first_order_cosine (the first-order prediction of the optimum, see
            :func:`_iqlearn_first_order`) and logit_level (sum_{s,a} d_E(s, a) Q(s, a) / tau
            at the optimum).
        valuedice_action_independent: one row per (problem, transitions, start, learner) of
            the ValueDICE side study (:func:`valuedice_action_independent_rows`).
        iqlearn_discounts: one row per (problem, discount, learner) of IQ-Learn's gamma scan
            (:func:`iqlearn_discount_rows`).
        wall_seconds: the whole run's wall time.
    """

    config: LearnerConsistencyConfig
    rows: pd.DataFrame
    wall_seconds: float = field(default=float("nan"))
    valuedice_action_independent: pd.DataFrame = field(default_factory=pd.DataFrame)
    iqlearn_discounts: pd.DataFrame = field(default_factory=pd.DataFrame)


# --------------------------------------------------------------------------------------
# One problem
# --------------------------------------------------------------------------------------


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


def _problem_rows_one_thread(
    problem: Problem, config: LearnerConsistencyConfig
) -> tuple[list[dict[str, Any]], ...]:
    """The main rows, the ValueDICE side study's and the gamma scan's, of one problem."""
    with _one_blas_thread():
        return (
            _problem_rows(problem, config),
            valuedice_action_independent_rows(problem, config),
            iqlearn_discount_rows(problem, config),
        )


def _worker_start() -> None:
    """Set up a worker process: Ctrl-C is left to the driver (which stops the pool, so the
    workers print no tracebacks of their own), and the worker exits as soon as its parent
    is gone, so a driver killed by SIGTERM or SIGKILL leaves no orphan computing on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def run_learner_consistency(
    config: LearnerConsistencyConfig,
    progress: ProgressCallback | None = None,
    *,
    workers: int = 1,
) -> LearnerConsistencyResult:
    """Fit every learner on every problem and data kind (one BLAS thread per process).

    Args:
        config: what to run.
        progress: optional ``progress(done, total)`` after each problem.
        workers: processes (1: in this process). The rows do not depend on it.

    Returns:
        LearnerConsistencyResult.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}.")
    start = time.perf_counter()
    problems = random_problems(config.problems_config)
    per_problem: list[tuple[list[dict[str, Any]], ...]] = []
    if workers == 1:
        for i, problem in enumerate(problems):
            per_problem.append(_problem_rows_one_thread(problem, config))
            if progress is not None:
                progress(i + 1, len(problems))
    else:
        # No more processes than problems; leaving the block (done, an error, Ctrl-C)
        # terminates the workers, and each exits by itself if the driver is killed.
        processes = min(workers, len(problems))
        fit = functools.partial(_problem_rows_one_thread, config=config)
        with multiprocessing.get_context().Pool(processes, initializer=_worker_start) as pool:
            # imap keeps the problem order, so the rows do not depend on the workers.
            for i, rows in enumerate(pool.imap(fit, problems)):
                per_problem.append(rows)
                if progress is not None:
                    progress(i + 1, len(problems))
    commit = git_commit()
    frames = []
    for part in range(3):
        frame = pd.DataFrame([row for rows in per_problem for row in rows[part]])
        if len(frame):
            frame["root_seed"] = config.seed
            frame["git_commit"] = commit
        frames.append(frame)
    return LearnerConsistencyResult(
        config,
        frames[0],
        time.perf_counter() - start,
        valuedice_action_independent=frames[1],
        iqlearn_discounts=frames[2],
    )


# --------------------------------------------------------------------------------------
# Summary and verdicts (the claims, judged here and only rendered by the README)
# --------------------------------------------------------------------------------------


def summarise_learners(result: LearnerConsistencyResult, *, seed: int = 0) -> pd.DataFrame:
    """Per (data, learner): recovery counts with a Wilson interval, policy TV's IQM with a
    bootstrap interval over problems (the problems are the sample), and the expert's
    stationarity.

    Returns:
        One row per (data, learner) with n_problems, n_converged, n_no_minimiser,
        n_recovered, fraction_recovered, fraction_low, fraction_high, tv_iqm, tv_low,
        tv_high, tv_median, tv_max, n_expert_not_stationary, expert_grad_median, verdict.
    """
    cfg = result.config
    out = []
    for (data, learner), grp in result.rows.groupby(["data", "learner"], sort=False):
        tv = grp["policy_tv"].to_numpy()
        n = len(grp)
        rec = int(grp["recovered"].sum())
        frac = wilson_interval(rec, n)
        ci = stratified_bootstrap_ci(tv[:, None], n_resamples=cfg.n_resamples, seed=seed)
        not_stationary = int((grp["expert_grad_norm"] > cfg.stationarity_tolerance).sum())
        out.append(
            {
                "data": data,
                "learner": learner,
                "n_problems": n,
                "n_converged": int(grp["converged"].sum()),
                "n_no_minimiser": int((grp["status"] == lr.NO_FINITE_MINIMISER).sum()),
                "n_recovered": rec,
                "fraction_recovered": frac.estimate,
                "fraction_low": frac.low,
                "fraction_high": frac.high,
                "tv_iqm": ci.estimate,
                "tv_low": ci.low,
                "tv_high": ci.high,
                "tv_median": float(np.median(tv)),
                "tv_max": float(tv.max()),
                "n_expert_not_stationary": not_stationary,
                "expert_grad_median": float(np.median(grp["expert_grad_norm"])),
                "verdict": _verdict(n, rec, not_stationary),
            }
        )
    return pd.DataFrame(out)


def summarise_action_independent(result: LearnerConsistencyResult) -> pd.DataFrame:
    """The ValueDICE side study per (transitions, start, learner): recovery, the flow
    residual from the start, policy TV, the expert's gradient, and how far ``-min_nu J`` at
    the expert is from the state mismatch ``KL(rho || d_E)``.

    Returns:
        One row per (transitions, start, learner) with n_problems, n_converged,
        n_recovered, flow_residual_median, flow_residual_min, flow_residual_max, tv_median,
        tv_max, expert_grad_max, expert_value_median, state_kl_median,
        expert_value_minus_state_kl_max (the largest |expert_value - state_kl|).
    """
    out = []
    rows = result.valuedice_action_independent
    if not len(rows):
        return pd.DataFrame(out)
    for (kind, start, learner), grp in rows.groupby(
        ["transitions", "start", "learner"], sort=False
    ):
        out.append(
            {
                "transitions": kind,
                "start": start,
                "learner": learner,
                "n_problems": len(grp),
                "n_converged": int(grp["converged"].sum()),
                "n_recovered": int(grp["recovered"].sum()),
                "flow_residual_median": float(grp["flow_residual_initial"].median()),
                "flow_residual_min": float(grp["flow_residual_initial"].min()),
                "flow_residual_max": float(grp["flow_residual_initial"].max()),
                "tv_median": float(grp["policy_tv"].median()),
                "tv_max": float(grp["policy_tv"].max()),
                "expert_grad_max": float(grp["expert_grad_norm"].max()),
                "expert_value_median": float(grp["expert_value"].median()),
                "state_kl_median": float(grp["state_kl"].median()),
                "expert_value_minus_state_kl_max": float(
                    (grp["expert_value"] - grp["state_kl"]).abs().max()
                ),
            }
        )
    return pd.DataFrame(out)


def summarise_first_order(result: LearnerConsistencyResult) -> pd.DataFrame:
    """IQ-Learn's measured miss against its first-order prediction, per (data, learner).

    Ratios are measured / predicted per problem: ``|theta* - theta_E|`` (shared features)
    and the policy TV (both learners). ``miss_over_eps`` is ``|theta* - theta_E| / (tau / (4
    alpha))``, the measured miss in units of the size the earlier README stated.

    Returns:
        One row per (data, learner) with n_problems, theta_error_median,
        first_order_theta_error_median, theta_ratio_median/min/max, tv_median,
        first_order_tv_median, tv_ratio_median/min/max, cosine_min, miss_over_eps_median/
        min/max (NaN where a tabular Q has no theta error).
    """
    cfg = result.config
    eps = cfg.temperature / (4.0 * cfg.chi2_alpha)
    rows = result.rows
    out = []
    iq = rows[rows["learner"].str.startswith("iqlearn")] if len(rows) else rows
    for (data, learner), grp in iq.groupby(["data", "learner"], sort=False):
        theta_ratio = grp["theta_error"] / grp["first_order_theta_error"]
        tv_ratio = grp["policy_tv"] / grp["first_order_policy_tv"]
        miss = grp["theta_error"] / eps
        out.append(
            {
                "data": data,
                "learner": learner,
                "n_problems": len(grp),
                "theta_error_median": float(grp["theta_error"].median()),
                "first_order_theta_error_median": float(grp["first_order_theta_error"].median()),
                "theta_ratio_median": float(theta_ratio.median()),
                "theta_ratio_min": float(theta_ratio.min()),
                "theta_ratio_max": float(theta_ratio.max()),
                "tv_median": float(grp["policy_tv"].median()),
                "first_order_tv_median": float(grp["first_order_policy_tv"].median()),
                "tv_ratio_median": float(tv_ratio.median()),
                "tv_ratio_min": float(tv_ratio.min()),
                "tv_ratio_max": float(tv_ratio.max()),
                "cosine_min": float(grp["first_order_cosine"].min()),
                "miss_over_eps_median": float(miss.median()),
                "miss_over_eps_min": float(miss.min()),
                "miss_over_eps_max": float(miss.max()),
            }
        )
    return pd.DataFrame(out)


def summarise_discount_scan(result: LearnerConsistencyResult) -> pd.DataFrame:
    """IQ-Learn's gamma scan: medians over its problems per (discount, learner).

    Returns:
        One row per (discount, learner) with n_problems and the medians theta_error,
        first_order_theta_error, policy_tv, first_order_policy_tv, logit_level.
    """
    rows = result.iqlearn_discounts
    out = []
    if not len(rows):
        return pd.DataFrame(out)
    cols = [
        "theta_error",
        "first_order_theta_error",
        "policy_tv",
        "first_order_policy_tv",
        "logit_level",
    ]
    for (gamma, learner), grp in rows.groupby(["discount", "learner"], sort=False):
        out.append(
            {
                "discount": float(gamma),
                "learner": learner,
                "n_problems": len(grp),
                **{col: float(grp[col].median()) for col in cols},
            }
        )
    return pd.DataFrame(out)


def _verdict(n: int, recovered: int, not_stationary: int) -> str:
    if recovered == n:
        return "consistent"
    if recovered == 0 and not_stationary == n:
        return "inconsistent (pi_E not even stationary)"
    if recovered == 0:
        return "inconsistent"
    return f"mixed ({recovered}/{n} recovered)"


#: Why each learner is (in)consistent: the derivations behind the verdicts (README text).
EXPLANATIONS: dict[str, str] = {
    "bc": (
        "BC's optimum is the expert whenever the expert is in the class (the likelihood is "
        "maximised by d_E(a|s))."
    ),
    "valuedice": (
        "The flow equation from ValueDICE's start distribution mu0, d_E(s) = (1 - gamma) "
        "mu0(s) + gamma (P^T d_E)(s), is sufficient for its consistency, not necessary. "
        "Sufficient, for both forms: at nu = 0, J = 0 for every policy, so max_pi min_nu J "
        "<= 0; at pi_E, Jensen gives J(pi_E, nu) >= E_dE[nu(s,a) - gamma V(s')] - (1 - "
        "gamma) E_mu0[V] = 0 by the flow equation, so pi_E attains the maximum 0; and for "
        "pi != pi_E on d_E's states the nu-gradient of J at nu = 0 is d_E(s) (pi_E - "
        "pi)(a|s) != 0, so min_nu J < 0. The discounted data satisfy the flow from the MDP's "
        "start distribution (the paper's equation) and not from d_E(s); the stationary data "
        "satisfy it from d_E(s) (the authors' code, sbil's deep learner) and not from the "
        "start distribution. The miss is small here because these dense random MDPs mix in "
        "a step or two, so the two distributions are close (see the flow residuals); it "
        "grows with the gap between the data's distribution and the discounted occupancy "
        "from the chosen start (e.g. episodic data with horizons short against 1/(1 - "
        "gamma)). Not necessary: when the transitions ignore the action, P(s'|s,a) = "
        "P(s'|s), ValueDICE recovers the expert from any start mu0 and with any data state "
        "distribution d_E(s) (stationary or not), although the flow equation fails and the "
        "maximum of min_nu J is below 0. Every policy then has the same discounted state "
        "occupancy rho from mu0, so in the expected form -min_nu J = KL(rho pi || d_E pi_E) "
        "= KL(rho || d_E(s)) + E_rho KL(pi(.|s) || pi_E(.|s)): a state mismatch that no "
        "policy changes plus a BC-like policy-matching term that only pi_E zeroes. In the "
        "sampled form the critic's Donsker-Varadhan dual may also bend the next-state law, "
        "but by the convexity of KL its best bend is the same for every action, so again "
        "-min_nu J = (a minimum over state flows u that no policy changes) + E_u KL(pi(.|s) "
        "|| pi_E(.|s)), u > 0 everywhere. The flow equation is what makes the expert's "
        "value 0; the argmax survives without it whenever the mismatch it leaves does not "
        "depend on the policy. With action-dependent transitions it does, and the expert is "
        "missed on every random problem, with flow residuals of about 1e-3. The side study "
        "below re-fits valuedice-initial on the same problems with P(s'|s,a) replaced by "
        "its average over actions (stationary data; the MDP's uniform start, and all mass "
        "on state 0, where the residual is near its largest, 2 (1 - gamma)), against the "
        "problems as drawn."
    ),
    "iqlearn": (
        "Offline IQ-Learn's first two terms telescope to tau times BC's loss, so its loss is "
        "tau BC(pi_Q) + 1/(4 alpha) E[(Q(s,a) - gamma V_Q(s'))^2] with one Q behind both; "
        "with Q = tau f (f = Phi theta, or a free f(s, a): the logits of pi_Q) it is tau "
        "times BC(theta) + eps C(theta), eps = tau/(4 alpha) and C(theta) = E[(f(s,a) - "
        "gamma logsumexp f(s'))^2] the chi-squared term in logit units. The Q's with pi_Q = "
        "pi_E are Q = tau log pi_E + c(s); the chi-squared term's gradient vanishes there "
        "only if its mean TD error is the same for every action of a state, S (A - 1) "
        "equations in S unknowns c(s), which random problems do not solve (with shared "
        "features not even the shifts are free). So the optimum trades some likelihood for "
        "smaller implied rewards, by, to first order in eps "
        "(sbil.tabular.learners.iqlearn_first_order_step), theta* - theta_E = -eps "
        "H_BC^{-1} grad C(theta_E) = -(tau/(2 alpha)) H_BC^{-1} E[r (Phi(s,a) - gamma "
        "E_{pi_E(.|s')} Phi(s',.))], with r = f_E(s,a) - gamma logsumexp f_E(s') the "
        "expert's implied reward in logit units and H_BC BC's Hessian at theta_E (the "
        "policy's Fisher information; pseudo-inverted for a tabular Q, whose per-state "
        "shifts c(s) are fixed at zeroth order by minimising C along them). eps is only the "
        "prefactor: r is a few logit units (the expert's log-probabilities plus a "
        "state-dependent log-partition term) and H_BC^{-1} amplifies the directions the data "
        "identify weakly, so the miss is tens of times eps, not eps; the prediction has the "
        "fitted displacement's direction and overshoots its size, typically by a fifth and "
        "up to 2.5 times where BC's Fisher information is weakest (the chi-squared term's "
        "own curvature, of second order in eps, stiffens exactly those directions); for a "
        "tabular Q it is within about 1% (table below). The miss does not grow like "
        "1/(1 - gamma), although a tabular Q's level does (the shifts c(s) that minimise C "
        "are about the expert's entropy over 1 - gamma: the logit level in the gamma scan): "
        "in the TD error "
        "log pi_E(a|s) + c(s) - gamma c(s') the level enters only as (1 - gamma) c plus c's "
        "differences between states, both O(1), so the implied reward, and with it the "
        "miss, keeps its size at every gamma (gamma scan below; shared features fix the "
        "level themselves). The miss vanishes like 1/alpha as alpha -> infinity (IQ-Learn "
        "-> BC)."
    ),
    "avril": (
        "AVRIL uses one Q for the policy (softmax Q) and for the TD errors Q(s,a) - gamma "
        "Q(s',a') whose likelihood under the reward posterior it maximises. With the "
        "posterior's variance optimised (lambda = 1), that term is about sum_s d_E(s) times "
        "the standard deviation of the state's TD errors, which is smallest for a constant "
        "Q: the uniform policy. The optimum is pulled far towards it (and, on some problems "
        "with shared features, all the way: the posterior's sigma -> 0 at a constant Q, an "
        "infimum the loss approaches but never attains, reported as 'no finite minimiser'; "
        "with lambda > 1 the loss is unbounded below there)."
    ),
    "rcal": (
        "RCAL has no row: its loss (a large-margin hinge plus lambda |Q(s,a) - gamma max_b "
        "Q(s',b)|) is non-smooth and non-convex, so its optimum has no exact solver here, and "
        "its policy argmax_a Q is deterministic: against these stochastic experts its policy "
        "TV is at least sum_s d_E(s) (1 - max_a pi_E(a|s)) (the greedy_tv_floor column) on "
        "every problem, with any amount of data."
    ),
}


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

COMMAND = "sbil consistency --out docs/results/learner-consistency --workers 2"


def _fmt(x: float) -> str:
    return f"{x:.2e}" if np.isfinite(x) else "nan"


def render_readme(result: LearnerConsistencyResult, summary: pd.DataFrame) -> str:
    """The results README (renders ``summary`` and :data:`EXPLANATIONS`; computes nothing)."""
    cfg = result.config
    rows = result.rows
    lines = [
        "# Are the strictly batch learners consistent where BC is? (tabular, infinite data)",
        "",
        "The critique's question asked of every learner with a tabular form: on "
        f"{cfg.n_mdps} random MDPs (|S| = {cfg.n_states}, |A| = {cfg.n_actions}) with "
        f"K = {cfg.n_params} shared linear features and a realisable expert (the consistency "
        f"study's problems: the same seeds, root seed {cfg.seed}), with infinite expert data, "
        "does the learner's optimum recover the expert's policy?",
        "",
        "A fit *recovers* pi_E when it converged (gradient norm <= "
        f"{cfg.fit_tolerance:g}) and its policy TV averaged over the expert's states, "
        f"sum_s d_E(s) TV(pi(.|s), pi_E(.|s)), is <= {cfg.recovery_tolerance:g}. "
        "'pi_E not stationary' counts problems where the gradient of the learner's objective "
        "at the expert (minimised over everything that keeps the policy at pi_E) exceeds "
        f"{cfg.stationarity_tolerance:g}: there no parameter with the expert's policy is an "
        "optimum, whatever the optimiser. TV intervals: IQM over problems, 95% percentile "
        f"bootstrap over problems ({cfg.n_resamples} resamples, seed 0); recovery fractions: "
        "Wilson 95%.",
        "",
    ]
    for data in cfg.data:
        sub = summary[summary["data"] == data]
        lines += [f"## Data: {data}", "", _DATA_TEXT[data].format(gamma=cfg.discount), ""]
        lines += [
            "| learner | verdict | recovered | policy TV, IQM [95% CI] | median | max | "
            "pi_E not stationary | converged | no finite minimiser |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sub.itertuples():
            lines.append(
                f"| {r.learner} | {r.verdict} | {r.n_recovered}/{r.n_problems} "
                f"({r.fraction_low:.2f}-{r.fraction_high:.2f}) | {_fmt(r.tv_iqm)} "
                f"[{_fmt(r.tv_low)}, {_fmt(r.tv_high)}] | {_fmt(r.tv_median)} | "
                f"{_fmt(r.tv_max)} | {r.n_expert_not_stationary}/{r.n_problems} | "
                f"{r.n_converged}/{r.n_problems} | {r.n_no_minimiser} |"
            )
        part = rows[rows["data"] == data].drop_duplicates("problem_id")
        lines += [
            "",
            "Flow residuals sum_s |d_E(s) - (1 - gamma) mu0(s) - gamma (P^T d_E)(s)| over "
            "problems (median, max): from the MDP's start distribution "
            f"{_fmt(part['flow_residual_initial'].median())}, "
            f"{_fmt(part['flow_residual_initial'].max())}; from d_E(s) "
            f"{_fmt(part['flow_residual_expert'].median())}, "
            f"{_fmt(part['flow_residual_expert'].max())}. Greedy-policy TV floor (RCAL) "
            f"median {part['greedy_tv_floor'].median():.3f}, min "
            f"{part['greedy_tv_floor'].min():.3f}.",
            "",
        ]
    lines += ["## Why", ""]
    for name, text in EXPLANATIONS.items():
        lines += [f"- **{name}**: {text}", ""]
        if name == "valuedice":
            lines += _action_independent_lines(summarise_action_independent(result))
        elif name == "iqlearn":
            lines += _first_order_lines(result)
    gc = rows["gradient_check"].dropna()
    lines += [
        "## Protocol",
        "",
        "- Objectives and solvers: `sbil.tabular.learners` (equations in its docstring). "
        "Every expectation over the data is an exact sum over d_E[s, a] and P[s, a, s'] (the "
        "limit of the sampled minibatch losses).",
        "- ValueDICE: tabular critic nu (minimised exactly by Newton's method at every "
        "policy), policy softmax(Phi theta); `-initial` starts the (1 - gamma) term at the "
        "MDP's start distribution (the paper), `-expert` at d_E(s) (the authors' code and "
        "sbil's deep learner); `-expected` is the paper's Bellman-operator form exp(nu - "
        "gamma P^pi nu), the others keep s' inside the exponential's expectation (what the "
        "sampled loss converges to).",
        f"- IQ-Learn: chi-squared, value_expert form, tau = {cfg.temperature:g}, alpha = "
        f"{cfg.chi2_alpha:g}; Q = tau Phi theta (so pi_Q = softmax(Phi theta), BC's class, "
        "the expert at theta_E) with the shared features, or one free Q(s, a) (`-tabular`).",
        f"- AVRIL: state-only posterior N(mu_s, sigma_s^2), prior N(0, 1), lambda = "
        f"{cfg.likelihood_weight:g}, a' ~ pi_E(.|s'); Q = Phi theta (shared) or tabular; "
        "policy softmax(Q).",
        f"- Discount gamma = {cfg.discount:g} in every objective and in the discounted data.",
        "- Fits start at theta = 0 (the uniform policy; AVRIL's posterior at the prior): "
        "L-BFGS-B with analytic gradients, a Newton polish with a finite-difference Hessian "
        "if needed, and a central-difference gradient check at the end point (largest "
        f"relative error over all fits: {_fmt(gc.max()) if len(gc) else 'nan'}).",
        f"- Wall time: {result.wall_seconds:.0f} s; git commit "
        f"{rows['git_commit'].iloc[0] if len(rows) else 'unknown'}.",
        "",
        "Files: `rows.csv` (one row per problem, data and learner), `summary.csv` (the "
        "tables above), `valuedice-action-independent.csv` and `iqlearn-discounts.csv` (the "
        "side studies' rows), `config.json` (the configuration, the git commit and the "
        "command). Re-create with (or `python -m sbil.experiments.learner_consistency` with "
        "the same options)",
        "",
        "```",
        COMMAND,
        "```",
        "",
    ]
    return "\n".join(lines)


def _action_independent_lines(summary: pd.DataFrame) -> list[str]:
    if not len(summary):
        return []
    lines = [
        "  ValueDICE with action-independent transitions, and the problems as drawn "
        "(stationary data; flow residual from mu0: median [min, max]; -min_nu J at theta_E "
        "against the state mismatch KL(rho || d_E): equal in the expected form, below it in "
        "the sampled one):",
        "",
        "  | transitions | start | learner | recovered | flow residual | policy TV median, max "
        "| max grad at theta_E | -min_nu J at theta_E, median | KL(rho \\|\\| d_E), median | "
        "max \\|difference\\| |",
        "  |---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"  | {r.transitions} | {r.start} | {r.learner} | {r.n_recovered}/{r.n_problems} "
            f"| {_fmt(r.flow_residual_median)} [{_fmt(r.flow_residual_min)}, "
            f"{_fmt(r.flow_residual_max)}] | {_fmt(r.tv_median)}, {_fmt(r.tv_max)} | "
            f"{_fmt(r.expert_grad_max)} | {_fmt(r.expert_value_median)} | "
            f"{_fmt(r.state_kl_median)} | {_fmt(r.expert_value_minus_state_kl_max)} |"
        )
    return [*lines, ""]


def _first_order_lines(result: LearnerConsistencyResult) -> list[str]:
    first = summarise_first_order(result)
    if not len(first):
        return []
    cfg = result.config
    eps = cfg.temperature / (4.0 * cfg.chi2_alpha)
    lines = [
        f"  IQ-Learn's miss against its first-order prediction (eps = tau/(4 alpha) = "
        f"{eps:g}; ratios measured / predicted per problem, median [min, max]; the measured "
        "|theta* - theta_E| in units of eps, the size stated before; cosine: between the "
        "predicted and the fitted displacement in BC's Hessian (Fisher) metric, where a "
        "tabular Q's shifts have norm zero):",
        "",
        "  | data | learner | \\|theta* - theta_E\\|, median | predicted | ratio | "
        "\\|theta* - theta_E\\| / eps | policy TV, median | predicted | ratio | min cosine |",
        "  |---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in first.itertuples():
        shared = np.isfinite(r.theta_ratio_median)
        theta = (
            f"{_fmt(r.theta_error_median)} | {_fmt(r.first_order_theta_error_median)} | "
            f"{r.theta_ratio_median:.3f} [{r.theta_ratio_min:.3f}, {r.theta_ratio_max:.3f}] | "
            f"{r.miss_over_eps_median:.1f} [{r.miss_over_eps_min:.1f}, "
            f"{r.miss_over_eps_max:.1f}]"
            if shared
            else "- | - | - | -"
        )
        lines.append(
            f"  | {r.data} | {r.learner} | {theta} | {_fmt(r.tv_median)} | "
            f"{_fmt(r.first_order_tv_median)} | {r.tv_ratio_median:.3f} "
            f"[{r.tv_ratio_min:.3f}, {r.tv_ratio_max:.3f}] | {r.cosine_min:.4f} |"
        )
    scan = summarise_discount_scan(result)
    if len(scan):
        lines += [
            "",
            f"  Against gamma (the first {scan['n_problems'].iloc[0]} problems, stationary "
            "data, the same at every gamma; medians; logit level: sum d_E(s, a) Q(s, a)/tau "
            "at the optimum):",
            "",
            "  | gamma | learner | \\|theta* - theta_E\\| | predicted | policy TV | "
            "predicted | logit level |",
            "  |---|---|---|---|---|---|---|",
        ]
        for r in scan.itertuples():
            theta = (
                f"{_fmt(r.theta_error)} | {_fmt(r.first_order_theta_error)}"
                if np.isfinite(r.theta_error)
                else "- | -"
            )
            lines.append(
                f"  | {r.discount:g} | {r.learner} | {theta} | {_fmt(r.policy_tv)} | "
                f"{_fmt(r.first_order_policy_tv)} | {r.logit_level:.3g} |"
            )
    return [*lines, ""]


_DATA_TEXT = {
    "discounted": (
        "d_E is the expert's normalised discounted occupancy (gamma = {gamma:g}) from the "
        "MDP's uniform start distribution: the objectives' own discount, the papers' setting."
    ),
    "stationary": (
        "d_E is the consistency study's own d_E: the expert's stationary distribution (those "
        "MDPs carry no discount); the objectives keep gamma = {gamma:g}."
    ),
}


#: The files of a study folder, and how its README starts (what marks an earlier study).
STUDY_FILES = (
    "README.md",
    "rows.csv",
    "summary.csv",
    "valuedice-action-independent.csv",
    "iqlearn-discounts.csv",
    "config.json",
)
_README_TITLE = "# Are the strictly batch learners consistent where BC is?"


def check_out_folder(out: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``out`` may receive a study: a new or empty folder, or an
    earlier study (its README and tables only), which is replaced whole.

    Raises:
        ValueError: ``out`` is empty, an existing file, or a folder holding other files.
    """
    if not os.fspath(out).strip():
        raise ValueError("--out is empty; pass a folder path, e.g. --out learner-consistency.")
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"--out {out} is an existing file, not a folder; pass a folder path.")
    if out.is_dir():
        entries = list(out.iterdir())
        foreign = sorted(
            e.name
            for e in entries
            if e.is_symlink()
            or not e.is_file()
            or not (e.name in STUDY_FILES or re.fullmatch(r"\..+\.tmp", e.name))
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise ValueError(
                f"--out {out} holds files that are not a learner consistency study ({shown}); "
                "a new study replaces the whole folder, so pass a new or empty folder."
            )
        if entries and not _is_study_readme(out / "README.md"):
            raise ValueError(
                f"--out {out} holds study file names but no README.md of a learner "
                "consistency study (an interrupted one, or another's); delete the folder or "
                "pass another one."
            )
    return out


def _is_study_readme(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as file:
            return file.read(len(_README_TITLE)) == _README_TITLE
    except (OSError, UnicodeDecodeError):
        return False


def write_learner_consistency(result: LearnerConsistencyResult, out: str | Path) -> Path:
    """Write :data:`STUDY_FILES` into the folder ``out``; config.json holds the configuration,
    the wall time, the git commit and the command that re-creates the study.

    The folder is written whole into a staging folder beside it and swapped in when complete
    (:func:`sbil.files.staged_folder`), so an error or Ctrl-C leaves an earlier study as it
    was; ``out`` must pass :func:`check_out_folder`.

    Returns:
        The README's path.
    """
    out = check_out_folder(out)
    summary = summarise_learners(result)
    with lock(out):
        check_out_folder(out)  # again: it may have changed while the study ran
        with staged_folder(out) as staging:
            write_text_atomic(staging / "rows.csv", result.rows.to_csv(index=False))
            write_text_atomic(staging / "summary.csv", summary.to_csv(index=False))
            write_text_atomic(
                staging / "valuedice-action-independent.csv",
                result.valuedice_action_independent.to_csv(index=False),
            )
            write_text_atomic(
                staging / "iqlearn-discounts.csv", result.iqlearn_discounts.to_csv(index=False)
            )
            config = asdict(result.config)
            commit = result.rows["git_commit"].iloc[0] if len(result.rows) else None
            write_json_atomic(
                staging / "config.json",
                {
                    **config,
                    "wall_seconds": result.wall_seconds,
                    "git_commit": None if pd.isna(commit) else str(commit),
                    "command": COMMAND,
                },
            )
            write_text_atomic(staging / "README.md", render_readme(result, summary))
    return out / "README.md"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sbil.experiments.learner_consistency --out FOLDER [--n-mdps N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sbil.experiments.learner_consistency",
        description="Infinite-data consistency of ValueDICE, IQ-Learn and AVRIL on random MDPs.",
    )
    parser.add_argument("--out", required=True, help="folder for README.md and the tables")
    parser.add_argument("--n-mdps", type=int, default=LearnerConsistencyConfig.n_mdps)
    parser.add_argument("--seed", type=int, default=LearnerConsistencyConfig.seed)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args(argv)
    try:
        config = LearnerConsistencyConfig(n_mdps=args.n_mdps, seed=args.seed)
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1; got {args.workers}.")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        check_out_folder(args.out)  # before the work
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    def report(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            print(f"{done}/{total} problems", file=sys.stderr, flush=True)

    result = run_learner_consistency(config, progress=report, workers=args.workers)
    path = write_learner_consistency(result, args.out)
    summary = summarise_learners(result)
    cols = ["data", "learner", "verdict", "n_recovered", "tv_iqm"]
    print(json.dumps(summary[cols].to_dict("records"), indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

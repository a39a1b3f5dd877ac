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

Re-create the committed results (minutes; ``--workers`` processes, rows independent of it)::

    python -m sbil.experiments.learner_consistency --out docs/results/learner-consistency \
        --workers 2
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
from dataclasses import asdict, dataclass, field
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
from sbil.tabular.visitation import state_action_visitation

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
            greedy_tv_floor, seconds, plus the root seed and git commit.
        wall_seconds: the whole run's wall time.
    """

    config: LearnerConsistencyConfig
    rows: pd.DataFrame
    wall_seconds: float = field(default=float("nan"))


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
    the discounted occupancy of its own policy from ``mu0`` (ValueDICE's consistency
    condition, see the results README)."""
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
    if basis.shape[1] == 0:
        return float(np.linalg.norm(fun(base)[1]))

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
    return float(np.linalg.norm(fun(base + basis @ res.x)[1]))


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
            expert_grad = _profiled_gradient_norm(iq, theta_e, np.zeros((theta_e.size, 0)))
        else:
            expert_grad = _profiled_gradient_norm(iq, np.log(pi_e).reshape(-1), state_shifts)
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


def _problem_rows_one_thread(
    problem: Problem, config: LearnerConsistencyConfig
) -> list[dict[str, Any]]:
    with _one_blas_thread():
        return _problem_rows(problem, config)


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
    per_problem: list[list[dict[str, Any]]] = []
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
    frame = pd.DataFrame([row for rows in per_problem for row in rows])
    frame["root_seed"] = config.seed
    frame["git_commit"] = git_commit()
    return LearnerConsistencyResult(config, frame, time.perf_counter() - start)


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
        "ValueDICE is consistent exactly when d_E satisfies the flow equation from its start "
        "distribution mu0: d_E(s) = (1 - gamma) mu0(s) + gamma (P^T d_E)(s). Proof, for both "
        "forms: at nu = 0, J = 0 for every policy, so max_pi min_nu J <= 0; at pi_E, Jensen "
        "gives J(pi_E, nu) >= E_dE[nu(s,a) - gamma V(s')] - (1 - gamma) E_mu0[V] = 0 by the "
        "flow equation, so pi_E attains the maximum 0; and for pi != pi_E on d_E's states the "
        "nu-gradient of J at nu = 0 is d_E(s) (pi_E - pi)(a|s) != 0, so min_nu J < 0. The "
        "discounted data satisfy the flow from the MDP's start distribution (the paper's "
        "equation) and not from d_E(s); the stationary data satisfy it from d_E(s) (the "
        "authors' code, sbil's deep learner) and not from the start distribution. The miss "
        "is small here because these dense random MDPs mix in a step or two, so the two "
        "distributions are close (see the flow residuals); it grows with the gap between the "
        "data's distribution and the discounted occupancy from the chosen start (e.g. "
        "episodic data with horizons short against 1/(1 - gamma))."
    ),
    "iqlearn": (
        "Offline IQ-Learn's first two terms telescope to tau times BC's loss, so its loss is "
        "tau BC(pi_Q) + 1/(4 alpha) E[(Q(s,a) - gamma V_Q(s'))^2] with one Q behind both. "
        "The Q's with pi_Q = pi_E are Q = tau log pi_E + c(s); the chi-squared term's "
        "gradient vanishes there only if its mean TD error is the same for every action of a "
        "state, S (A - 1) equations in S unknowns c(s), which random problems do not solve "
        "(with shared features not even the shifts are free). So the optimum trades some "
        "likelihood for smaller implied rewards: the miss is of order tau / (4 alpha) in "
        "logit units and vanishes as alpha -> infinity (IQ-Learn -> BC)."
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

COMMAND = (
    "python -m sbil.experiments.learner_consistency --out docs/results/learner-consistency "
    "--workers 2"
)


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
        "Files: `rows.csv` (one row per problem, data and learner), `summary.csv` (this "
        "table), `config.json`. Re-create with",
        "",
        "```",
        COMMAND,
        "```",
        "",
    ]
    return "\n".join(lines)


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
STUDY_FILES = ("README.md", "rows.csv", "summary.csv", "config.json")
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
    """Write README.md, rows.csv, summary.csv and config.json into the folder ``out``.

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
            config = asdict(result.config)
            write_json_atomic(
                staging / "config.json", {**config, "wall_seconds": result.wall_seconds}
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

"""Occupancy matching with known dynamics: the oracle that BC and EDM are compared against.

With the MDP known, fit ``theta`` by minimising the divergence between the expert's and the
learner's state-action visitation,

    ``KL(d_E || d_theta) = sum_{s,a} d_E(s, a) log(d_E(s, a) / d_theta(s, a))``,
    ``d_theta(s, a) = d_theta(s) pi_theta(a|s)``,

differentiating through the exact visitation of :mod:`sbil.tabular.visitation`. The KL splits
into BC's term ``-E_{d_E}[log pi_theta(a|s)]`` and a state term ``-E_{d_E}[log d_theta(s)]``.
With ``w(s) = d_E(s) / d_theta(s)`` the state term's gradient is a policy gradient whose
"value" ``lambda`` solves the adjoint of the visitation equations:

* discounted: ``(I - gamma P_pi) lambda = w``, ``g = -gamma sum_{s,a} d(s) dpi(a|s) Q(s, a)``;
* stationary: ``(I - P_pi + 1 d^T) lambda = w - (w . d) 1``, ``g = -sum d(s) dpi(a|s) Q(s, a)``;
* finite horizon: ``lambda_{H-1} = 0``, ``lambda_t = w + P_pi lambda_{t+1}``,
  ``g = -(1/H) sum_{t<H-1} sum_{s,a} rho_t(s) dpi(a|s) Q_t(s, a)``;

with ``Q(s, a) = sum_s' P[s, a, s'] lambda(s')`` and
``dpi(a|s) = pi(a|s) (Phi(s, a) - m(s))``. The minimisation is scipy's L-BFGS-B with this
analytic gradient. Dense linear algebra is used for dense MDPs and sparse LU for sparse ones,
so this is meant for small and moderate MDPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg

from sbil.tabular.checks import as_float_array
from sbil.tabular.estimators import (
    CONVERGED,
    LINE_SEARCH_FAILED,
    MAX_ITER,
    NO_FINITE_MINIMISER,
    FitError,
    FitResult,
    validate_data,
    validate_fit_options,
)
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.numeric import log_softmax
from sbil.tabular.objectives import bc_objective
from sbil.tabular.policies import logits
from sbil.tabular.visitation import state_distributions, state_visitation


@dataclass(frozen=True)
class _Forward:
    pi: np.ndarray  # [S, A]
    d_state: np.ndarray  # [S]
    rho: np.ndarray | None  # [H, S] for finite horizon


def _apply_transitions(mdp: TabularMDP, values: np.ndarray) -> np.ndarray:
    """``Q[s, a] = sum_s' P[s, a, s'] values[s']``."""
    if mdp.is_sparse:
        return np.stack([p_a @ values for p_a in mdp.transitions], axis=1)
    return mdp.transitions @ values


def _forward(mdp: TabularMDP, pi: np.ndarray) -> _Forward:
    if mdp.horizon is None:
        return _Forward(pi, state_visitation(mdp, pi), None)
    rho = np.stack(list(state_distributions(mdp, pi)))  # kept for the adjoint pass
    return _Forward(pi, rho.mean(axis=0), rho)


def _solve(matrix, rhs: np.ndarray) -> np.ndarray:
    if sp.issparse(matrix):
        return scipy.sparse.linalg.spsolve(sp.csc_array(matrix), rhs)
    return scipy.linalg.solve(matrix, rhs)


def _state_term_gradient(
    mdp: TabularMDP, features: np.ndarray, fwd: _Forward, w: np.ndarray
) -> np.ndarray:
    """Gradient of ``-sum_s d_E(s) log d_theta(s)`` with ``w = d_E / d_theta``."""
    n = mdp.n_states
    p_pi = mdp.policy_transition(fwd.pi)
    eye = sp.eye_array(n, format="csr") if sp.issparse(p_pi) else np.eye(n)
    if mdp.horizon is not None:
        weight = np.zeros((n, mdp.n_actions))  # (1/H) sum_t rho_t(s) Q_t(s, a)
        lam = np.zeros(n)
        for t in range(mdp.horizon - 2, -1, -1):
            lam = w + p_pi @ lam
            weight += fwd.rho[t][:, None] * _apply_transitions(mdp, lam)
        weighted_q = weight / mdp.horizon
    else:
        if mdp.discount is not None:
            coef = mdp.discount
            lam = _solve(eye - coef * p_pi, w)
        else:
            coef = 1.0
            d = fwd.d_state
            # The rank-one term makes the singular Poisson system solvable (dense: the
            # stationary case is for small chains).
            gap = (eye - p_pi).toarray() if sp.issparse(p_pi) else eye - p_pi
            matrix = gap + np.outer(np.ones(n), d)
            lam = _solve(matrix, w - w @ d)
        weighted_q = coef * fwd.d_state[:, None] * _apply_transitions(mdp, lam)
    # sum_{s,a} weighted_q(s, a) dpi(a|s) = sum pi (Phi - m) weighted_q
    centred_q = weighted_q - np.sum(fwd.pi * weighted_q, axis=1, keepdims=True)
    return -np.einsum("sa,sak->k", fwd.pi * centred_q, features)


def occupancy_kl(
    mdp: TabularMDP, features: np.ndarray, d_expert: np.ndarray, theta: np.ndarray
) -> tuple[float, np.ndarray]:
    """``KL(d_E || d_theta)`` over state-action visitation and its gradient in ``theta``.

    Args:
        mdp: the MDP (its horizon/discount pick the visitation).
        features: ``Phi[s, a, k]``.
        d_expert: ``d_E[s, a]``.
        theta: ``theta[k]``.

    Returns:
        (KL, gradient ``[k]``). The KL is infinite when ``d_theta(s) = 0`` where
        ``d_E(s) > 0``.
    """
    f = logits(features, theta)
    log_pi = log_softmax(f)
    fwd = _forward(mdp, np.exp(log_pi))
    d_e_state = d_expert.sum(axis=1)
    support = d_expert > 0
    with np.errstate(divide="ignore"):
        log_d_theta = np.log(fwd.d_state)[:, None] + log_pi
    if np.any(~np.isfinite(log_d_theta[support])):
        return np.inf, np.full(theta.shape, np.nan)
    kl = float(np.sum(d_expert[support] * (np.log(d_expert[support]) - log_d_theta[support])))
    w = np.divide(d_e_state, fwd.d_state, out=np.zeros_like(d_e_state), where=d_e_state > 0)
    grad = bc_objective(theta, features, d_expert, order=1).grad + _state_term_gradient(
        mdp, features, fwd, w
    )
    return kl, grad


def fit_occupancy_matching(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    *,
    theta0: np.ndarray | None = None,
    tol: float = 1e-8,
    step_tol: float = 1e-6,
    max_iter: int = 1000,
    raise_on_failure: bool = True,
) -> FitResult:
    """Fit ``theta`` by minimising ``KL(d_E || d_theta)`` with known dynamics.

    L-BFGS-B with the analytic gradient, then Newton's method (Hessian by central differences
    of the gradient) from its end point, which tells a finite minimiser from an infimum at
    infinity the same way :mod:`sbil.tabular.estimators` does: at a minimiser the Newton step
    shrinks to ``step_tol (1 + |theta|)``; when ``d_E`` has zeros that the policy class can
    only approach as ``|theta| -> infinity`` (e.g. an action the expert never takes, with
    one-hot features), the gradient vanishes like ``exp(-|theta|)`` while the Newton step
    stays of order one, and the fit reports ``"no finite minimiser"`` instead of converging
    at an arbitrary large ``theta``. Directions with curvature below ``1e-10`` of the largest
    (exact invariances, e.g. a per-state logit shift or the policy in unreachable states)
    are left where they are. A saturating direction whose curvature has already fallen below
    that level is caught differently: a reached state where the policy gives an action the
    features can still move a probability below ``1e-8`` is reported as "no finite
    minimiser" (a true minimiser would need ``d_E`` itself to be that small there).

    Args:
        mdp: the MDP; its ``horizon``/``discount`` pick the kind of visitation.
        features: ``Phi[s, a, k]``.
        d_expert: ``d_E[s, a]``, summing to one.
        theta0: start ``theta[k]``; zeros when None.
        tol: gradient-norm tolerance (> 0).
        step_tol: relative Newton-step tolerance (> 0), as in the Newton estimators.
        max_iter: L-BFGS-B iteration limit (>= 0); the Newton check adds at most 50 steps.
        raise_on_failure: raise FitError if not converged.

    Returns:
        FitResult (scalar fields); ``value`` is the KL at ``theta``; ``status`` is
        ``"converged"``, ``"no finite minimiser"``, ``"max_iter reached"``,
        ``"line search failed"`` or L-BFGS-B's own message.
    """
    max_iter = validate_fit_options(tol, step_tol, max_iter, 0.0)
    features, d_expert = validate_data(features, d_expert)
    if features.ndim != 3 or d_expert.ndim != 2:
        raise ValueError(
            "fit_occupancy_matching fits one problem: pass features Phi[s, a, k] and "
            "d_E[s, a] without batch dimensions (loop over problems)."
        )
    if features.shape[:2] != (mdp.n_states, mdp.n_actions):
        raise ValueError(
            f"features have (S, A) = {features.shape[:2]} but the MDP has "
            f"({mdp.n_states}, {mdp.n_actions}); build features for this MDP."
        )
    n_k = features.shape[-1]
    theta0 = np.zeros(n_k) if theta0 is None else as_float_array(theta0, "theta0", "theta[k]")
    if theta0.shape != (n_k,) or not np.all(np.isfinite(theta0)):
        raise ValueError(
            f"theta0 must be finite with shape ({n_k},); got {theta0.shape}; pass finite "
            "theta[k], or None for zeros."
        )
    kl0, _ = occupancy_kl(mdp, features, d_expert, theta0)
    if not np.isfinite(kl0):
        raise ValueError(
            "KL(d_E || d_theta0) is infinite: the expert visits states the start policy never "
            "reaches; check that d_E comes from this MDP."
        )

    def kl_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return occupancy_kl(mdp, features, d_expert, theta)

    res = scipy.optimize.minimize(
        kl_and_grad,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol / np.sqrt(n_k), "ftol": 1e-16, "maxcor": 20},
    )
    theta, n_iter = res.x, int(res.nit)
    if res.nit >= max_iter and not res.success:
        status = MAX_ITER
    else:
        # L-BFGS-B also stops on its relative-reduction test or a failed line search with a
        # gradient just above ``tol``; Newton's method from there finishes the fit (and tells a
        # minimiser from an infimum at infinity), whatever L-BFGS-B's stopping reason.
        theta, status, n_newton = _newton_finish(kl_and_grad, theta, tol=tol, step_tol=step_tol)
        n_iter += n_newton
        if status == CONVERGED and _saturated(mdp, features, theta):
            status = NO_FINITE_MINIMISER
    kl, grad = kl_and_grad(theta)
    grad_norm = float(np.linalg.norm(grad))
    converged = status == CONVERGED
    result = FitResult(
        theta=theta,
        converged=bool(converged),
        n_iter=n_iter,
        grad_norm=grad_norm,
        value=float(kl),
        status=status,
    )
    if raise_on_failure and not converged:
        raise FitError(_failure_message(status, grad_norm, tol, theta, n_iter, res), result)
    return result


def _failure_message(status, grad_norm, tol, theta, n_iter, res) -> str:
    if status == NO_FINITE_MINIMISER:
        return (
            f"occupancy matching has no finite minimiser: the KL keeps decreasing as theta "
            f"grows without bound (|theta| = {np.linalg.norm(theta):.3g}, gradient norm "
            f"{grad_norm:.3g}), because d_E has zeros the policy class reaches only in the "
            "limit (e.g. an action never taken); use features that cannot single them out, "
            "or pass raise_on_failure=False to get the last iterate."
        )
    return (
        f"occupancy matching did not converge ({status}): gradient norm {grad_norm:.3g} "
        f"(tol {tol:g}) after {n_iter} iterations ({res.message}); raise max_iter or tol, or "
        "pass raise_on_failure=False."
    )


#: Newton steps of the convergence check; more means the problem is not a clean minimum.
NEWTON_CHECK_STEPS = 50


def _newton_finish(
    kl_and_grad, theta: np.ndarray, *, tol: float, step_tol: float
) -> tuple[np.ndarray, str, int]:
    """Newton iterations from a point with a small gradient: minimiser or infimum at infinity?

    Returns (theta, status, Newton steps taken). A step of norm ``<= step_tol (1 + |theta|)``
    with gradient ``<= tol`` is a minimiser; three consecutive steps with gradient ``<= tol``
    but a large step are the ``exp(-|theta|)`` tail of an infimum at infinity.
    """
    flat_steps = 0
    for it in range(NEWTON_CHECK_STEPS):
        kl, grad = kl_and_grad(theta)
        hess = _hessian(kl_and_grad, theta)
        eigval, eigvec = np.linalg.eigh(hess)
        curved = eigval > 1e-10 * max(float(np.abs(eigval).max()), 1e-300)
        coef = np.where(curved, eigvec.T @ grad / np.where(curved, eigval, 1.0), 0.0)
        step = -(eigvec @ coef)
        small_grad = np.linalg.norm(grad) <= tol
        if small_grad and np.linalg.norm(step) <= step_tol * (1.0 + np.linalg.norm(theta)):
            return theta, CONVERGED, it
        flat_steps = flat_steps + 1 if small_grad else 0
        if flat_steps >= 3:
            return theta, NO_FINITE_MINIMISER, it
        slope = float(grad @ step)
        if slope >= 0:  # no descent (curvature estimate too noisy): fall back to the gradient
            step, slope = -grad, -float(grad @ grad)
        t = 1.0
        for _ in range(60):
            trial = theta + t * step
            if kl_and_grad(trial)[0] <= kl + 1e-4 * t * slope or abs(slope) <= 1e-14 * (1 + kl):
                theta = trial
                break
            t *= 0.5
        else:
            return theta, LINE_SEARCH_FAILED, it
    return theta, MAX_ITER, NEWTON_CHECK_STEPS


#: A reached state's action probability below this, where the features can still move that
#: action's logit, means the fit ran towards the boundary of the policy simplex.
SATURATED_PROBABILITY = 1e-8


def _saturated(mdp: TabularMDP, features: np.ndarray, theta: np.ndarray) -> bool:
    """Whether ``pi_theta`` has (numerically) driven a movable action to probability zero.

    The Newton check cannot see this once the curvature along the run-off direction,
    ``~ pi(a|s)``, is below round-off of the finite-difference Hessian: there the KL has
    stopped changing in float64 although it would keep decreasing. A finite minimiser only
    gives an action probability below :data:`SATURATED_PROBABILITY` in a reached state if
    ``d_E`` itself is that small, so such a point is reported as having no finite minimiser.
    """
    log_pi = log_softmax(logits(features, theta))
    d_state = state_visitation(mdp, np.exp(log_pi))
    # Unless all of a state's actions share one feature vector, every action's logit can move
    # relative to some other action of that state.
    spread = (features.max(axis=1) - features.min(axis=1)).max(axis=-1)  # [S]
    movable = spread > 1e-12 * max(float(np.abs(features).max()), 1e-300)
    tiny = log_pi < np.log(SATURATED_PROBABILITY)
    return bool(np.any(tiny & (movable & (d_state > 1e-8))[:, None]))


def _hessian(kl_and_grad, theta: np.ndarray) -> np.ndarray:
    """Symmetrised central differences of the analytic gradient, ``[K, K]``."""
    n_k = theta.size
    hess = np.empty((n_k, n_k))
    for k in range(n_k):
        h = 1e-5 * (1.0 + abs(theta[k]))
        e = np.zeros(n_k)
        e[k] = h
        hess[:, k] = (kl_and_grad(theta + e)[1] - kl_and_grad(theta - e)[1]) / (2 * h)
    return 0.5 * (hess + hess.T)

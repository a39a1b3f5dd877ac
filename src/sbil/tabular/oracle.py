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

from sbil.tabular.estimators import CONVERGED, MAX_ITER, FitError, FitResult, validate_data
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.objectives import bc_objective
from sbil.tabular.policies import log_softmax, logits
from sbil.tabular.visitation import state_visitation


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
    p_pi_t = mdp.policy_transition(pi).T
    rho = np.empty((mdp.horizon, mdp.n_states))
    rho[0] = mdp.initial
    for t in range(1, mdp.horizon):
        rho[t] = p_pi_t @ rho[t - 1]
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
    grad = bc_objective(theta, features, d_expert).grad + _state_term_gradient(
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
    max_iter: int = 1000,
    raise_on_failure: bool = True,
) -> FitResult:
    """Fit ``theta`` by minimising ``KL(d_E || d_theta)`` with known dynamics (L-BFGS-B).

    Args:
        mdp: the MDP; its ``horizon``/``discount`` pick the visitation convention.
        features: ``Phi[s, a, k]``.
        d_expert: ``d_E[s, a]``, summing to one.
        theta0: start ``theta[k]``; zeros when None.
        tol: converged when the gradient norm is <= tol.
        max_iter: L-BFGS-B iteration limit.
        raise_on_failure: raise FitError if not converged.

    Returns:
        FitResult (scalar fields); ``value`` is the KL at ``theta``.
    """
    features, d_expert = validate_data(features, d_expert)
    if features.ndim != 3 or d_expert.ndim != 2:
        raise ValueError(
            "fit_occupancy_matching fits one problem: pass features Phi[s, a, k] and "
            "d_E[s, a] without batch dimensions (loop over problems)."
        )
    if features.shape[:2] != (mdp.n_states, mdp.n_actions):
        raise ValueError(
            f"features have (S, A) = {features.shape[:2]} but the MDP has "
            f"({mdp.n_states}, {mdp.n_actions})."
        )
    n_k = features.shape[-1]
    theta0 = np.zeros(n_k) if theta0 is None else np.asarray(theta0, dtype=np.float64)
    if theta0.shape != (n_k,) or not np.all(np.isfinite(theta0)):
        raise ValueError(f"theta0 must be finite with shape ({n_k},); got {theta0.shape}.")
    kl0, _ = occupancy_kl(mdp, features, d_expert, theta0)
    if not np.isfinite(kl0):
        raise ValueError(
            "KL(d_E || d_theta0) is infinite: the expert visits states the start policy never "
            "reaches; check that d_E comes from this MDP."
        )
    res = scipy.optimize.minimize(
        lambda th: occupancy_kl(mdp, features, d_expert, th),
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol / np.sqrt(n_k), "ftol": 1e-16, "maxcor": 20},
    )
    kl, grad = occupancy_kl(mdp, features, d_expert, res.x)
    grad_norm = float(np.linalg.norm(grad))
    converged = grad_norm <= tol
    result = FitResult(
        theta=res.x,
        converged=bool(converged),
        n_iter=int(res.nit),
        grad_norm=grad_norm,
        value=float(kl),
        status=CONVERGED if converged else MAX_ITER if res.nit >= max_iter else str(res.message),
    )
    if raise_on_failure and not converged:
        raise FitError(
            f"occupancy matching did not converge: gradient norm {grad_norm:.3g} > tol {tol:g} "
            f"after {res.nit} L-BFGS-B iterations ({res.message}); raise max_iter or tol, or "
            "pass raise_on_failure=False.",
            result,
        )
    return result

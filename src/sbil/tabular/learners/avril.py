"""AVRIL's population objective on finite MDPs (state-only Gaussian reward posterior) and its fit.

Part of :mod:`sbil.tabular.learners` (its module doc gives the equations).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from sbil.tabular.learners.common import (
    COLLAPSED_STD,
    CONVERGED,
    NO_FINITE_MINIMISER,
    NOT_CONVERGED,
    LearnerFit,
    _minimise,
    _positive,
    _problem,
    _theta0,
    expert_policy,
)
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.numeric import log_softmax


@dataclass(frozen=True)
class AvrilTerms:
    """AVRIL's loss and its gradients.

    Attributes:
        value: ``bc_term + kl_term + likelihood_weight * likelihood_term``.
        bc_term: ``E_d[-log softmax(Q(s, .))[a]]``.
        kl_term: ``E_{s~d}[KL(N(mu_s, sigma_s^2) || N(0, 1))]``.
        likelihood_term: ``E[-log N(Q(s, a) - gamma Q(s', a'); mu_s, sigma_s^2)]``.
        grad_q: ``dL/dQ[s, a]``.
        grad_mean: ``dL/dmu[s]``.
        grad_log_std: ``dL/dlog sigma[s]``.
    """

    value: float
    bc_term: float
    kl_term: float
    likelihood_term: float
    grad_q: np.ndarray
    grad_mean: np.ndarray
    grad_log_std: np.ndarray


def avril_objective(
    transitions: np.ndarray,
    d: np.ndarray,
    q: np.ndarray,
    reward_mean: np.ndarray,
    reward_log_std: np.ndarray,
    *,
    discount: float,
    likelihood_weight: float,
    next_policy: np.ndarray,
) -> AvrilTerms:
    """AVRIL's loss with a state-only reward posterior (module docstring; Chan & van der
    Schaar 2021, the ELBO with the TD-error likelihood).

    Args:
        transitions: ``P[s, a, s']``.
        d: the expert's visitation ``d[s, a]``.
        q: ``Q[s, a]``.
        reward_mean: ``mu[s]``.
        reward_log_std: ``log sigma[s]``.
        discount: gamma.
        likelihood_weight: lambda.
        next_policy: ``pi_E[s', a']``, the distribution of the data's next action.

    Returns:
        AvrilTerms.
    """
    gamma, lam = discount, likelihood_weight
    log_pi = log_softmax(q)
    d_state = d.sum(-1)
    sigma2 = np.exp(2.0 * reward_log_std)
    bc_term = -float(np.sum(d * log_pi))
    kl_term = float(np.sum(d_state * (0.5 * (sigma2 + reward_mean**2 - 1.0) - reward_log_std)))
    # Weight of (s, a, s', a') and the TD error r = Q(s, a) - gamma Q(s', a').
    w = (d[:, :, None] * transitions)[..., None] * next_policy[None, None]
    err = q[:, :, None, None] - gamma * q[None, None] - reward_mean[:, None, None, None]
    per_state = (reward_log_std + 0.5 * np.log(2.0 * np.pi))[:, None, None, None]
    nll = float(np.sum(w * (0.5 * err**2 / sigma2[:, None, None, None] + per_state)))
    e = w * err / sigma2[:, None, None, None]
    grad_q = d_state[:, None] * np.exp(log_pi) - d
    grad_q = grad_q + lam * (e.sum((2, 3)) - gamma * e.sum((0, 1)))
    grad_mean = d_state * reward_mean - lam * e.sum((1, 2, 3))
    grad_log_std = d_state * (sigma2 - 1.0) + lam * np.sum(
        w * (1.0 - err**2 / sigma2[:, None, None, None]), axis=(1, 2, 3)
    )
    return AvrilTerms(
        value=bc_term + kl_term + lam * nll,
        bc_term=bc_term,
        kl_term=kl_term,
        likelihood_term=nll,
        grad_q=grad_q,
        grad_mean=grad_mean,
        grad_log_std=grad_log_std,
    )


def _next_policy(transitions: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The data's next-action distribution ``pi_E(a'|s')``; every reached ``s'`` needs data."""
    reached = np.einsum("sa,sat->t", d, transitions) > 0
    missing = reached & (d.sum(-1) <= 0)
    if missing.any():
        s = int(np.argmax(missing))
        raise ValueError(
            f"state {s} is reached from the expert's data but has no data itself, so the next "
            "action a' of AVRIL's TD term is undefined there; pass d_expert as a visitation of "
            "this MDP (state_action_visitation(mdp, pi_E))."
        )
    return expert_policy(d)


def _avril_fun(transitions, features, d, gamma, lam, next_policy):
    n_k = features.shape[-1]
    n_s = d.shape[0]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, mean, log_std = x[:n_k], x[n_k : n_k + n_s], x[n_k + n_s :]
        terms = avril_objective(
            transitions,
            d,
            features @ theta,
            mean,
            log_std,
            discount=gamma,
            likelihood_weight=lam,
            next_policy=next_policy,
        )
        grad_theta = np.einsum("sa,sak->k", terms.grad_q, features)
        return terms.value, np.concatenate([grad_theta, terms.grad_mean, terms.grad_log_std])

    return fun


def avril_parameter_objective(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    params: np.ndarray,
    *,
    discount: float = 0.99,
    likelihood_weight: float = 1.0,
) -> tuple[float, np.ndarray]:
    """AVRIL's loss and gradient at ``params = [theta[k], mu[s], log sigma[s]]``."""
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    lam = _positive(likelihood_weight, "likelihood_weight")
    n = features.shape[-1] + 2 * mdp.n_states
    return _avril_fun(transitions, features, d, gamma, lam, _next_policy(transitions, d))(
        _theta0(params, n)
    )


def fit_avril(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    *,
    discount: float = 0.99,
    likelihood_weight: float = 1.0,
    theta0: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 3000,
    check_gradient: bool = True,
) -> LearnerFit:
    """AVRIL's population optimum over ``Q = Phi . theta`` and the posterior ``(mu, sigma)``.

    The policy is ``softmax(Q)`` (temperature 1, as in AVRIL), so the expert is realisable at
    ``theta = theta_E``. The posterior starts at the prior (``mu = 0``, ``sigma = 1``).

    The objective need not have a finite minimiser: where the TD errors of a state can be made
    equal (e.g. a constant ``Q``, the uniform policy), ``sigma_s -> 0`` lowers the loss by
    ``(lambda - 1) log sigma_s`` plus a term that vanishes with the TD errors' spread, so for
    ``lambda > 1`` the loss is unbounded below there, and for ``lambda = 1`` (the default) it
    approaches an infimum it never attains. Such a fit is reported as ``"no finite
    minimiser"`` (a posterior std below :data:`COLLAPSED_STD` with the gradient above
    ``tol``); its policy is the limit the fit approaches.

    Args:
        mdp: the MDP.
        features: ``Phi[s, a, k]`` of ``Q``.
        d_expert: the expert's visitation ``d[s, a]``.
        discount: gamma.
        likelihood_weight: lambda (AVRIL's code: 1).
        theta0: start of ``theta`` (zeros when None).
        tol: gradient-norm tolerance over all parameters.
        max_iter: L-BFGS-B iteration limit.
        check_gradient: compare the final gradient with central differences.

    Returns:
        LearnerFit; ``auxiliary`` holds ``q``, ``reward_mean`` and ``reward_std``.
    """
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    lam = _positive(likelihood_weight, "likelihood_weight")
    n_k, n_s = features.shape[-1], mdp.n_states
    fun = _avril_fun(transitions, features, d, gamma, lam, _next_policy(transitions, d))
    x0 = np.concatenate([_theta0(theta0, n_k), np.zeros(2 * n_s)])
    x, value, grad, n_iter, check = _minimise(
        fun, x0, tol=tol, max_iter=max_iter, check=check_gradient
    )
    theta = x[:n_k]
    grad_norm = float(np.linalg.norm(grad))
    status = CONVERGED if grad_norm <= tol else NOT_CONVERGED
    reward_std = np.exp(x[n_k + n_s :])
    if status != CONVERGED and np.any((reward_std < COLLAPSED_STD) & (d.sum(-1) > 0)):
        status = NO_FINITE_MINIMISER
    return LearnerFit(
        theta=theta,
        policy=np.exp(log_softmax(features @ theta)),
        value=value,
        grad_norm=grad_norm,
        gradient_check=check,
        converged=status == CONVERGED,
        status=status,
        n_iter=n_iter,
        auxiliary=MappingProxyType(
            {
                "q": features @ theta,
                "reward_mean": x[n_k : n_k + n_s],
                "reward_std": reward_std,
            }
        ),
    )

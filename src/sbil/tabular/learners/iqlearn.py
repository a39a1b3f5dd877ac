"""Offline IQ-Learn's population objective (chi-squared, value_expert) on finite MDPs, its fit
and its first-order step from BC's optimum.

Part of :mod:`sbil.tabular.learners` (its module doc gives the equations).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from sbil.tabular.learners.common import (
    CONVERGED,
    NOT_CONVERGED,
    LearnerFit,
    _minimise,
    _positive,
    _problem,
    _theta0,
)
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.numeric import log_softmax, logsumexp
from sbil.tabular.objectives import bc_objective


@dataclass(frozen=True)
class IQLearnTerms:
    """IQ-Learn's loss and its gradient at one ``Q``.

    Attributes:
        value: ``expert_term + value_term + chi2_term``.
        expert_term: ``-E_{d,s'}[Q(s, a) - gamma V(s')]``.
        value_term: ``E_{d,s'}[V(s) - gamma V(s')]``.
        chi2_term: ``1/(4 alpha) E_{d,s'}[(Q(s, a) - gamma V(s'))^2]``.
        grad_q: ``dL/dQ[s, a]``.
        policy: ``pi_Q[s, a] = softmax(Q / tau)``.
    """

    value: float
    expert_term: float
    value_term: float
    chi2_term: float
    grad_q: np.ndarray
    policy: np.ndarray


def iqlearn_objective(
    transitions: np.ndarray,
    d: np.ndarray,
    q: np.ndarray,
    *,
    discount: float,
    temperature: float,
    alpha: float,
) -> IQLearnTerms:
    """Offline IQ-Learn's loss (module docstring; Garg et al. 2021, the offline chi^2 form).

    Args:
        transitions: ``P[s, a, s']``.
        d: the expert's visitation ``d[s, a]``.
        q: ``Q[s, a]``.
        discount: gamma.
        temperature: tau > 0 of ``V_Q = tau logsumexp(Q / tau)``.
        alpha: the chi-squared coefficient (> 0).

    Returns:
        IQLearnTerms.
    """
    gamma, tau = discount, temperature
    z = q / tau
    v = tau * logsumexp(z)  # V_Q(s)
    pi = np.exp(z - (v / tau)[:, None])
    next_v = transitions @ v  # E_{s'}[V(s')] per (s, a)
    w = d[:, :, None] * transitions  # weight of (s, a, s')
    inflow = w.sum((0, 1))  # data weight arriving at s'
    reward = q[:, :, None] - gamma * v  # implied reward r(s, a, s')
    expert_term = -float(np.sum(d * (q - gamma * next_v)))
    value_term = float(np.sum(d * (v[:, None] - gamma * next_v)))
    chi2_term = float(np.sum(w * reward**2) / (4.0 * alpha))
    wr = w * reward
    grad = -d + gamma * inflow[:, None] * pi  # expert term
    grad += (d.sum(-1) - gamma * inflow)[:, None] * pi  # value term
    grad += (wr.sum(-1) - gamma * wr.sum((0, 1))[:, None] * pi) / (2.0 * alpha)
    return IQLearnTerms(
        value=expert_term + value_term + chi2_term,
        expert_term=expert_term,
        value_term=value_term,
        chi2_term=chi2_term,
        grad_q=grad,
        policy=pi,
    )


def iqlearn_parameter_objective(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    theta: np.ndarray,
    *,
    discount: float = 0.99,
    temperature: float = 0.01,
    alpha: float = 0.5,
) -> tuple[float, np.ndarray]:
    """IQ-Learn's loss divided by ``tau`` at ``Q = tau Phi . theta``, and its gradient.

    Dividing by ``tau`` makes it BC's loss plus ``tau/(4 alpha)`` times the chi-squared term
    in units of the logits, so the optimiser sees the same scale as BC's.
    """
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    tau = _positive(temperature, "temperature")
    alpha = _positive(alpha, "alpha")
    return _iqlearn_fun(transitions, features, d, gamma, tau, alpha)(
        _theta0(theta, features.shape[-1])
    )


def _iqlearn_fun(transitions, features, d, gamma, tau, alpha):
    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        q = tau * (features @ theta)
        terms = iqlearn_objective(transitions, d, q, discount=gamma, temperature=tau, alpha=alpha)
        return terms.value / tau, np.einsum("sa,sak->k", terms.grad_q, features)

    return fun


def fit_iqlearn(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    *,
    discount: float = 0.99,
    temperature: float = 0.01,
    alpha: float = 0.5,
    theta0: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 2000,
    check_gradient: bool = True,
) -> LearnerFit:
    """Offline IQ-Learn's population optimum over ``Q = tau Phi . theta``.

    The parametrisation puts ``tau`` outside the features so that ``pi_Q = softmax(Phi .
    theta)``: the policy class is BC's, and the expert is realisable at ``theta = theta_E``
    (``Q_E = tau Phi . theta_E``). A plain ``Q = Phi . w`` is the same class with ``w = tau
    theta``. With one-hot features ``Q`` is tabular.

    Args:
        mdp: the MDP.
        features: ``Phi[s, a, k]`` of ``Q``.
        d_expert: the expert's visitation ``d[s, a]``.
        discount: gamma.
        temperature: tau (IQ-Learn's conf: 0.01).
        alpha: chi-squared coefficient (IQ-Learn's conf: 0.5).
        theta0: start (zeros when None).
        tol: gradient-norm tolerance on the loss divided by tau.
        max_iter: L-BFGS-B iteration limit.
        check_gradient: compare the final gradient with central differences.

    Returns:
        LearnerFit; ``value`` is the loss itself (not divided by tau); ``auxiliary["q"]``.
    """
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    tau = _positive(temperature, "temperature")
    alpha = _positive(alpha, "alpha")
    fun = _iqlearn_fun(transitions, features, d, gamma, tau, alpha)
    theta, value, grad, n_iter, check = _minimise(
        fun, _theta0(theta0, features.shape[-1]), tol=tol, max_iter=max_iter, check=check_gradient
    )
    grad_norm = float(np.linalg.norm(grad))
    return LearnerFit(
        theta=theta,
        policy=np.exp(log_softmax(features @ theta)),
        value=value * tau,
        grad_norm=grad_norm,
        gradient_check=check,
        converged=grad_norm <= tol,
        status=CONVERGED if grad_norm <= tol else NOT_CONVERGED,
        n_iter=n_iter,
        auxiliary=MappingProxyType({"q": tau * (features @ theta)}),
    )


def iqlearn_first_order_step(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    theta: np.ndarray,
    *,
    discount: float = 0.99,
    temperature: float = 0.01,
    alpha: float = 0.5,
) -> np.ndarray:
    """First-order prediction of IQ-Learn's optimum ``theta*`` from a BC optimum ``theta``.

    In the parametrisation of :func:`fit_iqlearn` (``Q = tau Phi . theta``) the loss divided
    by tau is ``BC(theta) + eps C(theta)`` with ``eps = tau / (4 alpha)`` and the chi-squared
    term in logit units, ``C(theta) = E_{d,s'}[(f(s, a) - gamma logsumexp_b f(s', b))^2]``,
    ``f = Phi . theta``. At a BC optimum (the expert, when it is realisable) ``grad BC = 0``,
    so the optimum moves by::

        theta* - theta = -eps H_BC^+ grad C(theta) + O(eps^2)
                       = -(tau / (2 alpha)) H_BC^+ E_{d,s'}[r(s, a, s') (Phi(s, a)
                           - gamma E_{pi(.|s')} Phi(s', .))] + O(eps^2),

    ``r = f(s, a) - gamma logsumexp f(s')`` the implied reward in logit units and ``H_BC``
    BC's Hessian (the Fisher information of the policy, pseudo-inverted: its null directions,
    e.g. a tabular Q's per-state shifts, leave the policy unchanged). With such free shifts
    the BC optima form a set; pass the one that minimises the loss along them (the zeroth
    order of the optimum), where the gradient is orthogonal to the shifts.

    Args:
        mdp: the MDP.
        features: ``Phi[s, a, k]`` of ``Q``.
        d_expert: the expert's visitation ``d[s, a]``.
        theta: a BC optimum ``theta[k]`` (e.g. ``theta_E``).
        discount: gamma.
        temperature: tau.
        alpha: chi-squared coefficient.

    Returns:
        The predicted displacement ``theta* - theta``, shape ``[k]``.
    """
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    tau = _positive(temperature, "temperature")
    alpha = _positive(alpha, "alpha")
    theta = _theta0(theta, features.shape[-1])
    _, grad = _iqlearn_fun(transitions, features, d, gamma, tau, alpha)(theta)
    hess = bc_objective(theta, features, d).hess
    return -np.linalg.pinv(hess, rcond=1e-10, hermitian=True) @ grad

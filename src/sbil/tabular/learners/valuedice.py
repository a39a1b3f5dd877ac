"""ValueDICE's population objective on finite MDPs, its inner minimisation over nu and its fit.

Part of :mod:`sbil.tabular.learners` (its module doc gives the equations).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from sbil.tabular.checks import as_float_array
from sbil.tabular.estimators import _one_blas_thread
from sbil.tabular.learners.common import (
    CONVERGED,
    INNER_FAILED,
    NOT_CONVERGED,
    LearnerFit,
    NextState,
    Start,
    _minimise,
    _problem,
    _softmax_backward,
    _theta0,
)
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.numeric import log_softmax, logsumexp


@dataclass(frozen=True)
class ValueDiceTerms:
    """ValueDICE's objective and its gradients at one ``(pi, nu)``.

    Attributes:
        value: ``J = log_term - start_term``.
        log_term: ``log E_{d, s'} exp(nu(s, a) - gamma V(s'))`` (or the ``"expected"`` form).
        start_term: ``(1 - gamma) E_{mu0}[V(s0)]``, ``V(s) = sum_b pi(b|s) nu(s, b)``.
        grad_nu: ``dJ/dnu[s, a]``.
        grad_pi: ``dJ/dpi[s, a]``, with ``pi`` treated as a free array (chain through the
            softmax with the policy's parametrisation).
        weights: the normalised exponential weights, ``[s, a, s']`` (sampled) or ``[s, a]``
            (expected): at the minimising ``nu`` of the expected form they are
            ``dtilde^pi[s, a]``.
    """

    value: float
    log_term: float
    start_term: float
    grad_nu: np.ndarray
    grad_pi: np.ndarray
    weights: np.ndarray


def valuedice_objective(
    transitions: np.ndarray,
    d: np.ndarray,
    start: np.ndarray,
    pi: np.ndarray,
    nu: np.ndarray,
    *,
    discount: float,
    next_state: NextState = "sampled",
) -> ValueDiceTerms:
    """ValueDICE's ``J(pi, nu)`` (module docstring; Kostrikov et al. 2020, Sec. 4).

    Args:
        transitions: ``P[s, a, s']`` (dense).
        d: the expert's visitation ``d[s, a]``.
        start: ``mu0[s]``, the start distribution of the ``(1 - gamma)`` term.
        pi: the policy ``pi[s, a]``.
        nu: the critic ``nu[s, a]``.
        discount: gamma in [0, 1).
        next_state: ``"sampled"`` (``s'`` inside the exponential's expectation, what the
            sampled loss converges to) or ``"expected"`` (the paper's ``exp(nu - B^pi nu)``).

    Returns:
        ValueDiceTerms.
    """
    gamma = discount
    v = np.sum(pi * nu, axis=-1)  # V(s)
    with np.errstate(divide="ignore"):
        if next_state == "sampled":
            log_w = np.log(d)[:, :, None] + np.log(transitions) + nu[:, :, None] - gamma * v
        elif next_state == "expected":
            log_w = np.log(d) + nu - gamma * (transitions @ v)
        else:
            raise ValueError(f"next_state must be 'sampled' or 'expected'; got {next_state!r}.")
    flat = log_w.reshape(-1)
    log_term = float(logsumexp(flat[np.isfinite(flat)]))
    weights = np.exp(log_w - log_term)
    if next_state == "sampled":
        grad_log_nu = weights.sum(-1)
        into = weights.sum((0, 1))  # weight arriving at s'
    else:
        grad_log_nu = weights
        into = np.einsum("sa,sat->t", weights, transitions)
    grad_v = -gamma * into - (1.0 - gamma) * start  # dJ/dV(s)
    start_term = float((1.0 - gamma) * start @ v)
    return ValueDiceTerms(
        value=log_term - start_term,
        log_term=log_term,
        start_term=start_term,
        grad_nu=grad_log_nu + grad_v[:, None] * pi,
        grad_pi=grad_v[:, None] * nu,
        weights=weights,
    )


def _valuedice_hessian(
    terms: ValueDiceTerms, transitions: np.ndarray, pi: np.ndarray, gamma: float, sampled: bool
) -> np.ndarray:
    """``d2J/dnu2`` as ``[S*A, S*A]``: ``N^T (diag w - w w^T) N`` for the affine map ``N`` of
    ``nu`` to the exponent (the start term is linear in ``nu``)."""
    n_s, n_a = pi.shape
    w = terms.weights
    if sampled:
        # exponent(s, a, t) = nu(s, a) - gamma sum_b pi(b|t) nu(t, b): three blocks.
        cross = (w[:, :, :, None] * pi[None, None]).reshape(n_s * n_a, n_s * n_a)
        into = w.sum((0, 1))
        block = np.zeros((n_s, n_a, n_s, n_a))
        idx = np.arange(n_s)
        block[idx, :, idx, :] = into[:, None, None] * pi[:, :, None] * pi[:, None, :]
        u = (w.sum(-1) - gamma * into[:, None] * pi).reshape(-1)
        hess = np.diag(w.sum(-1).reshape(-1)) - gamma * (cross + cross.T)
        return hess + gamma**2 * block.reshape(n_s * n_a, -1) - np.outer(u, u)
    bellman = np.einsum("sat,tb->satb", transitions, pi).reshape(n_s * n_a, n_s * n_a)
    n_mat = np.eye(n_s * n_a) - gamma * bellman
    wf = w.reshape(-1)
    return n_mat.T @ ((np.diag(wf) - np.outer(wf, wf)) @ n_mat)


@dataclass(frozen=True)
class ValueDiceCritic:
    """The minimising critic of :func:`valuedice_min_nu`.

    Attributes:
        nu: ``nu[s, a]`` (defined up to a constant: ``J`` is invariant to ``nu + c``).
        terms: :class:`ValueDiceTerms` at ``nu``; ``terms.value`` is ``min_nu J``.
        converged: gradient norm in ``nu`` at most ``tol``.
        n_iter: Newton steps.
    """

    nu: np.ndarray
    terms: ValueDiceTerms
    converged: bool
    n_iter: int


def valuedice_min_nu(
    transitions: np.ndarray,
    d: np.ndarray,
    start: np.ndarray,
    pi: np.ndarray,
    *,
    discount: float,
    next_state: NextState = "sampled",
    nu0: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> ValueDiceCritic:
    """``argmin_nu J(pi, nu)`` by Newton's method (``J`` is convex in ``nu``).

    Directions of zero curvature (the constant shift, and ``nu(s, a)`` that nothing weighs)
    are left where they are. Arguments as in :func:`valuedice_objective`; ``nu0`` is the
    start (zeros when None).
    """
    gamma = discount
    sampled = next_state == "sampled"
    nu = np.zeros_like(pi) if nu0 is None else np.array(nu0, dtype=np.float64)

    def evaluate(x: np.ndarray) -> ValueDiceTerms:
        return valuedice_objective(
            transitions, d, start, pi, x, discount=gamma, next_state=next_state
        )

    terms = evaluate(nu)
    for it in range(max_iter):
        g = terms.grad_nu.reshape(-1)
        if np.linalg.norm(g) <= tol:
            return ValueDiceCritic(nu, terms, True, it)
        step = _critic_newton_step(_valuedice_hessian(terms, transitions, pi, gamma, sampled), g)
        step = step.reshape(nu.shape)
        slope = float(g @ step.reshape(-1))
        if slope >= 0:
            step, slope = -terms.grad_nu, -float(g @ g)
        t = 1.0
        for _ in range(60):
            trial = evaluate(nu + t * step)
            if trial.value <= terms.value + 1e-4 * t * slope or abs(t * slope) <= 1e-15 * (
                1.0 + abs(terms.value)
            ):
                break
            t *= 0.5
        nu, terms = nu + t * step, trial
    ok = bool(np.linalg.norm(terms.grad_nu) <= tol)
    return ValueDiceCritic(nu, terms, ok, max_iter)


def _critic_newton_step(hess: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Newton step with the constant shift of ``nu`` (J's invariance) gauged out; an
    eigen-decomposition that drops every flat direction if that system is singular."""
    n = g.size
    scale = max(float(np.abs(np.diag(hess)).max()), 1e-300)
    with contextlib.suppress(np.linalg.LinAlgError):
        step = -np.linalg.solve(hess + (scale / n) * np.ones((n, n)), g)
        if np.all(np.isfinite(step)) and np.linalg.norm(hess @ step + g) <= 1e-8 * (
            1.0 + np.linalg.norm(g)
        ):
            return step
    eigval, eigvec = np.linalg.eigh(hess)
    curved = eigval > 1e-13 * max(float(eigval.max()), 1e-300)
    return -(eigvec[:, curved] @ ((eigvec[:, curved].T @ g) / eigval[curved]))


def valuedice_start(mdp: TabularMDP, d: np.ndarray, start: Start | np.ndarray) -> np.ndarray:
    """``mu0[s]``: ``"initial"`` is the MDP's ``rho0``, ``"expert"`` is ``d(s)``, or an array."""
    if isinstance(start, str):
        if start == "initial":
            return np.asarray(mdp.initial, dtype=np.float64)
        if start == "expert":
            return np.asarray(d, dtype=np.float64).sum(-1)
        raise ValueError(f"start must be 'initial', 'expert' or mu0[s]; got {start!r}.")
    mu0 = as_float_array(start, "start", "mu0[s]")
    if mu0.shape != (mdp.n_states,) or np.any(mu0 < 0) or abs(mu0.sum() - 1.0) > 1e-9:
        raise ValueError(
            f"start must be a distribution mu0[s] of shape ({mdp.n_states},); got shape "
            f"{mu0.shape}; or pass 'initial' or 'expert'."
        )
    return np.array(mu0)


def _valuedice_outer(
    transitions, features, d, mu0, gamma, next_state
) -> tuple[Callable[[np.ndarray], tuple[float, np.ndarray]], dict[str, Any]]:
    """``theta -> (-min_nu J, gradient)`` with a warm-started critic kept in ``state``."""
    state: dict[str, Any] = {"nu": None, "inner_ok": True}

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        pi = np.exp(log_softmax(features @ theta))
        critic = valuedice_min_nu(
            transitions, d, mu0, pi, discount=gamma, next_state=next_state, nu0=state["nu"]
        )
        if not critic.converged:  # a cold start, once, before giving up
            critic = valuedice_min_nu(
                transitions, d, mu0, pi, discount=gamma, next_state=next_state, max_iter=300
            )
        state["nu"] = critic.nu
        state["inner_ok"] = state["inner_ok"] and critic.converged
        grad_f = _softmax_backward(pi, critic.terms.grad_pi)
        return -critic.terms.value, -np.einsum("sa,sak->k", grad_f, features)

    return fun, state


def valuedice_policy_objective(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    theta: np.ndarray,
    *,
    discount: float = 0.99,
    start: Start | np.ndarray = "initial",
    next_state: NextState = "sampled",
) -> tuple[float, np.ndarray]:
    """``G(theta) = -min_nu J(pi_theta, nu)`` and its gradient (Danskin), for one ``theta``.

    The policy maximises ``min_nu J``, so it minimises ``G``; in the ``"expected"`` form
    ``G = KL(dtilde^pi || d)``. Arguments as in :func:`fit_valuedice`.
    """
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    mu0 = valuedice_start(mdp, d, start)
    fun, _ = _valuedice_outer(transitions, features, d, mu0, gamma, next_state)
    with _one_blas_thread():
        return fun(_theta0(theta, features.shape[-1]))


def fit_valuedice(
    mdp: TabularMDP,
    features: np.ndarray,
    d_expert: np.ndarray,
    *,
    discount: float = 0.99,
    start: Start | np.ndarray = "initial",
    next_state: NextState = "sampled",
    theta0: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 1000,
    check_gradient: bool = True,
) -> LearnerFit:
    """ValueDICE's population optimum: ``argmax_theta min_nu J(softmax(Phi theta), nu)``.

    ``nu`` is tabular (one free value per (s, a)); the policy is ``softmax(Phi . theta)``.

    Args:
        mdp: the MDP (dense or sparse transitions; small S, the critic's Hessian is dense).
        features: the policy's ``Phi[s, a, k]``.
        d_expert: the expert's visitation ``d[s, a]`` (the infinite data set).
        discount: gamma of the objective.
        start: ``mu0`` of the ``(1 - gamma)`` term: ``"initial"`` (the MDP's start
            distribution, the paper's equation), ``"expert"`` (the expert's state distribution
            ``d(s)``, the authors' code and sbil's deep learner), or an array ``mu0[s]``.
        next_state: ``"sampled"`` or ``"expected"`` (see :func:`valuedice_objective`).
        theta0: start of the policy parameters (zeros, the uniform policy, when None).
        tol: gradient-norm tolerance of the outer problem.
        max_iter: L-BFGS-B iteration limit.
        check_gradient: compare the final gradient with central differences.

    Returns:
        LearnerFit; ``auxiliary["nu"]`` is the minimising critic at ``theta``.
    """
    transitions, features, d, gamma = _problem(mdp, features, d_expert, discount)
    mu0 = valuedice_start(mdp, d, start)
    if next_state not in ("sampled", "expected"):
        raise ValueError(f"next_state must be 'sampled' or 'expected'; got {next_state!r}.")
    fun, state = _valuedice_outer(transitions, features, d, mu0, gamma, next_state)
    theta, value, grad, n_iter, check = _minimise(
        fun, _theta0(theta0, features.shape[-1]), tol=tol, max_iter=max_iter, check=check_gradient
    )
    fun(theta)  # the critic at the returned theta
    grad_norm = float(np.linalg.norm(grad))
    status = CONVERGED if grad_norm <= tol else NOT_CONVERGED
    if not state["inner_ok"]:
        status = INNER_FAILED
    return LearnerFit(
        theta=theta,
        policy=np.exp(log_softmax(features @ theta)),
        value=value,
        grad_norm=grad_norm,
        gradient_check=check,
        converged=status == CONVERGED,
        status=status,
        n_iter=n_iter,
        auxiliary=MappingProxyType({"nu": state["nu"]}),
    )

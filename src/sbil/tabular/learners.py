"""Population objectives of ValueDICE, IQ-Learn and AVRIL on finite MDPs, and their optima.

"Population" means infinite expert data: every expectation over the data set is an exact sum
over the expert's visitation ``d[s, a]`` and the true transitions ``P[s, a, s']``, which is what
the sampled minibatch loss of the deep learners (:mod:`sbil.deep.losses`) converges to. The
question these functions answer is the critique's: is the learner's optimum the expert's
policy ``pi_E(a|s) = d(s, a) / d(s)`` when the expert is in the model class, as BC's is?

Index order everywhere: ``P[s, a, s']``, ``d[s, a]``, ``pi[s, a]`` (= ``pi(a|s)``), features
``Phi[s, a, k]``, parameters ``theta[k]``, critics ``nu[s, a]`` and ``Q[s, a]``. The learnt
model is linear in the features, ``f = Phi . theta``; one-hot features
(:func:`sbil.tabular.policies.tabular_features`) give the tabular class. All arrays float64.

Objectives (each one function next to its equation, returning its terms and gradients):

* :func:`valuedice_objective` -- ValueDICE (Kostrikov, Nachum & Tompson, ICLR 2020), offline
  (replay regularisation 0), discrete actions, the policy's actions summed exactly::

      J(pi, nu) = log E_{(s,a)~d, s'~P(.|s,a)} exp(nu(s,a) - gamma sum_b pi(b|s') nu(s',b))
                  - (1 - gamma) E_{s0~mu0} sum_b pi(b|s0) nu(s0,b).

  ``nu`` (tabular) minimises J, the policy maximises ``min_nu J``. ``next_state="sampled"`` is
  the form above (``s'`` inside the exponential's expectation: the limit of the sampled loss);
  ``"expected"`` is the paper's Bellman-operator form ``exp(nu - gamma P^pi nu)``, for which
  Donsker-Varadhan gives ``min_nu J = -KL(dtilde^pi || d)`` with ``dtilde^pi`` the policy's
  normalised discounted occupancy from ``mu0``. ``mu0`` is the MDP's start distribution (the
  paper's equation) or the expert's state distribution ``d(s)`` (the authors' code, which
  sets the initial states to the expert states; sbil's deep learner follows the code).
* :func:`iqlearn_objective` -- offline IQ-Learn (Garg et al., NeurIPS 2021) with the
  chi-squared regulariser, "value_expert" form, soft-Q temperature ``tau``, ``V_Q(s) = tau
  logsumexp_a Q(s, a) / tau`` and ``pi_Q = softmax(Q / tau)``::

      L(Q) = -E_{d,s'}[Q(s,a) - gamma V_Q(s')] + E_{d,s'}[V_Q(s) - gamma V_Q(s')]
             + 1/(4 alpha) E_{d,s'}[(Q(s,a) - gamma V_Q(s'))^2].

  The first two terms add up to ``tau E_d[-log pi_Q(a|s)]``, ``tau`` times BC's loss (they
  telescope in ``s'``), so IQ-Learn here is BC plus a chi-squared penalty on the implied
  reward ``Q(s, a) - gamma V_Q(s')``, and ``Q`` serves both;
  :func:`iqlearn_first_order_step` predicts, to first order in ``tau / (4 alpha)``, how far
  that penalty moves the optimum from BC's.
* :func:`avril_objective` -- AVRIL (Chan & van der Schaar, ICLR 2021) with a state-only
  Gaussian reward posterior ``q(R(s)) = N(mu_s, sigma_s^2)``, prior ``N(0, 1)``, weight
  ``lambda``, and policy ``softmax(Q)``::

      L(Q, mu, sigma) = E_d[-log softmax(Q(s, .))[a]]
          + E_{s~d}[KL(N(mu_s, sigma_s^2) || N(0, 1))]
          + lambda E_{(s,a)~d, s'~P, a'~pi_E(.|s')}[-log N(Q(s,a) - gamma Q(s',a'); mu_s,
                                                            sigma_s^2)].

Fits (:func:`fit_valuedice`, :func:`fit_iqlearn`, :func:`fit_avril`) return a
:class:`LearnerFit`: L-BFGS-B with the analytic gradient (ValueDICE: the inner minimisation
over ``nu`` is convex and solved by Newton's method to round-off at every policy, and the outer
gradient is Danskin's, ``d/dtheta min_nu J = dJ/dtheta`` at the minimising ``nu``), a Newton
polish with a finite-difference Hessian if L-BFGS-B stops short of ``tol``, and a closing
gradient check against central differences. The outer problems are not convex in general: a
fit is a stationary point reached from ``theta0`` (zeros, the uniform policy, by default).

RCAL (Piot, Geist & Pietquin, 2014) has no population solver here: its loss (a large-margin
hinge plus ``|Q(s, a) - gamma max_b Q(s', b)|``) is non-smooth and non-convex, and its policy
is greedy, so it cannot equal a stochastic expert at all (see
:func:`greedy_policy_tv_floor`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import scipy.optimize

from sbil.tabular.checks import as_float_array, validate_visitation, validated_discount
from sbil.tabular.estimators import _one_blas_thread
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.numeric import log_softmax, logsumexp
from sbil.tabular.objectives import bc_objective

Start = Literal["initial", "expert"]
NextState = Literal["sampled", "expected"]

# Status strings of LearnerFit.status.
CONVERGED = "converged"
NOT_CONVERGED = "gradient above tol"
INNER_FAILED = "inner minimisation over nu did not converge"
NO_FINITE_MINIMISER = "no finite minimiser"

#: AVRIL: a posterior standard deviation below this at a fit whose gradient is above tol is
#: the collapse ``sigma -> 0`` (the infimum is approached, not attained).
COLLAPSED_STD = 1e-3


@dataclass(frozen=True)
class LearnerFit:
    """The optimum of one learner's population objective.

    Attributes:
        theta: fitted parameters ``theta[k]`` of the model ``f = Phi . theta`` (ValueDICE: the
            policy's logits; IQ-Learn: ``Q = tau Phi . theta``; AVRIL: ``Q = Phi . theta``).
        policy: the learner's policy ``pi[s, a]`` at ``theta``.
        value: the minimised objective at ``theta`` (ValueDICE: ``-min_nu J``, which equals
            ``KL(dtilde^pi || d)`` in the ``"expected"`` form).
        grad_norm: Euclidean norm of the objective's gradient at ``theta`` (AVRIL: over theta
            and the reward posterior's parameters together).
        gradient_check: ``max |analytic - central difference|`` of that gradient at the end
            point, relative to ``1 + max |analytic|`` (NaN when not checked).
        converged: ``grad_norm <= tol``.
        status: ``"converged"``, ``"gradient above tol"``, for ValueDICE ``"inner
            minimisation over nu did not converge"``, for AVRIL ``"no finite minimiser"``
            (the posterior collapses, see :func:`fit_avril`).
        n_iter: L-BFGS-B iterations plus Newton polishing steps.
        auxiliary: the other fitted quantities, read-only: ValueDICE ``nu[s, a]``; IQ-Learn
            ``q[s, a]``; AVRIL ``q[s, a]``, ``reward_mean[s]`` and ``reward_std[s]``.
    """

    theta: np.ndarray
    policy: np.ndarray
    value: float
    grad_norm: float
    gradient_check: float
    converged: bool
    status: str
    n_iter: int
    auxiliary: Mapping[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _problem(
    mdp: TabularMDP, features: Any, d: Any, discount: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Dense ``P[s, a, s']``, ``Phi[s, a, k]``, ``d[s, a]`` and gamma, checked against the MDP."""
    if not isinstance(mdp, TabularMDP):
        raise ValueError(
            f"mdp must be a sbil.tabular.mdp.TabularMDP; got {type(mdp).__name__}; build one "
            "with TabularMDP(transitions, initial) or random_mdp(...)."
        )
    features = as_float_array(features, "features", "Phi[s, a, k]")
    shape = (mdp.n_states, mdp.n_actions)
    if features.ndim != 3 or features.shape[:2] != shape or features.shape[2] == 0:
        raise ValueError(
            f"features must be Phi[s, a, k] with (S, A) = {shape} and K >= 1; got shape "
            f"{features.shape}; e.g. tabular_features({shape[0]}, {shape[1]})."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or inf; pass finite Phi[s, a, k].")
    d = validate_visitation(d, "d_expert")
    if d.shape != shape:
        raise ValueError(
            f"d_expert must be d[s, a] with (S, A) = {shape}; got shape {d.shape}; pass the "
            "expert's visitation on this MDP, e.g. state_action_visitation(mdp, pi_E)."
        )
    gamma = validated_discount(discount)
    return mdp.dense_transitions(), features, d, gamma


def _theta0(theta0: Any, n_k: int) -> np.ndarray:
    if theta0 is None:
        return np.zeros(n_k)
    theta0 = as_float_array(theta0, "theta0", "theta[k]")
    if theta0.shape != (n_k,) or not np.all(np.isfinite(theta0)):
        raise ValueError(
            f"theta0 must be finite with shape ({n_k},); got {theta0.shape}; pass finite "
            "theta[k], or None for zeros."
        )
    return np.array(theta0)


def _positive(value: Any, name: str) -> float:
    if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a positive number; got {value!r}.")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
    return value


def expert_policy(d: np.ndarray) -> np.ndarray:
    """``pi_E(a|s) = d(s, a) / d(s)``, uniform on states without data; ``pi[s, a]``."""
    d_state = d.sum(-1, keepdims=True)
    uniform = np.full_like(d, 1.0 / d.shape[-1])
    return np.divide(d, d_state, out=uniform, where=d_state > 0)


def _softmax_backward(pi: np.ndarray, grad_pi: np.ndarray) -> np.ndarray:
    """``dL/df[s, a]`` from ``dL/dpi[s, a]`` for ``pi = softmax_a(f)``."""
    return pi * (grad_pi - np.sum(pi * grad_pi, axis=-1, keepdims=True))


# --------------------------------------------------------------------------------------
# ValueDICE
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# IQ-Learn (offline, chi-squared, value_expert)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# AVRIL
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# RCAL: no population solver (see the module docstring)
# --------------------------------------------------------------------------------------


def greedy_policy_tv_floor(d: np.ndarray) -> float:
    """The smallest ``sum_s d(s) TV(pi(.|s), pi_E(.|s))`` any deterministic policy reaches.

    ``sum_s d(s) (1 - max_a pi_E(a|s))``: a greedy learner (RCAL's ``argmax_a Q``) is at
    least this far from a stochastic expert, with infinite data or not.
    """
    d = validate_visitation(d, "d_expert")
    return float(np.sum(d.sum(-1) - d.max(-1)))


# --------------------------------------------------------------------------------------
# Minimisation
# --------------------------------------------------------------------------------------

#: Newton polishing steps after L-BFGS-B, at most.
POLISH_STEPS = 20


def _minimise(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    check: bool,
) -> tuple[np.ndarray, float, np.ndarray, int, float]:
    """L-BFGS-B, then Newton steps (finite-difference Hessian) while the gradient is above
    ``tol``; returns (x, value, gradient, iterations, gradient check)."""
    # Small dense systems: BLAS threads only add overhead (100x on a loaded 2-core machine).
    with _one_blas_thread():
        return _minimise_one_thread(fun, x0, tol=tol, max_iter=max_iter, check=check)


def _minimise_one_thread(fun, x0, *, tol, max_iter, check):
    tol = _positive(tol, "tol")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer; got {max_iter!r}.")
    res = scipy.optimize.minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={
            "maxiter": int(max_iter),
            "gtol": tol / np.sqrt(x0.size) / 10.0,
            "ftol": 1e-16,
            "maxcor": 30,
            "maxls": 50,
        },
    )
    x, n_iter = np.array(res.x), int(res.nit)
    value, grad = fun(x)
    for _ in range(POLISH_STEPS):
        if np.linalg.norm(grad) <= tol:
            break
        hess = _fd_hessian(fun, x)
        eigval, eigvec = np.linalg.eigh(hess)
        floor = 1e-10 * max(float(np.abs(eigval).max()), 1e-300)
        step = -(eigvec @ ((eigvec.T @ grad) / np.maximum(np.abs(eigval), floor)))
        slope = float(grad @ step)
        t = 1.0
        for _ in range(50):
            trial_value, trial_grad = fun(x + t * step)
            if trial_value <= value + 1e-4 * t * slope or np.linalg.norm(
                trial_grad
            ) < np.linalg.norm(grad):
                break
            t *= 0.5
        else:
            break
        x, value, grad = x + t * step, trial_value, trial_grad
        n_iter += 1
    gradient_check = _gradient_check(fun, x, grad) if check else float("nan")
    return x, float(value), grad, n_iter, gradient_check


def _fd_hessian(fun, x: np.ndarray) -> np.ndarray:
    """Symmetrised central differences of the analytic gradient."""
    n = x.size
    hess = np.empty((n, n))
    for k in range(n):
        h = 1e-5 * (1.0 + abs(x[k]))
        e = np.zeros(n)
        e[k] = h
        hess[:, k] = (fun(x + e)[1] - fun(x - e)[1]) / (2.0 * h)
    return 0.5 * (hess + hess.T)


def _gradient_check(fun, x: np.ndarray, grad: np.ndarray) -> float:
    """``max_k |grad_k - central difference_k| / (1 + max |grad|)``."""
    fd = np.empty_like(x)
    for k in range(x.size):
        h = 1e-6 * (1.0 + abs(x[k]))
        e = np.zeros_like(x)
        e[k] = h
        fd[k] = (fun(x + e)[0] - fun(x - e)[0]) / (2.0 * h)
    return float(np.max(np.abs(fd - grad)) / (1.0 + np.max(np.abs(grad))))

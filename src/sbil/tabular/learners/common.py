"""What the tabular learners share: fit results and statuses, input checks, the minimiser
(L-BFGS-B, a Newton polish, a gradient check) and RCAL's floor (it has no population solver).

Part of :mod:`sbil.tabular.learners` (its module doc gives the equations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.optimize

from sbil.tabular.checks import as_float_array, validate_visitation, validated_discount
from sbil.tabular.estimators import _one_blas_thread
from sbil.tabular.mdp import TabularMDP

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


def greedy_policy_tv_floor(d: np.ndarray) -> float:
    """The smallest ``sum_s d(s) TV(pi(.|s), pi_E(.|s))`` any deterministic policy reaches.

    ``sum_s d(s) (1 - max_a pi_E(a|s))``: a greedy learner (RCAL's ``argmax_a Q``) is at
    least this far from a stochastic expert, with infinite data or not.
    """
    d = validate_visitation(d, "d_expert")
    return float(np.sum(d.sum(-1) - d.max(-1)))


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

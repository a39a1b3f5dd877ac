"""BC and EDM objectives for linear-logit policies, with analytic gradients and Hessians.

Notation (all batched over leading dimensions ``...``): features ``Phi[..., s, a, k]``,
parameters ``theta[..., k]``, logits ``f = Phi . theta``, data weights ``d[..., s, a] >= 0``
(an empirical or exact visitation; ``W = sum_{s,a} d``, ``d(s) = sum_a d(s, a)``), per-state
log partition ``l(s) = logsumexp_a f(s)``, policy ``pi(a|s) = exp(f(s, a) - l(s))``, and its
feature moments ``m(s) = E_pi(.|s)[Phi(s, .)]`` and ``C(s) = Cov_pi(.|s)[Phi(s, .)]``.

Since ``grad l(s) = m(s)`` and ``hess l(s) = C(s)``, both objectives differentiate in closed
form; the tests compare them with finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sbil.tabular.checks import Convention, as_float_array
from sbil.tabular.numeric import log_softmax, sum_last
from sbil.tabular.policies import energy_sign, logits


@dataclass(frozen=True)
class Objective:
    """An objective's value and derivatives at one ``theta`` (or a batch of them).

    Attributes:
        value: ``L[...]``.
        grad: ``dL/dtheta[..., k]``, or None when not requested.
        hess: ``d2L/dtheta2[..., k, l]``, or None when not requested.
    """

    value: np.ndarray
    grad: np.ndarray | None = None
    hess: np.ndarray | None = None


def _check(theta: np.ndarray, features: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    features = as_float_array(features, "features", "Phi[..., s, a, k]")
    d = as_float_array(d, "d", "d[..., s, a]")
    theta = as_float_array(theta, "theta", "theta[..., k]")
    if features.ndim < 3:
        raise ValueError(
            f"features must be Phi[..., s, a, k]; got shape {features.shape}; pass one feature "
            "vector per (state, action)."
        )
    if d.ndim < 2 or d.shape[-2:] != features.shape[-3:-1]:
        raise ValueError(
            f"d must be d[..., s, a] with (S, A) = {tuple(features.shape[-3:-1])} matching the "
            f"features; got shape {d.shape}; pass one weight per (state, action) of the features."
        )
    return theta, features, d


class _PerState:
    """Per-state quantities shared by both objectives: l(s), pi(a|s), m(s)."""

    def __init__(self, theta: np.ndarray, features: np.ndarray):
        self.features = features
        f = logits(features, theta)
        self.f = f
        self.log_pi = log_softmax(f)
        self.l = (f - self.log_pi)[..., 0]  # logsumexp_a f(s)

    # pi and m are computed on first use: the line search's value-only calls need neither.
    @cached_property
    def pi(self) -> np.ndarray:
        return np.exp(self.log_pi)

    @cached_property
    def m(self) -> np.ndarray:
        return np.einsum("...sa,...sak->...sk", self.pi, self.features)

    def weighted_covariance(self, c: np.ndarray) -> np.ndarray:
        """``sum_s c(s) C(s)`` with ``C(s) = Cov_pi(.|s)[Phi(s, .)]``, shape ``[..., k, l]``."""
        phi = self.features
        second = _gram(c[..., None] * self.pi, phi)
        first = np.swapaxes(c[..., None] * self.m, -1, -2) @ self.m
        return second - first


def _contract(w: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``sum_{s,a} w[..., s, a] Phi[..., s, a, :]`` as a batched matmul, shape ``[..., k]``."""
    n_s, n_a, n_k = phi.shape[-3:]
    x = phi.reshape(*phi.shape[:-3], n_s * n_a, n_k)
    return (w.reshape(*w.shape[:-2], 1, n_s * n_a) @ x)[..., 0, :]


def _gram(w: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``sum_{s,a} w[s, a] Phi[s, a, :] Phi[s, a, :]^T`` as a batched matmul."""
    n_s, n_a, n_k = phi.shape[-3:]
    x = phi.reshape(*phi.shape[:-3], n_s * n_a, n_k)
    wx = w.reshape(*w.shape[:-2], n_s * n_a, 1) * x
    return np.swapaxes(wx, -1, -2) @ x


def bc_objective(
    theta: np.ndarray, features: np.ndarray, d: np.ndarray, *, order: int = 2
) -> Objective:
    """Behaviour cloning: ``L_BC(theta) = E_d[-log pi_theta(a|s)]``.

    ``L = sum_{s,a} d(s, a) (l(s) - f(s, a))``,
    ``grad = sum_s d(s) m(s) - sum_{s,a} d(s, a) Phi(s, a)``,
    ``hess = sum_s d(s) C(s)`` (positive semidefinite: BC is convex in theta).

    Args:
        theta: ``theta[..., k]``.
        features: ``Phi[..., s, a, k]``.
        d: weights ``d[..., s, a] >= 0`` (a visitation; need not be normalised here).
        order: 0 for the value only, 1 adds the gradient, 2 (default) adds the Hessian.

    Returns:
        Objective(value ``[...]``, grad ``[..., k]``, hess ``[..., k, k]``).
    """
    theta, features, d = _check(theta, features, d)
    ps = _PerState(theta, features)
    d_state = sum_last(d)
    value = np.sum(d_state * ps.l, axis=-1) - np.sum(d * ps.f, axis=(-2, -1))
    if order < 1:
        return Objective(value)
    # sum_s d(s) m(s) = sum_{s,a} d(s) pi(a|s) Phi(s, a): one contraction for both terms.
    grad = _contract(d_state[..., None] * ps.pi - d, features)
    if order < 2:
        return Objective(value, grad)
    return Objective(value, grad, ps.weighted_covariance(d_state))


def edm_objective(
    theta: np.ndarray,
    features: np.ndarray,
    d: np.ndarray,
    *,
    convention: Convention = "reference",
    order: int = 2,
) -> Objective:
    """EDM: ``L_EDM(theta) = E_d[-log pi_theta(a|s) - log p_theta(s)]`` (BC plus a state term).

    The state model is ``log p(s) = sigma l(s) - lse_s'(sigma l(s'))`` with ``sigma = +1``
    for the ``"reference"`` convention (EDM's code, the note's eq. (11)) and ``sigma = -1``
    for the ``"note"`` convention (eqs. (4)-(5)); see
    :func:`sbil.tabular.policies.edm_state_log_prob`. With ``r = softmax_s(sigma l)``:

    ``L = L_BC + sum_s d(s) (lse_s'(sigma l) - sigma l(s))``,
    ``grad = grad_BC + sigma sum_s (W r(s) - d(s)) m(s)``,
    ``hess = sum_s (d(s) + sigma (W r(s) - d(s))) C(s) + W Cov_r[m]``.

    Under ``"reference"`` the sum collapses to ``L = W lse_{s,a} f(s, a) - sum d f``: the
    negative log-likelihood of the joint softmax ``p(s, a) ∝ exp f(s, a)``, convex, with
    ``hess = W Cov_{p(s,a)}[Phi]`` and optimum matching ``E_p[Phi] = E_d[Phi]/W``. Under
    ``"note"`` the normaliser ``W lse_s'(-l(s'))`` is a log-sum-exp of the concave
    functions ``-l(s')``, so the objective is not convex in general: plain Newton steps can
    go uphill. :func:`sbil.tabular.estimators.fit_edm` therefore damps them (absolute
    eigenvalues of the Hessian, a backtracking line search, gradient steps as a last resort),
    and a stationary point it finds is a local minimum, not necessarily the global one.

    Args:
        theta: ``theta[..., k]``.
        features: ``Phi[..., s, a, k]``.
        d: weights ``d[..., s, a] >= 0``.
        convention: ``"reference"`` or ``"note"``.
        order: 0 for the value only, 1 adds the gradient, 2 (default) adds the Hessian.

    Returns:
        Objective(value ``[...]``, grad ``[..., k]``, hess ``[..., k, k]``).
    """
    return edm_objective_for(convention)(theta, features, d, order=order)


#: An objective as the estimators call it: ``objective(theta, features, d, *, order)``.
ObjectiveFn = Callable[..., Objective]


def edm_objective_for(convention: Convention) -> ObjectiveFn:
    """EDM's objective with its energy sign fixed: ``objective(theta, features, d, *, order=2)``.

    The convention is validated once, here; the returned function is what a fitting loop
    calls on every iteration (:func:`sbil.tabular.estimators.fit_edm`), with the sign already
    decoded. Same values as :func:`edm_objective`.

    Raises:
        ValueError: if ``convention`` is not ``"reference"`` or ``"note"``.
    """
    sigma = energy_sign(convention)

    def objective(
        theta: np.ndarray, features: np.ndarray, d: np.ndarray, *, order: int = 2
    ) -> Objective:
        return _signed_edm_objective(theta, features, d, sigma, order)

    return objective


def _signed_edm_objective(
    theta: np.ndarray, features: np.ndarray, d: np.ndarray, sigma: float, order: int
) -> Objective:
    """:func:`edm_objective` with the energy sign ``sigma`` (+1 or -1) given as a number."""
    theta, features, d = _check(theta, features, d)
    ps = _PerState(theta, features)
    d_state = sum_last(d)
    total = d_state.sum(-1)
    energy = sigma * ps.l
    log_r = log_softmax(energy)  # log p_theta(s)
    value = (
        np.sum(d_state * ps.l, axis=-1)
        - np.sum(d * ps.f, axis=(-2, -1))
        - np.sum(d_state * log_r, axis=-1)
    )
    if order < 1:
        return Objective(value)
    r = np.exp(log_r)
    excess = total[..., None] * r - d_state  # W r(s) - d(s)
    grad = _contract((d_state + sigma * excess)[..., None] * ps.pi - d, features)
    if order < 2:
        return Objective(value, grad)
    mean_m = np.einsum("...s,...sk->...k", r, ps.m)
    cov_r_m = np.swapaxes(r[..., None] * ps.m, -1, -2) @ ps.m - (
        mean_m[..., :, None] * mean_m[..., None, :]
    )
    hess = ps.weighted_covariance(d_state + sigma * excess) + total[..., None, None] * cov_r_m
    return Objective(value, grad, hess)

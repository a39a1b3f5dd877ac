"""BC and EDM estimators: batched Newton's method on the objectives of ``objectives``.

Both fits minimise ``L(theta) = E_d[...]`` for linear logits over a data set's empirical
visitation ``d_hat[s, a]`` or over an exact expert visitation ``d_E[s, a]`` ("infinite data").
BC and EDM under the ``"reference"`` convention are convex, so Newton's method with a
backtracking (Armijo) line search converges to a global minimiser whenever one exists.

Batching: ``features[..., s, a, k]``, ``d[..., s, a]`` and ``theta0[..., k]`` broadcast to a
batch of B problems that are solved together: each iteration is a handful of einsums over the
still-active problems and one batched ``np.linalg.solve`` of their K x K Newton systems;
converged problems drop out.

Exact invariances are removed, not regularised: adding a constant to every action's logit in a
state with data leaves BC unchanged, and adding one constant to every logit leaves EDM
unchanged. When the features can express such a shift (e.g. one-hot features) the Hessian is
singular along it; the Newton system is solved on the complement of those directions (found
once per problem from the features) and ``theta`` keeps its ``theta0`` component along them.
Nothing else is added to the Hessian unless ``ridge > 0`` is passed.

Convergence: gradient norm <= ``tol``, a Newton step of norm <= ``step_tol (1 + |theta|)``,
and a Hessian (invariances removed) that is not singular at round-off level. The last two
tests separate a minimiser from an objective that keeps decreasing towards an infimum at
infinity (separable data, e.g. an action never seen in a state whose features can single it
out): there the gradient vanishes like ``exp(-|theta|)`` while the Newton step stays of order
one, until the softmax saturates and the Hessian becomes numerically singular. Such problems
are reported as having no finite minimiser; on random problems this classification agreed
with an exact linear-programming separability test in every case checked.

Longer than ~400 lines: one batched Newton solver with its invariance handling, line search
and failure classification, and the two fits (BC, EDM) that call it; the classification must
stay beside the solver whose steps it reads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # Optional: the tabular core needs numpy and scipy only.
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - exercised by a test that hides the module
    ThreadpoolController = None

from sbil.tabular.checks import (
    Convention,
    as_float_array,
    first_index,
    validate_visitation,
    validated_convention,
)
from sbil.tabular.demos import Demonstrations, empirical_visitation
from sbil.tabular.objectives import Objective, ObjectiveFn, bc_objective, edm_objective_for

#: A Hessian (invariances removed) whose smallest eigenvalue is below this fraction of its
#: largest, at round-off level, is treated as singular: no finite minimiser.
SINGULAR_RTOL = 1e-14

# Per-problem status codes (FitResult.status).
CONVERGED = "converged"
NO_FINITE_MINIMISER = "no finite minimiser"
MAX_ITER = "max_iter reached"
LINE_SEARCH_FAILED = "line search failed"
NOT_A_MINIMUM = "stationary point is not a minimum"


class FitError(RuntimeError):
    """A fit that did not converge; ``result`` holds the partial FitResult."""

    def __init__(self, message: str, result: FitResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class FitResult:
    """The outcome of a (batched) fit.

    Attributes:
        theta: fitted parameters ``theta[..., k]`` (the last iterate where not converged).
        converged: bool, or a bool array ``[...]`` for a batch.
        n_iter: Newton iterations used, int or int array ``[...]``.
        grad_norm: Euclidean norm of the gradient at ``theta``, float or array ``[...]``.
        value: objective value at ``theta``, float or array ``[...]``.
        status: per-problem status: ``"converged"``, ``"no finite minimiser"``,
            ``"max_iter reached"``, ``"line search failed"`` or (``"note"`` convention only)
            ``"stationary point is not a minimum"`` (str or str array ``[...]``).
    """

    theta: np.ndarray
    converged: Any
    n_iter: Any
    grad_norm: Any
    value: Any
    status: Any


def fit_bc(
    features: np.ndarray,
    d: Any,
    *,
    theta0: np.ndarray | None = None,
    tol: float = 1e-10,
    step_tol: float = 1e-6,
    max_iter: int = 100,
    ridge: float = 0.0,
    raise_on_failure: bool = True,
) -> FitResult:
    """Fit behaviour cloning, ``argmin_theta E_d[-log pi_theta(a|s)]``, by Newton's method.

    Args:
        features: ``Phi[..., s, a, k]``.
        d: ``d[..., s, a]``, nonnegative, summing to one per problem (an exact visitation or
            an empirical one, see :func:`sbil.tabular.demos.empirical_visitation`), or a
            :class:`sbil.tabular.demos.Demonstrations`.
        theta0: start ``theta[..., k]``; zeros when None.
        tol: gradient-norm tolerance.
        step_tol: relative Newton-step tolerance (see module docstring).
        max_iter: maximum Newton iterations.
        ridge: explicit L2 penalty ``ridge/2 |theta|^2`` added to the objective (default 0).
        raise_on_failure: raise :class:`FitError` if any problem fails; otherwise return
            per-problem ``converged`` flags and ``status``.

    Returns:
        FitResult with batch shape ``broadcast(features[..., 0, 0, 0], d[..., 0, 0])``.

    Raises:
        ValueError: on data of the wrong shape, negative, non-finite or not summing to one.
        FitError: if a problem has no finite minimiser or does not converge (when
            ``raise_on_failure``).
    """
    return _fit(
        bc_objective,
        "BC",
        features,
        d,
        theta0=theta0,
        tol=tol,
        step_tol=step_tol,
        max_iter=max_iter,
        ridge=ridge,
        raise_on_failure=raise_on_failure,
        per_state_invariance=True,
        convex=True,
    )


def fit_edm(
    features: np.ndarray,
    d: Any,
    *,
    convention: Convention = "reference",
    theta0: np.ndarray | None = None,
    tol: float = 1e-10,
    step_tol: float = 1e-6,
    max_iter: int = 100,
    ridge: float = 0.0,
    raise_on_failure: bool = True,
) -> FitResult:
    """Fit EDM, ``argmin_theta E_d[-log pi_theta(a|s) - log p_theta(s)]``, by Newton's method.

    Under ``convention="reference"`` the objective is the joint-softmax negative
    log-likelihood (convex) and the fit matches feature moments ``E_p[Phi] = E_d[Phi]``.
    Under ``"note"`` it is not convex in general: each Newton step uses the Hessian with its
    eigenvalues replaced by their absolute values (floored), which is a descent direction,
    and the line search damps it. A converged ``"note"`` fit is a stationary point with
    small gradient and step, i.e. a local minimum, not necessarily the global one.

    Args:
        features: ``Phi[..., s, a, k]``.
        d: ``d[..., s, a]`` summing to one per problem, or Demonstrations.
        convention: ``"reference"`` or ``"note"``, see
            :func:`sbil.tabular.policies.edm_state_log_prob`.
        theta0: start ``theta[..., k]``; zeros when None.
        tol: gradient-norm tolerance.
        step_tol: relative Newton-step tolerance.
        max_iter: maximum Newton iterations.
        ridge: explicit L2 penalty ``ridge/2 |theta|^2`` (default 0).
        raise_on_failure: raise FitError on failure, or return per-problem flags.

    Returns:
        FitResult.

    Raises:
        ValueError: on invalid data.
        FitError: on failure when ``raise_on_failure``.
    """
    convention = validated_convention(convention)  # once: the loop gets the decoded sign
    return _fit(
        edm_objective_for(convention),
        f"EDM ({convention} convention)",
        features,
        d,
        theta0=theta0,
        tol=tol,
        step_tol=step_tol,
        max_iter=max_iter,
        ridge=ridge,
        raise_on_failure=raise_on_failure,
        per_state_invariance=False,
        convex=convention == "reference",
    )


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def validate_data(features: Any, d: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check features ``Phi[..., s, a, k]`` and data ``d[..., s, a]``; return float64 arrays.

    Raises:
        ValueError: with the offending problem index for wrong shapes, NaN/inf, negative
            weights or weights not summing to one.
    """
    features = as_float_array(features, "features", "Phi[..., s, a, k]")
    if features.ndim < 3 or 0 in features.shape[-3:]:
        raise ValueError(
            f"features must be Phi[..., s, a, k] with S, A, K >= 1; got shape {features.shape}. "
            "Pass one feature vector per (state, action), e.g. tabular_features(S, A)."
        )
    bad = ~np.isfinite(features)
    if bad.any():
        raise ValueError(
            f"features have a NaN or inf entry at index ({first_index(bad)}); pass finite "
            "Phi[s, a, k]."
        )
    n_s, n_a = features.shape[-3:-1]
    if isinstance(d, Demonstrations):
        d = empirical_visitation(d, n_s, n_a)
    d = validate_visitation(d)
    if d.shape[-2:] != (n_s, n_a):
        raise ValueError(
            f"d must be d[..., s, a] with (S, A) = ({n_s}, {n_a}) matching the features; got "
            f"shape {d.shape}; build it with empirical_visitation(demos, {n_s}, {n_a})."
        )
    return features, d


# --------------------------------------------------------------------------------------
# Batched Newton
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Invariances:
    """The exact invariances of a batch of problems, in two coordinate systems.

    Attributes:
        projector: ``[B, K, K]`` orthogonal projector onto the invariant directions of theta.
        scale: ``[B, K]`` column norms of the features the invariances were read from (1 for
            a zero column): ``theta * scale`` are coordinates in which every feature has unit
            norm, so tests in them do not depend on the features' units.
        scaled_projector: ``[B, K, K]`` the projector in those coordinates.
    """

    projector: np.ndarray
    scale: np.ndarray
    scaled_projector: np.ndarray


def _invariances(features: np.ndarray, d: np.ndarray, per_state: bool) -> _Invariances:
    """The parameter directions that only shift logits, for each of B problems.

    ``per_state``: directions ``v`` with ``Phi[s, a] . v`` constant over ``a`` in every state
    with data (BC's invariance); otherwise constant over all ``(s, a)`` (EDM's). With shared
    features they depend on the data only through BC's state support, so they are computed
    once per distinct support.
    """
    n_b = d.shape[0]
    if features.ndim == 4 and n_b > 1 and bool((features == features[:1]).all()):
        features = features[0]  # one class stacked B times (e.g. one-hot): compute once
    n_s, n_a, n_k = features.shape[-3:]
    if per_state:
        centred = features - features.mean(axis=-2, keepdims=True)
        support = d.sum(-1) > 0  # [B, S]
        if features.ndim == 3:
            keys, inverse = np.unique(support, axis=0, return_inverse=True)
            rows = (centred[None] * keys[:, :, None, None]).reshape(-1, n_s * n_a, n_k)
            return _Invariances(*(x[inverse.ravel()] for x in _null_space(rows)))
        rows = centred * support[..., None, None]
        return _Invariances(*_null_space(rows.reshape(n_b, n_s * n_a, n_k)))
    x = features.reshape(*features.shape[:-3], n_s * n_a, n_k)
    x = x - x.mean(axis=-2, keepdims=True)
    if x.ndim == 2:
        x = x[None]
    return _Invariances(*(np.broadcast_to(y, (n_b, *y.shape[1:])) for y in _null_space(x)))


#: A direction ``u`` is an exact invariance when ``|X u| <= INVARIANCE_RTOL |X|`` (largest
#: singular value) after every column of ``X`` is scaled to unit norm; round-off is ~1e-15.
INVARIANCE_RTOL = 1e-10


def _null_space(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Null space of ``rows[U, N, K]``: (projector ``[U, K, K]``, scale ``[U, K]``, scaled one).

    Scale-free: the columns are scaled to unit norm first, so a feature that is merely small
    (e.g. in other units) is not mistaken for an invariance, and the rank is read off the
    singular values of the rows, not the eigenvalues of their Gram matrix (which would
    square the conditioning).
    """
    n_u, n_rows, n_k = rows.shape
    scale = np.linalg.norm(rows, axis=-2)  # [U, K]
    scale = np.where(scale > 0, scale, 1.0)
    scaled = rows / scale[:, None, :]
    if n_rows < n_k:  # zero rows change nothing and give a full set of right singular vectors
        scaled = np.concatenate([scaled, np.zeros((n_u, n_k - n_rows, n_k))], axis=1)
    _, sing, vt = np.linalg.svd(scaled, full_matrices=False)
    is_null = sing <= INVARIANCE_RTOL * np.maximum(sing[:, :1], 1e-300)  # [U, K]
    scaled_basis = np.swapaxes(vt, -1, -2) * is_null[:, None, :]  # orthonormal columns
    scaled_projector = scaled_basis @ np.swapaxes(scaled_basis, -1, -2)
    # X' u = 0 with X' = X / scale  <=>  X (u / scale) = 0: map, then re-orthonormalise.
    u, s, _ = np.linalg.svd(scaled_basis / scale[:, :, None])
    keep = s > 1e-12 * np.maximum(s[:, :1], 1e-300)
    basis = u * keep[:, None, :]
    return basis @ np.swapaxes(basis, -1, -2), scale, scaled_projector


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return (matrix @ vector[..., None])[..., 0]


def _newton_direction(
    grad: np.ndarray, hess: np.ndarray, null: np.ndarray, convex: bool
) -> np.ndarray:
    """Newton step on the complement of the invariant directions; descent guaranteed."""
    g = grad - _matvec(null, grad)
    if convex:
        system = hess + null
        try:
            step = -np.linalg.solve(system, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack(
                [-np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(system, g, strict=True)]
            )
    else:
        # Saddle-free Newton: |eigenvalues|, floored, so the step always descends.
        eigval, eigvec = np.linalg.eigh(hess)
        floor = 1e-8 * np.maximum(np.abs(eigval).max(axis=-1, keepdims=True), 1e-12)
        inv = 1.0 / np.maximum(np.abs(eigval), floor)
        step = -_matvec(eigvec, inv * _matvec(np.swapaxes(eigvec, -1, -2), g))
    step = step - _matvec(null, step)
    bad = ~np.all(np.isfinite(step), axis=-1) | (np.sum(step * g, axis=-1) >= 0)
    return np.where(bad[:, None], -g, step)


#: Limits BLAS threads during fits when threadpoolctl is installed; None otherwise.
_BLAS = None if ThreadpoolController is None else ThreadpoolController()


def _one_blas_thread() -> contextlib.AbstractContextManager:
    # Newton here is many tiny batched K x K problems: BLAS threads only add overhead, and on a
    # loaded 2-core machine OpenBLAS's spinning threads made one-hot fits 5-6x slower.
    if _BLAS is None:
        return contextlib.nullcontext()
    return _BLAS.limit(limits=1, user_api="blas")


def _fit(*args: Any, **kwargs: Any) -> FitResult:
    with _one_blas_thread():
        return _newton_fit(*args, **kwargs)


def validate_fit_options(tol: Any, step_tol: Any, max_iter: Any, ridge: Any) -> int:
    """Check Newton/L-BFGS fit options; return ``max_iter`` as an int.

    Raises:
        ValueError: ``tol`` or ``step_tol`` not a finite number > 0, ``max_iter`` not an
            integer >= 0, or ``ridge`` not a finite number >= 0.
    """
    for name, value in (("tol", tol), ("step_tol", step_tol)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{name} must be a positive number; got {value!r}.")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(
                f"{name} must be a finite number > 0; got {value!r}; use e.g. {name}=1e-10 for "
                "a tight fit."
            )
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(
            f"max_iter must be an integer >= 0; got {max_iter!r}; pass the number of Newton "
            "iterations, e.g. max_iter=100."
        )
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.number)):
        raise ValueError(f"ridge must be a number >= 0; got {ridge!r}.")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be >= 0 and finite; got {ridge!r}; pass ridge=0 for none.")
    return int(max_iter)


def _newton_fit(
    objective: ObjectiveFn,
    name: str,
    features: Any,
    d: Any,
    *,
    theta0: np.ndarray | None,
    tol: float,
    step_tol: float,
    max_iter: int,
    ridge: float,
    raise_on_failure: bool,
    per_state_invariance: bool,
    convex: bool,
) -> FitResult:
    max_iter = validate_fit_options(tol, step_tol, max_iter, ridge)
    features, d = validate_data(features, d)
    n_k = features.shape[-1]
    if theta0 is None:
        theta0 = np.zeros(n_k)
    theta0 = as_float_array(theta0, "theta0", "theta[..., k]")
    if theta0.ndim < 1 or theta0.shape[-1] != n_k or not np.all(np.isfinite(theta0)):
        raise ValueError(
            f"theta0 must be finite with last dimension K = {n_k}; got shape {theta0.shape}. "
            f"Pass finite theta[..., {n_k}], or None for zeros."
        )
    batch_shape = np.broadcast_shapes(features.shape[:-3], d.shape[:-2], theta0.shape[:-1])
    n_b = int(np.prod(batch_shape))
    shared = features.ndim == 3
    feats = features if shared else np.broadcast_to(features, (*batch_shape, *features.shape[-3:]))
    feats = feats if shared else feats.reshape(n_b, *features.shape[-3:])
    data = np.broadcast_to(d, (*batch_shape, *d.shape[-2:])).reshape(n_b, *d.shape[-2:])
    theta = np.broadcast_to(theta0, (*batch_shape, n_k)).reshape(n_b, n_k).copy()
    invariances = _invariances(feats, data, per_state_invariance)
    null, scale, scaled_null = (
        invariances.projector,
        invariances.scale,
        invariances.scaled_projector,
    )
    if ridge > 0:
        # The penalty removes every flat direction.
        null, scaled_null = np.zeros_like(null), np.zeros_like(scaled_null)
    eye = np.eye(n_k)

    def evaluate(th: np.ndarray, idx: np.ndarray, order: int) -> Objective:
        obj = objective(th, feats if shared else feats[idx], data[idx], order=order)
        if ridge == 0:
            return obj
        value = obj.value + 0.5 * ridge * np.sum(th * th, axis=-1)
        grad = None if obj.grad is None else obj.grad + ridge * th
        hess = None if obj.hess is None else obj.hess + ridge * eye
        return Objective(value, grad, hess)

    status = np.full(n_b, MAX_ITER, dtype=object)
    n_iter = np.zeros(n_b, dtype=np.int64)
    grad_norm = np.full(n_b, np.inf)
    value = np.full(n_b, np.nan)
    flat_steps = np.zeros(n_b, dtype=np.int64)  # consecutive tiny-gradient, large-step steps
    final_step = np.zeros((n_b, n_k))
    active = np.arange(n_b)
    for it in range(max_iter + 1):
        if active.size == 0:
            break
        th = theta[active]
        obj = evaluate(th, active, 2)
        gnorm = np.linalg.norm(obj.grad, axis=-1)
        grad_norm[active] = gnorm
        value[active] = obj.value
        n_iter[active] = it
        step = _newton_direction(obj.grad, obj.hess, null[active], convex)
        small_step = np.linalg.norm(step, axis=-1) <= step_tol * (1.0 + np.linalg.norm(th, axis=-1))
        small_grad = gnorm <= tol
        done = small_grad & small_step
        flat_steps[active] = np.where(small_grad & ~small_step, flat_steps[active] + 1, 0)
        diverged = flat_steps[active] >= 3
        if done.any():
            # At a finite minimiser the Hessian, with the exact invariances removed, is
            # positive definite; numerically singular means the softmax has saturated, i.e.
            # theta ran off towards an infimum at infinity and the gradient vanished there.
            # Read in unit-feature coordinates (theta * scale), so small features in other
            # units do not look singular.
            which = np.flatnonzero(done)
            sc = scale[active[which]]
            eig = np.linalg.eigvalsh(
                obj.hess[which] / (sc[:, :, None] * sc[:, None, :]) + scaled_null[active[which]]
            )
            largest = np.abs(eig).max(axis=-1)
            # Only the non-convex "note" objective can stop at a saddle or a maximum; for the
            # convex ones a negative eigenvalue is round-off of a singular Hessian.
            saddle = np.zeros(which.size, dtype=bool) if convex else eig[:, 0] < -1e-10 * largest
            saturated = ~saddle & (eig[:, 0] <= SINGULAR_RTOL * largest)
            done[which[saturated | saddle]] = False
            diverged[which[saturated]] = True
            status[active[which[saddle]]] = NOT_A_MINIMUM
        status[active[done]] = CONVERGED
        final_step[active[done]] = step[done]
        status[active[diverged & ~done]] = NO_FINITE_MINIMISER
        keep = ~(done | diverged) & (status[active] != NOT_A_MINIMUM)
        if it == max_iter or not keep.any():
            break
        active, th, step = active[keep], th[keep], step[keep]
        f0 = obj.value[keep]
        slope = np.sum(obj.grad[keep] * step, axis=-1)
        # Below round-off the value cannot certify a decrease: take the full Newton step.
        take_full = np.abs(slope) <= 1e-14 * (1.0 + np.abs(f0))
        t = np.ones(active.size)
        pending = np.arange(active.size)
        new_theta = th + step
        for _ in range(60):
            trial = th[pending] + t[pending, None] * step[pending]
            f1 = evaluate(trial, active[pending], 0).value
            ok = take_full[pending] | (f1 <= f0[pending] + 1e-4 * t[pending] * slope[pending])
            new_theta[pending[ok]] = trial[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            t[pending] *= 0.5
        if pending.size:
            status[active[pending]] = LINE_SEARCH_FAILED
            new_theta[pending] = th[pending]
        theta[active] = new_theta
        still = np.ones(active.size, dtype=bool)
        still[pending] = False
        active = active[still]

    # Polish: take the last (tiny) Newton step of converged problems where it lowers the
    # gradient further, and report gradient and value at the returned theta.
    done_idx = np.flatnonzero(status == CONVERGED)
    if done_idx.size:
        polished = theta[done_idx] + final_step[done_idx]
        obj = evaluate(polished, done_idx, 1)
        better = np.linalg.norm(obj.grad, axis=-1) <= grad_norm[done_idx]
        theta[done_idx[better]] = polished[better]
        grad_norm[done_idx[better]] = np.linalg.norm(obj.grad[better], axis=-1)
        value[done_idx[better]] = obj.value[better]
    result = _result(theta, status, n_iter, grad_norm, value, batch_shape)
    if raise_on_failure and not np.all(status == CONVERGED):
        raise FitError(
            _failure_message(name, theta, status, grad_norm, batch_shape, max_iter), result
        )
    return result


def _result(theta, status, n_iter, grad_norm, value, batch_shape) -> FitResult:
    converged = status == CONVERGED
    if batch_shape == ():
        return FitResult(
            theta=theta[0],
            converged=bool(converged[0]),
            n_iter=int(n_iter[0]),
            grad_norm=float(grad_norm[0]),
            value=float(value[0]),
            status=str(status[0]),
        )
    return FitResult(
        theta=theta.reshape(*batch_shape, -1),
        converged=converged.reshape(batch_shape),
        n_iter=n_iter.reshape(batch_shape),
        grad_norm=grad_norm.reshape(batch_shape),
        value=value.reshape(batch_shape),
        status=status.astype(str).reshape(batch_shape),
    )


def _failure_message(name, theta, status, grad_norm, batch_shape, max_iter) -> str:
    failed = np.flatnonzero(status != CONVERGED)
    first = int(failed[0])
    where = (
        f"problem {tuple(int(i) for i in np.unravel_index(first, batch_shape))} "
        if batch_shape
        else ""
    )
    count = f"{failed.size} of {status.size} problems failed; " if batch_shape else ""
    detail = (
        f"{where}status '{status[first]}' (gradient norm {grad_norm[first]:.3g}, "
        f"|theta| = {np.linalg.norm(theta[first]):.3g})"
    )
    if status[first] == NO_FINITE_MINIMISER:
        hint = (
            "the objective keeps decreasing as theta grows without bound: the data are "
            "separable by the features (e.g. an action or state never observed that the "
            "features can single out), so no finite minimiser exists; use more data, "
            "exact visitation, or ridge > 0"
        )
    elif status[first] == MAX_ITER:
        hint = (
            f"no convergence in max_iter = {max_iter} iterations; raise max_iter, or pass "
            "ridge > 0 if the features are nearly collinear"
        )
    elif status[first] == NOT_A_MINIMUM:
        hint = (
            "the non-convex objective stopped at a saddle point or maximum; start from "
            "another theta0"
        )
    else:
        hint = "the line search found no decrease; the problem is badly conditioned"
    return (
        f"{name} fit failed: {count}{detail}: {hint}; pass raise_on_failure=False for "
        "per-problem converged flags."
    )

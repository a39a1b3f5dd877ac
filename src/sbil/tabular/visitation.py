"""Exact state and state-action visitation of a policy in a finite MDP.

Three kinds of visitation, chosen by the MDP (:attr:`TabularMDP.visitation_kind`: ``horizon``,
``discount``, or neither):

* finite horizon H: ``d(s) = (1/H) sum_{t<H} Pr(s_t = s)`` with ``Pr(s_0) = rho0`` and
  ``Pr(s_{t+1} = s') = sum_s Pr(s_t = s) P_pi[s, s']``;
* discounted: ``d(s) = (1 - gamma) sum_t gamma^t Pr(s_t = s)``, the solution of
  ``(I - gamma P_pi^T) d = (1 - gamma) rho0``;
* stationary: ``d = P_pi^T d``, ``sum d = 1``, unique only when the chain has one closed
  communicating class.

State-action visitation is ``d(s, a) = d(s) pi(a|s)``. Dense MDPs use dense linear algebra;
sparse MDPs use sparse matrix-vector products and, for the discounted solve, a direct sparse
LU up to :data:`DIRECT_SOLVE_MAX_STATES` states and, beyond, a fixed-point iteration that
hands over to restarted GMRES when it contracts slowly (SuperLU fill-in on random transition
graphs is prohibitive). The iterative solve is checked by its residual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph
import scipy.sparse.linalg

from sbil.tabular.checks import validate_policy, validated_count, validated_discount
from sbil.tabular.mdp import TabularMDP

#: Sparse discounted solves use SuperLU up to this many states, iterative solves beyond.
DIRECT_SOLVE_MAX_STATES = 20_000


class VisitationError(ValueError):
    """A visitation that does not exist or is not unique, or a solve that did not converge."""


def state_visitation(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """The policy's state visitation, of the MDP's own kind (:attr:`TabularMDP.visitation_kind`).

    Args:
        mdp: the MDP; its ``horizon``/``discount`` pick the kind of visitation (module docstring).
        pi: policy ``pi[s, a]``, shape ``(S, A)``, rows summing to one.

    Returns:
        ``d[s]``, shape ``(S,)``, nonnegative, summing to one.
    """
    kind = mdp.visitation_kind
    if kind == "finite_horizon":
        return finite_horizon_visitation(mdp, pi)
    if kind == "discounted":
        return discounted_visitation(mdp, pi)
    return stationary_distribution(mdp, pi)


def state_action_visitation(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """``d[s, a] = d(s) pi(a|s)`` with ``d(s)`` from :func:`state_visitation`.

    Returns:
        ``d[s, a]``, shape ``(S, A)``, summing to one.
    """
    pi = validate_policy(pi, mdp.n_states, mdp.n_actions)
    return state_visitation(mdp, pi)[:, None] * pi


def finite_horizon_visitation(
    mdp: TabularMDP, pi: np.ndarray, *, horizon: int | None = None
) -> np.ndarray:
    """``d(s) = (1/H) sum_{t<H} Pr(s_t = s)``, by H - 1 products with ``P_pi^T``.

    Args:
        mdp: the MDP.
        pi: policy ``pi[s, a]``.
        horizon: H; defaults to ``mdp.horizon``.

    Returns:
        ``d[s]``, shape ``(S,)``.
    """
    total = None
    count = 0
    for dist in state_distributions(mdp, pi, horizon=horizon):
        total = dist.copy() if total is None else total + dist
        count += 1
    return total / count


def state_distributions(
    mdp: TabularMDP, pi: np.ndarray, *, horizon: int | None = None
) -> Iterator[np.ndarray]:
    """The per-step state distributions ``Pr(s_t = s)`` for ``t = 0, ..., H - 1``.

    ``Pr(s_0) = rho0`` and ``Pr(s_{t+1} = s') = sum_s Pr(s_t = s) P_pi[s, s']``. A generator,
    so a large MDP never holds all H distributions at once; :func:`finite_horizon_visitation`
    averages them and :mod:`sbil.tabular.oracle` keeps them for its adjoint pass.

    Args:
        mdp: the MDP.
        pi: policy ``pi[s, a]``.
        horizon: H; defaults to ``mdp.horizon``.

    Returns:
        An iterator over ``Pr(s_t = s)``, each shape ``(S,)`` and a fresh array. Arguments are
        checked on the call, not on the first step.
    """
    horizon = mdp.horizon if horizon is None else horizon
    if horizon is None:
        raise ValueError(
            "finite-horizon visitation needs a horizon; pass horizon=... or build the MDP with one."
        )
    horizon = validated_count(horizon, "horizon")
    p_pi_t = policy_transition_transposed(mdp, pi)  # validates pi before the first step

    def steps() -> Iterator[np.ndarray]:
        dist = np.array(mdp.initial, dtype=np.float64)
        yield dist
        for _ in range(horizon - 1):
            dist = p_pi_t @ dist
            yield dist

    return steps()


def discounted_visitation(
    mdp: TabularMDP,
    pi: np.ndarray,
    *,
    discount: float | None = None,
    method: str = "auto",
    rtol: float = 1e-12,
) -> np.ndarray:
    """Normalised discounted occupancy ``d(s) = (1 - gamma) sum_t gamma^t Pr(s_t = s)``.

    Solves ``(I - gamma P_pi^T) d = (1 - gamma) rho0``.

    Args:
        mdp: the MDP.
        pi: policy ``pi[s, a]``.
        discount: gamma in [0, 1); defaults to ``mdp.discount``.
        method: ``"auto"`` (dense solve for dense MDPs; for sparse ones SuperLU up to
            :data:`DIRECT_SOLVE_MAX_STATES` states, iterative beyond), ``"direct"`` or
            ``"iterative"`` (fixed-point iteration while it contracts fast, then GMRES;
            sparse or dense).
        rtol: relative residual tolerance of the iterative solve, checked afterwards.

    Returns:
        ``d[s]``, shape ``(S,)``.

    Raises:
        VisitationError: if the iterative solve does not reach ``rtol``.
    """
    gamma = mdp.discount if discount is None else discount
    if gamma is None:
        raise ValueError(
            "discounted_visitation needs a discount in [0, 1); pass discount=... or build the "
            "MDP with one."
        )
    gamma = validated_discount(gamma)
    if method not in ("auto", "direct", "iterative"):
        raise ValueError(f"method must be 'auto', 'direct' or 'iterative'; got {method!r}.")
    b = (1.0 - gamma) * np.asarray(mdp.initial, dtype=np.float64)
    n = mdp.n_states
    if method == "auto":
        method = "direct" if not mdp.is_sparse or n <= DIRECT_SOLVE_MAX_STATES else "iterative"
    p_pi_t = policy_transition_transposed(mdp, pi)
    if method == "direct":
        if sp.issparse(p_pi_t):
            a_mat = (sp.eye_array(n, format="csr") - gamma * p_pi_t).tocsc()
            d = scipy.sparse.linalg.spsolve(a_mat, b)
        else:
            d = scipy.linalg.solve(np.eye(n) - gamma * p_pi_t, b)
    else:

        def matvec(x: np.ndarray) -> np.ndarray:
            return x - gamma * (p_pi_t @ x)

        d, residual = _fixed_point_then_gmres(matvec, b, b / (1.0 - gamma), rtol)
        if not residual <= rtol:
            raise VisitationError(
                f"the iterative discounted-visitation solve did not converge (relative "
                f"residual {residual:.3g} > {rtol:g}); the chain mixes too slowly: use "
                "method='direct' or a smaller discount."
            )
    return _clean_distribution(d)


def _fixed_point_then_gmres(
    matvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray, x0: np.ndarray, rtol: float
) -> tuple[np.ndarray, float]:
    """Solve ``(I - gamma P^T) d = b`` by ``d <- b + gamma P^T d`` while that contracts fast.

    Starting from a distribution, the iterates keep total mass one, so the error contracts at
    rate ``gamma |lambda_2(P)|`` rather than ``gamma``: a few tens of matrix-vector products
    on well-mixing chains, with no Krylov basis to store. When the residual shrinks by less
    than half per step (slowly mixing chains) GMRES takes over from the current iterate.
    """
    b_norm = max(float(np.linalg.norm(b)), 1e-300)
    x = x0.copy()
    previous = np.inf
    for step in range(100):
        r = b - matvec(x)
        residual = float(np.linalg.norm(r)) / b_norm
        if residual <= rtol:
            return x, residual
        if step >= 3 and residual > 0.5 * previous:
            break
        x += r  # x <- b + gamma P^T x
        previous = residual
    return gmres(matvec, b, x0=x, rtol=rtol)


def policy_transition_transposed(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray | sp.csr_array:
    """``P_pi^T[s', s] = sum_a pi[s, a] P[s, a, s']``, ready for ``P_pi^T @ x`` products.

    For sparse MDPs this is a CSR array built in one pass from the transposed stacked
    transitions; it may hold duplicate entries (one per action leading from s to s'), which
    products sum correctly. Cheaper than ``mdp.policy_transition(pi).T`` for large S.

    Returns:
        ``(S, S)`` dense array or CSR array.
    """
    pi = validate_policy(pi, mdp.n_states, mdp.n_actions)
    if not mdp.is_sparse:
        return np.ascontiguousarray(np.einsum("sa,sat->ts", pi, mdp.transitions))
    n = mdp.n_states
    # Scale each action's rows by pi(a|s) while the data are still row-ordered (sequential
    # access), then transpose the stack once.
    scaled = [
        sp.csr_array(
            (p_a.data * np.repeat(pi[:, a], np.diff(p_a.indptr)), p_a.indices, p_a.indptr),
            shape=(n, n),
        )
        for a, p_a in enumerate(mdp.transitions)
    ]
    stacked_t = sp.vstack(scaled, format="csr").T.tocsr()  # [s', a * S + s]
    source = stacked_t.indices % n
    data = stacked_t.data
    return sp.csr_array((data, source, stacked_t.indptr), shape=(n, n))


def gmres(
    matvec: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    *,
    x0: np.ndarray,
    rtol: float,
    restart: int = 40,
    max_cycles: int = 25,
) -> tuple[np.ndarray, float]:
    """Restarted GMRES for ``A x = b`` (Arnoldi: classical Gram-Schmidt, reorthogonalised
    when cancellation is detected).

    A lean replacement for ``scipy.sparse.linalg.gmres``, whose per-iteration Python overhead
    dominates at 10^6 unknowns; the Arnoldi basis is one ``(restart + 1, n)`` array.

    Args:
        matvec: ``x -> A x``.
        b: right-hand side ``[n]``.
        x0: start ``[n]``.
        rtol: stop when ``|b - A x| <= rtol |b|`` (the true residual, recomputed per cycle).
        restart: Krylov dimension per cycle.
        max_cycles: maximum restarts.

    Returns:
        (x, relative residual ``|b - A x| / |b|``).
    """
    b_norm = max(float(np.linalg.norm(b)), 1e-300)
    x = np.array(x0, dtype=np.float64)
    basis = np.empty((restart + 1, b.shape[0]))
    for _ in range(max_cycles):
        r = b - matvec(x)
        beta = float(np.linalg.norm(r))
        if beta <= rtol * b_norm:
            return x, beta / b_norm
        basis[0] = r / beta
        hess = np.zeros((restart + 1, restart))
        y = np.zeros(0)
        for j in range(restart):
            w = matvec(basis[j])
            w_norm = float(np.linalg.norm(w))
            h = basis[: j + 1] @ w
            w -= h @ basis[: j + 1]
            h_next = float(np.linalg.norm(w))
            if h_next < 0.7 * w_norm:  # cancellation: a second pass restores orthogonality
                h2 = basis[: j + 1] @ w
                w -= h2 @ basis[: j + 1]
                h += h2
                h_next = float(np.linalg.norm(w))
            hess[: j + 1, j] = h
            hess[j + 1, j] = h_next
            rhs = np.zeros(j + 2)
            rhs[0] = beta
            y = np.linalg.lstsq(hess[: j + 2, : j + 1], rhs, rcond=None)[0]
            estimate = float(np.linalg.norm(hess[: j + 2, : j + 1] @ y - rhs))
            if estimate <= 0.5 * rtol * b_norm or h_next <= 1e-300:
                break
            basis[j + 1] = w / h_next
        x = x + y @ basis[: y.size]
    r = b - matvec(x)
    return x, float(np.linalg.norm(r)) / b_norm


def stationary_distribution(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """The stationary distribution ``d = P_pi^T d``, ``sum d = 1``, when it is unique.

    It is unique exactly when the chain ``P_pi`` has a single closed communicating class;
    transient states get zero mass. Periodic chains are fine (d is then the long-run
    average).

    Args:
        mdp: the MDP (its start distribution is not used).
        pi: policy ``pi[s, a]``.

    Returns:
        ``d[s]``, shape ``(S,)``.

    Raises:
        VisitationError: if the chain has more than one closed class (e.g. the self-loop MDP),
            naming two of them.
    """
    p_pi = mdp.policy_transition(pi)
    if not sp.issparse(p_pi) and np.all(p_pi > 0):
        # A strictly positive chain is irreducible: skip the graph analysis.
        members = np.arange(mdp.n_states)
    else:
        members = _unique_closed_class(p_pi)
    sub = p_pi[members][:, members]
    k = members.size
    # Solve (I - P^T) x = 0 with the last equation replaced by sum x = 1.
    if sp.issparse(sub):
        a_mat = sp.lil_array(sp.eye_array(k) - sub.T)
        a_mat[k - 1, :] = np.ones(k)
        rhs = np.zeros(k)
        rhs[-1] = 1.0
        x = scipy.sparse.linalg.spsolve(a_mat.tocsc(), rhs)
    else:
        a_mat = np.eye(k) - sub.T
        a_mat[k - 1, :] = 1.0
        rhs = np.zeros(k)
        rhs[-1] = 1.0
        x = np.linalg.solve(a_mat, rhs)
    d = np.zeros(mdp.n_states)
    d[members] = x
    return _clean_distribution(d)


def _unique_closed_class(p_pi) -> np.ndarray:
    """States of the chain's only closed communicating class; VisitationError if not one."""
    graph = sp.csr_array(p_pi) if not sp.issparse(p_pi) else p_pi
    graph = sp.csr_array((graph.data > 0, graph.indices, graph.indptr), shape=graph.shape)
    n_comp, labels = scipy.sparse.csgraph.connected_components(
        graph, directed=True, connection="strong"
    )
    # A class is closed when no edge leaves it.
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    leaving = labels[rows] != labels[graph.indices]
    open_class = np.zeros(n_comp, dtype=bool)
    open_class[labels[rows[leaving]]] = True
    closed = np.flatnonzero(~open_class)
    if closed.size != 1:
        examples = "; ".join(
            f"{{{', '.join(str(s) for s in np.flatnonzero(labels == c)[:5])}"
            f"{', ...' if np.sum(labels == c) > 5 else ''}}}"
            for c in closed[:2]
        )
        raise VisitationError(
            f"the stationary distribution is not unique: the policy's chain has "
            f"{closed.size} closed classes (e.g. states {examples}); set a discount or a "
            "horizon on the MDP to use the discounted or finite-horizon visitation instead."
        )
    return np.flatnonzero(labels == closed[0])


def _clean_distribution(d: np.ndarray) -> np.ndarray:
    """Clip round-off negatives (|x| ~ 1e-17) and renormalise."""
    d = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(d)) or d.min() < -1e-9:
        raise VisitationError(
            "the visitation solve returned non-finite or clearly negative values; the linear "
            "system is singular or ill-conditioned for this policy."
        )
    d = np.where(d < 0, 0.0, d)
    return d / d.sum()

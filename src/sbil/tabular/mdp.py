"""Finite MDPs: a frozen, validated transition table and the constructors the note uses.

Index order everywhere: ``P[s, a, s']`` is the probability of moving to ``s'`` after taking
action ``a`` in state ``s``; ``initial[s]`` is the start distribution (``rho0`` in the note).

An MDP carries the kind of visitation it is analysed under (:attr:`TabularMDP.visitation_kind`):
a finite ``horizon`` H (visitation is the average ``(1/H) sum_{t<H} Pr(s_t = s)``), a
``discount`` gamma (normalised occupancy ``(1 - gamma) sum_t gamma^t Pr(s_t = s)``), or neither
(the stationary distribution). See :mod:`sbil.tabular.visitation`. (The sign of EDM's state
energy is a different thing, the energy *convention* of :mod:`sbil.tabular.checks`.)

Generic checks (arrays, counts, seeds, policies) live in :mod:`sbil.tabular.checks`.

Longer than ~400 lines: the frozen MDP with its validated dense and sparse transition tables,
and the constructors of the note's MDPs (random, self-loop, two-state, Gymnasium's toy text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from sbil.tabular.checks import (
    ROW_SUM_TOLERANCE,
    as_float_array,
    first_index,
    validate_policy,
    validated_count,
    validated_discount,
    validated_rng,
)

#: How a policy's visitation is defined on an MDP: finite-horizon average, normalised
#: discounted occupancy, or stationary distribution.
VisitationKind = Literal["finite_horizon", "discounted", "stationary"]

Transitions = np.ndarray | tuple[sp.csr_array, ...]


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP with a start distribution and a kind of visitation.

    Attributes:
        transitions: ``P[s, a, s']``, either a dense float64 array of shape ``(S, A, S)`` or a
            tuple of ``A`` scipy.sparse CSR arrays, each ``(S, S)``, with ``P[a][s, s']``.
            Stored read-only (copied on construction unless the sparse arrays given are
            already read-only).
        initial: ``rho0[s]``, shape ``(S,)``, the start distribution.
        horizon: finite horizon H >= 1, or None.
        discount: discount gamma in [0, 1), or None. At most one of ``horizon`` and
            ``discount`` is set; with neither, visitation is the stationary distribution.
        rewards: optional expected reward ``R[s, a]``, shape ``(S, A)`` (kept for reference;
            imitation never uses it).

    Raises:
        ValueError: on wrong shapes, NaN/inf or negative entries, rows that do not sum to
            one, empty state or action sets, or both ``horizon`` and ``discount`` set. The
            message names the offending index.
    """

    transitions: Transitions
    initial: np.ndarray
    horizon: int | None = None
    discount: float | None = None
    rewards: np.ndarray | None = None

    def __post_init__(self) -> None:
        transitions = _validated_transitions(self.transitions)
        n_states = (
            transitions.shape[0]
            if isinstance(transitions, np.ndarray)
            else (transitions[0].shape[0])
        )
        initial = _validated_distribution(self.initial, n_states, "initial")
        horizon, discount = _validated_visitation_kind(self.horizon, self.discount)
        rewards = None
        if self.rewards is not None:
            n_actions = (
                len(transitions) if isinstance(transitions, tuple) else (transitions.shape[1])
            )
            rewards = _readonly(np.array(as_float_array(self.rewards, "rewards", "R[s, a]")))
            if rewards.shape != (n_states, n_actions):
                raise ValueError(
                    f"rewards must have shape (S, A) = ({n_states}, {n_actions}); got "
                    f"{rewards.shape}; pass R[s, a] or rewards=None."
                )
            if not np.all(np.isfinite(rewards)):
                raise ValueError("rewards contain NaN or inf; pass finite R[s, a].")
        object.__setattr__(self, "transitions", transitions)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "horizon", horizon)
        object.__setattr__(self, "discount", discount)
        object.__setattr__(self, "rewards", rewards)

    @property
    def n_states(self) -> int:
        """Number of states S."""
        return int(self.initial.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions A."""
        if self.is_sparse:
            return len(self.transitions)
        return int(self.transitions.shape[1])

    @property
    def is_sparse(self) -> bool:
        """Whether ``transitions`` is stored as a tuple of sparse (S, S) arrays."""
        return isinstance(self.transitions, tuple)

    @property
    def visitation_kind(self) -> VisitationKind:
        """``"finite_horizon"`` (``horizon`` set), ``"discounted"`` (``discount`` set) or
        ``"stationary"`` (neither)."""
        if self.horizon is not None:
            return "finite_horizon"
        if self.discount is not None:
            return "discounted"
        return "stationary"

    @property
    def rho0(self) -> np.ndarray:
        """Alias of ``initial``: the start distribution ``rho0[s]``, shape ``(S,)``."""
        return self.initial

    def dense_transitions(self) -> np.ndarray:
        """``P[s, a, s']`` as a dense ``(S, A, S)`` array (a copy when stored sparse)."""
        if not self.is_sparse:
            return self.transitions
        return np.stack([p.toarray() for p in self.transitions], axis=1)

    def policy_transition(self, pi: np.ndarray) -> np.ndarray | sp.csr_array:
        """The state chain under a policy: ``P_pi[s, s'] = sum_a pi[s, a] P[s, a, s']``.

        Args:
            pi: policy ``pi[s, a]``, shape ``(S, A)``, rows summing to one.

        Returns:
            ``P_pi[s, s']``, shape ``(S, S)``: a dense array, or a sparse CSR array when the
            MDP is stored sparse.
        """
        pi = validate_policy(pi, self.n_states, self.n_actions)
        if not self.is_sparse:
            return np.einsum("sa,sat->st", pi, self.transitions)
        total = None
        for a, p_a in enumerate(self.transitions):
            term = sp.diags_array(pi[:, a]) @ p_a
            total = term if total is None else total + term
        return sp.csr_array(total)


def _readonly(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)
    return x


def _check_finite_nonnegative(values: np.ndarray, where: str, index_of) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{where} has a NaN or inf entry at {index_of(bad)}; pass finite values.")
    if (values < 0).any():
        raise ValueError(
            f"{where} has a negative entry at {index_of(values < 0)}; probabilities must be "
            ">= 0, so set it to 0 (or a positive value) and renormalise its row."
        )


def _validated_transitions(transitions: Any) -> Transitions:
    if isinstance(transitions, (tuple, list)) and transitions and sp.issparse(transitions[0]):
        return _validated_sparse_transitions(transitions)
    if isinstance(transitions, (tuple, list)) and len(transitions) == 0:
        raise ValueError("transitions has no actions; pass P[s, a, s'] with A >= 1 actions.")
    if sp.issparse(transitions):
        raise ValueError(
            "transitions is a single sparse matrix; pass a tuple of A sparse (S, S) arrays, "
            "one per action, or a dense (S, A, S) array."
        )
    p = np.array(as_float_array(transitions, "transitions", "P[s, a, s']"))
    if p.ndim != 3 or p.shape[0] != p.shape[2]:
        raise ValueError(
            f"transitions must be a dense (S, A, S) array P[s, a, s']; got shape {p.shape}. "
            "Sparse MDPs pass a tuple of A scipy.sparse (S, S) arrays instead."
        )
    if p.shape[0] == 0:
        raise ValueError("transitions has no states (S = 0); an MDP needs at least one state.")
    if p.shape[1] == 0:
        raise ValueError("transitions has no actions (A = 0); an MDP needs at least one action.")
    _check_finite_nonnegative(p, "transitions", lambda m: f"P[{first_index(m)}]")
    err = np.abs(p.sum(axis=2) - 1.0)
    if (err > ROW_SUM_TOLERANCE).any():
        s, a = np.unravel_index(int(np.argmax(err)), err.shape)
        raise ValueError(
            f"transition row P[{s}, {a}, :] sums to {p[s, a].sum():.12g}, not 1 (tolerance "
            f"{ROW_SUM_TOLERANCE:g}); normalise each (state, action) row (divide it by its sum)."
        )
    return _readonly(p)


def _validated_sparse_transitions(transitions: Sequence[Any]) -> tuple[sp.csr_array, ...]:
    out = []
    n_states = None
    for a, p_a in enumerate(transitions):
        if not sp.issparse(p_a):
            raise ValueError(
                f"transitions[{a}] is not sparse; pass all actions as scipy.sparse (S, S) arrays."
            )
        # Inputs whose arrays are all read-only cannot change under us: no copy needed.
        frozen = p_a.format == "csr" and not any(
            arr.flags.writeable for arr in (p_a.data, p_a.indices, p_a.indptr)
        )
        p_a = sp.csr_array(p_a, dtype=np.float64, copy=not frozen)
        if not p_a.has_canonical_format:
            p_a = p_a.copy() if frozen else p_a
            p_a.sum_duplicates()
        if p_a.shape[0] != p_a.shape[1]:
            raise ValueError(
                f"transitions[{a}] must be square (S, S); got shape {p_a.shape}; pass P[a][s, s'] "
                "with one row and one column per state."
            )
        if n_states is None:
            n_states = p_a.shape[0]
            if n_states == 0:
                raise ValueError("transitions has no states (S = 0); an MDP needs a state.")
        elif p_a.shape[0] != n_states:
            raise ValueError(
                f"transitions[{a}] has shape {p_a.shape} but transitions[0] has "
                f"({n_states}, {n_states}); every action needs the same (S, S) shape."
            )

        def index_of(mask: np.ndarray, p_a: sp.csr_array = p_a, a: int = a) -> str:
            k = int(np.argmax(mask))
            row = int(np.searchsorted(p_a.indptr, k, side="right") - 1)
            return f"P[{row}, {a}, {int(p_a.indices[k])}]"

        _check_finite_nonnegative(p_a.data, "transitions", index_of)
        sums = np.asarray(p_a.sum(axis=1)).ravel()
        err = np.abs(sums - 1.0)
        if (err > ROW_SUM_TOLERANCE).any():
            s = int(np.argmax(err))
            raise ValueError(
                f"transition row P[{s}, {a}, :] sums to {sums[s]:.12g}, not 1 (tolerance "
                f"{ROW_SUM_TOLERANCE:g}); normalise each (state, action) row (divide it by its "
                "sum)."
            )
        for arr in (p_a.data, p_a.indices, p_a.indptr):
            arr.setflags(write=False)
        out.append(p_a)
    return tuple(out)


def _validated_distribution(values: Any, n_states: int, name: str) -> np.ndarray:
    x = np.array(as_float_array(values, name, "rho0[s]"))
    if x.shape != (n_states,):
        raise ValueError(
            f"{name} must have shape (S,) = ({n_states},); got {x.shape}; pass rho0[s]."
        )
    _check_finite_nonnegative(x, name, lambda m: f"{name}[{int(np.argmax(m))}]")
    if abs(x.sum() - 1.0) > ROW_SUM_TOLERANCE:
        raise ValueError(
            f"{name} sums to {x.sum():.12g}, not 1 (tolerance {ROW_SUM_TOLERANCE:g}); "
            "normalise the start distribution."
        )
    return _readonly(x)


def _validated_visitation_kind(horizon: Any, discount: Any) -> tuple[int | None, float | None]:
    if horizon is not None and discount is not None:
        raise ValueError(
            "set at most one of horizon and discount: horizon gives the finite-horizon average "
            "visitation, discount the discounted occupancy, neither the stationary one."
        )
    if horizon is not None:
        horizon = validated_count(horizon, "horizon")
    if discount is not None:
        discount = validated_discount(discount)
    return horizon, discount


# --------------------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------------------


def random_mdp(
    n_states: int,
    n_actions: int,
    *,
    seed: int | np.random.Generator,
    successors: int | None = None,
    concentration: float = 1.0,
    horizon: int | None = None,
    discount: float | None = None,
    initial: np.ndarray | None = None,
    sparse: bool = False,
) -> TabularMDP:
    """A random MDP with Dirichlet transition rows.

    Each row ``P[s, a, :]`` is Dirichlet(``concentration``) over all S next states, or, with
    ``successors=k``, over k distinct next states drawn uniformly without replacement (the
    other entries are zero).

    Args:
        n_states: S >= 1.
        n_actions: A >= 1.
        seed: an int seed or a ``np.random.Generator``; same seed, same MDP.
        successors: number k of next states per (s, a), 1 <= k <= S; None for all S.
        concentration: Dirichlet concentration (> 0); small values give peaked rows.
        horizon: finite horizon, or None.
        discount: discount, or None.
        initial: start distribution ``rho0[s]``; uniform when None.
        sparse: store transitions as a tuple of A scipy.sparse CSR (S, S) arrays (needed for
            large S: the dense array has S * A * S entries).

    Returns:
        The MDP. Building a sparse MDP with S = 10^6, A = 4, k = 5 takes a few seconds.
    """
    n_states = validated_count(n_states, "n_states")
    n_actions = validated_count(n_actions, "n_actions")
    if not concentration > 0:
        raise ValueError(
            f"concentration must be > 0; got {concentration!r}; pass e.g. concentration=1.0 "
            "(uniform Dirichlet)."
        )
    k = n_states if successors is None else validated_count(successors, "successors")
    if not 1 <= k <= n_states:
        raise ValueError(
            f"successors must lie in [1, n_states = {n_states}]; got {successors}; pass at most "
            "n_states, or None for all states."
        )
    if not sparse and n_states * n_actions * n_states * 8 > 8 * 2**30:
        raise ValueError(
            f"a dense ({n_states}, {n_actions}, {n_states}) transition array needs more than "
            "8 GiB; pass sparse=True (with successors=k)."
        )
    rng = validated_rng(seed)
    # Generated action-major, [A, S, k], so each action's rows are contiguous.
    weights = rng.standard_gamma(concentration, size=(n_actions, n_states, k))
    sums = np.einsum("ask->as", weights)
    # A row of all-zero gammas (possible for tiny concentrations) becomes uniform.
    zero = sums <= 0
    weights /= np.where(zero, 1.0, sums)[..., None]
    weights[zero] = 1.0 / k
    if initial is None:
        initial = np.full(n_states, 1.0 / n_states)
    if k == n_states:
        columns = np.broadcast_to(np.arange(n_states), (n_actions, n_states, k))
    else:
        # Sorted column sets; the iid weights stay a Dirichlet sample in any order.
        columns = _distinct_successors(rng, n_actions * n_states, n_states, k)
        columns = columns.reshape(n_actions, n_states, k)
    if sparse:
        index = np.int32 if n_states * k < 2**31 else np.int64
        indptr = np.arange(0, n_states * k + 1, k, dtype=index)
        transitions = []
        weights.setflags(write=False)  # views of a writeable base could be made writeable
        for a in range(n_actions):
            arrays = (weights[a].ravel(), columns[a].astype(index).ravel(), indptr.copy())
            for arr in arrays:
                arr.setflags(write=False)  # fresh read-only arrays: TabularMDP need not copy
            transitions.append(sp.csr_array(arrays, shape=(n_states, n_states)))
        return TabularMDP(tuple(transitions), initial, horizon=horizon, discount=discount)
    p = np.zeros((n_actions, n_states, n_states))
    np.put_along_axis(p, np.asarray(columns), weights, axis=2)
    return TabularMDP(p.transpose(1, 0, 2), initial, horizon=horizon, discount=discount)


def _distinct_successors(
    rng: np.random.Generator, n_rows: int, n_states: int, k: int
) -> np.ndarray:
    """``k`` distinct uniform column indices per row, shape ``(n_rows, k)``."""
    if n_rows * n_states <= 2**24:
        keys = rng.random((n_rows, n_states))
        return np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)
    # Large S: sample with replacement and redraw the (rare) rows with a repeat.
    cols = rng.integers(0, n_states, size=(n_rows, k))
    while True:
        cols.sort(axis=1)
        bad = np.flatnonzero((cols[:, 1:] == cols[:, :-1]).any(axis=1))
        if bad.size == 0:
            return cols
        cols[bad] = rng.integers(0, n_states, size=(bad.size, k))


def self_loop_mdp(
    n_states: int,
    n_actions: int,
    *,
    initial: np.ndarray | None = None,
    horizon: int | None = None,
    discount: float | None = None,
) -> TabularMDP:
    """The self-loop MDP of Example 1: every action keeps you in your state.

    ``P[s, a, s'] = 1 if s' == s``. Any policy's visitation equals the start distribution,
    which is a point mass on state 0 unless ``initial`` is given. Its stationary distribution
    is not unique (every state is its own closed class), so analyse it with a horizon or a
    discount.

    Args:
        n_states: S >= 1.
        n_actions: A >= 1.
        initial: start distribution; the point mass on state 0 when None.
        horizon: finite horizon, or None.
        discount: discount, or None.
    """
    n_states = validated_count(n_states, "n_states")
    n_actions = validated_count(n_actions, "n_actions")
    eye = np.eye(n_states)
    p = np.repeat(eye[:, None, :], n_actions, axis=1)
    if initial is None:
        initial = eye[0]
    return TabularMDP(p, initial, horizon=horizon, discount=discount)


def two_state_mdp(
    *,
    transitions: np.ndarray | None = None,
    initial: Sequence[float] | np.ndarray = (0.5, 0.5),
    horizon: int | None = None,
    discount: float | None = None,
) -> TabularMDP:
    """The two-state, two-action MDP of Example 3 with configurable dynamics.

    Args:
        transitions: ``P[s, a, s']`` of shape ``(2, 2, 2)``; when None, every (s, a) moves to
            either state with probability 1/2 (so every policy's visitation is uniform).
        initial: start distribution over the two states.
        horizon: finite horizon, or None.
        discount: discount, or None (neither: stationary distribution).
    """
    if transitions is None:
        transitions = np.full((2, 2, 2), 0.5)
    transitions = as_float_array(transitions, "transitions", "P[s, a, s']")
    if transitions.shape != (2, 2, 2):
        raise ValueError(
            f"two_state_mdp needs transitions of shape (2, 2, 2); got {transitions.shape}; use "
            "TabularMDP(P, rho0) for other sizes."
        )
    return TabularMDP(transitions, np.asarray(initial), horizon=horizon, discount=discount)


TOY_TEXT_ENVS = ("FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v1", "Taxi-v4")


def from_toy_text(
    env: Any,
    *,
    horizon: int | None = None,
    discount: float | None = None,
    **make_kwargs: Any,
) -> TabularMDP:
    """Convert a Gymnasium toy-text environment (FrozenLake, CliffWalking, Taxi) to an MDP.

    Reads the environment's ``unwrapped.P`` table, where ``P[s][a]`` is a list of
    ``(prob, next_state, reward, terminated)``. Duplicate next states are merged (their
    probabilities added). Terminal states are made absorbing: every state ``s'`` that some
    transition enters with ``terminated=True`` (FrozenLake's holes and goal, CliffWalking's
    goal, Taxi's delivered states) gets ``P[s', a, s'] = 1`` and reward 0 for all ``a``, so
    visitation after termination stays on the terminal state (it does not restart). The start
    distribution is the environment's ``initial_state_distrib`` when it has one, else the
    point mass on the reset state for seed 0.

    Args:
        env: an environment id (e.g. ``"FrozenLake-v1"``) or an environment instance.
        horizon: finite horizon, or None.
        discount: discount, or None.
        **make_kwargs: passed to ``gymnasium.make`` when ``env`` is an id
            (e.g. ``is_slippery=False``).

    Returns:
        A dense TabularMDP with ``rewards[s, a]`` the expected immediate reward.
    """
    import gymnasium  # Only this constructor needs Gymnasium.

    if isinstance(env, str):
        try:
            env = gymnasium.make(env, **make_kwargs)
        except (gymnasium.error.Error, TypeError) as exc:
            # TypeError: an unknown keyword in make_kwargs, rejected by the env's constructor.
            raise ValueError(
                f"cannot make {env!r} with options {make_kwargs!r} ({exc}); pass one of "
                f"{', '.join(TOY_TEXT_ENVS)} and only options its constructor accepts."
            ) from exc
    raw = env.unwrapped
    table = getattr(raw, "P", None)
    if not isinstance(table, dict) or not table:
        raise ValueError(
            f"{type(raw).__name__} has no toy-text transition table unwrapped.P; supported: "
            f"{', '.join(TOY_TEXT_ENVS)}."
        )
    n_states = int(raw.observation_space.n)
    n_actions = int(raw.action_space.n)
    p = np.zeros((n_states, n_actions, n_states))
    rewards = np.zeros((n_states, n_actions))
    terminal = np.zeros(n_states, dtype=bool)
    for s, per_action in table.items():
        for a, outcomes in per_action.items():
            for prob, next_state, reward, terminated in outcomes:
                p[s, a, next_state] += prob  # += merges duplicate next states
                rewards[s, a] += prob * reward
                if terminated:
                    terminal[next_state] = True
    p[terminal] = 0.0
    for s in np.flatnonzero(terminal):
        p[s, :, s] = 1.0
    rewards[terminal] = 0.0
    initial = getattr(raw, "initial_state_distrib", None)
    if initial is None:
        start, _ = env.reset(seed=0)
        initial = np.zeros(n_states)
        initial[int(start)] = 1.0
    initial = np.asarray(initial, dtype=np.float64)
    return TabularMDP(
        p, initial / initial.sum(), horizon=horizon, discount=discount, rewards=rewards
    )

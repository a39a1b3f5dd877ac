"""Demonstrations on finite MDPs: sampled trajectories, empirical and sampled visitation.

Finite data comes in two forms. :func:`sample_demonstrations` rolls a policy out in the MDP
and :func:`empirical_visitation` turns the trajectories into ``d_hat[s, a]``;
:func:`sample_visitation` draws ``n`` iid pairs from an exact visitation ``d[s, a]``
(multinomial counts / n), which is what the consistency sweeps use. "Infinite data" is the
exact expert visitation ``d_E[s, a]`` itself, passed to the estimators in place of ``d_hat``;
:func:`demonstration_visitation` gives either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sbil.tabular.checks import (
    validate_policy,
    validate_visitation,
    validated_count,
    validated_discount,
    validated_rng,
)
from sbil.tabular.mdp import TabularMDP
from sbil.tabular.visitation import state_action_visitation


@dataclass(frozen=True)
class Demonstrations:
    """Trajectories of (state, action) pairs, all of the same length.

    Attributes:
        states: ``states[n, t]``, int64, shape ``(N, T)``.
        actions: ``actions[n, t]``, int64, shape ``(N, T)``.

    Raises:
        ValueError: if the arrays are not 2-D integer arrays of the same shape, or hold
            negative indices.
    """

    states: np.ndarray
    actions: np.ndarray

    def __post_init__(self) -> None:
        states = _index_array(self.states, "states")
        actions = _index_array(self.actions, "actions")
        for name, arr in (("states", states), ("actions", actions)):
            if arr.ndim != 2:
                raise ValueError(
                    f"{name} must be a 2-D array [N trajectories, T steps]; got shape {arr.shape}. "
                    "Stack equal-length trajectories, e.g. np.stack(list_of_1d_arrays)."
                )
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"{name} must hold integer indices; got dtype {arr.dtype}; cast with "
                    f"{name}.astype(np.int64) if the values are whole numbers."
                )
            if arr.size and arr.min() < 0:
                n, t = (int(i) for i in np.argwhere(arr < 0)[0])
                raise ValueError(
                    f"{name}[{n}, {t}] = {int(arr[n, t])} is negative; indices must be >= 0, "
                    f"so pass {name} as indices 0, 1, ... into the MDP's {name}."
                )
        if states.shape != actions.shape:
            raise ValueError(
                f"states {states.shape} and actions {actions.shape} must have the same shape; "
                "pass one action per visited state."
            )
        for name, arr in (("states", states), ("actions", actions)):
            arr = arr.astype(np.int64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_trajectories(self) -> int:
        """N."""
        return int(self.states.shape[0])

    @property
    def length(self) -> int:
        """T, the number of steps per trajectory."""
        return int(self.states.shape[1])


def _index_array(values: Any, name: str) -> np.ndarray:
    try:
        return np.array(values)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            f"{name} must be a rectangular [N, T] array; got ragged nested sequences; give all "
            "trajectories the same length T (split or truncate them)."
        ) from exc


def _categorical(
    cdf: np.ndarray, starts: np.ndarray, ends: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Index ``i`` in ``[starts, ends)`` with ``cdf[i] > u``, the first such (binary search).

    ``cdf`` is a flat array of per-row cumulative sums, each row ending in exactly 1.
    """
    lo = starts.copy()
    hi = ends - 1
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        right = cdf[mid] <= u
        lo = np.where(open_ & right, mid + 1, lo)
        hi = np.where(open_ & ~right, mid, hi)


def _row_cdf(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Per-row cumulative sums of a CSR data array, each row divided by its total."""
    total = np.cumsum(data)
    base = np.concatenate([[0.0], total])[indptr[:-1]]
    row_of = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    cdf = total - base[row_of]
    row_total = cdf[np.maximum(indptr[1:] - 1, 0)]
    return cdf / row_total[row_of]  # last entry of every row becomes exactly 1


def sample_demonstrations(
    mdp: TabularMDP,
    pi: np.ndarray,
    *,
    n_trajectories: int,
    seed: int | np.random.Generator,
    length: int | None = None,
) -> Demonstrations:
    """Roll ``pi`` out ``n_trajectories`` times from ``rho0``.

    Args:
        mdp: the MDP (dense or sparse).
        pi: policy ``pi[s, a]``.
        n_trajectories: N >= 1.
        seed: int seed or Generator; same seed, same trajectories.
        length: steps per trajectory; defaults to ``mdp.horizon`` (required otherwise).

    Returns:
        Demonstrations with ``states``/``actions`` of shape ``(N, T)``. With the MDP's
        horizon H, :func:`empirical_visitation` of them estimates the finite-horizon
        visitation without bias.
    """
    pi = validate_policy(pi, mdp.n_states, mdp.n_actions)
    length = mdp.horizon if length is None else length
    if length is None:
        raise ValueError(
            "the MDP has no horizon, so the trajectory length is unknown; pass length=..."
        )
    length = validated_count(length, "length")
    n = validated_count(n_trajectories, "n_trajectories")
    n_s, n_a = mdp.n_states, mdp.n_actions
    rng = validated_rng(seed)

    policy_cdf = np.cumsum(pi, axis=1)
    policy_cdf = (policy_cdf / policy_cdf[:, -1:]).ravel()
    # Transition rows in one flat CSR-like layout; row r = a * S + s.
    if mdp.is_sparse:
        datas, cols, ptrs, offset = [], [], [], 0
        for p_a in mdp.transitions:
            datas.append(_row_cdf(p_a.data, p_a.indptr))
            cols.append(p_a.indices)
            ptrs.append(p_a.indptr[:-1] + offset)
            offset += p_a.data.size
        trans_cdf = np.concatenate(datas)
        trans_cols = np.concatenate(cols).astype(np.int64)
        starts = np.concatenate(ptrs).astype(np.int64)
        ends = np.append(starts[1:], offset)
    else:
        dense = np.transpose(mdp.transitions, (1, 0, 2)).reshape(n_a * n_s, n_s)
        cdf = np.cumsum(dense, axis=1)
        trans_cdf = (cdf / cdf[:, -1:]).ravel()
        trans_cols = np.tile(np.arange(n_s), n_a * n_s)
        starts = np.arange(n_a * n_s, dtype=np.int64) * n_s
        ends = starts + n_s

    initial_cdf = np.cumsum(mdp.initial)
    initial_cdf /= initial_cdf[-1]
    states = np.empty((n, length), dtype=np.int64)
    actions = np.empty((n, length), dtype=np.int64)
    s = _categorical(initial_cdf, np.zeros(n, np.int64), np.full(n, n_s), rng.random(n))
    for t in range(length):
        a_idx = _categorical(policy_cdf, s * n_a, s * n_a + n_a, rng.random(n))
        a = a_idx - s * n_a
        states[:, t], actions[:, t] = s, a
        if t + 1 < length:
            row = a * n_s + s
            s = trans_cols[_categorical(trans_cdf, starts[row], ends[row], rng.random(n))]
    return Demonstrations(states, actions)


def empirical_visitation(
    demos: Demonstrations,
    n_states: int,
    n_actions: int,
    *,
    discount: float | None = None,
) -> np.ndarray:
    """``d_hat[s, a]``: the frequency of ``(s, a)`` over all trajectories and steps.

    Args:
        demos: the demonstrations.
        n_states: S; every state index must be < S.
        n_actions: A; every action index must be < A.
        discount: if given, step t is weighted by ``gamma^t`` (normalised over the
            trajectory length), estimating the discounted occupancy truncated at T.

    Returns:
        ``d_hat[s, a]``, shape ``(S, A)``, summing to one.
    """
    if not isinstance(demos, Demonstrations):
        raise ValueError("demos must be a Demonstrations; build one with Demonstrations(s, a).")
    n_states = validated_count(n_states, "n_states")
    n_actions = validated_count(n_actions, "n_actions")
    if demos.states.size == 0:
        raise ValueError(
            "demos are empty; pass at least one trajectory with at least one (state, action)."
        )
    for name, arr, size, letter in (
        ("states", demos.states, n_states, "S"),
        ("actions", demos.actions, n_actions, "A"),
    ):
        if arr.max() >= size:
            n, t = (int(i) for i in np.argwhere(arr >= size)[0])
            raise ValueError(
                f"{name}[{n}, {t}] = {int(arr[n, t])} is out of range for {letter} = {size}; "
                f"pass the {letter} of the MDP the demonstrations came from (> {int(arr.max())})."
            )
    weights = np.ones(demos.length)
    if discount is not None:
        discount = validated_discount(discount)
        weights = discount ** np.arange(demos.length)
    weights = np.broadcast_to(weights / weights.sum(), demos.states.shape)
    index = demos.states * n_actions + demos.actions
    counts = np.bincount(index.ravel(), weights=weights.ravel(), minlength=n_states * n_actions)
    return (counts / demos.n_trajectories).reshape(n_states, n_actions)


def sample_visitation(
    d: np.ndarray, n_samples: int, *, seed: int | np.random.Generator
) -> np.ndarray:
    """``n`` iid ``(s, a)`` draws from an exact visitation, as frequencies (counts / n).

    Args:
        d: exact visitation ``d[..., s, a]``, summing to one per problem; leading dimensions
            are a batch, each sampled independently.
        n_samples: n >= 1.
        seed: int seed or Generator; same seed, same counts.

    Returns:
        ``d_hat[..., s, a]`` of the shape of ``d``.
    """
    d = validate_visitation(d)
    n_samples = validated_count(n_samples, "n_samples")
    rng = validated_rng(seed)
    # Within the tolerance already; dividing makes the multinomial's sum exactly one.
    flat = d.reshape(*d.shape[:-2], -1)
    flat = flat / flat.sum(axis=-1, keepdims=True)
    counts = rng.multinomial(n_samples, flat)
    return (counts / n_samples).reshape(d.shape)


def demonstration_visitation(
    mdp: TabularMDP,
    pi: np.ndarray,
    *,
    n_samples: int | None = None,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """The data an estimator sees: ``n`` iid pairs from ``d_E``, or ``d_E`` itself.

    Args:
        mdp: the MDP.
        pi: the expert policy ``pi[s, a]``.
        n_samples: number of iid ``(s, a)`` draws; None for "infinite data", the exact
            visitation ``d_E[s, a]``.
        seed: required when ``n_samples`` is given.

    Returns:
        ``d[s, a]``, summing to one.
    """
    d_expert = state_action_visitation(mdp, pi)
    if n_samples is None:
        return d_expert
    if seed is None:
        raise ValueError("pass seed=... with n_samples: sampling needs an explicit seed.")
    return sample_visitation(d_expert, n_samples, seed=seed)

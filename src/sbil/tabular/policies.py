"""Policies whose logits are linear in the parameters, and EDM's state model built on them.

A policy class is a feature array ``Phi[s, a, k]``; parameters ``theta[k]`` give the logits
``f_theta(s)[a] = Phi[s, a, :] . theta`` and the policy ``pi_theta(a|s) = softmax(f(s))[a]``.
Every function broadcasts over leading batch dimensions: ``Phi[..., s, a, k]`` and
``theta[..., k]``.

EDM (Jarrett et al., 2020) reads a state model off the same logits,
``p_theta(s) ∝ exp(logsumexp_a f(s))`` (its reference code; eq. (11) of the note). The note's
eqs. (4)-(5) write the energy with the opposite sign, ``p_theta(s) ∝ exp(-logsumexp_a f(s))``;
:func:`edm_state_log_prob` offers both.
"""

from __future__ import annotations

import numpy as np

from sbil.tabular.checks import (
    CONVENTIONS,
    Convention,
    as_float_array,
    validated_convention,
    validated_count,
    validated_rng,
)
from sbil.tabular.numeric import log_softmax, logsumexp

__all__ = [
    "CONVENTIONS",
    "Convention",
    "edm_state_log_prob",
    "energy_sign",
    "example3_features",
    "log_softmax",
    "logits",
    "logsumexp",
    "policy_probs",
    "random_features",
    "shift_logits",
    "state_shift_features",
    "tabular_features",
]


def logits(features: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Linear logits ``f[..., s, a] = Phi[..., s, a, :] . theta[..., :]``.

    Args:
        features: ``Phi[..., s, a, k]``.
        theta: ``theta[..., k]``; leading dimensions broadcast with those of ``features``.

    Returns:
        ``f[..., s, a]``.
    """
    features = as_float_array(features, "features", "Phi[..., s, a, k]")
    theta = as_float_array(theta, "theta", "theta[..., k]")
    if features.ndim < 3:
        raise ValueError(
            f"features must be Phi[..., s, a, k] with at least 3 dimensions; got shape "
            f"{features.shape}; pass one feature vector per (state, action)."
        )
    if theta.ndim < 1 or theta.shape[-1] != features.shape[-1]:
        raise ValueError(
            f"theta must have last dimension K = {features.shape[-1]} (features' last axis); "
            f"got shape {theta.shape}; pass one parameter per feature."
        )
    n_s, n_a, n_k = features.shape[-3:]
    # A batched matmul [..., S*A, K] @ [..., K, 1]: several times faster than the einsum.
    flat = features.reshape(*features.shape[:-3], n_s * n_a, n_k) @ theta[..., None]
    return flat.reshape(*flat.shape[:-2], n_s, n_a)


def policy_probs(features: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``pi_theta[..., s, a] = softmax_a(f_theta(s))[a]`` for linear logits.

    Args:
        features: ``Phi[..., s, a, k]``.
        theta: ``theta[..., k]``.

    Returns:
        ``pi[..., s, a]``, rows summing to one.
    """
    return np.exp(log_softmax(logits(features, theta)))


def tabular_features(n_states: int, n_actions: int) -> np.ndarray:
    """One-hot features: one parameter per (s, a), so ``f(s)[a] = theta[s * A + a]``.

    Returns:
        ``Phi[s, a, k]`` of shape ``(S, A, S * A)``.
    """
    n_states = validated_count(n_states, "n_states")
    n_actions = validated_count(n_actions, "n_actions")
    n = n_states * n_actions
    return np.eye(n).reshape(n_states, n_actions, n)


def example3_features(k: float) -> np.ndarray:
    """The shared-parameter class of Example 3: logits (0, theta) in s1, (0, k theta) in s2.

    Two states, two actions, one parameter.

    Returns:
        ``Phi[s, a, 0]`` of shape ``(2, 2, 1)``: ``[[0, 1], [0, k]]``.
    """
    k = float(k)
    if not np.isfinite(k):
        raise ValueError(f"k must be finite; got {k}; pass a real slope, e.g. k=0.5.")
    return np.array([[[0.0], [1.0]], [[0.0], [k]]])


def random_features(
    n_states: int,
    n_actions: int,
    n_params: int,
    *,
    seed: int | np.random.Generator,
    scale: float = 1.0,
) -> np.ndarray:
    """Random linear features with iid ``Normal(0, scale^2)`` entries.

    Args:
        n_states: S.
        n_actions: A.
        n_params: K, the number of shared parameters.
        seed: int seed or Generator; same seed, same features.
        scale: standard deviation of the entries.

    Returns:
        ``Phi[s, a, k]`` of shape ``(S, A, K)``.
    """
    sizes = {"n_states": n_states, "n_actions": n_actions, "n_params": n_params}
    shape = tuple(validated_count(value, name) for name, value in sizes.items())
    return scale * validated_rng(seed).standard_normal(shape)


def shift_logits(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Example 2: add a per-state shift ``g(s)`` to every action's logit.

    ``pi`` is unchanged (softmax is shift invariant within a state) while EDM's state model
    moves anywhere: ``g(s) = -logsumexp_a f(s)`` makes ``p_theta`` uniform.

    Args:
        f: ``f[..., s, a]``.
        g: ``g[..., s]``.

    Returns:
        ``f[..., s, a] + g[..., s]``.
    """
    f = np.asarray(f, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if g.shape[-1:] != f.shape[-2:-1]:
        raise ValueError(
            f"g must be g[..., s] with S = {f.shape[-2]} entries matching f[..., s, a]; got "
            f"shape {g.shape}; pass one shift per state."
        )
    return f + g[..., None]


def state_shift_features(features: np.ndarray) -> np.ndarray:
    """Append a learnable per-state shift ``g(s)`` (Example 2) to a linear class.

    The new logits are ``f(s)[a] = Phi[s, a, :] . theta + g[s]`` with ``g`` the last S
    parameters. BC cannot see ``g`` (it leaves ``pi`` unchanged); EDM's state model can.

    Args:
        features: ``Phi[..., s, a, k]``.

    Returns:
        ``Phi'[..., s, a, K + S]``.
    """
    features = np.asarray(features, dtype=np.float64)
    *lead, n_states, n_actions, _ = features.shape
    onehot = np.broadcast_to(np.eye(n_states)[:, None, :], (*lead, n_states, n_actions, n_states))
    return np.concatenate([features, onehot], axis=-1)


def energy_sign(convention: Convention) -> float:
    """The sign sigma of EDM's state energy: +1 for ``"reference"``, -1 for ``"note"``.

    Raises:
        ValueError: for any other convention name.
    """
    return 1.0 if validated_convention(convention) == "reference" else -1.0


def edm_state_log_prob(f: np.ndarray, *, convention: Convention = "reference") -> np.ndarray:
    """EDM's state model ``log p_theta(s)`` read off the policy logits.

    ``"reference"`` (EDM's code and the note's eq. (11)):
    ``p(s) = exp(lse_a f(s)) / sum_s' exp(lse_a f(s'))``.
    ``"note"`` (the note's eqs. (4)-(5), energy of opposite sign):
    ``p(s) = exp(-lse_a f(s)) / sum_s' exp(-lse_a f(s'))``.

    Args:
        f: logits ``f[..., s, a]``.
        convention: ``"reference"`` or ``"note"``.

    Returns:
        ``log p[..., s]``.
    """
    sign = energy_sign(convention)
    energy = sign * logsumexp(np.asarray(f, dtype=np.float64), axis=-1)
    return log_softmax(energy, axis=-1)

"""Validation shared by the tabular modules: arrays, counts, seeds, distributions, conventions.

Each check returns the validated value (converted: float64 arrays, ints, Generators) or raises a
ValueError of one sentence that names the argument, the offending index in plain ints, and how
to fix it. The MDP, policies, objectives, estimators and demonstrations all check their inputs
here, so one kind of mistake gets one message wherever it is made.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

#: Probability vectors (rows of ``P[s, a, :]``, ``initial``, policy rows, visitations
#: ``d[s, a]``) must sum to one within this tolerance. Defined here only; the other tabular
#: modules import it.
ROW_SUM_TOLERANCE = 1e-8


def as_float_array(values: Any, name: str, expected: str) -> np.ndarray:
    """``values`` as a float64 array, or a one-sentence ValueError naming ``name``.

    Numpy's own errors for strings or ragged nested lists ("could not convert...",
    "inhomogeneous shape") say nothing about which argument was wrong or how to fix it.

    Args:
        values: anything array-like.
        name: the argument's name, for the message.
        expected: what was expected, e.g. ``"P[s, a, s']"``.

    Returns:
        ``np.asarray(values, dtype=np.float64)`` (no copy when already float64).
    """
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        reason = "ragged nested sequences" if "inhomogeneous" in str(exc) else "non-numbers"
        raise ValueError(
            f"{name} must be a rectangular array of numbers {expected}; got "
            f"{type(values).__name__} with {reason}; pass an ndarray or nested lists of equal "
            "length holding only numbers."
        ) from exc


def first_index(mask: np.ndarray) -> str:
    """The first True entry of ``mask`` as ``"i, j, ..."`` in plain ints (for messages)."""
    return ", ".join(str(int(i)) for i in np.argwhere(mask)[0])


def validated_count(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; non-integers (2.5, True, NaN) are errors.

    Raises:
        ValueError: if ``value`` is not an integer (an integral float such as 3.0 is fine)
            or is below ``minimum``.
    """
    integral = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value)
    )
    if isinstance(value, (bool, np.bool_)) or not integral or int(value) < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}; got {value!r}; pass a whole number, "
            f"e.g. {name}={max(minimum, 1)}."
        )
    return int(value)


def validated_discount(value: Any, name: str = "discount") -> float:
    """``value`` as a float in ``[0, 1)``.

    Raises:
        ValueError: for non-numbers, NaN, or values outside ``[0, 1)``.
    """
    number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not number or not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"{name} must be a number in [0, 1); got {value!r}; for an undiscounted infinite "
            "horizon leave both horizon and discount unset (stationary distribution)."
        )
    return float(value)


def validated_rng(seed: Any, name: str = "seed") -> np.random.Generator:
    """A ``np.random.Generator`` from an int seed or a Generator; None is refused.

    Explicit randomness: every random draw in sbil names its seed, so the same seed gives the
    same numbers. ``np.random.default_rng(None)`` would draw fresh OS entropy instead.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"{name} must be a non-negative int or a np.random.Generator; got {seed!r}; pass "
            f"e.g. {name}=0 (same seed, same numbers)."
        )
    return np.random.default_rng(int(seed))


def validate_policy(pi: Any, n_states: int, n_actions: int) -> np.ndarray:
    """Check a policy ``pi[s, a]`` of shape ``(S, A)``; return it as float64.

    Raises:
        ValueError: wrong shape, NaN/inf, negative entries or rows not summing to one.
    """
    pi = as_float_array(pi, "policy pi", "pi[s, a]")
    if pi.shape != (n_states, n_actions):
        raise ValueError(
            f"policy pi[s, a] must have shape (S, A) = ({n_states}, {n_actions}); got "
            f"{pi.shape}; pass one policy (use policy_probs(features, theta) for logits)."
        )
    bad = ~np.isfinite(pi)
    if bad.any():
        raise ValueError(
            f"policy has a NaN or inf entry at pi[{first_index(bad)}]; pass finite values."
        )
    if (pi < 0).any():
        s, a = (int(i) for i in np.argwhere(pi < 0)[0])
        raise ValueError(
            f"policy has a negative entry pi[{s}, {a}] = {pi[s, a]:g}; probabilities must be "
            ">= 0, so set it to 0 (or a positive value) and renormalise that row."
        )
    err = np.abs(pi.sum(axis=1) - 1.0)
    if (err > ROW_SUM_TOLERANCE).any():
        s = int(np.argmax(err))
        raise ValueError(
            f"policy row pi[{s}, :] sums to {pi[s].sum():.12g}, not 1 (tolerance "
            f"{ROW_SUM_TOLERANCE:g}); divide each row by its sum, pi / pi.sum(1, keepdims=True)."
        )
    return pi


def validate_visitation(d: Any, name: str = "d") -> np.ndarray:
    """Check a visitation ``d[..., s, a]`` (leading dimensions a batch); return it as float64.

    Every problem's weights must be finite, nonnegative and sum to one within
    :data:`sbil.tabular.mdp.ROW_SUM_TOLERANCE`. Nothing is renormalised silently.

    Raises:
        ValueError: naming the offending index (plain ints) and how to fix it.
    """
    d = as_float_array(d, name, "d[..., s, a]")
    if d.ndim < 2 or 0 in d.shape[-2:]:
        raise ValueError(
            f"{name} must be d[..., s, a] with S, A >= 1; got shape {d.shape}; pass one weight "
            "per (state, action), e.g. state_action_visitation(mdp, pi)."
        )
    bad = ~np.isfinite(d)
    if bad.any():
        raise ValueError(
            f"{name} has a NaN or inf entry at index ({first_index(bad)}); pass finite weights."
        )
    if (d < 0).any():
        raise ValueError(
            f"{name} has a negative entry at index ({first_index(d < 0)}); visitation weights "
            "must be >= 0, so set it to 0 or recompute the visitation."
        )
    sums = d.sum(axis=(-2, -1))
    err = np.abs(sums - 1.0)
    if (err > ROW_SUM_TOLERANCE).any():
        idx = np.unravel_index(int(np.argmax(err)), sums.shape)
        where = f" for problem ({', '.join(str(int(i)) for i in idx)},)" if sums.ndim else ""
        where = where.replace(",)", ")") if len(idx) > 1 else where
        raise ValueError(
            f"{name} sums to {float(sums[idx]):.12g}{where}, not 1 (tolerance "
            f"{ROW_SUM_TOLERANCE:g}); cast it to float64 and divide by its sum, "
            f"{name} / {name}.sum(axis=(-2, -1), keepdims=True)."
        )
    return d


#: EDM's state-energy sign convention (see :func:`sbil.tabular.policies.edm_state_log_prob`):
#: ``"reference"`` is ``p(s) ∝ exp(+logsumexp_a f(s))`` (EDM's code, the note's eq. (11)),
#: ``"note"`` is ``p(s) ∝ exp(-logsumexp_a f(s))`` (the note's eqs. (4)-(5)).
Convention = Literal["reference", "note"]
CONVENTIONS: tuple[Convention, ...] = ("reference", "note")


def validated_convention(value: Any) -> Convention:
    """``value`` as an energy :data:`Convention`; anything else is a one-sentence ValueError."""
    if isinstance(value, str) and value in CONVENTIONS:
        return value  # type: ignore[return-value]
    raise ValueError(
        f"convention must be 'reference' or 'note'; got {value!r}; 'reference' is EDM's code "
        "(p(s) ∝ exp(+logsumexp f(s))), 'note' the note's eqs. (4)-(5)."
    )

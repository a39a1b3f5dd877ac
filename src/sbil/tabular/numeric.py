"""Numerical kernels of the tabular core: stable log-softmax and log-sum-exp over the last axis.

The arrays here are batches of short axes (a few actions, a few states), where numpy's generic
reductions are slow; these kernels are the fast paths the policies and objectives share.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def max_last(x: np.ndarray) -> np.ndarray:
    """``max`` over the last axis; pairwise for short axes (numpy's reduce is slow there)."""
    if x.shape[-1] > 8 or x.shape[-1] == 0:
        return np.max(x, axis=-1)
    top = x[..., 0].copy()
    for i in range(1, x.shape[-1]):
        np.maximum(top, x[..., i], out=top)
    return top


def sum_last(x: np.ndarray) -> np.ndarray:
    """``sum`` over the last axis (einsum is faster than ``np.sum`` for short axes)."""
    return np.einsum("...i->...", x)


def log_softmax(f: np.ndarray, axis: int = -1) -> np.ndarray:
    """``f - logsumexp(f)`` along ``axis``, computed stably."""
    f = np.moveaxis(np.asarray(f, dtype=np.float64), axis, -1)
    shifted = f - max_last(f)[..., None]
    out = shifted - np.log(sum_last(np.exp(shifted)))[..., None]
    return np.moveaxis(out, -1, axis)


def logsumexp(f: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log sum exp f`` along ``axis`` (the axis removed), computed stably."""
    f = np.moveaxis(np.asarray(f, dtype=np.float64), axis, -1)
    top = max_last(f)
    return np.log(sum_last(np.exp(f - top[..., None]))) + top


def total_variation(p: np.ndarray, q: np.ndarray, *, axis: int | tuple[int, ...] = -1) -> Any:
    """Total-variation distance ``0.5 * sum |p - q|`` over ``axis`` (batched over the rest)."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=axis)

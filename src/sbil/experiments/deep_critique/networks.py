"""Networks and policies of the deep studies: stacked networks, shifted models, softmax policies.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sbil.deep.learners import torch_threads
from sbil.deep.networks import StackedMLP


def stacked_network(states: Sequence[dict[str, torch.Tensor]] | dict[str, torch.Tensor]):
    """A :class:`StackedMLP` holding the given ``K = 1`` (or stacked) weights, frozen, float32.

    Args:
        states: one stacked state dict ``[K, ...]`` or a sequence of ``K = 1`` state dicts.
    """
    if not isinstance(states, dict):
        states = {k: torch.cat([s[k] for s in states]) for k in states[0]}
    weights = [states[f"weight{i}"] for i in range(len(states) // 2)]
    sizes = [weights[0].shape[1], *(w.shape[2] for w in weights)]
    net = StackedMLP(weights[0].shape[0], sizes[0], sizes[1:-1], sizes[-1])
    net.load_state_dict({k: v.to(torch.float32) for k, v in states.items()})
    return net.eval().requires_grad_(False)


def _forward(net: StackedMLP, x: np.ndarray, *, dtype=torch.float32) -> np.ndarray:
    """``net`` on ``x[K, B, d]`` (or ``[B, d]`` for every model), as numpy ``[K, B, A]``."""
    inputs = torch.as_tensor(np.array(x, copy=True), dtype=dtype)
    if inputs.ndim == 2:
        inputs = inputs.expand(net.n_models, *inputs.shape)
    with torch.no_grad(), torch_threads(1):
        model = net if dtype == torch.float32 else _as_dtype(net, dtype)
        return model(inputs).numpy()


def _as_dtype(net: StackedMLP, dtype) -> StackedMLP:
    copy = StackedMLP(net.n_models, net.in_dim, net.hidden_sizes, net.out_dim, dtype=dtype)
    copy.load_state_dict({k: v.to(dtype) for k, v in net.state_dict().items()})
    return copy.eval().requires_grad_(False)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[..., 0]


def policy_tv(net: StackedMLP, expert: StackedMLP, states: np.ndarray) -> np.ndarray:
    """Mean over ``states`` of the action-probability TV of each model of ``net`` to ``expert``.

    ``TV(s) = 1/2 sum_a |softmax f_k(s)[a] - softmax f_E(s)[a]|`` (float64), averaged over the
    ``[n, d]`` states (network input units). Returns ``[K]``.
    """
    p = _softmax(_forward(net, states, dtype=torch.float64))
    q = _softmax(_forward(expert, states, dtype=torch.float64))[0]
    return 0.5 * np.abs(p - q[None]).sum(-1).mean(-1)

"""Stacked MLPs: ``K`` independent networks evaluated as one model with batched matmuls.

The EDM reference network is a two-hidden-layer MLP of width 64 with ELU activations
(``Linear(d, 64) - ELU - Linear(64, 64) - ELU - Linear(64, A)``). :class:`StackedMLP` holds
``K`` such networks with their weights stacked along a leading axis, so that ``K`` learners
(one per seed) train in one process with one ``torch.bmm`` per layer. Learner ``k`` owns slice
``k`` of every parameter and nothing else: its outputs never depend on the other slices, and
summing the ``K`` losses gives each slice exactly its own gradient. A single learner is the
case ``K = 1``.

:meth:`StackedMLP.logsumexp_input_grad` is the gradient the SGLD sampler needs,
``grad_x logsumexp_a f(x)[a]``, written out by hand (softmax back through the layers): it is the
same number autograd gives, without building a graph or touching parameter gradients.

Example:
    >>> import torch
    >>> from sbil.deep.networks import StackedMLP
    >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    >>> net = StackedMLP.initialized(gens, in_dim=4, hidden_sizes=(64, 64), out_dim=2)
    >>> net(torch.zeros(3, 5, 4)).shape
    torch.Size([3, 5, 2])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class StackedMLP(nn.Module):
    """``K`` independent MLPs with ELU hidden activations and stacked weights.

    Parameters are named ``weight{l}`` (``[K, in_l, out_l]``, so ``y = x @ W + b``) and
    ``bias{l}`` (``[K, 1, out_l]``) for layers ``l = 0 .. L-1``.
    """

    def __init__(
        self,
        n_models: int,
        in_dim: int,
        hidden_sizes: Sequence[int],
        out_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        sizes = [in_dim, *hidden_sizes, out_dim]
        if n_models < 1 or any(int(s) < 1 for s in sizes):
            raise ValueError(
                f"A stacked MLP needs at least one model and positive layer sizes, got "
                f"n_models={n_models} and sizes {sizes}."
            )
        self.n_models = int(n_models)
        self.sizes = tuple(int(s) for s in sizes)
        # Plain lists beside the registered parameters: indexing nn.ParameterList costs
        # microseconds per access, which adds up over SGLD's thousands of small matmuls.
        self.weights: list[nn.Parameter] = []
        self.biases: list[nn.Parameter] = []
        for layer, (i, o) in enumerate(itertools.pairwise(sizes)):
            weight = nn.Parameter(torch.zeros(n_models, i, o, dtype=dtype, device=device))
            bias = nn.Parameter(torch.zeros(n_models, 1, o, dtype=dtype, device=device))
            self.register_parameter(f"weight{layer}", weight)
            self.register_parameter(f"bias{layer}", bias)
            self.weights.append(weight)
            self.biases.append(bias)

    def _apply(self, fn, recurse=True):  # keep the plain lists in step with .to(device)
        super()._apply(fn, recurse)
        n = len(self.weights)
        self.weights = [getattr(self, f"weight{layer}") for layer in range(n)]
        self.biases = [getattr(self, f"bias{layer}") for layer in range(n)]
        return self

    @classmethod
    def initialized(
        cls,
        generators: Sequence[torch.Generator],
        *,
        in_dim: int,
        hidden_sizes: Sequence[int],
        out_dim: int,
        device: torch.device | str | None = None,
    ) -> StackedMLP:
        """``len(generators)`` MLPs, model ``k`` initialised from ``generators[k]`` alone.

        Each layer's weight and bias are drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
        the distribution of ``torch.nn.Linear``'s default initialisation (used by the EDM
        reference code), weight then bias, layer by layer, on the CPU.
        """
        net = cls(len(generators), in_dim, hidden_sizes, out_dim)
        with torch.no_grad():
            for k, gen in enumerate(generators):
                for weight, bias in zip(net.weights, net.biases, strict=True):
                    bound = 1.0 / math.sqrt(weight.shape[1])
                    weight[k].copy_(_uniform(weight.shape[1:], bound, gen))
                    bias[k].copy_(_uniform(bias.shape[1:], bound, gen))
        return net.to(device) if device is not None else net

    @property
    def in_dim(self) -> int:
        """Input size."""
        return self.sizes[0]

    @property
    def out_dim(self) -> int:
        """Output size."""
        return self.sizes[-1]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Widths of the hidden layers."""
        return self.sizes[1:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``f[k, b, :]`` of model ``k`` on input ``x[k, b, :]``.

        Args:
            x: ``[K, B, in_dim]``.

        Returns:
            ``[K, B, out_dim]``.
        """
        h = x
        last = len(self.weights) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(bias, h, weight)
            if layer < last:
                h = F.elu(h)
        return h

    def frozen(self) -> FrozenMLP:
        """Detached views of the current weights, for gradient-free inner loops (SGLD)."""
        return FrozenMLP(
            tuple(w.detach() for w in self.weights), tuple(b.detach() for b in self.biases)
        )

    def logsumexp_input_grad(self, x: torch.Tensor) -> torch.Tensor:
        """``grad_x sum_b logsumexp_a f_k(x[k, b])[a]``: the SGLD drift, by a hand-written backward.

        See :meth:`FrozenMLP.logsumexp_input_grad`. Parameter gradients are untouched.

        Args:
            x: ``[K, B, in_dim]``.

        Returns:
            ``[K, B, in_dim]``.
        """
        return self.frozen().logsumexp_input_grad(x)

    def model_state(self, k: int) -> dict[str, torch.Tensor]:
        """The parameters of model ``k`` alone, as a ``K = 1`` state dict (detached copies).

        A test utility (checks that model ``k`` of a stack equals a single network); training
        slices its results with ``TrainResult.learner`` instead.
        """
        if not 0 <= k < self.n_models:
            raise IndexError(f"Model {k} does not exist; there are {self.n_models}.")
        return {name: p.detach()[k : k + 1].clone() for name, p in self.state_dict().items()}


def grad_first_preactivation(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    x: torch.Tensor,
    transposed: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Gradient of ``sum logsumexp f(x)`` w.r.t. the first layer's output ``x @ W0 + b0``, for
    an ELU network of at least two layers given as plain tensors (``[K, in_l, out_l]`` weights,
    ``[K, 1, out_l]`` biases; ``transposed``: the weights' ``.mT``, when already at hand).

    :class:`FrozenMLP` and SGLD's compiled chain (:func:`sbil.deep.sgld._plain_chain`, which
    dynamo can trace because it sees tensors only) both call this one function.
    """
    transposed = tuple(w.mT for w in weights) if transposed is None else transposed
    activations = []
    h = x
    last = len(weights) - 1
    for layer in range(last):
        h = F.elu(torch.baddbmm(biases[layer], h, weights[layer]))
        activations.append(h)
    grad = torch.softmax(torch.baddbmm(biases[last], h, weights[last]), dim=-1)
    for layer in range(last, 0, -1):
        grad = torch.bmm(grad, transposed[layer])
        # elu'(z) = 1 for z > 0, else exp(z) = elu(z) + 1: computed from the output.
        grad = torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, activations[layer - 1])
    return grad


class FrozenMLP:
    """Detached weights of a :class:`StackedMLP` with the input gradient of ``logsumexp f``.

    Attributes:
        weights: per layer ``[K, in_l, out_l]``.
        biases: per layer ``[K, 1, out_l]``.
    """

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> None:
        self.weights = tuple(weights)
        self.biases = tuple(biases)
        self._transposed = tuple(w.mT for w in self.weights)

    def _grad_first_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient of ``sum logsumexp f`` w.r.t. the first layer's output ``x @ W0 + b0``."""
        return grad_first_preactivation(self.weights, self.biases, x, self._transposed)

    @torch.no_grad()
    def logsumexp_input_grad(self, x: torch.Tensor) -> torch.Tensor:
        """``grad_x sum_b logsumexp_a f_k(x[k, b])[a]``, ``[K, B, in_dim]``.

        Uses ``d logsumexp(f) / d f = softmax(f)`` and ``elu'(z) = elu(z) + 1`` for ``z <= 0``
        (1 otherwise); this is the number autograd gives, without building a graph.
        """
        if len(self.weights) == 1:
            h = torch.baddbmm(self.biases[0], x, self.weights[0])
            return torch.bmm(torch.softmax(h, dim=-1), self._transposed[0])
        return torch.bmm(self._grad_first_preactivation(x), self._transposed[0])

    @torch.no_grad()
    def logsumexp_ascent(self, x: torch.Tensor, step_size: float) -> torch.Tensor:
        """``x + step_size * grad_x logsumexp f(x)`` (new tensor); the step fused in a matmul."""
        if len(self.weights) == 1:
            return x + step_size * self.logsumexp_input_grad(x)
        grad = self._grad_first_preactivation(x)
        return torch.baddbmm(x, grad, self._transposed[0], alpha=step_size)


def _uniform(shape: Sequence[int], bound: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(*shape, generator=generator).mul_(2 * bound).sub_(bound)

"""Stochastic gradient Langevin dynamics (SGLD) and EDM's persistent sample buffer.

EDM (Jarrett et al., 2020) trains its state model ``p(s) ∝ sum_a exp f(s)[a]`` with samples
drawn by SGLD, as in the EDM reference code (``EDMStudent._sample_via_sgld``):

    x_{t+1} = x_t + step_size * grad_x log p~(x_t) + noise_scale * eps_t,   eps_t ~ N(0, I),

``n_steps`` times, starting from a persistent buffer (JEM-style): each chain starts from a
buffer sample drawn uniformly with replacement, or, with probability ``reinit_prob``, from a
fresh ``U(-1, 1)`` draw; the final samples are written back to the buffer slots they came
from, and are detached (no gradient flows through the chain).

**Temperature.** Langevin dynamics samples ``p~`` only when ``noise_scale = sqrt(2 *
step_size)`` (:func:`langevin_noise_scale`). With other values the stationary density of the
small-step limit is ``p~^(1/T)`` with temperature ``T = noise_scale**2 / (2 * step_size)``
(:func:`sampling_temperature`). EDM's published setting (step 0.01, noise 0.01) has
``T = 0.005``: it samples roughly ``p~^200``, a distribution concentrated at the modes of
``p~``, and after only 20 steps from the buffer it is not at equilibrium either.

Randomness is passed in (``noise`` tensors, buffer draws), so callers decide which
``torch.Generator`` each number comes from; see :func:`draw_chain_randomness`.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sbil.deep.networks import StackedMLP, grad_first_preactivation

#: A function returning ``grad_x log p~(x)`` for a batch ``x`` (same shape as ``x``).
DriftFunction = Callable[[torch.Tensor], torch.Tensor]


def langevin_noise_scale(step_size: float) -> float:
    """``sqrt(2 * step_size)``: the noise scale at which SGLD samples ``p~`` itself (T = 1)."""
    _check_step(step_size)
    return math.sqrt(2.0 * step_size)


def sampling_temperature(step_size: float, noise_scale: float) -> float:
    """``noise_scale**2 / (2 * step_size)``: SGLD with these settings targets ``p~^(1/T)``.

    EDM's published ``(0.01, 0.01)`` gives ``T = 0.005``, i.e. ``p~^200``.
    """
    _check_step(step_size)
    return noise_scale**2 / (2.0 * step_size)


def _check_step(step_size: float) -> None:
    if not step_size > 0:
        raise ValueError(f"The SGLD step size must be positive, got {step_size}.")


@torch.no_grad()
def sgld(
    drift: DriftFunction,
    x0: torch.Tensor,
    noise: torch.Tensor,
    *,
    step_size: float,
    noise_scale: float,
) -> torch.Tensor:
    """Run SGLD: ``x <- x + step_size * drift(x) + noise_scale * noise[t]`` for each ``t``.

    Reference implementation for tests and experiments with other energies: training uses the
    fused :func:`sgld_logsumexp`, which tests check against this function.

    Args:
        drift: ``grad_x log p~(x)``, e.g. ``net.logsumexp_input_grad`` of a
            :class:`~sbil.deep.networks.StackedMLP` (ascent on ``logsumexp f``, the direction
            the EDM reference code takes).
        x0: ``[...]`` starting points (not modified).
        noise: ``[n_steps, ...]`` standard normal draws, one slice per step.
        step_size: the drift coefficient (the reference's ``sgld_learn_rate``).
        noise_scale: the noise coefficient (the reference's ``sgld_noise_coef``).

    Returns:
        The final points, ``[...]``, detached.
    """
    if noise.shape[1:] != x0.shape:
        raise ValueError(
            f"noise must have shape [n_steps, {', '.join(map(str, x0.shape))}], got "
            f"{tuple(noise.shape)}."
        )
    x = x0.detach().clone()
    for eps in noise:
        x.add_(drift(x), alpha=step_size).add_(eps, alpha=noise_scale)
    return x


@torch.no_grad()
def sgld_logsumexp(
    net: StackedMLP,
    x0: torch.Tensor,
    noise: torch.Tensor,
    *,
    step_size: float,
    noise_scale: float,
    compiled: bool = False,
) -> torch.Tensor:
    """EDM's chains: :func:`sgld` with drift ``grad_x logsumexp_a net(x)[a]``, fused.

    The same chain as ``sgld(net.logsumexp_input_grad, x0, noise, ...)`` (equal up to float
    rounding), computed with the network's detached weights, the ascent step folded into the
    last backward matmul and the noise scaled once: about 12 small kernels per step instead of
    a Python loop of autograd calls.

    Args:
        net: the state model, ``K`` stacked networks.
        x0: ``[K, B, in_dim]`` starting points (not modified).
        noise: ``[n_steps, K, B, in_dim]`` standard normal draws.
        step_size: drift coefficient.
        noise_scale: noise coefficient.
        compiled: run the chain through ``torch.compile`` (:func:`compiled_chain`: one
            compilation per shape and process, fused elementwise kernels). Its samples equal
            the eager chain's to float32 rounding, not bit for bit, hence an opt-in. Where
            torch.compile is unavailable or fails, one RuntimeWarning says so and the eager
            chain runs from then on.

    Returns:
        ``[K, B, in_dim]`` final samples, detached.
    """
    if noise.shape[1:] != x0.shape:
        raise ValueError(
            f"noise must have shape [n_steps, {', '.join(map(str, x0.shape))}], got "
            f"{tuple(noise.shape)}."
        )
    frozen = net.frozen()
    scaled = noise * noise_scale
    if compiled and len(noise):
        chain = compiled_chain()
        if chain is not None:
            try:
                return chain(frozen.weights, frozen.biases, x0.detach(), scaled, step_size)
            except Exception as error:  # a compiler failure: run eagerly
                _compile_failed(error)
    x = x0.detach()
    for eps in scaled:
        x = frozen.logsumexp_ascent(x, step_size).add_(eps)
    return x.clone() if len(noise) == 0 else x  # never alias the caller's x0


def _plain_chain(weights, biases, x: torch.Tensor, scaled_noise: torch.Tensor, step_size: float):
    """The chain of :func:`sgld_logsumexp` written as plain tensor operations on the detached
    weights (what ``compiled=True`` compiles; dynamo cannot trace the
    :class:`~sbil.deep.networks.FrozenMLP` object): per step, the input gradient of
    ``logsumexp f`` by the same kernels as ``FrozenMLP.logsumexp_ascent``, the ascent step
    folded into the last matmul, then the step's noise."""
    first = weights[0].mT
    for t in range(scaled_noise.shape[0]):
        grad = grad_first_preactivation(weights, biases, x)
        x = torch.baddbmm(x, grad, first, alpha=step_size) + scaled_noise[t]
    return x


#: ``chain``: the compiled chain; ``unavailable``: why torch.compile is not used (then).
_COMPILED: dict[str, Any] = {}


def compiled_chain() -> Callable | None:
    """``torch.compile`` of the SGLD chain (made once per process; it compiles on its first
    call for each shape), or None once torch.compile has proved unavailable here."""
    if "unavailable" in _COMPILED:
        return None
    if "chain" not in _COMPILED:
        try:
            import torch._dynamo

            if not torch._dynamo.is_dynamo_supported():
                version = sys.version.split()[0]
                raise RuntimeError(f"torch.compile does not support Python {version}")
            _COMPILED["chain"] = torch.compile(_plain_chain, dynamic=False, fullgraph=True)
        except Exception as error:  # any reason: run eagerly
            _compile_failed(error)
            return None
    return _COMPILED["chain"]


def _compile_failed(error: BaseException) -> None:
    """Warn once that compiling failed, and use the eager chain from now on."""
    if "unavailable" not in _COMPILED:
        first = str(error).splitlines()[0] if str(error) else ""
        _COMPILED["unavailable"] = f"{type(error).__name__}: {first}"
        warnings.warn(
            f"torch.compile is not available here ({_COMPILED['unavailable']}); SGLD runs "
            "eagerly, which gives the same samples to float32 rounding.",
            RuntimeWarning,
            stacklevel=3,
        )
    _COMPILED.pop("chain", None)


def autograd_drift(log_density: Callable[[torch.Tensor], torch.Tensor]) -> DriftFunction:
    """The drift ``grad_x sum log p~(x)`` of any differentiable ``log_density``, by autograd.

    A reference/test utility (slow: one autograd call per step) for :func:`sgld`; training
    never uses it.

    Args:
        log_density: maps ``x[..., d]`` to unnormalised log densities ``[...]``.
    """

    def drift(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_density(x).sum(), x)
        return grad

    return drift


@dataclass(frozen=True)
class ChainRandomness:
    """The random numbers of one learner's SGLD chains for one update.

    Attributes:
        buffer_indices: ``[B]`` int64 buffer slots the chains start from (with replacement).
        reinit: ``[B, d]`` fresh ``U(low, high)`` starting points.
        reinit_mask: ``[B]`` bool, True where a chain starts from ``reinit`` instead.
        noise: ``[n_steps, B, d]`` standard normal draws.
    """

    buffer_indices: torch.Tensor
    reinit: torch.Tensor
    reinit_mask: torch.Tensor
    noise: torch.Tensor


def draw_chain_randomness(
    generator: torch.Generator,
    *,
    batch_size: int,
    dim: int,
    buffer_size: int,
    n_steps: int,
    reinit_prob: float,
    low: float = -1.0,
    high: float = 1.0,
) -> ChainRandomness:
    """Draw one update's chain randomness from ``generator``, in the reference code's order.

    The order is: buffer indices, fresh uniform samples, reinitialisation mask, then the
    step noise.
    """
    indices = torch.randint(0, buffer_size, (batch_size,), generator=generator)
    reinit = torch.rand(batch_size, dim, generator=generator).mul_(high - low).add_(low)
    mask = torch.rand(batch_size, generator=generator) < reinit_prob
    noise = torch.randn(n_steps, batch_size, dim, generator=generator)
    return ChainRandomness(indices, reinit, mask, noise)


def uniform_buffer(
    generator: torch.Generator, size: int, dim: int, *, low: float = -1.0, high: float = 1.0
) -> torch.Tensor:
    """A fresh persistent buffer ``[size, dim]`` of ``U(low, high)`` samples."""
    return torch.rand(size, dim, generator=generator).mul_(high - low).add_(low)


def buffer_start(
    buffer: torch.Tensor,
    indices: torch.Tensor,
    reinit: torch.Tensor,
    reinit_mask: torch.Tensor,
) -> torch.Tensor:
    """Chain starting points: ``buffer[k, indices[k, b]]``, or ``reinit[k, b]`` where masked.

    Args:
        buffer: ``[K, S, d]`` persistent samples of ``K`` learners.
        indices: ``[K, B]`` int64 slots.
        reinit: ``[K, B, d]`` fresh samples.
        reinit_mask: ``[K, B]`` bool.

    Returns:
        ``[K, B, d]``.
    """
    drawn = torch.gather(buffer, 1, indices.unsqueeze(-1).expand(-1, -1, buffer.shape[-1]))
    return torch.where(reinit_mask.unsqueeze(-1), reinit, drawn)


def buffer_write(buffer: torch.Tensor, indices: torch.Tensor, samples: torch.Tensor) -> None:
    """Write ``samples[k, b]`` to ``buffer[k, indices[k, b]]`` in place.

    Args:
        buffer: ``[K, S, d]``.
        indices: ``[K, B]`` int64.
        samples: ``[K, B, d]``.
    """
    buffer.scatter_(1, indices.unsqueeze(-1).expand(-1, -1, buffer.shape[-1]), samples)

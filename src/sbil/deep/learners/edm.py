"""EDM (Jarrett, Bica & van der Schaar, NeurIPS 2020) and the critique's decoupled control.

EDM fits the policy ``pi(a|s) = softmax(f(s))[a]`` together with a state model
``p(s) ∝ sum_a exp g(s)[a]`` trained by contrastive divergence on SGLD samples; its loss is
``CE + rho + rho**2`` as in the reference code (:func:`edm_loss`). For ``"edm"`` ``g = f`` (one
network, the state term reaches the policy); for ``"edm-decoupled"`` (Swamy et al.'s control)
``g`` is a second network of the same shape, so the policy follows BC's exactly.

Each update first runs ``sgld_steps`` SGLD steps on ``B`` chains started from the learner's
persistent buffer (ascent on ``logsumexp g``, detached) and writes them back
(:mod:`sbil.deep.sgld`).

Decoupled EDM's policy term reaches only the policy and its state term only ``g``, so given its
policy trained already (BC's, :class:`sbil.deep.training.TrainedPolicy`),
:func:`state_model_update` trains ``g`` alone, with the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sbil.deep.learners.bc import include_regularizer
from sbil.deep.losses import cross_entropy
from sbil.deep.sgld import buffer_start, buffer_write, draw_chain_randomness, sgld_logsumexp

if TYPE_CHECKING:
    from sbil.deep.networks import StackedMLP
    from sbil.deep.stack import Stack


def state_log_density_gap(
    state_logits_data: torch.Tensor, state_logits_samples: torch.Tensor
) -> torch.Tensor:
    """``rho = mean_q logsumexp g - mean_D logsumexp g`` per learner (EDM's state term).

    ``logsumexp_a g(s)[a]`` is the unnormalised ``log p(s)``; ``rho`` is a contrastive
    divergence estimate of ``-E_D log p(s)`` up to a constant.

    Args:
        state_logits_data: ``[K, B, A]`` state-model outputs on expert states.
        state_logits_samples: ``[K, B', A]`` state-model outputs on SGLD samples.

    Returns:
        ``[K]``.
    """
    return state_logits_samples.logsumexp(-1).mean(-1) - state_logits_data.logsumexp(-1).mean(-1)


@dataclass(frozen=True)
class EdmLoss:
    """EDM's loss and its terms, each ``[K]`` (one value per learner).

    Attributes:
        loss: ``cross_entropy + rho + rho**2``, what Adam minimises.
        cross_entropy: the policy term ``mean_D -log pi(a|s)``.
        rho: the state term's contrastive gap ``mean_q lse g - mean_D lse g``; it can be
            negative, and so can ``loss`` (``rho + rho**2`` is smallest, -1/4, at
            ``rho = -1/2``).
    """

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    rho: torch.Tensor


def edm_loss(
    policy_logits: torch.Tensor,
    actions: torch.Tensor,
    state_logits_data: torch.Tensor,
    state_logits_samples: torch.Tensor,
) -> EdmLoss:
    """EDM's loss as in the reference code (``EDMStudent._compute_loss``): ``CE + rho + rho**2``.

    With ``pi(a|s) = softmax(f(s))[a]`` and ``p(s) ∝ sum_a exp g(s)[a]``, the objective
    ``E_D[-log pi(a|s) - log p(s)]`` (Jarrett et al., eq. 9) is estimated by the cross-entropy
    plus ``rho``, the contrastive-divergence estimate of ``-E_D log p(s)`` up to a constant;
    the reference adds ``rho**2``. For ``"edm"`` ``g = f`` (one network); for
    ``"edm-decoupled"`` ``g`` is the separate state network.

    Args:
        policy_logits: ``[K, B, A]`` policy logits on expert states.
        actions: ``[K, B]`` expert actions.
        state_logits_data: ``[K, B, A]`` state-model outputs on the same expert states.
        state_logits_samples: ``[K, B', A]`` state-model outputs on SGLD samples.
    """
    ce = cross_entropy(policy_logits, actions)
    rho = state_log_density_gap(state_logits_data, state_logits_samples)
    return edm_terms(ce, rho)


def edm_terms(ce: torch.Tensor, rho: torch.Tensor) -> EdmLoss:
    """EDM's loss ``CE + rho + rho**2`` from its two terms, each ``[K]``."""
    return EdmLoss(loss=ce + rho + rho**2, cross_entropy=ce, rho=rho)


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Adam step of every learner of ``stack`` on its minibatch ``index`` ``[K, B]``, after
    advancing its SGLD chains; returns the terms ``{name: [K]}``, ``loss`` including the
    optional policy regulariser."""
    batch = stack.batch
    x, a = stack.pairs(index)  # [K, B, d], [K, B]
    state_model = stack.energy if stack.energy is not None else stack.policy
    samples = sgld_samples(stack, state_model)
    if stack.energy is None:  # one network: policy and state model share the logits
        logits = stack.policy(torch.cat([x, samples], dim=1))
        policy_logits, sample_logits = logits[:, :batch], logits[:, batch:]
        state_logits_data = policy_logits
    else:
        policy_logits = stack.policy(x)
        state_logits = stack.energy(torch.cat([x, samples], dim=1))
        state_logits_data = state_logits[:, :batch]
        sample_logits = state_logits[:, batch:]
    losses = edm_loss(policy_logits, a, state_logits_data, sample_logits)
    return include_regularizer(stack.descend(losses, policy_logits, a))


def state_model_update(
    stack: Stack, index: torch.Tensor, policy_terms: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Decoupled EDM's update given its trained policy (:func:`update` without the policy's
    forward, backward and Adam step): the SGLD chains and one Adam step of the state model on
    the minibatch ``index`` ``[K, B]``. ``policy_terms`` are the policy's terms of this update
    (``cross_entropy``, and ``policy_regularizer`` when on), ``{name: [K]}``; the loss and the
    terms returned are :func:`update`'s, bit for bit."""
    batch = stack.batch
    x, _ = stack.pairs(index)
    samples = sgld_samples(stack, stack.energy)
    state_logits = stack.energy(torch.cat([x, samples], dim=1))
    rho = state_log_density_gap(state_logits[:, :batch], state_logits[:, batch:])
    losses = edm_terms(policy_terms["cross_entropy"], rho)
    return include_regularizer(stack.descend_state_model(losses, policy_terms))


def sgld_samples(stack: Stack, state_model: StackedMLP) -> torch.Tensor:
    """``[K, B, d]`` SGLD samples of ``state_model``'s density, ``B`` chains per learner
    started from its persistent buffer (or, each with ``sgld_reinit_prob``, from U(-1, 1))
    and written back to it."""
    config, dev = stack.config, stack.device
    draws = [
        draw_chain_randomness(
            g,
            batch_size=stack.batch,
            dim=stack.obs_dim,
            buffer_size=config.sgld_buffer_size,
            n_steps=config.sgld_steps,
            reinit_prob=config.sgld_reinit_prob,
        )
        for g in stack.sgld_gens
    ]
    slots = torch.stack([d.buffer_indices for d in draws]).to(dev)
    start = buffer_start(
        stack.buffer,
        slots,
        torch.stack([d.reinit for d in draws]).to(dev),
        torch.stack([d.reinit_mask for d in draws]).to(dev),
    )
    noise = torch.stack([d.noise for d in draws], dim=1).to(dev)  # [steps, K, B, d]
    samples = sgld_logsumexp(
        state_model,
        start,
        noise,
        step_size=config.sgld_step_size,
        noise_scale=config.sgld_noise,
        compiled=stack.compile_sgld,
    )
    buffer_write(stack.buffer, slots, samples)
    return samples

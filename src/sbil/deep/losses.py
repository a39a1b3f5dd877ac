"""The learners' losses, each one short function next to its equation.

* BC: :func:`cross_entropy`, ``E_D[-log pi(a|s)]`` with ``pi(a|s) = softmax(f(s))[a]``.
* EDM (Jarrett, Bica & van der Schaar, NeurIPS 2020) and the critique's decoupled control:
  :func:`edm_loss`, ``CE + rho + rho**2`` as in the reference code, whose terms come back in
  an :class:`EdmLoss`.
* Optional policy regularisers: :func:`policy_regularizer`.

All losses are batched over ``K`` independent learners (a leading ``K`` axis) and return one
value per learner; the training loop (:mod:`sbil.deep.training`) sums them, which gives each
learner exactly its own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sbil.deep.config import LearnerConfig
from sbil.deep.networks import StackedMLP


def cross_entropy(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """BC's loss, ``mean_b -log softmax(logits[k, b])[actions[k, b]]``, per learner.

    Args:
        logits: ``[K, B, A]`` policy logits on expert states.
        actions: ``[K, B]`` int64 expert actions.

    Returns:
        ``[K]``.
    """
    k, b, a = logits.shape
    nll = F.cross_entropy(logits.reshape(k * b, a), actions.reshape(k * b), reduction="none")
    return nll.view(k, b).mean(dim=1)


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
    return EdmLoss(loss=ce + rho + rho**2, cross_entropy=ce, rho=rho)


def policy_regularizer(
    policy_logits: torch.Tensor, policy: StackedMLP, config: LearnerConfig
) -> torch.Tensor | float:
    """``l2_coef * sum ||W||^2 - entropy_coef * mean entropy(pi)`` per learner ``[K]`` (or 0)."""
    penalty: torch.Tensor | float = 0.0
    if config.l2_coef:
        penalty = penalty + config.l2_coef * sum(w.square().sum(dim=(1, 2)) for w in policy.weights)
    if config.entropy_coef:
        log_pi = policy_logits.log_softmax(-1)
        entropy = -(log_pi.exp() * log_pi).sum(-1).mean(-1)
        penalty = penalty - config.entropy_coef * entropy
    return penalty

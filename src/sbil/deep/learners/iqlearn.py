"""IQ-Learn (Garg et al., NeurIPS 2021), offline, with the chi-squared regulariser.

The policy network is a soft ``Q``, the policy ``pi(a|s) = softmax(Q(s, .) / tau)[a]`` with
``tau = soft_q_temperature``; the loss (:func:`iqlearn_loss`) uses transitions ``(s, a, s')``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sbil.deep.stack import Stack


@dataclass(frozen=True)
class IqLearnLoss:
    """IQ-Learn's loss (to minimise) and its terms, each ``[K]``.

    Attributes:
        loss: ``-reward_term + value_term + chi2_term``.
        reward_term: ``mean_D r``, ``r = Q(s, a) - gamma V(s')`` (the implied reward).
        value_term: ``mean_D [V(s) - gamma V(s')]``.
        chi2_term: ``mean_D r^2 / (4 alpha)``.
    """

    loss: torch.Tensor
    reward_term: torch.Tensor
    value_term: torch.Tensor
    chi2_term: torch.Tensor


def iqlearn_loss(
    q_data: torch.Tensor,
    actions: torch.Tensor,
    q_next: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
    temperature: float,
    chi2_alpha: float,
) -> IqLearnLoss:
    """Offline IQ-Learn with the chi-squared divergence (Garg et al. 2021, eq. 10 with
    ``phi(r) = r - r^2 / (4 alpha)``, and the expert-states form of the initial-value term,
    their eq. 14 ``E_D[V(s) - gamma V(s')] = (1 - gamma) E_{p0} V(s0)``):

    ``min_Q  -mean_D [Q(s, a) - gamma V(s')] + mean_D [V(s) - gamma V(s')]
    + mean_D [(Q(s, a) - gamma V(s'))^2] / (4 alpha)``,

    with the soft value ``V(s) = tau logsumexp_a Q(s, a) / tau`` (``V(s') = 0`` where ``s'`` is
    terminal) and the policy ``pi(a|s) = softmax(Q(s, .) / tau)[a]``.

    Args:
        q_data: ``[K, B, A]`` ``Q(s, .)`` on expert states.
        actions: ``[K, B]`` expert actions.
        q_next: ``[K, B, A]`` ``Q(s', .)``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        discount: gamma.
        temperature: tau.
        chi2_alpha: alpha.
    """
    v_data = temperature * (q_data / temperature).logsumexp(-1)
    v_next = (1.0 - done) * temperature * (q_next / temperature).logsumexp(-1)
    q_sa = q_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    reward = q_sa - discount * v_next
    reward_term = reward.mean(-1)
    value_term = (v_data - discount * v_next).mean(-1)
    chi2 = reward.square().mean(-1) / (4.0 * chi2_alpha)
    return IqLearnLoss(
        loss=-reward_term + value_term + chi2,
        reward_term=reward_term,
        value_term=value_term,
        chi2_term=chi2,
    )


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Adam step of every learner of ``stack`` on its minibatch of transitions ``index``
    ``[K, B]``; returns the terms ``{name: [K]}`` (``loss`` without the policy regulariser,
    which acts on the policy's logits ``Q / tau``)."""
    config = stack.config
    x, a, x_next, _, done = stack.transitions(index)
    q_data, q_next = stack.policy_on(x, x_next)
    losses = iqlearn_loss(
        q_data,
        a,
        q_next,
        done,
        discount=config.discount,
        temperature=config.soft_q_temperature,
        chi2_alpha=config.chi2_alpha,
    )
    return stack.descend(losses, q_data / config.policy_temperature, a)

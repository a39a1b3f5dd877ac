"""RCAL (Piot, Geist & Pietquin, 2014): large-margin classification with a sparse implied reward.

The policy network is a score function ``Q``, the policy greedy in it (``pi = softmax(Q)``
for the recorded cross-entropy); the loss (:func:`rcal_loss`) uses transitions ``(s, a, s')``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sbil.deep.stack import Stack


@dataclass(frozen=True)
class RcalLoss:
    """RCAL's loss and its terms, each ``[K]``.

    Attributes:
        loss: ``margin + reward_l1_coef * reward_l1``.
        margin: the large-margin classification term.
        reward_l1: ``mean |R(s, a)|`` of the implied reward.
    """

    loss: torch.Tensor
    margin: torch.Tensor
    reward_l1: torch.Tensor


def rcal_loss(
    q_data: torch.Tensor,
    actions: torch.Tensor,
    q_next: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
    reward_l1_coef: float,
) -> RcalLoss:
    """RCAL (Piot, Geist & Pietquin 2014, eq. 6): classification with a margin, regularised by
    the sparsity of the reward that the score function implies:

    ``mean_D [max_b (Q(s, b) + l(a, b)) - Q(s, a)]
    + lambda * mean_D |Q(s, a) - gamma max_b Q(s', b)|``,

    with the margin ``l(a, b) = 1[b != a]`` and ``R(s, a) = Q(s, a) - gamma max_b Q(s', b)``,
    the reward for which ``Q`` is optimal (inverted Bellman equation), estimated from the
    sampled ``s'``. The policy is greedy in ``Q``.

    Args:
        q_data: ``[K, B, A]`` ``Q(s, .)`` on expert states.
        actions: ``[K, B]`` expert actions.
        q_next: ``[K, B, A]`` ``Q(s', .)``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        discount: gamma.
        reward_l1_coef: lambda.
    """
    margin = torch.ones_like(q_data).scatter_(-1, actions.unsqueeze(-1), 0.0)
    q_sa = q_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    classification = ((q_data + margin).amax(-1) - q_sa).mean(-1)
    reward = q_sa - discount * (1.0 - done) * q_next.amax(-1)
    reward_l1 = reward.abs().mean(-1)
    return RcalLoss(
        loss=classification + reward_l1_coef * reward_l1, margin=classification, reward_l1=reward_l1
    )


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Adam step of every learner of ``stack`` on its minibatch of transitions ``index``
    ``[K, B]``; returns the terms ``{name: [K]}`` (``loss`` without the policy regulariser)."""
    config = stack.config
    x, a, x_next, _, done = stack.transitions(index)
    q_data, q_next = stack.policy_on(x, x_next)
    losses = rcal_loss(
        q_data, a, q_next, done, discount=config.discount, reward_l1_coef=config.reward_l1_coef
    )
    return stack.descend(losses, q_data, a)

"""AVRIL (Chan & van der Schaar, ICLR 2021): approximate variational reward imitation.

The policy network is a ``Q`` (``pi(a|s) = softmax(Q(s, .))[a]``) and the second network an
encoder of the state-only Gaussian reward posterior ``q_phi(R(s)) = N(mu(s), sigma(s)^2)``;
the negative ELBO (:func:`avril_loss`) uses transitions ``(s, a, s', a')``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sbil.deep.losses import cross_entropy

if TYPE_CHECKING:
    from sbil.deep.stack import Stack


@dataclass(frozen=True)
class AvrilLoss:
    """AVRIL's negative ELBO and its terms, each ``[K]``.

    Attributes:
        loss: ``cross_entropy + kl + td_likelihood_weight * td_nll``.
        cross_entropy: ``mean_D -log softmax(Q(s, .))[a]``.
        kl: ``mean_D KL(q(R(s)) || N(0, 1))``.
        td_nll: ``mean_D -log N(Q(s, a) - gamma Q(s', a'); mu(s), sigma(s)^2)``.
    """

    loss: torch.Tensor
    cross_entropy: torch.Tensor
    kl: torch.Tensor
    td_nll: torch.Tensor


def avril_loss(
    q_data: torch.Tensor,
    actions: torch.Tensor,
    q_next: torch.Tensor,
    next_actions: torch.Tensor,
    reward_params: torch.Tensor,
    done: torch.Tensor,
    *,
    discount: float,
    td_likelihood_weight: float,
) -> AvrilLoss:
    """AVRIL's negative ELBO (Chan & van der Schaar 2021, eq. 9), averaged over the batch as in
    the authors' code:

    ``mean_D [-log pi(a|s) + KL(q_phi(R(s)) || N(0, 1))
    - lambda log q_phi(Q(s, a) - gamma Q(s', a') | s)]``,

    with ``pi(a|s) = softmax(Q(s, .))[a]``, the state-only Gaussian reward posterior
    ``q_phi(R(s)) = N(mu(s), sigma(s)^2)`` of the encoder, and ``(s', a')`` the expert's next
    state and action (``Q(s', a') = 0`` where ``s'`` is terminal).

    Args:
        q_data: ``[K, B, A]`` ``Q(s, .)``.
        actions: ``[K, B]`` expert actions.
        q_next: ``[K, B, A]`` ``Q(s', .)``.
        next_actions: ``[K, B]`` the expert's next actions (any valid action where done).
        reward_params: ``[K, B, 2]`` the encoder's ``(mu(s), log sigma(s))``.
        done: ``[K, B]`` 1.0 where ``s'`` is terminal.
        discount: gamma (the authors' code has no discount: 1).
        td_likelihood_weight: lambda (1 in the code).
    """
    ce = cross_entropy(q_data, actions)
    q_sa = q_data.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    q_next_a = q_next.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
    td = q_sa - discount * (1.0 - done) * q_next_a
    mean, log_sd = reward_params[..., 0], reward_params[..., 1]
    var = torch.exp(2 * log_sd)
    kl = (0.5 * (-torch.log(var) - 1.0 + var + mean.square())).mean(-1)
    td_nll = 0.5 * ((td - mean) / log_sd.exp()).square() + log_sd + 0.5 * math.log(2 * math.pi)
    td_nll = td_nll.mean(-1)
    return AvrilLoss(
        loss=ce + kl + td_likelihood_weight * td_nll, cross_entropy=ce, kl=kl, td_nll=td_nll
    )


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Adam step of every learner of ``stack`` (its ``Q`` and reward encoder together) on
    its minibatch of transitions ``index`` ``[K, B]``; returns the terms ``{name: [K]}``
    (``loss`` without the policy regulariser)."""
    config = stack.config
    x, a, x_next, a_next, done = stack.transitions(index)
    q_data, q_next = stack.policy_on(x, x_next)
    losses = avril_loss(
        q_data,
        a,
        q_next,
        a_next,
        stack.energy(x),  # the reward encoder's (mean, log sd) of R(s)
        done,
        discount=config.discount,
        td_likelihood_weight=config.td_likelihood_weight,
    )
    return stack.descend(losses, q_data, a)

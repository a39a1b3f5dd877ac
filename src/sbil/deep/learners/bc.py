"""Behavioural cloning: the cross-entropy of the expert's actions under the policy.

``min_pi E_D[-log pi(a|s)]`` with ``pi(a|s) = softmax(f(s))[a]`` and ``f`` an MLP, trained on
expert state-action pairs; the reference code's ``BCStudent`` (EDM's harness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sbil.deep.losses import cross_entropy

if TYPE_CHECKING:
    from sbil.deep.stack import Stack


@dataclass(frozen=True)
class BcLoss:
    """BC's loss and its terms, each ``[K]`` (one value per learner).

    Attributes:
        loss: what Adam minimises (the cross-entropy).
        cross_entropy: ``mean_D -log pi(a|s)``.
    """

    loss: torch.Tensor
    cross_entropy: torch.Tensor


def bc_loss(policy_logits: torch.Tensor, actions: torch.Tensor) -> BcLoss:
    """BC's loss ``mean_D -log softmax(f(s))[a]``.

    Args:
        policy_logits: ``[K, B, A]`` policy logits on expert states.
        actions: ``[K, B]`` expert actions.
    """
    ce = cross_entropy(policy_logits, actions)
    return BcLoss(loss=ce, cross_entropy=ce)


def update(stack: Stack, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Adam step of every learner of ``stack`` on its minibatch ``index`` ``[K, B]``;
    returns the terms ``{name: [K]}``, ``loss`` including the optional policy regulariser."""
    x, a = stack.pairs(index)
    policy_logits = stack.policy(x)
    terms = stack.descend(bc_loss(policy_logits, a), policy_logits, a)
    return include_regularizer(terms)


def include_regularizer(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BC's and EDM's recorded ``loss`` is what Adam minimised, the policy regulariser
    included (the transition learners record their loss dataclass's, without it)."""
    if "policy_regularizer" in terms:
        terms["loss"] = terms["loss"] + terms["policy_regularizer"]
    return terms

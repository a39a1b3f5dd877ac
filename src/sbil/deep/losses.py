"""Loss terms every learner shares; each learner's own loss lives in its module.

* :func:`cross_entropy`: BC's loss ``E_D[-log pi(a|s)]`` with ``pi(a|s) = softmax(f(s))[a]``,
  which every learner also records as its policy's cross-entropy on the minibatch.
* :func:`policy_regularizer`: the optional policy regularisers (``l2_coef``, ``entropy_coef``).
* :func:`named_terms`: a loss dataclass's terms by field name, as the training loop records
  them.

The learners' losses, each one short function next to its equation, with its terms in a frozen
dataclass, are in :mod:`sbil.deep.learners`: :mod:`~sbil.deep.learners.bc`,
:mod:`~sbil.deep.learners.edm` (EDM and decoupled EDM), :mod:`~sbil.deep.learners.valuedice`,
:mod:`~sbil.deep.learners.rcal`, :mod:`~sbil.deep.learners.iqlearn` and
:mod:`~sbil.deep.learners.avril`.

All losses are batched over ``K`` independent learners (a leading ``K`` axis) and return one
value per learner; the training loop (:mod:`sbil.deep.training`) sums them, which gives each
learner exactly its own gradient.
"""

from __future__ import annotations

import dataclasses

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


def named_terms(losses) -> dict[str, torch.Tensor]:
    """A loss dataclass's terms by field name, detached: ``{name: [K]}`` in field order."""
    return {f.name: getattr(losses, f.name).detach() for f in dataclasses.fields(losses)}

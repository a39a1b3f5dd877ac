"""Deep learners: BC, EDM, decoupled EDM, ValueDICE, RCAL, IQ-Learn and AVRIL.

Every learner fits a policy ``pi(a|s) = softmax(f(s))[a]`` with an MLP ``f`` (64-64, ELU) on
expert demonstrations; ``docs/learners.md`` gives each one's loss, settings and sources:

* ``"bc"`` minimises the cross-entropy ``E_D[-log pi(a|s)]``.
* ``"edm"`` (Jarrett, Bica & van der Schaar, NeurIPS 2020) adds a state model built from the
  *same* logits, ``p(s) ∝ sum_a exp f(s)[a]``, trained by contrastive divergence with SGLD
  samples; the loss is ``CE + rho + rho**2`` as in the reference code.
* ``"edm-decoupled"`` is the control suggested by the critique (Swamy et al.): the same loss,
  but the state model is a second network ``g`` of the same shape, so the state term never
  reaches the policy's parameters. Its policy follows BC's exactly.
* ``"valuedice"``, ``"rcal"``, ``"iqlearn"`` and ``"avril"`` train on transitions
  ``(s, a, s')``.

A learner is one module of this package, registered once:

* :mod:`sbil.deep.learners.registry`: the one list of learners (names, display names, what
  data and networks each uses, published defaults), importable without torch;
* :mod:`~sbil.deep.learners.bc`, :mod:`~sbil.deep.learners.edm` (EDM and decoupled EDM),
  :mod:`~sbil.deep.learners.valuedice`, :mod:`~sbil.deep.learners.rcal`,
  :mod:`~sbil.deep.learners.iqlearn`, :mod:`~sbil.deep.learners.avril`: each its loss terms
  (a frozen dataclass), its loss function next to the paper's equation, and its
  ``update(stack, index)``, one step of the learners of a :class:`~sbil.deep.training.Stack`
  returning the terms by name (and, where its optimiser is not one Adam over all its
  weights at ``learning_rate``, ``parameter_groups(stack)``).

Adding a learner: its module, its registry line (and its config fields in
:class:`LearnerConfig`), its tests. The machinery they share has its own home:

* :mod:`sbil.deep.config`: :class:`LearnerConfig` (hyperparameters, published defaults);
* :mod:`sbil.deep.losses`: the loss terms every learner shares (cross-entropy, regulariser);
* :mod:`sbil.deep.training`: :func:`train`, the loop with checkpoints, resume and divergence;
* :mod:`sbil.deep.learner`: :class:`Learner`, the trained policy.

This package is the one place to import them from; its names load on first use, so that
importing the registry needs no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sbil.deep.config import ALGOS, LearnerConfig, LearnerInputError
    from sbil.deep.learner import Learner, torch_threads
    from sbil.deep.learners.edm import EdmLoss, edm_loss, state_log_density_gap
    from sbil.deep.losses import cross_entropy, policy_regularizer
    from sbil.deep.training import (
        TrainingDiverged,
        TrainingInterrupted,
        TrainResult,
        check_seeds,
        memory_estimate,
        minibatch_indices,
        resolve_device,
        seed_generator,
        slice_state,
        train,
        train_together,
    )

#: Each name this package gives, and the module it lives in (imported on first use).
_HOMES = {
    **dict.fromkeys(("ALGOS", "LearnerConfig", "LearnerInputError"), "sbil.deep.config"),
    **dict.fromkeys(("Learner", "torch_threads"), "sbil.deep.learner"),
    **dict.fromkeys(("EdmLoss", "edm_loss", "state_log_density_gap"), "sbil.deep.learners.edm"),
    **dict.fromkeys(("cross_entropy", "policy_regularizer"), "sbil.deep.losses"),
    **dict.fromkeys(
        (
            "TrainingDiverged",
            "TrainingInterrupted",
            "TrainResult",
            "check_seeds",
            "memory_estimate",
            "minibatch_indices",
            "resolve_device",
            "seed_generator",
            "slice_state",
            "train",
            "train_together",
        ),
        "sbil.deep.training",
    ),
}

__all__ = [
    "ALGOS",
    "EdmLoss",
    "Learner",
    "LearnerConfig",
    "LearnerInputError",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "check_seeds",
    "cross_entropy",
    "edm_loss",
    "memory_estimate",
    "minibatch_indices",
    "policy_regularizer",
    "resolve_device",
    "seed_generator",
    "slice_state",
    "state_log_density_gap",
    "torch_threads",
    "train",
    "train_together",
]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})

"""Deep learners: behavioural cloning (BC), EDM, and EDM with a decoupled state model.

All three fit a policy ``pi(a|s) = softmax(f(s))[a]`` with an MLP ``f`` (64-64, ELU) on expert
state-action pairs:

* ``"bc"`` minimises the cross-entropy ``E_D[-log pi(a|s)]``.
* ``"edm"`` (Jarrett, Bica & van der Schaar, NeurIPS 2020) adds a state model built from the
  *same* logits, ``p(s) ∝ sum_a exp f(s)[a]``, trained by contrastive divergence with SGLD
  samples; the loss is ``CE + rho + rho**2`` as in the reference code.
* ``"edm-decoupled"`` is the control suggested by the critique (Swamy et al.): the same loss,
  but the state model is a second network ``g`` of the same shape, so the state term never
  reaches the policy's parameters. Its policy follows BC's exactly.

This module is the one place to import them from; each idea has its own home:

* :mod:`sbil.deep.config`: :class:`LearnerConfig` (hyperparameters, published defaults);
* :mod:`sbil.deep.losses`: the losses, next to their equations;
* :mod:`sbil.deep.training`: :func:`train`, the loop with checkpoints, resume and divergence;
* :mod:`sbil.deep.learner`: :class:`Learner`, the trained policy.
"""

from sbil.deep.config import ALGOS, LearnerConfig, LearnerInputError
from sbil.deep.learner import Learner, torch_threads
from sbil.deep.losses import (
    EdmLoss,
    cross_entropy,
    edm_loss,
    policy_regularizer,
    state_log_density_gap,
)
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
)

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
]

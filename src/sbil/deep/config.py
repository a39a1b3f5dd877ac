"""A learner's hyperparameters: :class:`LearnerConfig`, validated when built.

The defaults are the settings of the EDM reference code (``alg/edm/testing/il.py`` in
vanderschaarlab/mlforhealthlabpub); ``docs/learners.md`` lists them side by side.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from sbil.deep.sgld import sampling_temperature

ALGOS: tuple[str, ...] = ("bc", "edm", "edm-decoupled")


class LearnerInputError(ValueError):
    """Training data, seeds, options or observations that a learner cannot use."""


@dataclass(frozen=True)
class LearnerConfig:
    """Hyperparameters of one learner; the defaults are EDM's published settings.

    The defaults follow the EDM reference code (``alg/edm/testing/il.py`` in
    vanderschaarlab/mlforhealthlabpub) for every algorithm, so BC and EDM differ only in the
    loss.
    """

    algo: str = "edm"
    """Learner: "bc", "edm" or "edm-decoupled"."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the MLP's hidden layers (ELU activations)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""
    batch_size: int = 32
    """Expert pairs per update (drawn without replacement; capped at the data size). The SGLD
    batch has the same size."""
    n_updates: int = 10_000
    """Number of Adam updates."""
    sgld_steps: int = 20
    """SGLD steps per update (EDM only)."""
    sgld_step_size: float = 0.01
    """SGLD drift coefficient: x += step * grad_x logsumexp f(x) + noise * N(0, I)."""
    sgld_noise: float = 0.01
    """SGLD noise coefficient; sqrt(2 * step) gives true Langevin dynamics (temperature 1),
    the published 0.01 gives temperature noise**2 / (2 * step) = 0.005."""
    sgld_buffer_size: int = 10_000
    """Persistent SGLD buffer size, initialised from U(-1, 1)."""
    sgld_reinit_prob: float = 0.05
    """Probability that an SGLD chain restarts from U(-1, 1) instead of the buffer."""
    normalize_observations: bool = False
    """Standardise observations with the training data's mean and std (the network, the SGLD
    chains and their U(-1, 1) starts then live in standardised units). Off in the reference."""
    entropy_coef: float = 0.0
    """Subtract entropy_coef * mean policy entropy from the loss (off by default)."""
    l2_coef: float = 0.0
    """Add l2_coef * sum of squared policy weights (not biases) to the loss (off by default)."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise LearnerInputError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}.")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
            for h in self.hidden_sizes
        ):
            raise LearnerInputError(
                f"hidden_sizes must be positive integers, e.g. (64, 64), got {self.hidden_sizes}."
            )
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        for name in ("batch_size", "n_updates", "sgld_steps", "sgld_buffer_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise LearnerInputError(f"{name} must be a positive integer, got {value!r}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise LearnerInputError(f"learning_rate must be positive, got {self.learning_rate}.")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise LearnerInputError(
                f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}."
            )
        if not (math.isfinite(self.sgld_step_size) and self.sgld_step_size > 0):
            raise LearnerInputError(f"sgld_step_size must be positive, got {self.sgld_step_size}.")
        if not (math.isfinite(self.sgld_noise) and self.sgld_noise >= 0):
            raise LearnerInputError(f"sgld_noise must be >= 0, got {self.sgld_noise}.")
        if not 0 <= self.sgld_reinit_prob <= 1:
            raise LearnerInputError(
                f"sgld_reinit_prob must be in [0, 1], got {self.sgld_reinit_prob}."
            )
        for name in ("entropy_coef", "l2_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise LearnerInputError(f"{name} must be >= 0 (0 turns it off), got {value}.")

    @property
    def uses_sgld(self) -> bool:
        """Whether the algorithm trains a state model with SGLD samples."""
        return self.algo != "bc"

    @property
    def sgld_temperature(self) -> float:
        """``sgld_noise**2 / (2 * sgld_step_size)``: SGLD targets ``p_theta^(1/T)``."""
        return sampling_temperature(self.sgld_step_size, self.sgld_noise)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        out["adam_betas"] = list(self.adam_betas)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LearnerConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LearnerInputError(
                f"Unknown learner config keys {unknown}; known keys are {sorted(known)}."
            )
        return cls(**data)

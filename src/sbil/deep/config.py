"""A learner's hyperparameters: :class:`LearnerConfig`, validated when built.

BC and EDM default to the settings of the EDM reference code (``alg/edm/testing/il.py`` in
vanderschaarlab/mlforhealthlabpub). ValueDICE, RCAL, IQ-Learn and AVRIL default to their own
papers' (or authors' code's) published settings where those exist (:data:`ALGO_DEFAULTS`,
from the registry :mod:`sbil.deep.learners.registry`, the one list of learners);
``docs/learners.md`` lists every setting, its source, and what was chosen where a paper is
silent.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from sbil.deep.learners.registry import (
    ALGO_DEFAULTS,
    ALGOS,
    SGLD_ALGOS,
    TRANSITION_ALGOS,
    learner_spec,
)

__all__ = [
    "ALGOS",
    "ALGO_DEFAULTS",
    "SGLD_ALGOS",
    "TRANSITION_ALGOS",
    "LearnerConfig",
    "LearnerInputError",
]

# The sgld_* fields: used by SGLD_ALGOS only, but recorded (to_dict) for every learner as they
# always were, so that sweep cell ids and stored configs stay the same.
_SGLD = {"used_by": SGLD_ALGOS}


class LearnerInputError(ValueError):
    """Training data, seeds, options or observations that a learner cannot use."""


@dataclass(frozen=True)
class LearnerConfig:
    """Hyperparameters of one learner; the defaults are its published settings.

    BC and EDM follow the EDM reference code (``alg/edm/testing/il.py`` in
    vanderschaarlab/mlforhealthlabpub), so they differ only in the loss. ``learning_rate``,
    ``batch_size`` and ``normalize_observations`` left as None take the algorithm's default
    (:data:`ALGO_DEFAULTS`); a field that only some algorithms use is recorded (``to_dict``)
    only for those.
    """

    algo: str = "edm"
    """Learner: a name of :data:`ALGOS` (the registry's: bc, edm, valuedice, ...)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the MLP's hidden layers (ELU activations)."""
    learning_rate: float | None = None
    """Adam step size (ValueDICE: the policy's); default the algorithm's published one."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""
    batch_size: int | None = None
    """Expert pairs per update (drawn without replacement; capped at the data size). The SGLD
    batch has the same size. Default the algorithm's published one."""
    n_updates: int = 10_000
    """Number of Adam updates."""
    sgld_steps: int = field(default=20, metadata=_SGLD)
    """SGLD steps per update (EDM and decoupled EDM only, as every sgld_* field)."""
    sgld_step_size: float = field(default=0.01, metadata=_SGLD)
    """SGLD drift coefficient: x += step * grad_x logsumexp f(x) + noise * N(0, I)."""
    sgld_noise: float = field(default=0.01, metadata=_SGLD)
    """SGLD noise coefficient; sqrt(2 * step) gives true Langevin dynamics (temperature 1),
    the published 0.01 gives temperature noise**2 / (2 * step) = 0.005."""
    sgld_buffer_size: int = field(default=10_000, metadata=_SGLD)
    """Persistent SGLD buffer size, initialised from U(-1, 1)."""
    sgld_reinit_prob: float = field(default=0.05, metadata=_SGLD)
    """Probability that an SGLD chain restarts from U(-1, 1) instead of the buffer."""
    normalize_observations: bool | None = None
    """Standardise observations with the training data's mean and std (the network, the SGLD
    chains and their U(-1, 1) starts then live in standardised units). Default: off, as in the
    EDM reference, except for ValueDICE (on, as its code's normalize_states)."""
    entropy_coef: float = 0.0
    """Subtract entropy_coef * mean policy entropy from the loss (off by default)."""
    l2_coef: float = 0.0
    """Add l2_coef * sum of squared policy weights (not biases) to the loss (off by default)."""
    discount: float = field(default=0.99, metadata={"algos": TRANSITION_ALGOS})
    """Discount gamma of the Bellman terms (ValueDICE, RCAL, IQ-Learn, AVRIL)."""
    nu_learning_rate: float = field(default=1e-3, metadata={"algos": ("valuedice",)})
    """ValueDICE: Adam step size of the nu network (its code's nu_lr)."""
    gradient_penalty: float = field(default=10.0, metadata={"algos": ("valuedice",)})
    """ValueDICE: weight of nu's gradient penalty (its code's nu_reg)."""
    orthogonal_coef: float = field(default=1e-4, metadata={"algos": ("valuedice",)})
    """ValueDICE: weight of the policy's orthogonal regulariser (its code's 1e-4)."""
    reward_l1_coef: float = field(default=1.0, metadata={"algos": ("rcal",)})
    """RCAL: lambda, weight of the L1 penalty on the implied reward (paper silent for deep
    control; 1.0 chosen, untuned)."""
    chi2_alpha: float = field(default=0.5, metadata={"algos": ("iqlearn",)})
    """IQ-Learn: alpha of the chi-squared regulariser, 1/(4 alpha) E[r^2] (its conf's 0.5)."""
    soft_q_temperature: float = field(default=0.01, metadata={"algos": ("iqlearn",)})
    """IQ-Learn: soft-Q temperature tau, pi = softmax(Q / tau) (its conf's init_temp 0.01)."""
    td_likelihood_weight: float = field(default=1.0, metadata={"algos": ("avril",)})
    """AVRIL: lambda, weight of the TD-error likelihood under the reward posterior (1 in its
    code)."""
    dsfn_iterations: int = field(default=3, metadata={"algos": ("dsfn",)})
    """DSFN: IRL iterations (successor features of a candidate, new weights, a Q-learner),
    sharing the budget after TRIL's first fifth (its code runs up to 10)."""
    irl_method: str = field(default="max_margin", metadata={"algos": ("dsfn",)})
    """DSFN: Abbeel & Ng's step for the reward weights, max_margin or projection (its code's
    max_margin)."""
    transition_weight: float = field(default=1.4, metadata={"algos": ("dsfn",)})
    """DSFN: lambda, weight of TRIL's next-state error beside its cross-entropy (its appendix's
    1.4; its code's 1.0 / 0.7)."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise LearnerInputError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}.")
        for name, value in ALGO_DEFAULTS[self.algo].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for f in dataclasses.fields(self):
            algos = f.metadata.get("algos")
            if algos is not None and self.algo not in algos and getattr(self, f.name) != f.default:
                raise LearnerInputError(
                    f"{f.name} applies to {', '.join(algos)} only, not {self.algo}; leave it "
                    "at its default."
                )
        object.__setattr__(self, "normalize_observations", bool(self.normalize_observations))
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
        for name in (
            "batch_size",
            "n_updates",
            "sgld_steps",
            "sgld_buffer_size",
            "dsfn_iterations",
        ):
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
        for name in ("entropy_coef", "l2_coef", "gradient_penalty", "orthogonal_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise LearnerInputError(f"{name} must be >= 0 (0 turns it off), got {value}.")
        if not learner_spec(self.algo).regularised:
            for name in ("entropy_coef", "l2_coef"):
                if getattr(self, name):
                    raise LearnerInputError(
                        f"{name} does not act on {self.algo} (its phases never descend a loss "
                        "of the final policy's logits, which it would regularise); leave it at "
                        "0."
                    )
        if self.irl_method not in ("max_margin", "projection"):
            raise LearnerInputError(
                f"irl_method must be max_margin or projection, got {self.irl_method!r}."
            )
        if not (math.isfinite(self.transition_weight) and self.transition_weight >= 0):
            raise LearnerInputError(
                f"transition_weight must be >= 0 (0 turns it off), got {self.transition_weight}."
            )
        if not 0 <= self.discount <= 1:
            raise LearnerInputError(f"discount must be in [0, 1], got {self.discount}.")
        for name in (
            "nu_learning_rate",
            "reward_l1_coef",
            "chi2_alpha",
            "soft_q_temperature",
            "td_likelihood_weight",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise LearnerInputError(f"{name} must be positive, got {value}.")

    def refuse_unused_options(self) -> LearnerConfig:
        """Refuse an option this learner does not use that is set away from its default (an
        ``sgld_*`` field for a learner that draws no SGLD samples), as the other learners'
        fields are refused when the config is built; return ``self``.

        A command that builds one learner from its user's options calls it (``sbil train``).
        The config itself accepts them, because a table of options shared by several
        learners (a sweep's ``[options]``, e.g. the quick preset's ``sgld_buffer_size``) gives
        them to every learner, and configs recorded that way must load.

        Raises:
            LearnerInputError: naming the option and the learners that use it.
        """
        for f in dataclasses.fields(self):
            used_by = f.metadata.get("used_by")
            if (
                used_by is not None
                and self.algo not in used_by
                and getattr(self, f.name) != f.default
            ):
                raise LearnerInputError(
                    f"{f.name} applies to {', '.join(used_by)} only (the learners that draw "
                    f"SGLD samples), not {self.algo}; leave it at its default."
                )
        return self

    @property
    def uses_sgld(self) -> bool:
        """Whether the algorithm trains a state model with SGLD samples."""
        return learner_spec(self.algo).uses_sgld

    @property
    def uses_transitions(self) -> bool:
        """Whether the loss uses transitions ``(s, a, s')`` (ValueDICE, RCAL, IQ-Learn, AVRIL)."""
        return learner_spec(self.algo).uses_transitions

    @property
    def second_network(self) -> str | None:
        """What the second network is, if the algorithm has one: decoupled EDM's state model,
        ValueDICE's nu, AVRIL's reward encoder."""
        return learner_spec(self.algo).second_network

    def second_network_shape(self, obs_dim: int, n_actions: int) -> tuple[int, int]:
        """(inputs, outputs) of :attr:`second_network` (the registry's
        :attr:`~sbil.deep.learners.registry.LearnerSpec.second_network_shape`): decoupled
        EDM's state model maps a state to ``n_actions`` outputs; ValueDICE's ``nu`` maps a
        state and a one-hot action to one value; AVRIL's encoder maps a state to the mean and
        log sd of its reward. Without a second network, that of a policy-shaped one."""
        shape = learner_spec(self.algo).second_network_shape
        return (obs_dim, n_actions) if shape is None else shape(obs_dim, n_actions)

    @property
    def policy_temperature(self) -> float:
        """``pi(a|s) = softmax(f(s) / T)[a]``: IQ-Learn's soft-Q temperature, 1 otherwise."""
        option = learner_spec(self.algo).temperature_option
        return 1.0 if option is None else getattr(self, option)

    @property
    def sgld_temperature(self) -> float:
        """``sgld_noise**2 / (2 * sgld_step_size)``: SGLD targets ``p_theta^(1/T)``."""
        from sbil.deep.sgld import sampling_temperature  # torch: imported when asked for

        return sampling_temperature(self.sgld_step_size, self.sgld_noise)

    def to_dict(self) -> dict:
        """JSON-ready fields (those of other algorithms left out)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if self.algo in f.metadata.get("algos", (self.algo,))
        }
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

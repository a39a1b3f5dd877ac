"""The registry: the one list of the learners sbil trains, importable without torch.

Everything the rest of sbil needs to know about a learner without training it (its name and
display name, what data and networks it uses, its published defaults, its relative cost in a
sweep) is one :class:`LearnerSpec` line of :data:`LEARNERS`. The configuration
(:mod:`sbil.deep.config`), ``sbil train``, sweeps and their reports read this list and no other.

Adding a learner: one :class:`LearnerSpec` line here, its module (its loss terms, loss
function and update step) and its tests.

Example:
    >>> from sbil.deep.learners.registry import ALGOS, LEARNERS
    >>> ALGOS[:3]
    ('bc', 'edm', 'edm-decoupled')
    >>> LEARNERS["valuedice"].display_name, LEARNERS["valuedice"].uses_transitions
    ('ValueDICE', True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class LearnerSpec:
    """What sbil knows about one learner without importing torch."""

    name: str
    """The learner's name: ``LearnerConfig.algo``, ``sbil train --algo``, a sweep's algos."""
    display_name: str
    """Its name in reports, figures and help panels."""
    module: str
    """Its module in :mod:`sbil.deep.learners`: its loss terms, loss function and
    ``update(stack, index)`` (:func:`learner_module`)."""
    defaults: Mapping[str, object]
    """Its published settings of the config fields left as None (``learning_rate``,
    ``batch_size``, ``normalize_observations``); ``docs/learners.md`` gives the sources."""
    relative_cost: int
    """Rough cost of one of its runs relative to BC's (1), used to schedule a sweep's groups
    (the most expensive first)."""
    uses_transitions: bool = False
    """Whether its loss uses transitions ``(s, a, s')`` (and ``done``)."""
    uses_next_action: bool = False
    """Whether its loss also uses the expert's next action ``a'``."""
    uses_sgld: bool = False
    """Whether it draws SGLD samples (the ``sgld_*`` config fields act only then)."""
    regularised: bool = True
    """Whether ``entropy_coef`` and ``l2_coef`` act on it (they regularise a policy trained by
    gradient on its loss); where not, non-zero values are refused."""
    second_network: str | None = None
    """What its second network is, if it has one."""
    second_network_shape: Callable[[int, int], tuple[int, int]] | None = None
    """``(obs_dim, n_actions) -> (inputs, outputs)`` of the second network."""
    minimised_term: str = "loss"
    """The name of the loss term whose value is its training loss."""
    temperature_option: str | None = None
    """The config field ``T`` of its policy ``pi(a|s) = softmax(f(s) / T)[a]`` (else 1)."""


# The EDM reference code's settings (alg/edm/testing/il.py): Adam 1e-3, batch 32, raw
# observations; BC, EDM and RCAL (whose paper gives no deep settings) use them.
_EDM_HARNESS = {"learning_rate": 1e-3, "batch_size": 32, "normalize_observations": False}

#: Every learner, in the order of tables, figures and help texts.
LEARNERS: dict[str, LearnerSpec] = {
    spec.name: spec
    for spec in (
        LearnerSpec("bc", "BC", "bc", _EDM_HARNESS, relative_cost=1),
        LearnerSpec("edm", "EDM", "edm", _EDM_HARNESS, relative_cost=4, uses_sgld=True),
        LearnerSpec(
            "edm-decoupled",
            "decoupled EDM",
            "edm",
            _EDM_HARNESS,
            relative_cost=5,
            uses_sgld=True,
            second_network="state model",
            second_network_shape=lambda obs_dim, n_actions: (obs_dim, n_actions),
        ),
        # ValueDICE train_eval.py flags: actor_lr 1e-5, sample_batch_size 256,
        # normalize_states True. Its nu maps a state and a one-hot action to one value (as in
        # its code, so that its gradient penalty also bounds how nu varies across actions).
        LearnerSpec(
            "valuedice",
            "ValueDICE",
            "valuedice",
            {"learning_rate": 1e-5, "batch_size": 256, "normalize_observations": True},
            relative_cost=4,
            uses_transitions=True,
            second_network="nu",
            second_network_shape=lambda obs_dim, n_actions: (obs_dim + n_actions, 1),
            minimised_term="objective",
        ),
        LearnerSpec("rcal", "RCAL", "rcal", _EDM_HARNESS, relative_cost=1, uses_transitions=True),
        # IQ-Learn conf: softq critic_lr 1e-4, train.batch 32.
        LearnerSpec(
            "iqlearn",
            "IQ-Learn",
            "iqlearn",
            {"learning_rate": 1e-4, "batch_size": 32, "normalize_observations": False},
            relative_cost=1,
            uses_transitions=True,
            temperature_option="soft_q_temperature",
        ),
        # AVRIL code (scalable-birl/AVRIL/models.py): Adam 1e-4, batch 64. Its encoder maps a
        # state to the mean and log sd of its reward.
        LearnerSpec(
            "avril",
            "AVRIL",
            "avril",
            {"learning_rate": 1e-4, "batch_size": 64, "normalize_observations": False},
            relative_cost=2,
            uses_transitions=True,
            uses_next_action=True,
            second_network="reward encoder",
            second_network_shape=lambda obs_dim, n_actions: (obs_dim, 2),
        ),
        # DSFN (dtak/batch-apprenticeship-learning; appendix Table 2): Adam 3e-4, batch 64,
        # standardised states. Its TRIL, successor-feature and target networks are its module's.
        LearnerSpec(
            "dsfn",
            "DSFN",
            "dsfn",
            {"learning_rate": 3e-4, "batch_size": 64, "normalize_observations": True},
            relative_cost=3,
            uses_transitions=True,
            uses_next_action=True,
            minimised_term="loss",
            regularised=False,  # its update never descends a loss of the final policy's logits
        ),
    )
}

#: The learners' names, in registry order.
ALGOS: tuple[str, ...] = tuple(LEARNERS)

#: Learners whose loss uses transitions ``(s, a, s')`` (and, for AVRIL, the next action).
TRANSITION_ALGOS: tuple[str, ...] = tuple(n for n, s in LEARNERS.items() if s.uses_transitions)

#: Learners that draw SGLD samples (EDM's state term): the ``sgld_*`` fields act only there.
SGLD_ALGOS: tuple[str, ...] = tuple(n for n, s in LEARNERS.items() if s.uses_sgld)

#: Per-algorithm defaults of the config fields left as None.
ALGO_DEFAULTS: dict[str, dict[str, object]] = {n: dict(s.defaults) for n, s in LEARNERS.items()}

#: Display names (``{"bc": "BC", ...}``).
DISPLAY_NAMES: dict[str, str] = {n: s.display_name for n, s in LEARNERS.items()}


def learner_spec(name: str) -> LearnerSpec:
    """The registry line of learner ``name``.

    Raises:
        ValueError: for a name that is not a learner, listing the learners.
    """
    try:
        return LEARNERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {name!r}.") from None


def algo_list(conjunction: str = "or") -> str:
    """The learners' names as prose: ``"bc, edm, ... or avril"``."""
    return f"{', '.join(ALGOS[:-1])} {conjunction} {ALGOS[-1]}"


def learner_module(name: str) -> ModuleType:
    """The module of learner ``name`` (imports it, and torch): its loss and ``update``."""
    return importlib.import_module(f"sbil.deep.learners.{learner_spec(name).module}")

"""What training returns and raises: :class:`TrainResult`, :class:`TrainedPolicy`, the
divergence and interruption errors, the per-update terms callback, the state file's format.

Part of the training loop (:mod:`sbil.deep.training` is its public face and module doc).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sbil.deep.config import LearnerConfig, LearnerInputError
from sbil.deep.learner import Learner
from sbil.deep.learners.registry import learner_module, learner_spec
from sbil.deep.networks import StackedMLP

#: Version of the mid-training state file; a different version is never resumed (2: the
#: history holds every named term, not loss, cross-entropy and rho).
STATE_FORMAT = 2


def loss_term(algo: str) -> str:
    """The name of the term a learner minimises (its :attr:`TrainResult.loss`, the registry's
    :attr:`~sbil.deep.learners.registry.LearnerSpec.minimised_term`): ``objective`` for
    ValueDICE (nu descends it, the policy ascends it), ``loss`` for the others."""
    return learner_spec(algo).minimised_term


#: Called as ``on_terms(seeds, start, terms)`` with the terms of updates ``start + 1 ..
#: start + n`` of the learners ``seeds`` (one stack of the run): ``{name: [len(seeds), n]}``
#: float32. After a resume the first call starts again at update 0 (``start = 0``).
TermsCallback = Callable[[tuple[int, ...], int, dict[str, np.ndarray]], None]


class TrainingDiverged(RuntimeError):
    """A learner's loss became NaN or infinite; nothing of it is saved as a finished learner."""

    def __init__(self, message: str, *, seed: int, update: int) -> None:
        super().__init__(message)
        self.seed = seed
        self.update = update


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the state was saved and training can be resumed."""


@dataclass(frozen=True, eq=False)
class TrainResult:
    """``K`` learners trained together, one per seed.

    Attributes:
        config: the shared hyperparameters.
        seeds: ``(K,)`` the learners' seeds, in order.
        obs_dim, n_actions: the data's sizes.
        obs_mean: ``[K, obs_dim]`` float32 normalisation offsets (zeros when off).
        obs_std: ``[K, obs_dim]`` float32 normalisation scales (ones when off).
        n_pairs: ``(K,)`` the number of state-action pairs each learner trained on.
        policy_state: stacked ``[K, ...]`` policy weights.
        energy_state: stacked weights of the second network (decoupled EDM's state model,
            ValueDICE's ``nu``, AVRIL's reward encoder), else None.
        curves: ``{term: [K, n_updates]}`` float32, every term of every update by its name:
            the fields of the learner's loss dataclass (its module in
            :mod:`sbil.deep.learners`) and the
            policy's ``cross_entropy`` on the minibatch. BC: loss, cross_entropy; EDM and
            decoupled EDM: loss, cross_entropy, rho; ValueDICE: objective, log_ratio_term,
            initial_term, nu_gradient_penalty, orthogonal_regularizer, cross_entropy; RCAL:
            loss, margin, reward_l1, cross_entropy; IQ-Learn: loss, reward_term, value_term,
            chi2_term, cross_entropy; AVRIL: loss, cross_entropy, kl, td_nll. With
            ``l2_coef`` or ``entropy_coef`` also ``policy_regularizer`` (weighted, as added to
            the loss); ValueDICE's two are unweighted and recorded only when their weight is
            not 0. ``loss`` is what Adam minimises: for BC and EDM with the policy
            regulariser, for RCAL, IQ-Learn and AVRIL without it (their loss dataclass's).
            :attr:`loss`, :attr:`cross_entropy` and :attr:`rho` read these curves.
        env_id: the task, if given.
        diverged: ``{seed: (update, value)}`` for learners whose loss stopped being finite
            (only with ``stop_on_divergence=False``); their learners cannot be built.
        snapshots: ``((update, policy_state), ...)`` stacked policy weights after every
            ``snapshot_every`` updates (empty unless asked for).
    """

    config: LearnerConfig
    seeds: tuple[int, ...]
    obs_dim: int
    n_actions: int
    obs_mean: np.ndarray
    obs_std: np.ndarray
    n_pairs: tuple[int, ...]
    policy_state: dict[str, torch.Tensor]
    energy_state: dict[str, torch.Tensor] | None
    curves: dict[str, np.ndarray]
    env_id: str | None = None
    diverged: dict[int, tuple[int, float]] = field(default_factory=dict)
    snapshots: tuple[tuple[int, dict[str, torch.Tensor]], ...] = ()

    def learner(self, index: int) -> Learner:
        """Learner ``index`` (of ``seeds[index]``) as a standalone policy.

        Raises:
            LearnerInputError: if that learner diverged.
        """
        if not 0 <= index < len(self.seeds):
            raise IndexError(f"Learner {index} does not exist; there are {len(self.seeds)}.")
        return Learner(
            config=self.config,
            seed=self.seeds[index],
            obs_dim=self.obs_dim,
            n_actions=self.n_actions,
            obs_mean=self.obs_mean[index],
            obs_std=self.obs_std[index],
            policy_state=slice_state(self.policy_state, index),
            energy_state=None
            if self.energy_state is None
            else slice_state(self.energy_state, index),
            env_id=self.env_id,
        )

    @property
    def learners(self) -> list[Learner]:
        """All ``K`` learners, in seed order."""
        return [self.learner(i) for i in range(len(self.seeds))]

    @property
    def loss_term(self) -> str:
        """The name of the curve that :attr:`loss` is (:func:`loss_term`)."""
        return loss_term(self.config.algo)

    @property
    def loss(self) -> np.ndarray:
        """``[K, n_updates]`` float32 training loss of each update (ValueDICE: its objective
        ``J``)."""
        return self.curves[self.loss_term]

    @property
    def cross_entropy(self) -> np.ndarray:
        """``[K, n_updates]`` the policy's cross-entropy on the minibatch."""
        return self.curves["cross_entropy"]

    @property
    def rho(self) -> np.ndarray:
        """``[K, n_updates]`` EDM's ``rho`` (NaN for the learners that have none)."""
        if "rho" in self.curves:
            return self.curves["rho"]
        return np.full_like(self.curves["cross_entropy"], np.nan)


def slice_state(state: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Learner ``k``'s weights (a ``K = 1`` state) from stacked ``[K, ...]`` weights."""
    return {name: value[k : k + 1].clone() for name, value in state.items()}


@dataclass(frozen=True, eq=False)
class TrainedPolicy:
    """A policy trained already, given to :func:`train` so that only the second network trains:
    decoupled EDM's, which is BC's (same seeds, data and shared settings) by construction.

    Attributes:
        policy_state: stacked ``[K, ...]`` policy weights after the last update, one learner
            per seed of the training (NaN for a learner whose BC diverged: its loss, which
            includes BC's, diverges too, so it is never saved).
        curves: ``{term: [K, n_updates]}`` float32, the policy's terms of every update as BC
            recorded them: ``cross_entropy``, and ``policy_regularizer`` with ``l2_coef`` or
            ``entropy_coef``.
    """

    policy_state: dict[str, torch.Tensor]
    curves: dict[str, np.ndarray]

    def part(self, members: Sequence[int]) -> TrainedPolicy:
        """The learners ``members`` (indices into the seeds), in that order."""
        index = list(members)
        return TrainedPolicy(
            {name: value[index] for name, value in self.policy_state.items()},
            {name: value[index] for name, value in self.curves.items()},
        )

    @classmethod
    def joined(cls, policies: Sequence[TrainedPolicy]) -> TrainedPolicy:
        """``policies`` as one, their learners in order (the inverse of :meth:`part`); they
        must record the same terms."""
        first = policies[0]
        if any(set(p.curves) != set(first.curves) for p in policies):
            raise LearnerInputError("trained_policies must all record the same terms.")
        return cls(
            {
                name: torch.cat([p.policy_state[name] for p in policies])
                for name in first.policy_state
            },
            {name: np.concatenate([p.curves[name] for p in policies]) for name in first.curves},
        )


def _check_trained_policy(trained, config, n_seeds, obs_dim, n_actions) -> TrainedPolicy:
    """``trained`` checked against the training it is given to (the learner, the seeds, the
    network's shape, the number of updates, the terms its loss needs)."""
    module = learner_module(config.algo)
    if config.second_network is None or not hasattr(module, "state_model_update"):
        raise LearnerInputError(
            f"trained_policy is for decoupled EDM (a policy trained apart from its state "
            f"model), not {config.algo}."
        )
    if not isinstance(trained, TrainedPolicy):
        raise LearnerInputError(
            f"trained_policy must be a TrainedPolicy, got {type(trained).__name__}."
        )
    net = StackedMLP(n_seeds, obs_dim, config.hidden_sizes, n_actions)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if {k: tuple(v.shape) for k, v in trained.policy_state.items()} != expected:
        raise LearnerInputError(
            f"trained_policy's weights do not fit {n_seeds} stacked MLPs "
            f"{obs_dim}-{'-'.join(map(str, config.hidden_sizes))}-{n_actions}."
        )
    needed = ["cross_entropy"]
    if config.l2_coef or config.entropy_coef:
        needed.append("policy_regularizer")
    for name in needed:
        curve = trained.curves.get(name)
        if curve is None or np.shape(curve) != (n_seeds, config.n_updates):
            raise LearnerInputError(
                f"trained_policy needs the policy's {name} of every update, "
                f"[{n_seeds}, {config.n_updates}]; got "
                f"{None if curve is None else list(np.shape(curve))}."
            )
    return TrainedPolicy(
        {k: v.detach().to(torch.float32).cpu() for k, v in trained.policy_state.items()},
        {name: np.asarray(trained.curves[name], np.float32) for name in needed},
    )

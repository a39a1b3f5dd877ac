"""The training loop: ``K`` learners (one per seed) trained together as one stacked model.

The loop is the same for every learner; what an update does is the learner's own, in its
module of :mod:`sbil.deep.learners` (found through the registry,
:mod:`sbil.deep.learners.registry`). Each update of learner ``k``: draw ``B = min(batch_size,
N_k)`` distinct rows of its own demonstrations (for a learner that uses transitions
``(s, a, s')``, of the rows whose next state is known), then call the learner's
``update(stack, index)``, which computes its loss on them (BC: :mod:`~sbil.deep.learners.bc`;
EDM, after advancing its SGLD chains: :mod:`~sbil.deep.learners.edm`; ValueDICE's min-max:
:mod:`~sbil.deep.learners.valuedice`; :mod:`~sbil.deep.learners.rcal`,
:mod:`~sbil.deep.learners.iqlearn`, :mod:`~sbil.deep.learners.avril`), takes the Adam step
(mostly through :meth:`Stack.descend`, with the optional policy regulariser) and returns its
terms by name.

Adam is elementwise, so one Adam over the stacked parameters with the *sum* of the ``K`` losses
is ``K`` independent Adams (in exact arithmetic: torch's fused CPU kernel rounds each tensor's
last ``numel mod width`` elements in a scalar loop, so bit for bit a learner's steps depend on
the stack's size ``K``; :class:`~sbil.deep.segmented_adam.SegmentedAdam`). Every random
number of learner ``k`` (initialisation, minibatches, SGLD chains) comes from generators
seeded by ``seeds[k]`` alone, so learner ``k`` of a batched run follows the single run with
that seed. Learners may train on different
demonstrations (one :class:`~sbil.deep.data.Demonstrations` per seed, e.g. sliding windows of
trajectories); learners whose minibatch size differs train as separate stacks.

:func:`train_together` trains several such runs of one config (a sweep's groups that differ
only in ``k``) in one set of stacks, stepping each run's part of the optimiser as its own
tensors, so that each run's result equals its own :func:`train` call's bit for bit.

Each update records every term of the learner's loss by the name its loss dataclass gives it
(:attr:`TrainResult.curves`, ``{name: [K, n_updates]}``), and ``on_terms`` receives them as
training goes (e.g. for TensorBoard).

With ``state_dir``, the loop writes its whole state (weights, Adam's moments, SGLD buffers,
every generator's state, the history of every term) atomically every ``checkpoint_every``
updates and when SIGINT/SIGTERM arrives; calling :func:`train` again with the same arguments
continues from the last checkpoint and ends with weights and curves equal, bit for bit, to an
uninterrupted run's.

Decoupled EDM's policy follows BC's bit for bit (its own random streams, a loss whose policy
term is BC's), so it can be given one trained already (``trained_policy``, a
:class:`TrainedPolicy`: BC's weights and the terms it recorded each update): then only its
state model trains (SGLD chains, its forward, backward and Adam step), the recorded terms take
the policy's from it, and the result equals a full training's bit for bit.

A non-finite loss stops training with :class:`TrainingDiverged`, naming the update, the seed and
the likely cause (``stop_on_divergence=False`` instead trains the other learners to the end and
lists the diverged ones in :attr:`TrainResult.diverged`).

Example:
    >>> import numpy as np
    >>> from sbil.deep.data import from_arrays
    >>> from sbil.deep.training import LearnerConfig, train
    >>> obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    >>> demos = from_arrays(obs, (obs[:, 2] > 0).astype(np.int64), n_actions=2)
    >>> result = train(demos, LearnerConfig(algo="bc", n_updates=200), seeds=[0, 1])
    >>> result.learner(0)(obs[:3]).dtype
    dtype('int64')
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sbil.deep.config import ALGO_DEFAULTS, LearnerConfig, LearnerInputError
from sbil.deep.data import Demonstrations
from sbil.deep.learner import Learner, torch_threads
from sbil.deep.learners.registry import learner_module, learner_spec
from sbil.deep.losses import cross_entropy, named_terms, policy_regularizer
from sbil.deep.networks import StackedMLP
from sbil.deep.segmented_adam import SegmentedAdam
from sbil.deep.sgld import uniform_buffer
from sbil.files import write_bytes_atomic
from sbil.progress import ProgressCallback
from sbil.seeds import MAX_SEED

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


# Independent random streams per seed, so that e.g. decoupled EDM's policy sees exactly BC's
# initialisation and minibatches whatever its SGLD chains consume.
_POLICY_INIT, _MINIBATCH, _ENERGY_INIT, _SGLD = range(4)


def seed_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for random stream ``stream`` of learner ``seed`` (SeedSequence-mixed)."""
    state = np.random.SeedSequence([seed, stream]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def minibatch_indices(generator: torch.Generator, n: int, batch_size: int) -> torch.Tensor:
    """``batch_size`` distinct indices in ``0..n-1`` (as the reference's
    ``np.random.choice(n, batch_size, replace=False)``), ``[batch_size]`` int64."""
    if n <= 2 * batch_size * batch_size:
        return torch.randperm(n, generator=generator)[:batch_size]
    while True:  # a collision has probability < 1/4 here; redraw the whole batch
        indices = torch.randint(0, n, (batch_size,), generator=generator)
        if indices.unique().numel() == batch_size:
            return indices


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, checking that CUDA is usable when asked for.

    Raises:
        LearnerInputError: for an unknown device or CUDA on a machine/torch without it.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise LearnerInputError(f"Unknown device {device!r}; use 'cpu' or 'cuda'.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LearnerInputError(
            f"Device {device!r} was asked for but CUDA is not available (torch "
            f"{torch.__version__}, no usable GPU); use device 'cpu'."
        )
    if resolved.type not in ("cpu", "cuda"):
        raise LearnerInputError(f"Unsupported device {device!r}; use 'cpu' or 'cuda'.")
    return resolved


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """Seeds as a tuple of distinct ints in ``0..2**32-1`` (:mod:`sbil.seeds`), in linear time."""
    if isinstance(seeds, (int, np.integer)):
        raise LearnerInputError(f"seeds must be a sequence of integers, e.g. [{seeds}].")
    seeds = tuple(seeds)
    if not seeds:
        raise LearnerInputError("Pass at least one seed.")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= MAX_SEED:
            raise LearnerInputError(f"Seeds must be integers in 0..{MAX_SEED}, got {s!r}.")
    seeds = tuple(int(s) for s in seeds)
    if len(set(seeds)) != len(seeds):
        seen: set[int] = set()
        repeated = sorted({s for s in seeds if s in seen or seen.add(s)})
        raise LearnerInputError(
            f"Seeds must be distinct (equal seeds train identical learners), got {repeated} "
            "more than once."
        )
    return seeds


def memory_estimate(
    config: LearnerConfig, *, n_learners: int, obs_dim: int, n_actions: int, n_pairs: int
) -> int:
    """Bytes that training will hold at least (weights with Adam's state, SGLD buffers,
    activations, data); used to refuse a run that cannot fit before allocating it."""
    sizes = [obs_dim, *config.hidden_sizes, n_actions]
    params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    networks = 2 if config.second_network else 1
    per_learner = 4 * (4 * params * networks)  # weights, gradients, two Adam moments (float32)
    extra = 0
    if config.uses_sgld:
        per_learner += 4 * config.sgld_buffer_size * obs_dim
        extra = 4 * config.sgld_buffer_size * obs_dim  # one learner's fresh draw while filling
    # forward + backward activations of 2B rows (data and chains), a few copies each
    per_learner += 4 * 6 * 2 * config.batch_size * sum(sizes)
    return n_learners * per_learner + extra + n_pairs * (4 * obs_dim + 8)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _check_memory(config, n_learners, obs_dim, n_actions, n_pairs, device) -> None:
    need = memory_estimate(
        config, n_learners=n_learners, obs_dim=obs_dim, n_actions=n_actions, n_pairs=n_pairs
    )
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = _physical_memory()
    if have is not None and need > 0.8 * have:
        raise LearnerInputError(
            f"Training {n_learners} learner(s) with these settings needs at least {_human(need)} "
            f"of memory but this machine has {_human(have)}; use fewer seeds per run, a smaller "
            "--sgld-buffer-size or smaller --hidden layers."
        )


def _as_demonstrations(
    data: Demonstrations | Sequence[Demonstrations], n_seeds: int
) -> list[Demonstrations]:
    if isinstance(data, Demonstrations):
        return [data] * n_seeds
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise LearnerInputError(
            "data must be a Demonstrations (sbil.deep.data.from_arrays builds one from arrays) "
            f"or one Demonstrations per seed, got {type(data).__name__}."
        )
    data = list(data)
    if len(data) != n_seeds:
        raise LearnerInputError(
            f"Pass one Demonstrations per seed: got {len(data)} for {n_seeds} seeds."
        )
    for item in data:
        if not isinstance(item, Demonstrations):
            raise LearnerInputError(
                f"data must hold Demonstrations (see sbil.deep.data.from_arrays), got "
                f"{type(item).__name__}."
            )
    return data


def _n_actions(demos: list[Demonstrations], n_actions: int | None) -> int:
    declared = {d.n_actions for d in demos if d.n_actions is not None}
    if n_actions is not None:
        if isinstance(n_actions, bool) or not isinstance(n_actions, (int, np.integer)):
            raise LearnerInputError(f"n_actions must be an integer >= 2, got {n_actions!r}.")
        declared.add(int(n_actions))
    if len(declared) > 1:
        raise LearnerInputError(
            f"The number of actions is ambiguous: {sorted(declared)} (from the data and "
            "n_actions); pass data recorded on one task."
        )
    if not declared:
        raise LearnerInputError(
            "The number of actions is unknown: pass n_actions (it is never guessed from the "
            "largest action in the data)."
        )
    count = declared.pop()
    if count < 2:
        raise LearnerInputError(f"n_actions must be an integer >= 2, got {count}.")
    for d in demos:
        if int(d.actions.max()) >= count:
            raise LearnerInputError(
                f"An action is {int(d.actions.max())}, outside 0..{count - 1} (n_actions={count})."
            )
    return count


def train(
    data: Demonstrations | Sequence[Demonstrations],
    config: LearnerConfig,
    *,
    seeds: Sequence[int],
    n_actions: int | None = None,
    env_id: str | None = None,
    device: str | torch.device = "cpu",
    num_threads: int | None = 1,
    progress: ProgressCallback | None = None,
    state_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    stop_on_divergence: bool = True,
    init_policy_state: dict[str, torch.Tensor] | None = None,
    snapshot_every: int | None = None,
    on_terms: TermsCallback | None = None,
    trained_policy: TrainedPolicy | None = None,
) -> TrainResult:
    """Train ``len(seeds)`` independent learners as one stacked model (see the module doc).

    Args:
        data: the demonstrations every learner trains on, or one per seed (same task).
        config: hyperparameters (:class:`LearnerConfig`).
        seeds: one seed per learner; learner ``k`` depends on ``seeds[k]`` (and its data) only.
        n_actions: number of discrete actions; default the data's ``n_actions``.
        env_id: recorded in the result and checkpoints (optional; default the data's).
        device: "cpu" (default) or "cuda". Random numbers are drawn on the CPU either way.
        num_threads: torch intra-op threads while training (restored afterwards); ``None``
            keeps torch's setting. 1 is the fastest for these small matmuls.
        progress: called as ``progress(done, n_updates)`` now and then.
        state_dir: a folder for mid-training state; when it holds the state of this very
            training (same data, seeds, config), training continues from it.
        checkpoint_every: with ``state_dir``, write the state every this many updates (and on
            SIGINT/SIGTERM, and at the end).
        stop_on_divergence: raise :class:`TrainingDiverged` at the first non-finite loss;
            False trains the other learners on and lists the diverged ones in the result.
        init_policy_state: a ``K = 1`` policy state (e.g. ``Learner.policy_state``) that every
            learner starts from instead of its seeded random initialisation.
        snapshot_every: keep the stacked policy weights after every this many updates in
            :attr:`TrainResult.snapshots`.
        on_terms: called with every update's terms (:data:`TermsCallback`) as training goes.
        trained_policy: decoupled EDM only: its policy, trained already (BC's, which it equals
            by construction; :class:`TrainedPolicy`). Only the state model trains; the result's
            policy weights are these and its curves take the policy's terms from them.

    Raises:
        LearnerInputError: for bad data, seeds, options or device, or a run too large for memory.
        TrainingDiverged: a loss became NaN or infinite (with ``stop_on_divergence``).
        TrainingInterrupted: SIGINT/SIGTERM during a checkpointed run (the state is saved).
    """
    _check_options(config, num_threads, checkpoint_every, snapshot_every)
    seeds = check_seeds(seeds)
    demos = _as_demonstrations(data, len(seeds))
    obs_dim, n_actions, env_id, dev = _check_data(demos, config, n_actions, env_id, device)
    if init_policy_state is not None:
        init_policy_state = _check_init_state(init_policy_state, obs_dim, config, n_actions)
    if trained_policy is not None:
        if init_policy_state is not None or snapshot_every is not None:
            raise LearnerInputError(
                "trained_policy gives the policy's final weights: it cannot start from "
                "init_policy_state nor keep snapshots of the policy's training."
            )
        trained_policy = _check_trained_policy(
            trained_policy, config, len(seeds), obs_dim, n_actions
        )
    parts = _train_stacks(
        demos,
        seeds,
        np.zeros(len(seeds), dtype=np.int64),
        config,
        n_actions=n_actions,
        device=dev,
        num_threads=num_threads,
        progress=progress,
        state_dir=state_dir,
        checkpoint_every=checkpoint_every,
        stop_on_divergence=stop_on_divergence,
        init_policy_state=init_policy_state,
        snapshot_every=snapshot_every,
        on_terms=on_terms,
        trained_policy=trained_policy,
    )
    return _merge(parts, config, seeds, range(len(seeds)), obs_dim, n_actions, env_id)


def train_together(
    runs: Sequence[tuple[Demonstrations | Sequence[Demonstrations], Sequence[int]]],
    config: LearnerConfig,
    *,
    n_actions: int | None = None,
    env_id: str | None = None,
    device: str | torch.device = "cpu",
    num_threads: int | None = 1,
    progress: ProgressCallback | None = None,
    state_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    stop_on_divergence: bool = True,
) -> list[TrainResult]:
    """Several trainings of one ``config`` on one task, ``runs = [(data, seeds), ...]``, in one
    set of stacks: each result equals, bit for bit, what ``train(data, config, seeds=seeds)``
    gives alone, while their learners share the stacked kernels (a sweep's groups that differ
    only in ``k``: a stack of 50 learners costs much less than five of 10).

    The optimiser steps each run's learners as their own tensors
    (:class:`~sbil.deep.segmented_adam.SegmentedAdam`: torch's fused CPU Adam rounds a
    tensor's last few elements in a scalar loop, so a shared step would make a learner depend on
    its stack's size); everything else a learner computes is its own already. Seeds may repeat
    across runs (not within one). The other arguments are :func:`train`'s; ``state_dir`` holds
    the state of this very combination (the same runs in the same order).

    Raises:
        LearnerInputError, TrainingDiverged, TrainingInterrupted: as :func:`train`.
    """
    _check_options(config, num_threads, checkpoint_every, None)
    if isinstance(runs, (str, bytes)) or not isinstance(runs, Sequence) or not runs:
        raise LearnerInputError("runs must be a non-empty list of (data, seeds) pairs.")
    demos, seeds, sizes = [], [], []
    for number, run in enumerate(runs):
        if not isinstance(run, tuple) or len(run) != 2:
            raise LearnerInputError(f"runs[{number}] must be a (data, seeds) pair.")
        run_seeds = check_seeds(run[1])
        demos += _as_demonstrations(run[0], len(run_seeds))
        seeds += run_seeds
        sizes.append(len(run_seeds))
    obs_dim, n_actions, env_id, dev = _check_data(demos, config, n_actions, env_id, device)
    parts = _train_stacks(
        demos,
        tuple(seeds),
        np.repeat(np.arange(len(sizes)), sizes),
        config,
        n_actions=n_actions,
        device=dev,
        num_threads=num_threads,
        progress=progress,
        state_dir=state_dir,
        checkpoint_every=checkpoint_every,
        stop_on_divergence=stop_on_divergence,
    )
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [
        _merge(parts, config, tuple(seeds[lo:hi]), range(lo, hi), obs_dim, n_actions, env_id)
        for lo, hi in itertools.pairwise(bounds)
    ]


def _check_options(config, num_threads, checkpoint_every, snapshot_every) -> None:
    if not isinstance(config, LearnerConfig):
        raise LearnerInputError(f"config must be a LearnerConfig, got {type(config).__name__}.")
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
    ):
        raise LearnerInputError(f"num_threads must be a positive integer, got {num_threads!r}.")
    for name, value in (("checkpoint_every", checkpoint_every), ("snapshot_every", snapshot_every)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise LearnerInputError(f"{name} must be a positive integer, got {value!r}.")


def _check_data(demos, config, n_actions, env_id, device):
    """``(obs_dim, n_actions, env_id, device)`` of the learners' data, checked (one
    observation size, known actions, fits in memory)."""
    obs_dims = {d.obs_dim for d in demos}
    if len(obs_dims) != 1:
        raise LearnerInputError(
            f"All learners' demonstrations must have one observation size, got {sorted(obs_dims)}."
        )
    n_actions = _n_actions(demos, n_actions)
    env_id = env_id if env_id is not None else demos[0].env_id
    dev = resolve_device(device)
    obs_dim = obs_dims.pop()
    _check_memory(config, len(demos), obs_dim, n_actions, sum(d.n_steps for d in demos), dev)
    return obs_dim, n_actions, env_id, dev


def _train_stacks(
    demos,
    seeds,
    segment_of: np.ndarray,
    config,
    *,
    n_actions,
    device,
    num_threads,
    progress,
    state_dir,
    checkpoint_every,
    stop_on_divergence,
    init_policy_state=None,
    snapshot_every=None,
    on_terms=None,
    trained_policy=None,
) -> list[tuple[list[int], dict]]:
    """Train every learner (``seeds[i]`` on ``demos[i]``; ``segment_of[i]`` its run, stepped
    apart) in stacks of equal minibatch size; ``[(members, stack result)]``."""
    # Learners with equal minibatch sizes share one stack; others train as separate stacks.
    rows = [_training_rows(d, config) for d in demos]
    groups: dict[int, list[int]] = {}
    for index, r in enumerate(rows):
        groups.setdefault(min(config.batch_size, len(r)), []).append(index)
    state_root = None if state_dir is None else Path(state_dir)
    parts = []
    with torch_threads(num_threads), _deferred_signals(state_root is not None) as stop:
        for number, members in enumerate(groups.values()):
            group = Stack(
                config=config,
                seeds=tuple(seeds[i] for i in members),
                demos=[demos[i] for i in members],
                rows=[rows[i] for i in members],
                n_actions=n_actions,
                device=device,
                init_policy_state=init_policy_state,
                trained_policy=None if trained_policy is None else trained_policy.part(members),
                segments=[n for n in np.bincount(segment_of[members]) if n],
            )
            state_file = None if state_root is None else state_root / f"stack-{number}.pt"
            stack_progress = _stack_progress(progress, number, len(groups), config.n_updates)
            result = group.run(
                state_file,
                checkpoint_every,
                stop,
                stop_on_divergence,
                snapshot_every,
                stack_progress,
                on_terms,
            )
            parts.append((members, result))
    return parts


def _training_rows(demos: Demonstrations, config: LearnerConfig) -> np.ndarray:
    """Rows a learner draws minibatches from: all, or for a learner that uses transitions the
    rows whose next state (for AVRIL also next action) is known or terminal."""
    if not config.uses_transitions:
        return np.arange(demos.n_steps)
    rows = demos.transition_rows(need_next_action=learner_spec(config.algo).uses_next_action)
    if len(rows) == 0:
        raise LearnerInputError(
            f"{config.algo} trains on transitions (s, a, s'), but these demonstrations have "
            "none: every episode has one step and no recorded final observation. Pass "
            "final_observations to from_arrays, or longer episodes."
        )
    return rows


def _stack_progress(progress, number, n_stacks, n_updates):
    """Stack ``number``'s updates as ``progress(done, total)`` over all stacks of the run."""
    if progress is None:
        return None
    return lambda update: progress(number * n_updates + update, n_stacks * n_updates)


def _check_init_state(state, obs_dim, config, n_actions) -> dict[str, torch.Tensor]:
    net = StackedMLP(1, obs_dim, config.hidden_sizes, n_actions)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise LearnerInputError(
            "init_policy_state does not fit a K=1 MLP "
            f"{obs_dim}-{'-'.join(map(str, config.hidden_sizes))}-{n_actions}; pass "
            "Learner.policy_state of a learner with the same architecture."
        )
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise LearnerInputError("init_policy_state contains NaN or infinite weights.")
    return {k: v.detach().to(torch.float32).cpu() for k, v in state.items()}


def _merge(parts, config, seeds, select, obs_dim, n_actions, env_id) -> TrainResult:
    """The result of learners ``select`` (indices into all the stacks' learners, whose seeds
    are ``seeds``) from the stacks' ``parts``."""
    order = [index for members, _ in parts for index in members]
    pick = torch.as_tensor(np.argsort(order)[list(select)])

    def cat(tensors):
        return torch.cat(tensors)[pick]

    def stacked(key):
        if parts[0][1][key] is None:
            return None
        return {name: cat([p[key][name] for _, p in parts]) for name in parts[0][1][key]}

    curves = {
        name: np.concatenate([p["curves"][name] for _, p in parts])[pick.numpy()]
        for name in parts[0][1]["curves"]
    }
    snapshots = ()
    if parts[0][1]["snapshots"]:
        snapshots = tuple(
            (update, {name: cat([p["snapshots"][i][1][name] for _, p in parts]) for name in state})
            for i, (update, state) in enumerate(parts[0][1]["snapshots"])
        )
    diverged: dict[int, tuple[int, float]] = {}  # by learner index
    for members, p in parts:
        diverged.update({members[k]: value for k, value in p["diverged"].items()})

    def joined(key):
        return np.concatenate([p[key] for _, p in parts])[pick.numpy()]

    return TrainResult(
        config=config,
        seeds=seeds,
        obs_dim=obs_dim,
        n_actions=n_actions,
        obs_mean=joined("mean"),
        obs_std=joined("std"),
        n_pairs=tuple(int(n) for n in joined("n_pairs")),
        policy_state=stacked("policy"),
        energy_state=stacked("energy"),
        curves=curves,
        env_id=env_id,
        diverged={s: diverged[i] for s, i in zip(seeds, select, strict=True) if i in diverged},
        snapshots=snapshots,
    )


@contextlib.contextmanager
def _deferred_signals(enabled: bool) -> Iterator[threading.Event]:
    """While training with checkpoints, SIGINT/SIGTERM only set an event that the loop checks
    between updates (so the state it saves is consistent); restored afterwards."""
    stop = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _divergence_hint(config: LearnerConfig) -> str:
    published = ALGO_DEFAULTS[config.algo]["learning_rate"]
    if config.learning_rate > max(1e-2, 10 * published):
        return (
            f"the learning rate {config.learning_rate:g} is likely too large (the published "
            f"setting for {config.algo} is {published:g})"
        )
    if config.uses_sgld:
        return (
            "the SGLD chains likely ran off to large inputs (try a smaller --sgld-step-size or "
            "--normalize) or the learning rate is too large"
        )
    return "the learning rate is likely too large or the observations badly scaled (--normalize)"


class Stack:
    """One stack of learners with equal minibatch size: the shared machinery around the
    learner's update (its module's ``update``, :mod:`sbil.deep.learners`).

    It stages each learner's training rows on the device, builds the networks and the
    optimiser, draws the minibatches, runs the loop and reads and writes the checkpoints. A
    learner's ``update(stack, index)`` reads:

    * ``config``, ``batch`` (``B``), ``n_actions``, ``obs_dim``, ``device``;
    * ``policy`` and ``energy`` (the second network, or None): stacked MLPs;
    * ``optimizer``: one fused Adam over the groups of its module's ``parameter_groups(stack)``
      if it has one, else of both networks' weights at ``learning_rate``;
    * ``sgld_gens``: each learner's generator of its SGLD stream, and ``buffer``, the
      persistent SGLD buffer ``[K, sgld_buffer_size, obs_dim]`` of the learners that draw
      SGLD samples (else None);
    * :meth:`pairs`, :meth:`transitions`, :meth:`policy_on` and :meth:`descend`;
    * ``trained_policy``: the policy trained already (:class:`TrainedPolicy`), or None; with
      one, ``policy`` holds its weights, only ``energy`` trains, and each update calls the
      learner's ``state_model_update(stack, index, policy_terms)`` with the policy's terms of
      that update (``{name: [K]}``), which descends through :meth:`descend_state_model`.
    """

    def __init__(
        self,
        *,
        config,
        seeds,
        demos,
        rows,
        n_actions,
        device,
        init_policy_state,
        trained_policy=None,
        segments=None,
    ):
        self.config, self.seeds, self.n_actions, self.device = config, seeds, n_actions, device
        many = segments is not None and len(segments) > 1
        self.segments = tuple(map(int, segments)) if many else None
        self.learner = learner_module(config.algo)
        self.batch = min(config.batch_size, len(rows[0]))
        self.obs_dim = demos[0].obs_dim
        self.n_pairs = np.array([len(r) for r in rows], dtype=np.int64)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(self.n_pairs)[:-1]]))
        means, stds, observations, following = [], [], [], []
        for d, r in zip(demos, rows, strict=True):
            obs = d.observations
            if config.normalize_observations:
                mean = obs.mean(axis=0, dtype=np.float64).astype(np.float32)
                std = np.maximum(obs.std(axis=0, dtype=np.float64), 1e-6).astype(np.float32)
            else:
                mean, std = np.zeros(self.obs_dim, np.float32), np.ones(self.obs_dim, np.float32)
            means.append(mean)
            stds.append(std)
            observations.append(((obs - mean) / std)[r])
            if config.uses_transitions:  # unknown next states (terminal ones) become zeros
                following.append(np.nan_to_num((d.next_observations[r] - mean) / std, nan=0.0))
        self.mean, self.std = np.stack(means), np.stack(stds)
        self.data_obs = torch.from_numpy(np.concatenate(observations)).to(device)

        def gather(field: str) -> torch.Tensor:
            """One field's training rows of every learner, concatenated, on the device."""
            values = np.concatenate(
                [getattr(d, field)[r] for d, r in zip(demos, rows, strict=True)]
            )
            return torch.from_numpy(values).to(device)

        self.data_act = gather("actions")
        if config.uses_transitions:
            self.data_next_obs = torch.from_numpy(np.concatenate(following)).to(device)
            self.data_next_act = gather("next_actions").clamp(min=0)  # -1 only where unused
            self.data_done = gather("terminals").to(torch.float32)
        self.trained_policy = trained_policy
        self.fingerprint = self._fingerprint(demos, init_policy_state)
        if trained_policy is not None:
            # A full training's state of the same learners can be taken over (its policy's
            # Adam moments dropped); the fingerprint of this one also names the given policy.
            self.full_fingerprint = self.fingerprint
            self.fingerprint = _given_policy_fingerprint(self.fingerprint, trained_policy)
            self.policy_curves = {
                name: torch.from_numpy(curve).to(device)
                for name, curve in trained_policy.curves.items()
            }

        def networks(stream: int, in_dim: int, out_dim: int) -> StackedMLP:
            gens = [seed_generator(s, stream) for s in seeds]
            return StackedMLP.initialized(
                gens,
                in_dim=in_dim,
                hidden_sizes=config.hidden_sizes,
                out_dim=out_dim,
                device=device,
            )

        self.policy = networks(_POLICY_INIT, self.obs_dim, n_actions)
        if init_policy_state is not None:
            k = len(seeds)
            self.policy.load_state_dict(
                {name: v.expand(k, *v.shape[1:]).clone() for name, v in init_policy_state.items()}
            )
        if trained_policy is not None:
            self.policy.load_state_dict(trained_policy.policy_state)
        # The second network: decoupled EDM's state model, ValueDICE's nu, AVRIL's encoder.
        self.energy = None
        if config.second_network is not None:
            self.energy = networks(
                _ENERGY_INIT, *config.second_network_shape(self.obs_dim, n_actions)
            )
        groups = getattr(self.learner, "parameter_groups", _parameter_groups)(self)
        # The fused kernel is the same elementwise Adam as the default, about 3x cheaper per step.
        # Stepped per segment, so that each segment trains as it would alone (SegmentedAdam).
        self.optimizer = SegmentedAdam(
            groups, segments=segments, lr=config.learning_rate, betas=config.adam_betas
        )
        self.batch_gens = [seed_generator(s, _MINIBATCH) for s in seeds]
        self.sgld_gens = [seed_generator(s, _SGLD) for s in seeds]
        self.buffer = None
        if config.uses_sgld:
            # Filled learner by learner: one buffer in memory, not a list plus its stacked copy.
            self.buffer = torch.empty(len(seeds), config.sgld_buffer_size, self.obs_dim)
            for k, g in enumerate(self.sgld_gens):
                self.buffer[k] = uniform_buffer(g, config.sgld_buffer_size, self.obs_dim)
            self.buffer = self.buffer.to(device)
        self.update = 0
        self.history: list[torch.Tensor] = []  # [n_terms, K] per update
        self.term_names: tuple[str, ...] | None = None  # set by the first update or the state
        self.delivered = 0  # updates handed to on_terms by this process
        self.diverged: dict[int, tuple[int, float]] = {}  # by position in the stack
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []

    def _fingerprint(self, demos, init_policy_state) -> str:
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                [self.config.to_dict(), list(self.seeds), self.n_actions], sort_keys=True
            ).encode()
        )
        if self.segments is not None:  # steps per segment: another arithmetic (SegmentedAdam)
            digest.update(json.dumps({"segments": list(self.segments)}).encode())
        for d in demos:
            digest.update(d.observations.tobytes())
            digest.update(d.actions.tobytes())
            if self.config.uses_transitions:
                for array in (d.next_observations, d.next_actions, d.terminals):
                    digest.update(array.tobytes())
        if init_policy_state is not None:
            for name in sorted(init_policy_state):
                digest.update(init_policy_state[name].numpy().tobytes())
        return digest.hexdigest()

    # --- one update: the minibatch, then the learner's step ----------------------------------

    def step(self) -> dict[str, torch.Tensor]:
        """One update of every learner: draw each one's minibatch and call the learner's
        ``update``; returns its terms ``{name: [K]}`` (detached): the loss dataclass's fields by
        name, the optional regularisers, and always the policy's cross-entropy
        ``mean -log pi(a|s)`` on the minibatch.
        """
        index = torch.stack(
            [
                minibatch_indices(g, int(n), self.batch)
                for g, n in zip(self.batch_gens, self.n_pairs, strict=True)
            ]
        ) + self.offsets.unsqueeze(1)
        if self.trained_policy is not None:
            policy_terms = {name: c[:, self.update] for name, c in self.policy_curves.items()}
            return self.learner.state_model_update(self, index.to(self.device), policy_terms)
        return self.learner.update(self, index.to(self.device))

    def pairs(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, a)`` of the minibatch ``index`` ``[K, B]``: ``[K, B, d]``, ``[K, B]``."""
        return self.data_obs[index], self.data_act[index]

    def transitions(self, index: torch.Tensor):
        """``(s, a, s', a', done)`` of the minibatch: ``[K, B, d]``, ``[K, B]``, ``[K, B, d]``,
        ``[K, B]``, ``[K, B]`` (``done`` 1.0 where ``s'`` is terminal; ``s'`` is zeros and
        ``a'`` 0 where unknown)."""
        return (
            self.data_obs[index],
            self.data_act[index],
            self.data_next_obs[index],
            self.data_next_act[index],
            self.data_done[index],
        )

    def policy_on(
        self, states: torch.Tensor, next_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy network's outputs on ``s`` and ``s'`` ``[K, B, d]`` in one forward."""
        out = self.policy(torch.cat([states, next_states], dim=1))
        return out[:, : self.batch], out[:, self.batch :]

    def descend(
        self, losses, policy_logits: torch.Tensor, actions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One Adam step on ``losses.loss`` (a loss dataclass, ``[K]`` each) plus the optional
        policy regulariser on ``policy_logits`` ``[K, B, A]``; returns the update's terms: the
        dataclass's fields by name, ``policy_regularizer`` when it is on, and the policy's
        ``cross_entropy`` for ``actions`` ``[K, B]`` (the dataclass's own where it has one)."""
        terms = named_terms(losses)
        loss = losses.loss
        if self.config.l2_coef or self.config.entropy_coef:
            regularizer = policy_regularizer(policy_logits, self.policy, self.config)
            loss = loss + regularizer
            terms["policy_regularizer"] = regularizer.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # learner k's parameters get the gradient of loss[k] only
        self.optimizer.step()
        if "cross_entropy" not in terms:
            terms["cross_entropy"] = cross_entropy(policy_logits.detach(), actions)
        return terms

    def descend_state_model(
        self, losses, policy_terms: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """:meth:`descend` for a stack given its trained policy: one Adam step of the second
        network on ``losses.loss`` (whose policy term is the given one, a constant), plus the
        given ``policy_regularizer`` when it is on (a constant too, so that the recorded loss
        is the full training's); the gradients, hence the steps, are a full training's.
        Returns the terms as :meth:`descend` does."""
        terms = named_terms(losses)
        loss = losses.loss
        if self.config.l2_coef or self.config.entropy_coef:
            regularizer = policy_terms["policy_regularizer"]
            loss = loss + regularizer
            terms["policy_regularizer"] = regularizer
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.optimizer.step()
        return terms

    # --- the loop, checkpoints and divergence -------------------------------------------------

    def run(
        self,
        state_file,
        checkpoint_every,
        stop,
        stop_on_divergence,
        snapshot_every,
        progress,
        on_terms=None,
    ) -> dict:
        config = self.config
        if state_file is not None and state_file.is_file():
            self._load(state_file)
        report_every = max(1, config.n_updates // 200)
        k = len(self.seeds)
        reported = None  # the last update given to progress
        while self.update < config.n_updates:
            terms = self.step()
            if self.term_names is None:
                self.term_names = tuple(terms)
            values = torch.stack([terms[name] for name in self.term_names])  # [n_terms, K]
            self.update += 1
            self.history.append(values)
            loss = values[self.term_names.index(loss_term(config.algo))]
            finite = torch.isfinite(loss)
            if not bool(finite.all()):
                self._deliver(on_terms)  # the logs show the update that diverged
                self._record_divergence(finite, loss, stop_on_divergence)
            if snapshot_every and self.update % snapshot_every == 0:
                self.snapshots.append((self.update, _cpu_state(self.policy)))
            if state_file is not None and (
                self.update % checkpoint_every == 0 or self.update == config.n_updates
            ):
                self._save(state_file)
            if stop.is_set():
                if state_file is not None and self.update % checkpoint_every:
                    self._save(state_file)
                self._deliver(on_terms)
                raise TrainingInterrupted(
                    f"Interrupted at update {self.update} of {config.n_updates}; the training "
                    "state was saved, so the run can be resumed."
                )
            if self.update % report_every == 0 or self.update == config.n_updates:
                self._deliver(on_terms)
                if progress is not None:
                    progress(self.update)
                    reported = self.update
        if progress is not None and reported != config.n_updates:  # e.g. resumed when done
            progress(config.n_updates)
        self._deliver(on_terms)
        names = self.term_names or ()
        if self.history:
            history = torch.stack(self.history, dim=2).cpu().numpy()  # [n_terms, K, n_updates]
        else:
            history = np.zeros((len(names), k, 0), np.float32)
        return {
            "policy": _cpu_state(self.policy),
            "energy": None if self.energy is None else _cpu_state(self.energy),
            "curves": {name: history[i] for i, name in enumerate(names)},
            "mean": self.mean,
            "std": self.std,
            "n_pairs": self.n_pairs,
            "diverged": self.diverged,
            "snapshots": self.snapshots,
        }

    def _deliver(self, on_terms) -> None:
        """Hand the updates not yet given to ``on_terms`` to it (from update 0 after a load)."""
        if on_terms is None or self.delivered >= self.update:
            return
        block = torch.stack(self.history[self.delivered : self.update], dim=2).cpu().numpy()
        on_terms(self.seeds, self.delivered, {n: block[i] for i, n in enumerate(self.term_names)})
        self.delivered = self.update

    def _record_divergence(self, finite, loss, stop_on_divergence) -> None:
        for k in np.flatnonzero(~finite.cpu().numpy()):
            seed = self.seeds[k]
            if int(k) in self.diverged:
                continue
            value = float(loss[k])
            self.diverged[int(k)] = (self.update, value)
            message = (
                f"Training diverged: the loss of seed {seed} became {value} at update "
                f"{self.update} of {self.config.n_updates}; {_divergence_hint(self.config)}. "
                "Nothing of this learner was saved as finished."
            )
            if stop_on_divergence:
                raise TrainingDiverged(message, seed=seed, update=self.update)

    def _save(self, path: Path) -> None:
        payload = {
            "format": STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "update": self.update,
            "policy": self.policy.state_dict(),
            "energy": None if self.energy is None else self.energy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer,
            "batch_gens": [g.get_state() for g in self.batch_gens],
            "sgld_gens": [g.get_state() for g in self.sgld_gens],
            "history": torch.stack(self.history, dim=2).cpu() if self.history else None,
            "terms": None if self.term_names is None else list(self.term_names),
            "diverged": [[self.seeds[k], u, v] for k, (u, v) in self.diverged.items()],
            "diverged_at": [[k, u, v] for k, (u, v) in self.diverged.items()],
            "snapshots": self.snapshots,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buffer.getvalue())

    def _load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            if not isinstance(state, dict):
                raise TypeError("not a dict")
        except Exception as error:
            raise LearnerInputError(
                f"The training state {path} cannot be read ({type(error).__name__}); delete it "
                "to start this training again."
            ) from None
        if state.get("format") != STATE_FORMAT:
            raise LearnerInputError(
                f"The training state {path} was written by another version of sbil (state "
                f"format {state.get('format')}, this one reads {STATE_FORMAT}); delete it to "
                "start this training again."
            )
        if self.trained_policy is not None and state.get("fingerprint") == self.full_fingerprint:
            # A full training's state (e.g. of an earlier sbil): continue it here.
            state = _without_policy_training(state, self.fingerprint)
        if state.get("fingerprint") != self.fingerprint:
            raise LearnerInputError(
                f"The training state {path} belongs to a different training (other data, seeds "
                "or settings); resume with the settings it was started with, or delete it."
            )
        self.update = int(state["update"])
        if self.trained_policy is None:
            self.policy.load_state_dict(state["policy"])
        if self.energy is not None:
            self.energy.load_state_dict(state["energy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.buffer is not None:
            self.buffer.copy_(state["buffer"])
        for g, s in zip(self.batch_gens, state["batch_gens"], strict=True):
            g.set_state(s.cpu())  # map_location moved it to the device; states live on CPU
        for g, s in zip(self.sgld_gens, state["sgld_gens"], strict=True):
            g.set_state(s.cpu())
        history = state["history"]
        self.history = [] if history is None else list(history.to(self.device).unbind(2))
        self.term_names = None if state["terms"] is None else tuple(state["terms"])
        self.delivered = 0  # this process has handed nothing to on_terms yet
        if "diverged_at" in state:  # by position (seeds may repeat across segments)
            self.diverged = {int(k): (int(u), float(v)) for k, u, v in state["diverged_at"]}
        else:  # an earlier sbil's, by seed (distinct then)
            at = {s: k for k, s in enumerate(self.seeds)}
            self.diverged = {at[int(s)]: (int(u), float(v)) for s, u, v in state["diverged"]}
        self.snapshots = [(int(u), dict(s)) for u, s in state["snapshots"]]


def _parameter_groups(stack: Stack) -> list[dict]:
    """Adam's parameter groups unless the learner's module has its own: the policy's (unless
    it was given trained), then the second network's, both at ``learning_rate``."""
    groups = []
    if stack.trained_policy is None:
        groups.append({"params": [*stack.policy.parameters()]})
    if stack.energy is not None:
        groups.append({"params": [*stack.energy.parameters()]})
    return groups


def _given_policy_fingerprint(fingerprint: str, trained: TrainedPolicy) -> str:
    """The fingerprint of a training given ``trained``: the full training's and the given
    policy's weights and terms."""
    digest = hashlib.sha256(f"{fingerprint} trained policy".encode())
    for name in sorted(trained.policy_state):
        digest.update(trained.policy_state[name].numpy().tobytes())
    for name in sorted(trained.curves):
        digest.update(name.encode())
        digest.update(trained.curves[name].tobytes())
    return digest.hexdigest()


def _without_policy_training(state: dict, fingerprint: str) -> dict:
    """A full training's state (both networks, one Adam over the policy's parameters then the
    second network's) as the state of its second network's training alone: the second
    group's parameters and moments, renumbered, under ``fingerprint``. Its weights, buffer,
    generators and history are what the training given its policy holds at the same update."""
    optimizer = state["optimizer"]
    _, energy_group = optimizer["param_groups"]
    moments = optimizer["state"]
    return {
        **state,
        "fingerprint": fingerprint,
        "optimizer": {
            "state": {i: moments[p] for i, p in enumerate(energy_group["params"]) if p in moments},
            "param_groups": [{**energy_group, "params": list(range(len(energy_group["params"])))}],
        },
    }


def _cpu_state(net: StackedMLP) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}

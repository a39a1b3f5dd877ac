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

Modules: :mod:`sbil.deep.train_result` (what training returns and raises),
:mod:`sbil.deep.train_inputs` (its inputs, checked), :mod:`sbil.deep.stack` (one stack and its
loop) and this one (:func:`train`, :func:`train_together`). Import from here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sbil.deep.config import LearnerConfig, LearnerInputError
from sbil.deep.data import Demonstrations
from sbil.deep.learner import torch_threads
from sbil.deep.stack import Stack
from sbil.deep.train_inputs import (
    _as_demonstrations,
    _check_data,
    _check_init_state,
    _check_options,
    _training_rows,
    check_seeds,
    memory_estimate,
    minibatch_indices,
    resolve_device,
    seed_generator,
)
from sbil.deep.train_result import (
    STATE_FORMAT,
    TermsCallback,
    TrainedPolicy,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    _check_trained_policy,
    loss_term,
    slice_state,
)
from sbil.progress import ProgressCallback


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
    compile_sgld: bool = False,
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
        compile_sgld: run EDM's SGLD chains through ``torch.compile`` (an opt-in: its samples
            equal the eager chain's to float32 rounding, not bit for bit; where torch.compile
            is unavailable a warning says so and the eager chain runs). See
            :func:`sbil.deep.sgld.sgld_logsumexp` and ``benchmarks/sgld_compile.py``.

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
        compile_sgld=compile_sgld,
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
    compile_sgld: bool = False,
    trained_policies: Sequence[TrainedPolicy] | None = None,
) -> list[TrainResult]:
    """Several trainings of one ``config`` on one task, ``runs = [(data, seeds), ...]``, in one
    set of stacks: each result equals, bit for bit, what ``train(data, config, seeds=seeds)``
    gives alone, while their learners share the stacked kernels (a sweep's groups that differ
    only in ``k``: a stack of 50 learners costs much less than five of 10).

    The optimiser steps each run's learners as their own tensors
    (:class:`~sbil.deep.segmented_adam.SegmentedAdam`: torch's fused CPU Adam rounds a
    tensor's last few elements in a scalar loop, so a shared step would make a learner depend on
    its stack's size); everything else a learner computes is its own already. Seeds may repeat
    across runs (not within one). ``trained_policies``: decoupled EDM only, one
    :class:`TrainedPolicy` per run (each run's ``train(..., trained_policy=...)``), so that
    only the state models train, stacked across the runs. The other arguments are
    :func:`train`'s; ``state_dir`` holds the state of this very combination (the same runs in
    the same order).

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
    trained_policy = None
    if trained_policies is not None:
        if isinstance(trained_policies, TrainedPolicy) or len(trained_policies) != len(sizes):
            raise LearnerInputError(
                f"trained_policies must hold one TrainedPolicy per run ({len(sizes)})."
            )
        checked = [
            _check_trained_policy(given, config, size, obs_dim, n_actions)
            for given, size in zip(trained_policies, sizes, strict=True)
        ]
        trained_policy = TrainedPolicy.joined(checked)
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
        trained_policy=trained_policy,
        compile_sgld=compile_sgld,
    )
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [
        _merge(parts, config, tuple(seeds[lo:hi]), range(lo, hi), obs_dim, n_actions, env_id)
        for lo, hi in itertools.pairwise(bounds)
    ]


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
    compile_sgld=False,
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
                compile_sgld=compile_sgld,
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


def _stack_progress(progress, number, n_stacks, n_updates):
    """Stack ``number``'s updates as ``progress(done, total)`` over all stacks of the run."""
    if progress is None:
        return None
    return lambda update: progress(number * n_updates + update, n_stacks * n_updates)


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


__all__ = [
    "STATE_FORMAT",
    "Stack",
    "TermsCallback",
    "TrainResult",
    "TrainedPolicy",
    "TrainingDiverged",
    "TrainingInterrupted",
    "check_seeds",
    "loss_term",
    "memory_estimate",
    "minibatch_indices",
    "resolve_device",
    "seed_generator",
    "slice_state",
    "train",
    "train_together",
]

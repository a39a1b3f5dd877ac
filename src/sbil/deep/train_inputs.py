"""The training loop's inputs, checked: seeds and their random streams, devices, memory,
demonstrations, options and the rows each learner draws minibatches from.

Part of the training loop (:mod:`sbil.deep.training` is its public face and module doc).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import numpy as np
import torch

from sbil.deep.config import LearnerConfig, LearnerInputError
from sbil.deep.data import Demonstrations
from sbil.deep.learners.registry import learner_spec
from sbil.deep.networks import StackedMLP
from sbil.seeds import MAX_SEED

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

"""Deep learners: behavioural cloning (BC), EDM, and EDM with a decoupled state model.

All three fit a policy ``pi(a|s) = softmax(f(s))[a]`` with an MLP ``f`` (64-64, ELU) on expert
state-action pairs:

* ``"bc"`` minimises the cross-entropy ``E_D[-log pi(a|s)]`` (:func:`cross_entropy`).
* ``"edm"`` (Jarrett, Bica & van der Schaar, NeurIPS 2020) adds a state model built from the
  *same* logits, ``p(s) ∝ sum_a exp f(s)[a]``, trained by contrastive divergence with SGLD
  samples. As in the reference code (``EDMStudent._compute_loss``) the loss is
  ``CE + rho + rho**2`` with ``rho = mean_q logsumexp f - mean_D logsumexp f``, ``q`` the SGLD
  samples (:func:`edm_loss`).
* ``"edm-decoupled"`` is the control suggested by the critique (Swamy et al.): the same loss,
  but the state model ``p(s) ∝ sum_a exp g(s)[a]`` is a second network ``g`` of the same shape,
  so the state term never reaches the policy's parameters. Its policy follows BC's exactly
  (same initialisation, same minibatches, same gradients).

:func:`train` fits ``K`` independent learners (one per seed) at once as one stacked model
(:class:`~sbil.deep.networks.StackedMLP`). Adam is elementwise, so one Adam over the stacked
parameters with the *sum* of the ``K`` losses is exactly ``K`` independent Adams. Every random
number of learner ``k`` (initialisation, minibatches, SGLD chains) comes from generators seeded
by ``seeds[k]`` alone, so learner ``k`` of a batched run follows the single run with that seed.

Example:
    >>> import numpy as np
    >>> from sbil.deep.learners import LearnerConfig, train
    >>> obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    >>> actions = (obs[:, 2] > 0).astype(np.int64)
    >>> result = train(obs, actions, LearnerConfig(algo="bc", n_updates=200), seeds=[0, 1],
    ...                n_actions=2)
    >>> policy = result.learner(0)
    >>> policy(obs[:3]).dtype
    dtype('int64')
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sbil.deep.networks import StackedMLP
from sbil.deep.sgld import (
    buffer_start,
    buffer_write,
    draw_chain_randomness,
    sampling_temperature,
    sgld_logsumexp,
    uniform_buffer,
)

ALGOS: tuple[str, ...] = ("bc", "edm", "edm-decoupled")

#: Called as ``progress(updates_done, n_updates)`` during training.
ProgressCallback = Callable[[int, int], None]


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


# --- the losses -------------------------------------------------------------------------------


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


def state_log_density_gap(
    state_logits_data: torch.Tensor, state_logits_samples: torch.Tensor
) -> torch.Tensor:
    """``rho = mean_q logsumexp g - mean_D logsumexp g`` per learner (EDM's state term).

    ``logsumexp_a g(s)[a]`` is the unnormalised ``log p(s)``; ``rho`` is a contrastive
    divergence estimate of ``-E_D log p(s)`` up to a constant.

    Args:
        state_logits_data: ``[K, B, A]`` state-model outputs on expert states.
        state_logits_samples: ``[K, B', A]`` state-model outputs on SGLD samples.

    Returns:
        ``[K]``.
    """
    return state_logits_samples.logsumexp(-1).mean(-1) - state_logits_data.logsumexp(-1).mean(-1)


def edm_loss(
    policy_logits: torch.Tensor,
    actions: torch.Tensor,
    state_logits_data: torch.Tensor,
    state_logits_samples: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's loss as in the reference code: ``CE + rho + rho**2`` per learner.

    For ``"edm"`` the state logits are the policy logits (one network); for
    ``"edm-decoupled"`` they come from the separate state network.

    Args:
        policy_logits: ``[K, B, A]`` policy logits on expert states.
        actions: ``[K, B]`` expert actions.
        state_logits_data: ``[K, B, A]`` state-model outputs on the same expert states.
        state_logits_samples: ``[K, B', A]`` state-model outputs on SGLD samples.

    Returns:
        ``(loss, ce, rho)``, each ``[K]``.
    """
    ce = cross_entropy(policy_logits, actions)
    rho = state_log_density_gap(state_logits_data, state_logits_samples)
    return ce + rho + rho**2, ce, rho


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


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (``None``: unchanged), then restore.

    Small-MLP kernels are fastest on one thread; with more, each tiny matmul pays a thread
    hand-off, which on a busy 2-core machine costs 5-50x (benchmarks/README.md).
    """
    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


# --- the trained learner ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Learner:
    """One trained learner: a batched, deterministic policy ``obs[n, obs_dim] -> actions[n]``.

    Actions are ``argmax_a f(s)[a]`` (ties go to the lowest action), as in the reference's
    ``select_action``.

    Attributes:
        config: the hyperparameters it was trained with.
        seed: its seed.
        obs_dim: observation size.
        n_actions: number of actions.
        obs_mean: ``[obs_dim]`` float32 subtracted from observations (zeros unless
            ``config.normalize_observations``).
        obs_std: ``[obs_dim]`` float32 dividing observations (ones unless normalised).
        policy_state: the policy network's weights (a ``K = 1`` :class:`StackedMLP` state).
        energy_state: the separate state network's weights (``"edm-decoupled"``), else None.
        env_id: the task it was trained for, if known.
    """

    config: LearnerConfig
    seed: int
    obs_dim: int
    n_actions: int
    obs_mean: np.ndarray
    obs_std: np.ndarray
    policy_state: dict[str, torch.Tensor]
    energy_state: dict[str, torch.Tensor] | None = None
    env_id: str | None = None
    _nets: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("obs_mean", "obs_std"):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != (self.obs_dim,) or not np.isfinite(value).all():
                raise LearnerInputError(
                    f"{name} must be {self.obs_dim} finite numbers, got shape {value.shape}."
                )
            object.__setattr__(self, name, value)
        if not (self.obs_std > 0).all():
            raise LearnerInputError("obs_std must be positive.")
        self._nets["policy"] = self._network(self.policy_state, "policy")
        if self.energy_state is not None:
            self._nets["energy"] = self._network(self.energy_state, "energy")

    def _network(self, state: dict[str, torch.Tensor], name: str) -> StackedMLP:
        net = StackedMLP(1, self.obs_dim, self.config.hidden_sizes, self.n_actions)
        shape = f"{self.obs_dim}-{'-'.join(map(str, self.config.hidden_sizes))}-{self.n_actions}"
        expected = {key: tuple(value.shape) for key, value in net.state_dict().items()}
        found = {key: tuple(value.shape) for key, value in state.items()}
        problem = None
        if missing := sorted(set(expected) - set(found)):
            problem = f"{', '.join(missing)} missing"
        elif unexpected := sorted(set(found) - set(expected)):
            problem = f"unexpected {', '.join(unexpected)}"
        elif wrong := [key for key in expected if expected[key] != found[key]]:
            key = wrong[0]
            problem = f"{key} has shape {list(found[key])}, expected {list(expected[key])}"
        if problem is not None:
            raise LearnerInputError(f"The {name} weights do not fit an MLP {shape}: {problem}.")
        net.load_state_dict(state)
        return net.eval().requires_grad_(False)

    def _inputs(self, obs: np.ndarray) -> torch.Tensor:
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise LearnerInputError(
                f"The learner takes observations of shape [n, {self.obs_dim}], got "
                f"{obs.shape}; pass a batch (obs[None] for a single observation)."
            )
        if not np.isfinite(obs).all():
            raise LearnerInputError("Observations contain NaN or infinite values.")
        x = (obs.astype(np.float32) - self.obs_mean) / self.obs_std
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Policy logits ``f(s)``: ``[n, n_actions]`` float32 for ``obs[n, obs_dim]``."""
        with torch.no_grad(), torch_threads(1):
            return self._nets["policy"](self._inputs(obs))[0].numpy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions ``[n]`` int64 for ``obs[n, obs_dim]``."""
        return self.logits(obs).argmax(axis=1).astype(np.int64)

    def state_log_density(self, obs: np.ndarray) -> np.ndarray:
        """Unnormalised ``log p_theta(s) = logsumexp_a g(s)[a]``, ``[n]`` float32.

        ``g`` is the policy network itself for ``"bc"`` and ``"edm"`` (for BC it was never
        trained as a density) and the separate state network for ``"edm-decoupled"``.
        """
        net = self._nets.get("energy", self._nets["policy"])
        with torch.no_grad(), torch_threads(1):
            return net(self._inputs(obs))[0].logsumexp(-1).numpy()


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrainResult:
    """``K`` learners trained together, one per seed.

    Attributes:
        config: the shared hyperparameters.
        seeds: ``(K,)`` the learners' seeds, in order.
        obs_dim, n_actions: the data's sizes.
        obs_mean, obs_std: ``[obs_dim]`` normalisation (zeros and ones when off).
        policy_state: stacked ``[K, ...]`` policy weights.
        energy_state: stacked state-network weights (``"edm-decoupled"``), else None.
        loss: ``[K, n_updates]`` float32 training loss of each update.
        cross_entropy: ``[K, n_updates]`` its cross-entropy term.
        rho: ``[K, n_updates]`` EDM's ``rho`` (NaN for BC).
        env_id: the task, if given.
    """

    config: LearnerConfig
    seeds: tuple[int, ...]
    obs_dim: int
    n_actions: int
    obs_mean: np.ndarray
    obs_std: np.ndarray
    policy_state: dict[str, torch.Tensor]
    energy_state: dict[str, torch.Tensor] | None
    loss: np.ndarray
    cross_entropy: np.ndarray
    rho: np.ndarray
    env_id: str | None = None

    def learner(self, index: int) -> Learner:
        """Learner ``index`` (of ``seeds[index]``) as a standalone policy."""
        if not 0 <= index < len(self.seeds):
            raise IndexError(f"Learner {index} does not exist; there are {len(self.seeds)}.")
        return Learner(
            config=self.config,
            seed=self.seeds[index],
            obs_dim=self.obs_dim,
            n_actions=self.n_actions,
            obs_mean=self.obs_mean,
            obs_std=self.obs_std,
            policy_state=_slice_state(self.policy_state, index),
            energy_state=None
            if self.energy_state is None
            else _slice_state(self.energy_state, index),
            env_id=self.env_id,
        )

    @property
    def learners(self) -> list[Learner]:
        """All ``K`` learners, in seed order."""
        return [self.learner(i) for i in range(len(self.seeds))]


def _slice_state(state: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    return {name: value[k : k + 1].clone() for name, value in state.items()}


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


def every_nth_step_rows(episode_lengths: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Rows of steps ``0, n, 2n, ...`` of every episode, ``[M]`` int64.

    The EDM reference code keeps every 20th step of each expert trajectory
    (``BaseStudent._fill_buffer``: ``i % 20 == 0``); ``n = 1`` keeps everything.

    Args:
        episode_lengths: ``[E]`` lengths of consecutive episodes.
        n: keep one step in ``n``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise LearnerInputError(f"n must be a positive integer, got {n!r}.")
    lengths = np.asarray(episode_lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.concatenate(
        [start + np.arange(0, length, n) for start, length in zip(starts, lengths, strict=True)]
    ).astype(np.int64)


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


def check_training_data(
    observations: np.ndarray, actions: np.ndarray, n_actions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert training pairs to ``(float32 [N, d], int64 [N])``.

    Raises:
        LearnerInputError: naming the first bad row.
    """
    if isinstance(n_actions, bool) or not isinstance(n_actions, (int, np.integer)) or n_actions < 2:
        raise LearnerInputError(f"n_actions must be an integer >= 2, got {n_actions!r}.")
    obs = np.asarray(observations)
    acts = np.asarray(actions)
    if obs.ndim != 2:
        raise LearnerInputError(
            f"observations must be a 2-D array [N, obs_dim], got shape {obs.shape}."
        )
    if obs.shape[0] == 0 or obs.shape[1] == 0:
        raise LearnerInputError(
            f"The training data is empty (observations of shape {obs.shape}); "
            "pass at least one state-action pair."
        )
    if not np.issubdtype(obs.dtype, np.number):
        raise LearnerInputError(f"observations must be numeric, got dtype {obs.dtype}.")
    if acts.shape != (obs.shape[0],):
        raise LearnerInputError(
            f"actions must have shape [{obs.shape[0]}] (one per observation), got {acts.shape}."
        )
    bad = ~np.isfinite(obs).all(axis=1)
    if bad.any():
        raise LearnerInputError(
            f"Observation row {int(np.argmax(bad))} contains NaN or infinite values; "
            "remove or fix it."
        )
    if not np.issubdtype(acts.dtype, np.integer):
        acts_f = acts.astype(np.float64)
        bad = ~np.isfinite(acts_f) | (acts_f != np.round(acts_f))
        if bad.any():
            row = int(np.argmax(bad))
            raise LearnerInputError(
                f"Action row {row} is {acts[row]!r}, not an integer; discrete actions are "
                f"integers 0..{n_actions - 1}."
            )
    outside = (acts < 0) | (acts >= n_actions)
    if outside.any():
        row = int(np.argmax(outside))
        raise LearnerInputError(
            f"Action row {row} is {int(acts[row])}, outside 0..{n_actions - 1} "
            f"(n_actions={n_actions})."
        )
    return np.ascontiguousarray(obs, dtype=np.float32), acts.astype(np.int64)


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)):
        raise LearnerInputError(f"seeds must be a sequence of integers, e.g. [{seeds}].")
    seeds = tuple(seeds)
    if not seeds:
        raise LearnerInputError("Pass at least one seed.")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise LearnerInputError(f"Seeds must be non-negative integers, got {s!r}.")
    seeds = tuple(int(s) for s in seeds)
    if len(set(seeds)) != len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        raise LearnerInputError(
            f"Seeds must be distinct (equal seeds train identical learners), got {repeated} "
            "more than once."
        )
    return seeds


def train(
    observations: np.ndarray,
    actions: np.ndarray,
    config: LearnerConfig,
    *,
    seeds: Sequence[int],
    n_actions: int,
    env_id: str | None = None,
    device: str | torch.device = "cpu",
    num_threads: int | None = 1,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train ``len(seeds)`` independent learners on the same expert pairs, as one stacked model.

    Each update of learner ``k``: draw ``B = min(batch_size, N)`` distinct pairs; for EDM, run
    ``sgld_steps`` SGLD steps on ``B`` chains started from its persistent buffer (ascent on
    ``logsumexp`` of the state model, detached) and write them back; take one Adam step on its
    loss (:func:`cross_entropy` for BC, :func:`edm_loss` otherwise, plus
    :func:`policy_regularizer` when enabled).

    Args:
        observations: ``[N, obs_dim]`` expert states (finite).
        actions: ``[N]`` expert actions in ``0..n_actions-1``.
        config: hyperparameters (:class:`LearnerConfig`).
        seeds: one seed per learner; learner ``k`` depends on ``seeds[k]`` only.
        n_actions: number of discrete actions.
        env_id: recorded in the result and checkpoints (optional).
        device: "cpu" (default) or "cuda". Random numbers are drawn on the CPU either way.
        num_threads: torch intra-op threads while training (restored afterwards); ``None``
            keeps torch's setting. The default 1 is the fastest for these small matmuls and
            avoids the large stalls that multi-threaded kernels show on a busy 2-core machine
            (benchmarks/README.md).
        progress: called as ``progress(done, n_updates)`` now and then.

    Returns:
        :class:`TrainResult` with the ``K`` learners and their loss histories.

    Raises:
        LearnerInputError: for bad data, seeds or device.
    """
    if not isinstance(config, LearnerConfig):
        raise LearnerInputError(f"config must be a LearnerConfig, got {type(config).__name__}.")
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
    ):
        raise LearnerInputError(f"num_threads must be a positive integer, got {num_threads!r}.")
    with torch_threads(num_threads):
        return _train(observations, actions, config, seeds, n_actions, env_id, device, progress)


def _train(observations, actions, config, seeds, n_actions, env_id, device, progress):
    obs, acts = check_training_data(observations, actions, n_actions)
    seeds = _check_seeds(seeds)
    dev = resolve_device(device)
    n, obs_dim = obs.shape
    batch = min(config.batch_size, n)

    if config.normalize_observations:
        mean = obs.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = np.maximum(obs.std(axis=0, dtype=np.float64), 1e-6).astype(np.float32)
    else:
        mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
    data_obs = torch.from_numpy((obs - mean) / std).to(dev)
    data_act = torch.from_numpy(acts).to(dev)

    def networks(stream: int) -> StackedMLP:
        gens = [seed_generator(s, stream) for s in seeds]
        return StackedMLP.initialized(
            gens, in_dim=obs_dim, hidden_sizes=config.hidden_sizes, out_dim=n_actions, device=dev
        )

    policy = networks(_POLICY_INIT)
    energy = networks(_ENERGY_INIT) if config.algo == "edm-decoupled" else None
    state_model = energy if energy is not None else policy
    parameters = [*policy.parameters(), *(energy.parameters() if energy is not None else [])]
    # The fused kernel is the same elementwise Adam as the default, about 3x cheaper per step.
    optimizer = torch.optim.Adam(
        parameters, lr=config.learning_rate, betas=config.adam_betas, fused=True
    )
    batch_gens = [seed_generator(s, _MINIBATCH) for s in seeds]
    sgld_gens = [seed_generator(s, _SGLD) for s in seeds]
    if config.uses_sgld:
        buffer = torch.stack(
            [uniform_buffer(g, config.sgld_buffer_size, obs_dim) for g in sgld_gens]
        ).to(dev)

    history = []
    no_rho = torch.full((len(seeds),), float("nan"), device=dev)
    report_every = max(1, config.n_updates // 200)
    for update in range(config.n_updates):
        index = torch.stack([minibatch_indices(g, n, batch) for g in batch_gens]).to(dev)
        x, a = data_obs[index], data_act[index]  # [K, B, d], [K, B]

        if config.uses_sgld:
            draws = [
                draw_chain_randomness(
                    g,
                    batch_size=batch,
                    dim=obs_dim,
                    buffer_size=config.sgld_buffer_size,
                    n_steps=config.sgld_steps,
                    reinit_prob=config.sgld_reinit_prob,
                )
                for g in sgld_gens
            ]
            slots = torch.stack([d.buffer_indices for d in draws]).to(dev)
            start = buffer_start(
                buffer,
                slots,
                torch.stack([d.reinit for d in draws]).to(dev),
                torch.stack([d.reinit_mask for d in draws]).to(dev),
            )
            noise = torch.stack([d.noise for d in draws], dim=1).to(dev)  # [steps, K, B, d]
            samples = sgld_logsumexp(
                state_model,
                start,
                noise,
                step_size=config.sgld_step_size,
                noise_scale=config.sgld_noise,
            )
            buffer_write(buffer, slots, samples)

            if energy is None:  # one network: policy and state model share the logits
                logits = policy(torch.cat([x, samples], dim=1))
                policy_logits, sample_logits = logits[:, :batch], logits[:, batch:]
                state_logits_data = policy_logits
            else:
                policy_logits = policy(x)
                state_logits = energy(torch.cat([x, samples], dim=1))
                state_logits_data, sample_logits = state_logits[:, :batch], state_logits[:, batch:]
            loss, ce, rho = edm_loss(policy_logits, a, state_logits_data, sample_logits)
        else:
            policy_logits = policy(x)
            loss = ce = cross_entropy(policy_logits, a)
            rho = no_rho
        if config.l2_coef or config.entropy_coef:
            loss = loss + policy_regularizer(policy_logits, policy, config)

        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # learner k's parameters get the gradient of loss[k] only
        optimizer.step()
        history.append(torch.stack([loss, ce, rho]).detach())
        if progress is not None and ((update + 1) % report_every == 0):
            progress(update + 1, config.n_updates)

    curves = torch.stack(history, dim=2).cpu().numpy() if history else np.zeros((3, len(seeds), 0))
    if progress is not None:
        progress(config.n_updates, config.n_updates)
    return TrainResult(
        config=config,
        seeds=seeds,
        obs_dim=obs_dim,
        n_actions=int(n_actions),
        obs_mean=mean,
        obs_std=std,
        policy_state=_cpu_state(policy),
        energy_state=None if energy is None else _cpu_state(energy),
        loss=curves[0],
        cross_entropy=curves[1],
        rho=curves[2],
        env_id=env_id,
    )


def _cpu_state(net: StackedMLP) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}

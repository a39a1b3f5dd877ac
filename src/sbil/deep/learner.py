"""A trained learner: a batched, deterministic policy built from saved weights.

:class:`Learner` is what training returns per seed, what checkpoints hold and what
:func:`sbil.deep.evaluation.evaluate` plays; it refuses weights that are not finite.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

from sbil.deep.config import LearnerConfig, LearnerInputError
from sbil.deep.networks import StackedMLP


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
        energy_state: the second network's weights, else None: decoupled EDM's state model,
            ValueDICE's ``nu`` (input: the state and a one-hot action, one output) or AVRIL's
            reward encoder (2 outputs: mean and log sd of ``R(s)``).
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
        second = self.config.second_network or "second-network"
        for name, state in (("policy", self.policy_state), (second, self.energy_state)):
            if state is not None and not all(torch.isfinite(v).all() for v in state.values()):
                raise LearnerInputError(
                    f"The {name} weights contain NaN or infinite values: the run that made them "
                    "diverged; retrain it (e.g. with a smaller learning rate)."
                )
        self._nets["policy"] = self._network(self.policy_state, "policy")
        if self.energy_state is not None:
            shape = self.config.second_network_shape(self.obs_dim, self.n_actions)
            self._nets["energy"] = self._network(self.energy_state, second, *shape)

    def _network(
        self,
        state: dict[str, torch.Tensor],
        name: str,
        inputs: int | None = None,
        outputs: int | None = None,
    ) -> StackedMLP:
        inputs = self.obs_dim if inputs is None else inputs
        outputs = self.n_actions if outputs is None else outputs
        net = StackedMLP(1, inputs, self.config.hidden_sizes, outputs)
        shape = f"{inputs}-{'-'.join(map(str, self.config.hidden_sizes))}-{outputs}"
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
        """Policy logits ``f(s)``: ``[n, n_actions]`` float32 for ``obs[n, obs_dim]``, so that
        ``pi(a|s) = softmax(f(s))[a]`` (for IQ-Learn ``f = Q / tau``; for RCAL and AVRIL
        ``f = Q``)."""
        with torch.no_grad(), torch_threads(1):
            out = self._nets["policy"](self._inputs(obs))[0]
            if self.config.policy_temperature != 1.0:
                out = out / self.config.policy_temperature
            return out.numpy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions ``[n]`` int64 for ``obs[n, obs_dim]``."""
        return self.logits(obs).argmax(axis=1).astype(np.int64)

    def state_log_density(self, obs: np.ndarray) -> np.ndarray:
        """Unnormalised ``log p_theta(s) = logsumexp_a g(s)[a]``, ``[n]`` float32.

        ``g`` is the policy network itself for ``"bc"`` and ``"edm"`` (for BC it was never
        trained as a density) and the separate state network for ``"edm-decoupled"``.
        """
        net = self._nets["energy"] if self.config.algo == "edm-decoupled" else self._nets["policy"]
        with torch.no_grad(), torch_threads(1):
            return net(self._inputs(obs))[0].logsumexp(-1).numpy()

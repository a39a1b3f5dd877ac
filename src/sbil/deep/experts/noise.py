"""Stochastic experts: :class:`ExpertNoise`, the stateless seeded hash of a state
(:func:`state_uniforms`), epsilon-greedy noise and :func:`with_noise`.

Part of :mod:`sbil.deep.experts` (its module doc says how the randomness is seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sbil.deep.envs import Policy
from sbil.seeds import check_seed_range

NOISE_KINDS: tuple[str, ...] = ("none", "epsilon", "sample")


@dataclass(frozen=True)
class ExpertNoise:
    """How a recorded expert departs from its deterministic actions.

    Attributes:
        kind: ``"none"`` (deterministic), ``"epsilon"`` (with probability ``epsilon`` a
            uniformly random action; any expert) or ``"sample"`` (draw from an SB3 expert's
            own action distribution, as ``predict(deterministic=False)``).
        epsilon: for ``"epsilon"``, the probability in ``(0, 1]``; None otherwise.
    """

    kind: str = "none"
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(
                f"Unknown expert noise {self.kind!r}; use none, epsilon:E (e.g. epsilon:0.1) "
                "or sample (SB3 experts)."
            )
        if self.kind == "epsilon":
            eps = self.epsilon
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
                raise ValueError(
                    f"epsilon must be a probability in (0, 1], got {eps!r}; use 'none' for the "
                    "deterministic expert."
                )
            object.__setattr__(self, "epsilon", float(eps))
        elif self.epsilon is not None:
            raise ValueError(f"Expert noise {self.kind!r} takes no epsilon.")

    @classmethod
    def parse(cls, text: str | ExpertNoise | None) -> ExpertNoise:
        """``"none"``, ``"epsilon:0.1"`` or ``"sample"`` (None is ``"none"``).

        Raises:
            ValueError: for anything else, saying what is accepted.
        """
        if isinstance(text, ExpertNoise):
            return text
        if text is None:
            return cls()
        kind, colon, value = str(text).strip().lower().partition(":")
        if kind not in NOISE_KINDS:
            return cls(kind)  # refused, saying what is accepted
        if kind == "epsilon":
            if not colon:
                raise ValueError("epsilon noise needs its probability, e.g. epsilon:0.1.")
            try:
                epsilon = float(value)
            except ValueError:
                raise ValueError(
                    f"epsilon must be a probability in (0, 1], got {value!r} in {text!r}."
                ) from None
            return cls("epsilon", epsilon)
        if colon:
            raise ValueError(f"Expert noise {kind!r} takes no value, got {text!r}.")
        return cls(kind)

    def __str__(self) -> str:
        return f"epsilon:{self.epsilon:g}" if self.kind == "epsilon" else self.kind

    @property
    def deterministic(self) -> bool:
        """Whether the expert acts deterministically (``kind == "none"``)."""
        return self.kind == "none"

    @property
    def tag(self) -> str:
        """A suffix for dataset ids: ``""``, ``"eps0_1"`` or ``"sampled"`` (Minari ids allow
        no dots)."""
        if self.kind == "epsilon":
            return "eps" + f"{self.epsilon:.6f}".rstrip("0").rstrip(".").replace(".", "_")
        return {"none": "", "sample": "sampled"}[self.kind]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic, no warnings for arrays)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def state_uniforms(obs: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """``[n]`` float64 numbers in ``[0, 1)``, a hash of ``(seed, stream, obs[i])`` for each row.

    The pseudo-randomness of the stochastic experts: the number for a row depends only on the
    seed, the stream and that row's float32 bits, never on the batch or on call order.

    Args:
        obs: ``[n, d]`` observations.
        seed: the noise seed, ``0 .. 2**32 - 1``.
        stream: a small integer telling apart the uses within one step (e.g. 0: explore or
            not, 1: which random action).
    """
    bits = np.ascontiguousarray(obs, dtype=np.float32).view(np.uint32).astype(np.uint64)
    h = _mix64(np.full(len(bits), (seed << 8) | stream, dtype=np.uint64) + _GOLDEN)
    for column in bits.T:
        h = _mix64(h + _GOLDEN + column)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


class EpsilonGreedyExpert:
    """An expert that takes a uniformly random action with probability ``epsilon``.

    Args:
        expert: the deterministic expert.
        n_actions: the task's number of actions.
        epsilon: probability of a random action, in ``(0, 1]``.
        seed: noise seed (see :func:`state_uniforms`).
    """

    def __init__(self, expert: Policy, n_actions: int, epsilon: float, seed: int) -> None:
        self.expert = expert
        self.n_actions = int(n_actions)
        self.epsilon = float(epsilon)
        self.seed = check_seed_range(seed, name="noise seed")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Return int64 actions ``[n]`` for observations ``[n, obs_dim]``."""
        actions = np.asarray(self.expert(obs), dtype=np.int64)
        explore = state_uniforms(obs, self.seed, 0) < self.epsilon
        random_actions = (state_uniforms(obs, self.seed, 1) * self.n_actions).astype(np.int64)
        return np.where(explore, random_actions, actions)


def with_noise(
    expert: Policy, n_actions: int, noise: ExpertNoise | str | None, seed: int = 0
) -> Policy:
    """``expert`` with ``"epsilon:E"`` noise added (or unchanged for ``"none"``).

    ``"sample"`` needs the expert's own action distribution: an :class:`SB3Policy` made with
    ``sample=True`` (``get_expert(..., noise="sample")``) is returned unchanged; any other
    expert is refused.

    Raises:
        ValueError: for ``"sample"`` with an expert that cannot sample.
    """
    noise = ExpertNoise.parse(noise)
    if noise.kind == "epsilon":
        return EpsilonGreedyExpert(expert, n_actions, noise.epsilon, seed)
    if noise.kind == "sample" and not getattr(expert, "sample", False):
        raise ValueError(
            "sample noise draws from a trained SB3 expert's own action distribution; this "
            "expert has none, so use epsilon:E noise."
        )
    return expert

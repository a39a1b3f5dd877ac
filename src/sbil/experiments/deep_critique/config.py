"""Configuration of the deep studies: :class:`DeepCritiqueConfig`, thresholds and episode seeds.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from sbil.deep.envs import BUILTIN_ENVS, env_spec

#: The claims this module computes, in report order.
DEEP_CLAIM_IDS = (
    "deep_ptheta_vs_dpi",
    "deep_shift_invariance",
    "deep_expert_drift",
    "deep_consistency",
    "deep_rho",
)

#: The published SGLD temperature (step 0.01, noise 0.01) and the true Langevin one.
PUBLISHED_TEMPERATURE = 0.005
TEMPERATURES = (1.0, PUBLISHED_TEMPERATURE)

#: Rank-normalised split-R-hat below this counts as mixed. Vehtari et al. (2021) advise 1.01
#: for one quantity with a large effective sample size; here R-hat is the maximum over every
#: coordinate and the log density, bulk and tails, of a few hundred chains with about a dozen
#: draws each, whose own sampling noise is about 0.01 (tests/experiments/test_deep_critique.py
#: shows chains on a known density at 1.00-1.02), so 1.05 is used.
RHAT_THRESHOLD = 1.05

#: Significance level of every two-sample test and mixing check.
ALPHA = 0.01

#: A growth rate of ``logsumexp f`` along a ray above ``-GROWTH_TOLERANCE`` counts as not
#: decaying (rounding of the float64 estimate is far below it).
GROWTH_TOLERANCE = 1e-6

# Episode seeds of each role (plus 100_000 * seed), so no two roles share an episode.
_DEMO_SEEDS, _EXPERT_EVAL_SEEDS, _LEARNER_EVAL_SEEDS = 10_000, 20_000, 30_000
_BC_EXPERT_SEEDS, _POOL_SEEDS, _TV_SEEDS, _RETURN_SEEDS = 40_000, 50_000, 60_000, 70_000


@dataclass(frozen=True)
class DeepCritiqueConfig:
    """Budgets of the deep studies; the defaults are the full ``sbil reproduce --deep`` run.

    Learners use EDM's published settings (:class:`~sbil.deep.learners.LearnerConfig`
    defaults: Adam 1e-3, batch 32, SGLD 20 steps of 0.01 / 0.01 from a ``U(-1, 1)`` buffer)
    except for the number of updates, which is a field here.
    """

    seed: int = 0
    """Root seed: learner seeds, episode seeds and every random draw derive from it."""
    tasks: tuple[str, ...] = BUILTIN_ENVS
    """Tasks of the p_theta, shift and rho studies (scripted experts of sbil.deep.experts)."""
    demo_episodes: int = 10
    """Scripted-expert trajectories the EDM learners of studies 1, 2 and 4 train on."""
    updates: int = 10_000
    """Updates of those learners (the published 10,000)."""
    rollout_episodes: int = 20
    """Episodes of the learner (d_pi) and of the expert (d_E, held out) per task."""
    n_states: int = 500
    """States drawn from d_pi and d_E for each two-sample comparison."""
    n_chains: int = 256
    """SGLD chains per learner and temperature (half start from U(-1, 1), half from data)."""
    chain_lengths: tuple[int, ...] = (100, 1_000, 5_000)
    """Chain lengths at which samples are compared; the longest is the run length."""
    record_every: int = 100
    """Chain states are recorded every this many steps (R-hat uses the second half)."""
    n_permutations: int = 300
    """Permutations of each MMD test."""
    n_directions: int = 2_000
    """Random directions along which the growth of log p_theta is measured."""
    n_shift_states: int = 10_000
    """States (data, rollouts, SGLD samples, uniform box) of the shift study."""
    expert_task: str = "CartPole-v1"
    """Task of the realisable-expert studies (3)."""
    expert_bc_episodes: int = 100
    """Scripted trajectories the realisable expert is cloned from."""
    expert_bc_updates: int = 10_000
    """BC updates that build the realisable expert."""
    expert_action_noise: float = 0.1
    """Probability of a uniformly random action in the scripted trajectories the realisable
    expert is cloned from (keeps its logits finite; see :func:`realisable_expert`)."""
    sharp_drift_updates: int = 1_000
    """Updates of the drift study from a clone of noise-free demonstrations (nearly
    deterministic, with very large logits)."""
    pool_pairs: int = 1_000_000
    """State-action pairs drawn from the realisable expert (the largest data set)."""
    drift_updates: int = 10_000
    """Updates of EDM and BC started at the expert's weights."""
    drift_seeds: int = 3
    """Learners (seeds) of the drift study, per algorithm."""
    drift_snapshots: int = 20
    """How many times (evenly spaced) the drift study measures the policy's TV."""
    return_checkpoints: int = 5
    """Snapshots of the drift study (evenly spaced, plus the start) whose return is measured."""
    consistency_sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000, 1_000_000)
    """Data sizes N (pairs) of the consistency study."""
    consistency_seeds: int = 3
    """Learners per algorithm and N (each on its own random subset of the pool)."""
    consistency_updates: int = 5_000
    """Updates of the consistency study's learners (half the published 10,000, to keep
    ``sbil reproduce --deep`` within its time budget)."""
    return_episodes: int = 32
    """Softmax-acting episodes per learner when a return is measured in study 3."""
    n_tv_states: int = 10_000
    """Held-out expert states on which action-probability TV is averaged."""

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}.")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}.")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "chain_lengths", tuple(sorted(self.chain_lengths)))
        object.__setattr__(self, "consistency_sizes", tuple(sorted(self.consistency_sizes)))
        if not self.tasks:
            raise ValueError("tasks is empty; pass at least one task, e.g. ('CartPole-v1',).")
        for task in (*self.tasks, self.expert_task):
            env_spec(task)  # raises a one-line UnsupportedEnvError (a ValueError)
        counts = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.type == "int" and f.name != "seed"
        }
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("chain_lengths", "consistency_sizes"):
            values = getattr(self, name)
            if not values or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
            ):
                raise ValueError(f"{name} must be positive integers, got {values!r}.")
        if any(length % self.record_every for length in self.chain_lengths):
            raise ValueError(
                f"chain_lengths {self.chain_lengths} must be multiples of record_every "
                f"({self.record_every})."
            )
        if self.consistency_sizes[-1] > self.pool_pairs:
            raise ValueError(
                f"The largest consistency size {self.consistency_sizes[-1]} exceeds pool_pairs "
                f"({self.pool_pairs}); raise pool_pairs or drop that size."
            )
        noise = self.expert_action_noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
            raise ValueError(
                f"expert_action_noise must be in [0, 1), got {self.expert_action_noise!r}."
            )
        if self.n_chains < 8 or self.n_states < 8:
            raise ValueError("n_chains and n_states must be at least 8 for the two-sample tests.")

    @classmethod
    def preset(cls, *, quick: bool, seed: int = 0) -> DeepCritiqueConfig:
        """The full run (about 10 minutes on 2 cores) or the quick smoke-test run (about 1)."""
        if not quick:
            return cls(seed=seed)
        return cls(
            seed=seed,
            demo_episodes=3,
            updates=300,
            rollout_episodes=4,
            n_states=200,
            n_chains=64,
            chain_lengths=(50, 200),
            record_every=50,
            n_permutations=100,
            n_directions=500,
            n_shift_states=2_000,
            expert_bc_episodes=10,
            expert_bc_updates=1_000,
            pool_pairs=10_000,
            drift_updates=300,
            drift_seeds=2,
            drift_snapshots=6,
            return_checkpoints=2,
            sharp_drift_updates=300,
            consistency_sizes=(100, 1_000, 10_000),
            consistency_seeds=2,
            consistency_updates=300,
            return_episodes=8,
            n_tv_states=2_000,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def _episode_seed(config: DeepCritiqueConfig, role: int) -> int:
    return role + 100_000 * config.seed

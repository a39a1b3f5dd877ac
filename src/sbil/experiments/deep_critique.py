"""The critique of EDM at deep scale: studies on trained networks, their claims and figures.

The note (Swamy et al.) proves two things about EDM on finite MDPs: its state model
``p_theta(s) ∝ sum_a exp f(s)[a]`` is not the learner's state distribution (Claim 1; Example 2
shows it is not even identified by the policy), and EDM can leave a learner that already is
the expert (Theorem 1). This module asks whether that matters for the networks EDM is trained
with, on the four built-in Gymnasium tasks, with sbil's public pieces (learners, SGLD,
rollouts, scripted experts):

1. :func:`ptheta_study`: ``p_theta`` of trained EDM and decoupled-EDM learners against the
   learner's own visitation ``d_pi`` and the expert's ``d_E``. ``p_theta`` is sampled by SGLD
   at temperature 1 (noise ``sqrt(2 * step)``) and at the published temperature 0.005, with
   mixing diagnostics (several chain lengths, chains from two starting distributions,
   rank-normalised split-R-hat); whether ``exp(logsumexp f)`` is integrable at all is read
   off the network's growth along rays (:func:`asymptotic_slopes`).
2. :func:`shift_study`: Example 2 on a trained network: shifting the logits per state by
   ``g(s)`` leaves the policy unchanged and changes ``p_theta``'s ranking of states.
3. :func:`drift_study` and :func:`consistency_study`: Theorem 1 with a realisable expert (a
   network of the learner's own architecture acting by softmax, :func:`realisable_expert`).
4. :func:`rho_summary`: where EDM's ``rho`` settles, and why (``rho + rho**2`` is smallest at
   ``rho = -1/2``, where the state term's gradient factor ``1 + 2 rho`` vanishes).

:func:`deep_claims` runs everything (``sbil reproduce --deep``) and returns the report
section: each claim's computation, verdict and wording live in this file.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

from sbil.deep.data import Demonstrations, from_arrays
from sbil.deep.envs import BUILTIN_ENVS, env_spec
from sbil.deep.evaluation import run_episodes
from sbil.deep.experts import get_expert
from sbil.deep.learners import Learner, LearnerConfig, TrainResult, torch_threads, train
from sbil.deep.networks import StackedMLP
from sbil.deep.sgld import langevin_noise_scale, sgld_logsumexp
from sbil.experiments.claims import Claim, ClaimSection, fmt, table
from sbil.experiments.stats import Interval
from sbil.experiments.two_sample import (
    C2STResult,
    MMDResult,
    classifier_two_sample_test,
    mmd_test,
    wasserstein_per_dimension,
)
from sbil.progress import ProgressCallback

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


# --- configuration ------------------------------------------------------------------------------


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


# --- networks and policies -----------------------------------------------------------------------


def stacked_network(states: Sequence[dict[str, torch.Tensor]] | dict[str, torch.Tensor]):
    """A :class:`StackedMLP` holding the given ``K = 1`` (or stacked) weights, frozen, float32.

    Args:
        states: one stacked state dict ``[K, ...]`` or a sequence of ``K = 1`` state dicts.
    """
    if not isinstance(states, dict):
        states = {k: torch.cat([s[k] for s in states]) for k in states[0]}
    weights = [states[f"weight{i}"] for i in range(len(states) // 2)]
    sizes = [weights[0].shape[1], *(w.shape[2] for w in weights)]
    net = StackedMLP(weights[0].shape[0], sizes[0], sizes[1:-1], sizes[-1])
    net.load_state_dict({k: v.to(torch.float32) for k, v in states.items()})
    return net.eval().requires_grad_(False)


def _forward(net: StackedMLP, x: np.ndarray, *, dtype=torch.float32) -> np.ndarray:
    """``net`` on ``x[K, B, d]`` (or ``[B, d]`` for every model), as numpy ``[K, B, A]``."""
    inputs = torch.as_tensor(np.array(x, copy=True), dtype=dtype)
    if inputs.ndim == 2:
        inputs = inputs.expand(net.n_models, *inputs.shape)
    with torch.no_grad(), torch_threads(1):
        model = net if dtype == torch.float32 else _as_dtype(net, dtype)
        return model(inputs).numpy()


def _as_dtype(net: StackedMLP, dtype) -> StackedMLP:
    copy = StackedMLP(net.n_models, net.in_dim, net.hidden_sizes, net.out_dim, dtype=dtype)
    copy.load_state_dict({k: v.to(dtype) for k, v in net.state_dict().items()})
    return copy.eval().requires_grad_(False)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[..., 0]


def policy_tv(net: StackedMLP, expert: StackedMLP, states: np.ndarray) -> np.ndarray:
    """Mean over ``states`` of the action-probability TV of each model of ``net`` to ``expert``.

    ``TV(s) = 1/2 sum_a |softmax f_k(s)[a] - softmax f_E(s)[a]|`` (float64), averaged over the
    ``[n, d]`` states (network input units). Returns ``[K]``.
    """
    p = _softmax(_forward(net, states, dtype=torch.float64))
    q = _softmax(_forward(expert, states, dtype=torch.float64))[0]
    return 0.5 * np.abs(p - q[None]).sum(-1).mean(-1)


# --- rollouts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollouts:
    """One episode per environment of ``K`` stacked policies acting by softmax.

    Attributes:
        returns: ``[K, E]`` undiscounted returns (model ``k`` played episodes ``k, e``).
        observations: per model, ``[N_k, d]`` float32 states where actions were taken, in
            episode order.
        actions: per model, ``[N_k]`` int64 actions.
        lengths: ``[K, E]`` episode lengths.
    """

    returns: np.ndarray
    observations: tuple[np.ndarray, ...]
    actions: tuple[np.ndarray, ...]
    lengths: np.ndarray


def softmax_rollouts(
    net: StackedMLP,
    env_id: str,
    episodes_per_model: int,
    *,
    seed: int,
    record: bool = False,
) -> Rollouts:
    """Play ``episodes_per_model`` episodes with each of ``net``'s ``K`` models, acting by softmax.

    ``a ~ softmax(f_k(s))``: the stochastic policy a network of the learner's class represents
    (sbil's learners act greedily; the realisable expert and the learners compared with it act
    by softmax). All ``K * E`` episodes run in one vectorised environment (Gymnasium's
    ``vector_entry_point`` when the task has one, e.g. CartPole's numpy-vectorised
    ``CartPoleVectorEnv``, else ``SyncVectorEnv``), one episode per sub-environment, so long
    episodes are never under-counted. The environment is seeded once (``reset(seed=seed)``)
    and the actions come from ``numpy.random.default_rng(seed)``.

    Args:
        net: ``K`` stacked policies on raw observations.
        env_id: the task.
        episodes_per_model: episodes of each model.
        seed: seed of the environment and of the action draws.
        record: keep the states and actions.

    Returns:
        :class:`Rollouts`.
    """
    import gymnasium as gym

    spec = env_spec(env_id)
    k, e = net.n_models, int(episodes_per_model)
    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    envs = gym.make_vec(env_id, num_envs=k * e, vectorization_mode=mode)
    rng = np.random.default_rng(seed)
    returns = np.zeros(k * e)
    lengths = np.zeros(k * e, dtype=np.int64)
    active = np.ones(k * e, dtype=bool)
    obs_log, act_log, env_log = [], [], []
    try:
        obs, _ = envs.reset(seed=seed)
        while active.any():
            logits = _forward(net, np.asarray(obs, np.float32).reshape(k, e, spec.obs_dim))
            probs = _softmax(logits.astype(np.float64)).reshape(k * e, spec.n_actions)
            actions = (probs.cumsum(-1) < rng.random((k * e, 1))).sum(-1)
            actions = np.minimum(actions, spec.n_actions - 1).astype(np.int64)
            if record:
                obs_log.append(np.asarray(obs, np.float32)[active])
                act_log.append(actions[active])
                env_log.append(np.flatnonzero(active))
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns[active] += rewards[active]
            lengths[active] += 1
            active &= ~(terminated | truncated)
    finally:
        envs.close()
    observations: list[np.ndarray] = []
    acts: list[np.ndarray] = []
    if record:
        all_obs, all_act = np.concatenate(obs_log), np.concatenate(act_log)
        order = np.argsort(np.concatenate(env_log), kind="stable")  # episode order, in time
        all_obs, all_act = all_obs[order], all_act[order]
        bounds = np.concatenate([[0], np.cumsum(lengths.reshape(k, e).sum(1))])
        for m in range(k):
            observations.append(all_obs[bounds[m] : bounds[m + 1]])
            acts.append(all_act[bounds[m] : bounds[m + 1]])
    return Rollouts(
        returns=returns.reshape(k, e),
        observations=tuple(observations),
        actions=tuple(acts),
        lengths=lengths.reshape(k, e),
    )


def recorded_episodes(policy, env_id: str, n_episodes: int, *, seed: int) -> Demonstrations:
    """``n_episodes`` seeded episodes of a (greedy) policy as :class:`Demonstrations`.

    Uses :func:`sbil.deep.evaluation.run_episodes` (episode ``i`` reset with ``seed + i``);
    the final observation of each episode is dropped (no action is taken there).
    """
    returns, _, trajectories = run_episodes(policy, env_id, n_episodes, seed=seed, record=True)
    return from_arrays(
        [t.observations[:-1] for t in trajectories],
        [t.actions for t in trajectories],
        episode_returns=returns,
        env_id=env_id,
        n_actions=env_spec(env_id).n_actions,
    )


def _draw_rows(array: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``array`` without replacement (all rows, shuffled, if there are fewer)."""
    return array[rng.permutation(len(array))[: min(n, len(array))]]


# --- mixing diagnostics --------------------------------------------------------------------------


def _rank_normal(values: np.ndarray) -> np.ndarray:
    ranks = sps.rankdata(values, axis=None).reshape(values.shape)
    return sps.norm.ppf((ranks - 0.375) / (values.size + 0.25))


def _plain_rhat(draws: np.ndarray) -> float:
    n = draws.shape[0]
    within = draws.var(axis=0, ddof=1).mean()
    between = draws.mean(axis=0).var(ddof=1)
    if within <= 0:
        return math.inf if between > 0 else 1.0
    return float(math.sqrt(((n - 1) / n * within + between) / within))


def split_rhat(draws: np.ndarray) -> float:
    """Rank-normalised split-R-hat of one quantity (Vehtari, Gelman et al., Bayesian Analysis 2021).

    Each chain is split in halves; the draws are replaced by the normal scores of their
    ranks (bulk) and, separately, of the ranks of ``|x - median|`` (tails); the result is the
    larger of the two classic R-hats. Values near 1 mean the chains agree with each other and
    with their own first and second halves; non-finite draws give ``inf``.

    Args:
        draws: ``[n_draws, n_chains]`` (``n_draws >= 4``, ``n_chains >= 1``).

    Returns:
        R-hat (``>= 1`` up to sampling error).
    """
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 2 or draws.shape[0] < 4:
        raise ValueError(f"draws must have shape [n_draws >= 4, n_chains], got {draws.shape}.")
    if not np.isfinite(draws).all():
        return math.inf
    half = draws.shape[0] // 2
    split = np.concatenate([draws[:half], draws[draws.shape[0] - half :]], axis=1)
    bulk = _plain_rhat(_rank_normal(split))
    folded = _plain_rhat(_rank_normal(np.abs(split - np.median(split))))
    return max(bulk, folded)


@dataclass(frozen=True)
class ChainRun:
    """SGLD chains on ``exp(logsumexp f) ^ (1/T)`` and their diagnostics.

    Attributes:
        temperature: ``noise**2 / (2 * step)``.
        steps: ``[R]`` the recorded step counts.
        states: ``[R, M, d]`` chain states at those steps (raw observation units).
        log_density: ``[R, M]`` ``logsumexp f`` at those states.
        from_data: ``[M]`` bool, True for chains started at expert states (else ``U(-1, 1)``).
        rhat: max rank-normalised split-R-hat over the coordinates and ``logsumexp f``, on the
            second half of the records (NaN with fewer than 4 records there).
        start_mmd: MMD test between the final states of the two groups of chains.
        n_nonfinite: chains whose state overflowed.
    """

    temperature: float
    steps: np.ndarray
    states: np.ndarray
    log_density: np.ndarray
    from_data: np.ndarray
    rhat: float
    start_mmd: MMDResult | None
    n_nonfinite: int

    @property
    def mixed(self) -> bool:
        """R-hat below :data:`RHAT_THRESHOLD`, both starts agree (p >= ALPHA), all finite."""
        return (
            self.n_nonfinite == 0
            and self.rhat < RHAT_THRESHOLD
            and self.start_mmd is not None
            and self.start_mmd.p_value >= ALPHA
        )

    def at(self, length: int) -> np.ndarray:
        """The ``[M, d]`` chain states after ``length`` steps."""
        return self.states[int(np.flatnonzero(self.steps == length)[0])]


def run_chains(
    net: StackedMLP,
    data_states: np.ndarray,
    *,
    temperature: float,
    n_chains: int,
    n_steps: int,
    record_every: int,
    seed: int,
    scale: np.ndarray,
    obs_mean: np.ndarray | None = None,
    obs_std: np.ndarray | None = None,
    step_size: float = 0.01,
    n_permutations: int = 300,
) -> ChainRun:
    """Run SGLD on ``exp(logsumexp f)`` at ``temperature`` with EDM's step, and diagnose it.

    The noise scale is ``sqrt(2 * step * T)`` (``T = 1``: Langevin dynamics of ``p_theta``;
    ``T = 0.005``: EDM's published 0.01). Half of the chains start from ``U(-1, 1)`` in the
    network's input units (as EDM's buffer does), half from random ``data_states``, so that
    chains which have not forgotten their start disagree.

    Args:
        net: the state model (``K = 1``), on normalised inputs ``(obs - obs_mean) / obs_std``.
        data_states: ``[n, d]`` raw expert states to start half the chains from.
        temperature: sampling temperature.
        n_chains: number of chains (even).
        n_steps: chain length.
        record_every: record the states every this many steps.
        seed: seed of starts and noise.
        scale: ``[d]`` per-coordinate scale for the start-group MMD (e.g. d_E's std).
        obs_mean, obs_std: the learner's input normalisation (default none).
        step_size: SGLD drift coefficient.
        n_permutations: permutations of the start-group MMD test.
    """
    d = data_states.shape[1]
    mean = np.zeros(d, np.float32) if obs_mean is None else np.asarray(obs_mean, np.float32)
    std = np.ones(d, np.float32) if obs_std is None else np.asarray(obs_std, np.float32)
    noise_scale = langevin_noise_scale(step_size) * math.sqrt(temperature)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    half = n_chains // 2
    uniform = torch.rand(n_chains - half, d, generator=gen) * 2 - 1
    starts = _draw_rows(data_states, half, rng)
    starts = starts[rng.integers(0, len(starts), half)] if len(starts) < half else starts
    from_data = torch.from_numpy(((starts - mean) / std).astype(np.float32))
    x = torch.cat([from_data, uniform])[None]
    steps, records = [], []
    with torch_threads(1):
        for done in range(record_every, n_steps + 1, record_every):
            noise = torch.randn(record_every, 1, n_chains, d, generator=gen)
            x = sgld_logsumexp(net, x, noise, step_size=step_size, noise_scale=noise_scale)
            steps.append(done)
            records.append(x[0].numpy().copy())
    inputs = np.stack(records)  # [R, M, d]
    with np.errstate(all="ignore"):
        log_density = _logsumexp(_forward(net, inputs.reshape(1, -1, d)))[0].reshape(
            inputs.shape[:2]
        )
        states = inputs * std + mean
    finite = np.isfinite(states).all(axis=(0, 2)) & np.isfinite(log_density).all(axis=0)
    second = slice(len(steps) // 2, None)
    rhat = math.nan  # too few records to tell
    if len(steps[second]) >= 4:
        quantities = [states[second, :, j] for j in range(d)] + [log_density[second]]
        rhat = max(split_rhat(q) for q in quantities)
    start_mmd = None
    final = states[-1]
    is_data = np.arange(n_chains) < half
    if finite.all():
        start_mmd = mmd_test(
            final[is_data] / scale,
            final[~is_data] / scale,
            n_permutations=n_permutations,
            seed=seed,
        )
    return ChainRun(
        temperature=temperature,
        steps=np.array(steps),
        states=states,
        log_density=log_density,
        from_data=is_data,
        rhat=rhat,
        start_mmd=start_mmd,
        n_nonfinite=int((~finite).sum()),
    )


def _share_growing(slopes: np.ndarray) -> float:
    return float(np.mean(slopes > -GROWTH_TOLERANCE))


def asymptotic_slopes(net: StackedMLP, n_directions: int, *, seed: int) -> np.ndarray:
    """Growth rates ``c(u) = lim_t logsumexp f(t u) / t`` along random unit directions ``u``.

    An ELU network is asymptotically linear along every ray, so ``logsumexp f(t u) = t c(u) +
    O(1)`` with ``c`` continuous in ``u``. If ``c(u) > 0`` for some ``u`` it is positive on an
    open cone of directions, and ``exp(logsumexp f)`` (hence ``p_theta^(1/T)`` for every
    ``T``) has infinite integral over ``R^d``: ``p_theta`` cannot be normalised there, so it
    is no probability distribution on the continuous state space SGLD samples, and Langevin
    chains drift off along that cone; ``c = 0`` on a cone (e.g. where every first-layer unit
    saturates) is improper too, the density not decaying there. (On a finite state set, as in
    the note, ``sum_s exp(logsumexp f(s))`` is finite and ``p_theta`` always normalises.)
    Estimated in
    float64 as
    ``(lse f(2000 u) - lse f(1000 u)) / 1000`` in the network's input units.

    Returns:
        ``[n_directions]`` slopes.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(n_directions, net.in_dim, generator=gen, dtype=torch.float64)
    u = (u / u.norm(dim=1, keepdim=True)).numpy()
    near = _logsumexp(_forward(net, 1e3 * u[None], dtype=torch.float64))[0]
    far = _logsumexp(_forward(net, 2e3 * u[None], dtype=torch.float64))[0]
    return (far - near) / 1e3


# --- study 1: p_theta against d_pi and d_E --------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Two samples of states compared three ways.

    Attributes:
        first, second: names of the two samples (e.g. ``"p_theta (T=1)"``, ``"d_pi"``).
        mmd: MMD test on coordinates divided by ``scale`` (d_E's standard deviations).
        c2st: classifier two-sample test (k-NN; it standardises coordinates itself).
        w1: ``[d]`` per-coordinate Wasserstein-1 distances, raw units.
    """

    first: str
    second: str
    mmd: MMDResult
    c2st: C2STResult
    w1: np.ndarray

    @property
    def different(self) -> bool:
        """Both tests reject equality at level :data:`ALPHA`."""
        return self.mmd.p_value < ALPHA and self.c2st.p_value < ALPHA


def compare(
    x: np.ndarray,
    y: np.ndarray,
    *,
    first: str,
    second: str,
    scale: np.ndarray,
    seed: int,
    n_permutations: int,
) -> Comparison:
    """MMD (on ``x / scale``), classifier test and per-coordinate W1 of ``x[n, d]``, ``y[m, d]``."""
    return Comparison(
        first=first,
        second=second,
        mmd=mmd_test(x / scale, y / scale, n_permutations=n_permutations, seed=seed),
        c2st=classifier_two_sample_test(x, y, seed=seed),
        w1=wasserstein_per_dimension(x, y),
    )


@dataclass(frozen=True)
class StateModel:
    """One learner's ``p_theta`` on one task: its growth, its chains, its distances.

    Attributes:
        algo: ``"edm"`` or ``"edm-decoupled"``.
        slopes: ``[n_directions]`` :func:`asymptotic_slopes` of ``logsumexp`` of its state model.
        chains: ``{temperature: ChainRun}``.
        vs_dpi: ``{temperature: Comparison}`` of the longest chains' finite states with d_pi.
        vs_de: the same with d_E.
    """

    algo: str
    slopes: np.ndarray
    chains: dict[float, ChainRun]
    vs_dpi: dict[float, Comparison]
    vs_de: dict[float, Comparison]

    @property
    def improper(self) -> bool:
        """``logsumexp f`` does not decrease along some direction (growth rate above
        ``-GROWTH_TOLERANCE``): ``exp(logsumexp f)`` has infinite integral over ``R^d``, so
        ``p_theta`` is no probability distribution on the continuous states SGLD samples."""
        return bool(self.slopes.max() > -GROWTH_TOLERANCE)

    def status(self, temperature: float) -> str:
        """``"improper"``, ``"mixed"`` or ``"not mixed"`` at ``temperature``."""
        if self.improper:
            return "improper"
        return "mixed" if self.chains[temperature].mixed else "not mixed"


@dataclass(frozen=True)
class TaskStudy:
    """Studies 1 and 4 on one task.

    Attributes:
        env_id: the task.
        n_pairs: training pairs (``demo_episodes`` scripted trajectories, every step).
        expert_return: mean return of the scripted expert on the held-out ``d_E`` episodes.
        learner_returns: ``{algo: mean return}`` of the greedy learner on its ``d_pi`` episodes.
        d_e: ``[n, d]`` held-out expert states.
        d_pi: ``{algo: [n, d]}`` states of the learner's own episodes.
        scale: ``[d]`` d_E's per-coordinate standard deviation (MMD units).
        dpi_vs_de: ``{algo: Comparison}`` of d_pi with d_E.
        models: ``{algo: StateModel}``.
        rho: ``{algo: [n_updates]}`` rho of every update.
        edm: the trained EDM learner.
    """

    env_id: str
    n_pairs: int
    expert_return: float
    learner_returns: dict[str, float]
    d_e: np.ndarray
    d_pi: dict[str, np.ndarray]
    scale: np.ndarray
    dpi_vs_de: dict[str, Comparison]
    models: dict[str, StateModel]
    rho: dict[str, np.ndarray]
    edm: Learner


STATE_MODEL_ALGOS = ("edm", "edm-decoupled")


def ptheta_study(
    env_id: str, config: DeepCritiqueConfig, progress: Callable[[], None] | None = None
) -> TaskStudy:
    """Train EDM and decoupled EDM on scripted demonstrations of ``env_id``; compare p_theta.

    Both learners train on ``config.demo_episodes`` scripted trajectories (every step) for
    ``config.updates`` updates with the published settings and ``config.seed``. ``d_E`` is
    sampled from ``config.rollout_episodes`` held-out scripted episodes, ``d_pi`` from as many
    episodes of the (greedy) learner; ``p_theta`` by :func:`run_chains` at each temperature.

    Args:
        env_id: a built-in task.
        config: budgets.
        progress: called (without arguments) after each of 8 stages.
    """
    tick = progress or (lambda: None)
    rng = np.random.default_rng([config.seed, sum(map(ord, env_id))])
    expert = get_expert(env_id)
    demos = recorded_episodes(
        expert, env_id, config.demo_episodes, seed=_episode_seed(config, _DEMO_SEEDS)
    )
    held_out = recorded_episodes(
        expert, env_id, config.rollout_episodes, seed=_episode_seed(config, _EXPERT_EVAL_SEEDS)
    )
    d_e = _draw_rows(held_out.observations, config.n_states, rng)
    scale = np.maximum(held_out.observations.std(axis=0), 1e-6)
    tick()
    results: dict[str, TrainResult] = {}
    for algo in STATE_MODEL_ALGOS:
        results[algo] = train(
            demos, LearnerConfig(algo=algo, n_updates=config.updates), seeds=[config.seed]
        )
        tick()
    learner_returns, d_pi, dpi_vs_de, models, rho = {}, {}, {}, {}, {}
    for algo, result in results.items():
        learner = result.learner(0)
        own = recorded_episodes(
            learner,
            env_id,
            config.rollout_episodes,
            seed=_episode_seed(config, _LEARNER_EVAL_SEEDS),
        )
        learner_returns[algo] = float(own.episode_returns.mean())
        d_pi[algo] = _draw_rows(own.observations, config.n_states, rng)
        dpi_vs_de[algo] = compare(
            d_pi[algo],
            d_e,
            first="d_pi",
            second="d_E",
            scale=scale,
            seed=config.seed,
            n_permutations=config.n_permutations,
        )
        state = result.energy_state if algo == "edm-decoupled" else result.policy_state
        net = stacked_network(state)
        chains, vs_dpi, vs_de = {}, {}, {}
        for t_index, temperature in enumerate(TEMPERATURES):
            run = run_chains(
                net,
                demos.observations,
                temperature=temperature,
                n_chains=config.n_chains,
                n_steps=config.chain_lengths[-1],
                record_every=config.record_every,
                seed=config.seed * 1_000 + t_index,
                scale=scale,
                obs_mean=result.obs_mean[0],
                obs_std=result.obs_std[0],
                n_permutations=config.n_permutations,
            )
            chains[temperature] = run
            final = run.states[-1]
            final = final[np.isfinite(final).all(axis=1)]
            if len(final) >= 8:
                name = f"SGLD T={temperature:g}"
                vs_dpi[temperature] = compare(
                    final,
                    d_pi[algo],
                    first=name,
                    second="d_pi",
                    scale=scale,
                    seed=config.seed,
                    n_permutations=config.n_permutations,
                )
                vs_de[temperature] = compare(
                    final,
                    d_e,
                    first=name,
                    second="d_E",
                    scale=scale,
                    seed=config.seed,
                    n_permutations=config.n_permutations,
                )
        models[algo] = StateModel(
            algo=algo,
            slopes=asymptotic_slopes(net, config.n_directions, seed=config.seed),
            chains=chains,
            vs_dpi=vs_dpi,
            vs_de=vs_de,
        )
        rho[algo] = result.rho[0]
        tick()
    return TaskStudy(
        env_id=env_id,
        n_pairs=demos.n_steps,
        expert_return=float(held_out.episode_returns.mean()),
        learner_returns=learner_returns,
        d_e=d_e,
        d_pi=d_pi,
        scale=scale,
        dpi_vs_de=dpi_vs_de,
        models=models,
        rho=rho,
        edm=results["edm"].learner(0),
    )


# --- study 2: the per-state shift (Example 2) ---------------------------------------------------


#: The shifts ``g(s)`` of study 2, as functions of ``lse(s) = logsumexp_a f(s)[a]``.
SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "g = -lse f": lambda lse: -lse,
    "g = -2 lse f": lambda lse: -2.0 * lse,
}


@dataclass(frozen=True)
class ShiftResult:
    """Example 2 on a trained network: ``f'(s) = f(s) + g(s)`` for each shift ``g``.

    Attributes:
        env_id: the task.
        n_states: states the numbers are computed on.
        max_policy_change: ``{shift: max_s max_a |pi'(a|s) - pi(a|s)|}`` (float64).
        spearman: ``{shift: rank correlation of log p_theta' with log p_theta}`` (NaN when
            ``log p_theta'`` is constant).
        kendall: the same with Kendall's tau.
        spread: ``{"original" or shift: max - min of log p_theta over the states}``.
        log_density: ``{"original" or shift: [n] log p_theta}``.
        slice_coordinate: the coordinate varied in :attr:`slice_states`.
        slice_states: ``[g, d]`` states along one coordinate through the mean expert state.
        slice_policy: ``{"original" or shift: [g, A]}`` action probabilities on the slice.
        slice_log_density: ``{"original" or shift: [g]}``.
    """

    env_id: str
    n_states: int
    max_policy_change: dict[str, float]
    spearman: dict[str, float]
    kendall: dict[str, float]
    spread: dict[str, float]
    log_density: dict[str, np.ndarray]
    slice_coordinate: int
    slice_states: np.ndarray
    slice_policy: dict[str, np.ndarray]
    slice_log_density: dict[str, np.ndarray]


def shifted_model(logits: np.ndarray, shift: Callable[[np.ndarray], np.ndarray]):
    """``(policy, log p_theta)`` of the logits ``f + g`` with ``g = shift(logsumexp f)``.

    Args:
        logits: ``[n, A]`` ``f(s)`` (float64).
        shift: maps ``logsumexp f`` ``[n]`` to ``g`` ``[n]``.

    Returns:
        ``([n, A] softmax(f + g), [n] logsumexp(f + g))``, computed from ``f + g`` itself.
    """
    shifted = logits + shift(_logsumexp(logits))[:, None]
    return _softmax(shifted), _logsumexp(shifted)


def shift_study(task: TaskStudy, config: DeepCritiqueConfig) -> ShiftResult:
    """Shift the trained EDM learner's logits per state; measure policy and p_theta ranking.

    The states: held-out expert states, the learner's own states, the finite final SGLD
    samples of both temperatures and uniform draws from the box spanned by the data, up to
    ``config.n_shift_states`` (float64 throughout).
    """
    learner = task.edm
    rng = np.random.default_rng([config.seed, 2])
    chains = [run.states[-1] for run in task.models["edm"].chains.values()]
    low, high = task.d_e.min(axis=0), task.d_e.max(axis=0)
    pieces = [task.d_e, task.d_pi["edm"], *(c[np.isfinite(c).all(axis=1)] for c in chains)]
    box = rng.uniform(
        low, high, size=(max(0, config.n_shift_states - sum(map(len, pieces))), len(low))
    )
    states = _draw_rows(np.concatenate([*pieces, box]), config.n_shift_states, rng)
    net = stacked_network(learner.policy_state)
    x = (states - learner.obs_mean) / learner.obs_std
    logits = _forward(net, x[None], dtype=torch.float64)[0]
    policy = _softmax(logits)
    log_p = {"original": _logsumexp(logits)}
    max_change, rho_s, tau = {}, {}, {}
    for name, shift in SHIFTS.items():
        shifted_policy, shifted_log_p = shifted_model(logits, shift)
        max_change[name] = float(np.abs(shifted_policy - policy).max())
        log_p[name] = shifted_log_p
        constant = np.ptp(shifted_log_p) == 0
        rho_s[name] = (
            math.nan if constant else float(sps.spearmanr(log_p["original"], shifted_log_p)[0])
        )
        tau[name] = (
            math.nan if constant else float(sps.kendalltau(log_p["original"], shifted_log_p)[0])
        )
    coordinate = _slice_coordinate(task.env_id, task.d_e.shape[1])
    grid = np.linspace(
        low[coordinate] - (high - low)[coordinate], high[coordinate] + (high - low)[coordinate], 201
    )
    slice_states = np.repeat(task.d_e.mean(axis=0)[None], len(grid), axis=0)
    slice_states[:, coordinate] = grid
    slice_logits = _forward(
        net, ((slice_states - learner.obs_mean) / learner.obs_std)[None], dtype=torch.float64
    )[0]
    slice_policy = {"original": _softmax(slice_logits)}
    slice_log_p = {"original": _logsumexp(slice_logits)}
    for name, shift in SHIFTS.items():
        slice_policy[name], slice_log_p[name] = shifted_model(slice_logits, shift)
    return ShiftResult(
        env_id=task.env_id,
        n_states=len(states),
        max_policy_change=max_change,
        spearman=rho_s,
        kendall=tau,
        spread={name: float(np.ptp(v)) for name, v in log_p.items()},
        log_density=log_p,
        slice_coordinate=coordinate,
        slice_states=slice_states,
        slice_policy=slice_policy,
        slice_log_density=slice_log_p,
    )


#: Names of the observation coordinates of the built-in tasks (for tables and figures).
COORDINATES: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("cart position", "cart velocity", "pole angle", "pole angular velocity"),
    "Acrobot-v1": ("cos t1", "sin t1", "cos t2", "sin t2", "t1 velocity", "t2 velocity"),
    "MountainCar-v0": ("position", "velocity"),
    "LunarLander-v3": (
        "x",
        "y",
        "x velocity",
        "y velocity",
        "angle",
        "angular velocity",
        "left leg",
        "right leg",
    ),
}

# The coordinate each figure shows: the one the expert controls most tightly.
_SLICE_COORDINATE = {"CartPole-v1": 2, "Acrobot-v1": 5, "MountainCar-v0": 1, "LunarLander-v3": 4}


def _slice_coordinate(env_id: str, obs_dim: int) -> int:
    return _SLICE_COORDINATE.get(env_id, 0) if _SLICE_COORDINATE.get(env_id, 0) < obs_dim else 0


def coordinate_name(env_id: str, j: int) -> str:
    """The name of observation coordinate ``j`` of ``env_id`` (``"s[j]"`` if unknown)."""
    names = COORDINATES.get(env_id, ())
    return names[j] if j < len(names) else f"s[{j}]"


# --- study 3: a realisable expert (Theorem 1 on networks) ----------------------------------------


@dataclass(frozen=True)
class RealisableExpert:
    """A network of the learner's architecture, used as the expert, acting by softmax.

    Attributes:
        env_id: the task.
        action_noise: probability of a random action in the scripted demonstrations it was
            cloned from.
        policy_state: its ``K = 1`` weights (raw observation inputs).
        scripted_match: fraction of held-out scripted-expert states where its greedy action is
            the scripted one (how close the clone is to the controller it was cloned from).
        max_probability: mean over its own states of its largest action probability (how
            stochastic it is).
        pool_observations: ``[P, d]`` states of its own softmax episodes.
        pool_actions: ``[P]`` its sampled actions there.
        pool_returns: returns of those episodes.
        tv_states: ``[n, d]`` held-out states of further episodes of it (where TV is measured).
    """

    env_id: str
    action_noise: float
    policy_state: dict[str, torch.Tensor]
    scripted_match: float
    max_probability: float
    pool_observations: np.ndarray
    pool_actions: np.ndarray
    pool_returns: np.ndarray
    tv_states: np.ndarray

    @property
    def net(self) -> StackedMLP:
        """The expert as a ``K = 1`` network."""
        return stacked_network(self.policy_state)

    def demonstrations(self, rows: np.ndarray | None = None) -> Demonstrations:
        """Pool pairs ``rows`` (default all) as one :class:`Demonstrations` "episode"."""
        obs = self.pool_observations if rows is None else self.pool_observations[rows]
        act = self.pool_actions if rows is None else self.pool_actions[rows]
        return from_arrays(obs, act, env_id=self.env_id, n_actions=env_spec(self.env_id).n_actions)


def realisable_expert(
    config: DeepCritiqueConfig, *, action_noise: float, pool_pairs: int
) -> RealisableExpert:
    """Clone the scripted expert of ``config.expert_task`` by BC and use the clone as the expert.

    BC (published settings, ``config.expert_bc_updates`` updates) on
    ``config.expert_bc_episodes`` scripted trajectories, in which each action is replaced by
    a uniformly random one (possibly the same) with probability ``action_noise`` (the
    ``epsilon`` noise of :func:`sbil.deep.experts.get_expert`), gives a network ``f_E`` of
    exactly the learners' architecture; the expert is ``pi_E(a|s) = softmax(f_E(s))[a]``, a
    distribution the learners' class contains. Without action noise the demonstrations are
    separable and BC's logits grow without bound (a nearly deterministic clone); with it
    BC's population optimum is a policy with finite logits. The expert's data: whole softmax
    episodes until at least ``pool_pairs`` pairs (the pool), and more for the TV states.
    """
    env_id = config.expert_task
    spec = env_spec(env_id)
    scripted = get_expert(env_id)
    seed = _episode_seed(config, _BC_EXPERT_SEEDS)
    noisy = get_expert(env_id, noise=f"epsilon:{action_noise}" if action_noise else None, seed=seed)
    demos = recorded_episodes(noisy, env_id, config.expert_bc_episodes, seed=seed)
    clone = train(
        demos, LearnerConfig(algo="bc", n_updates=config.expert_bc_updates), seeds=[config.seed]
    ).learner(0)
    check = recorded_episodes(
        scripted,
        env_id,
        max(2, config.rollout_episodes),
        seed=_episode_seed(config, _EXPERT_EVAL_SEEDS),
    )
    match = float(np.mean(clone(check.observations) == check.actions))
    net = stacked_network(clone.policy_state)
    horizon = spec.max_episode_steps or 1_000
    observations, actions, returns = [], [], []
    n, round_ = 0, 0
    while n < pool_pairs:
        episodes = max(1, math.ceil((pool_pairs - n) / horizon))
        got = softmax_rollouts(
            net, env_id, episodes, seed=_episode_seed(config, _POOL_SEEDS) + round_, record=True
        )
        observations.append(got.observations[0])
        actions.append(got.actions[0])
        returns.append(got.returns[0])
        n += len(got.actions[0])
        round_ += 1
    rng = np.random.default_rng([config.seed, 3])
    held_out = softmax_rollouts(
        net,
        env_id,
        max(1, math.ceil(config.n_tv_states / horizon) * 2),
        seed=_episode_seed(config, _TV_SEEDS),
        record=True,
    )
    tv_states = _draw_rows(held_out.observations[0], config.n_tv_states, rng)
    probabilities = _softmax(_forward(net, tv_states[None], dtype=torch.float64)[0])
    return RealisableExpert(
        env_id=env_id,
        action_noise=float(action_noise),
        policy_state=clone.policy_state,
        scripted_match=match,
        max_probability=float(probabilities.max(axis=1).mean()),
        pool_observations=np.concatenate(observations),
        pool_actions=np.concatenate(actions),
        pool_returns=np.concatenate(returns),
        tv_states=tv_states,
    )


def t_interval(values: np.ndarray, *, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (e.g. one number per seed)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, confidence)
    half = float(
        sps.t.ppf(0.5 + confidence / 2, len(values) - 1)
        * values.std(ddof=1)
        / math.sqrt(len(values))
    )
    return Interval(mean, mean - half, mean + half, confidence)


@dataclass(frozen=True)
class DriftResult:
    """EDM and BC started at the realisable expert's weights, trained on its data.

    Attributes:
        n_pairs: training pairs (the whole pool).
        updates: ``[S + 1]`` update counts of the snapshots (0 is the expert itself).
        tv: ``{algo: [K, S + 1]}`` action-probability TV to the expert on its held-out states.
        return_updates: ``[C]`` the snapshots whose return was measured.
        returns: ``{algo: [K, C]}`` mean softmax-acting return of each learner there.
        expert_returns: ``[E]`` returns of the expert's own episodes at the same seeds.
        rho: ``[K, n_updates]`` EDM's rho.
    """

    n_pairs: int
    updates: np.ndarray
    tv: dict[str, np.ndarray]
    return_updates: np.ndarray
    returns: dict[str, np.ndarray]
    expert_returns: np.ndarray
    rho: np.ndarray


def drift_study(
    expert: RealisableExpert,
    config: DeepCritiqueConfig,
    *,
    n_updates: int,
    progress: Callable[[], None] | None = None,
) -> DriftResult:
    """Train EDM and BC from the expert's own weights on the whole pool; track TV and return.

    ``config.drift_seeds`` learners per algorithm, published settings, ``n_updates`` updates;
    the policy is measured ``config.drift_snapshots`` times (TV) and its softmax-acting return
    at ``config.return_checkpoints`` of those times and at the start.
    """
    tick = progress or (lambda: None)
    demos = expert.demonstrations()
    seeds = [config.seed * 1_000 + 100 + k for k in range(config.drift_seeds)]
    snapshot_every = max(1, n_updates // config.drift_snapshots)
    tv, returns, rho = {}, {}, None
    episode_seed = _episode_seed(config, _RETURN_SEEDS)
    for algo in ("edm", "bc"):
        result = train(
            demos,
            LearnerConfig(algo=algo, n_updates=n_updates),
            seeds=seeds,
            init_policy_state=expert.policy_state,
            snapshot_every=snapshot_every,
        )
        start = {
            k: v.expand(len(seeds), *v.shape[1:]).clone() for k, v in expert.policy_state.items()
        }
        states = [start, *(state for _, state in result.snapshots)]
        updates = [0, *(update for update, _ in result.snapshots)]
        if updates[-1] != n_updates:  # n_updates is not a multiple of the spacing
            states.append(result.policy_state)
            updates.append(n_updates)
        picks = np.unique(
            np.linspace(0, len(states) - 1, config.return_checkpoints + 1).round().astype(int)
        )
        tv[algo] = np.stack(
            [policy_tv(stacked_network(s), expert.net, expert.tv_states) for s in states], axis=1
        )
        returns[algo] = np.stack(
            [
                softmax_rollouts(
                    stacked_network(states[i]),
                    expert.env_id,
                    config.return_episodes,
                    seed=episode_seed,
                ).returns.mean(axis=1)
                for i in picks
            ],
            axis=1,
        )
        if algo == "edm":
            rho = result.rho
        tick()
    expert_returns = softmax_rollouts(
        expert.net, expert.env_id, config.return_episodes, seed=episode_seed
    ).returns[0]
    return DriftResult(
        n_pairs=len(expert.pool_actions),
        updates=np.array(updates),
        tv=tv,
        return_updates=np.array(updates)[picks],
        returns=returns,
        expert_returns=expert_returns,
        rho=rho,
    )


@dataclass(frozen=True)
class ConsistencyResult:
    """BC and EDM (random initialisation) trained on N pairs of the realisable expert.

    Attributes:
        sizes: ``[n_sizes]`` the data sizes N.
        tv: ``{algo: [n_sizes, n_seeds]}`` final action-probability TV to the expert.
        returns: ``{algo: [n_sizes, n_seeds]}`` mean softmax-acting return per learner.
        expert_returns: ``[E]`` the expert's returns at the same episode seeds.
        updates: updates of every learner.
    """

    sizes: np.ndarray
    tv: dict[str, np.ndarray]
    returns: dict[str, np.ndarray]
    expert_returns: np.ndarray
    updates: int


def consistency_study(
    expert: RealisableExpert, config: DeepCritiqueConfig, progress: Callable[[], None] | None = None
) -> ConsistencyResult:
    """For each N and seed, a learner on its own random N pairs of the pool; TV and return.

    All ``len(sizes) * consistency_seeds`` learners of one algorithm train together (one
    stacked model, one data set per learner), from their seeded random initialisation.
    """
    tick = progress or (lambda: None)
    sizes = np.array(config.consistency_sizes)
    n_seeds = config.consistency_seeds
    rng = np.random.default_rng([config.seed, 4])
    pool = len(expert.pool_actions)
    data = [
        expert.demonstrations(rng.choice(pool, size=int(n), replace=False))
        for n in sizes
        for _ in range(n_seeds)
    ]
    seeds = [config.seed * 1_000 + 200 + i for i in range(len(data))]
    episode_seed = _episode_seed(config, _RETURN_SEEDS)
    tv, returns = {}, {}
    for algo in ("bc", "edm"):
        result = train(
            data, LearnerConfig(algo=algo, n_updates=config.consistency_updates), seeds=seeds
        )
        net = stacked_network(result.policy_state)
        tv[algo] = policy_tv(net, expert.net, expert.tv_states).reshape(len(sizes), n_seeds)
        returns[algo] = (
            softmax_rollouts(net, expert.env_id, config.return_episodes, seed=episode_seed)
            .returns.mean(axis=1)
            .reshape(len(sizes), n_seeds)
        )
        tick()
    expert_returns = softmax_rollouts(
        expert.net, expert.env_id, config.return_episodes, seed=episode_seed
    ).returns[0]
    return ConsistencyResult(
        sizes=sizes,
        tv=tv,
        returns=returns,
        expert_returns=expert_returns,
        updates=config.consistency_updates,
    )


# --- study 4: where rho settles -------------------------------------------------------------------


@dataclass(frozen=True)
class RhoSummary:
    """Where one learner's rho ended.

    Attributes:
        env_id, algo: the run.
        final: mean rho over the last 10% of updates.
        final_sd: its standard deviation there (update to update).
        factor: mean of ``|1 + 2 rho|`` there: the state term's gradient is
            ``(1 + 2 rho) grad rho``.
        first: mean rho over the first 1% of updates (at least 10).
    """

    env_id: str
    algo: str
    final: float
    final_sd: float
    factor: float
    first: float


def rho_summary(env_id: str, algo: str, rho: np.ndarray) -> RhoSummary:
    """Summarise a ``[n_updates]`` rho history (see :class:`RhoSummary`)."""
    rho = np.asarray(rho, dtype=np.float64)
    tail = rho[-max(1, len(rho) // 10) :]
    head = rho[: max(10, len(rho) // 100)]
    return RhoSummary(
        env_id=env_id,
        algo=algo,
        final=float(tail.mean()),
        final_sd=float(tail.std()),
        factor=float(np.abs(1 + 2 * tail).mean()),
        first=float(head.mean()),
    )


# --- claims: computation, verdict and wording -----------------------------------------------------


def _coordinate_of_largest(w1: np.ndarray, scale: np.ndarray) -> int:
    return int(np.argmax(np.asarray(w1) / scale))


def _comparison_cells(c: Comparison | None, env_id: str, scale: np.ndarray) -> list[str]:
    if c is None:
        return ["—", "—", "—"]
    j = _coordinate_of_largest(c.w1, scale)
    return [
        f"{fmt(c.mmd.mmd2, 3)} (p {fmt(c.mmd.p_value, 3)})",
        f"{c.c2st.accuracy:.3f} [{c.c2st.interval.low:.3f}, {c.c2st.interval.high:.3f}]",
        f"{fmt(c.w1[j], 3)} ({coordinate_name(env_id, j)}; {fmt(c.w1[j] / scale[j], 3)} sd)",
    ]


def chain_distances(run: ChainRun, lengths: Sequence[int], task: TaskStudy) -> list[float]:
    """Median distance of the chains from d_E's mean, in d_E standard deviations, per length."""
    centre = task.d_e.mean(axis=0)
    out = []
    for length in lengths:
        with np.errstate(all="ignore"):
            dist = np.linalg.norm((run.at(length) - centre) / task.scale, axis=1)
        out.append(float(np.median(np.where(np.isfinite(dist), dist, np.inf))))
    return out


def ptheta_tables(tasks: Sequence[TaskStudy], config: DeepCritiqueConfig) -> tuple[str, str]:
    """Markdown tables of study 1: mixing and distances; and the spread of one coordinate."""
    rows = []
    for task in tasks:
        centre = task.d_e.mean(axis=0)
        d_e_distance = float(np.median(np.linalg.norm((task.d_e - centre) / task.scale, axis=1)))
        for algo, model in task.models.items():
            growth = f"{fmt(model.slopes.max(), 3)} ({_share_growing(model.slopes):.0%})"
            for temperature in TEMPERATURES:
                run = model.chains[temperature]
                start_p = "—" if run.start_mmd is None else fmt(run.start_mmd.p_value, 3)
                distances = chain_distances(run, config.chain_lengths, task)
                rows.append(
                    [
                        task.env_id,
                        algo,
                        f"SGLD T={temperature:g}",
                        growth,
                        fmt(run.rhat, 3),
                        start_p,
                        " → ".join(fmt(d, 3) for d in distances),
                        model.status(temperature),
                        "d_pi",
                        *_comparison_cells(model.vs_dpi.get(temperature), task.env_id, task.scale),
                    ]
                )
            rows.append(
                [
                    task.env_id,
                    algo,
                    "d_pi",
                    "",
                    "",
                    "",
                    f"d_E itself: {fmt(d_e_distance, 3)}",
                    "",
                    "d_E",
                    *_comparison_cells(task.dpi_vs_de[algo], task.env_id, task.scale),
                ]
            )
    lengths = ", ".join(f"{n:,}" for n in config.chain_lengths)
    mixing = table(
        [
            "task",
            "learner",
            "sample",
            "max growth of lse f (share of directions not decaying)",
            "R-hat",
            "starts agree (MMD p)",
            f"median distance from d_E mean (sd) after {lengths} steps",
            "p_theta",
            "compared with",
            "MMD² (p)",
            "C2ST accuracy [95%]",
            "largest W1 (coordinate; in d_E sd)",
        ],
        rows,
    )
    spread_rows = []
    for task in tasks:
        j = _slice_coordinate(task.env_id, task.d_e.shape[1])
        cells = [task.env_id, coordinate_name(task.env_id, j), fmt(task.d_e[:, j].std(), 3)]
        cells.append(fmt(task.d_pi["edm"][:, j].std(), 3))
        for temperature in TEMPERATURES:
            final = task.models["edm"].chains[temperature].states[-1][:, j]
            final = final[np.isfinite(final)]
            cells.append(fmt(final.std(), 3) if final.size else "—")
        spread_rows.append(cells)
    spread = table(
        ["task", "coordinate", "d_E std", "d_pi std (EDM)", "SGLD T=1 std", "SGLD T=0.005 std"],
        spread_rows,
    )
    return mixing, spread


def _range(values) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "—"
    low, high = min(values), max(values)
    return fmt(low, 3) if low == high else f"{fmt(low, 3)} to {fmt(high, 3)}"


def ptheta_claim(tasks: Sequence[TaskStudy], config: DeepCritiqueConfig) -> Claim:
    """``deep_ptheta_vs_dpi``: p_theta of trained learners is not their state distribution."""
    cases, determined, shown = [], 0, 0
    for task in tasks:
        for algo, model in task.models.items():
            status = model.status(1.0)
            different = None
            if status == "mixed":
                different = model.vs_dpi[1.0].different
            if status in ("improper", "mixed"):
                determined += 1
                shown += int(status == "improper" or bool(different))
            cases.append(
                {
                    "task": task.env_id,
                    "learner": algo,
                    "status_T1": status,
                    "status_T0.005": model.status(PUBLISHED_TEMPERATURE),
                    "max_growth": float(model.slopes.max()),
                    "share_growing": _share_growing(model.slopes),
                    "rhat": {f"{t:g}": model.chains[t].rhat for t in TEMPERATURES},
                    "different_from_d_pi_T1": different,
                    "samples_differ_from_d_pi_T1": None
                    if 1.0 not in model.vs_dpi
                    else model.vs_dpi[1.0].different,
                    "chain_distance_T1": chain_distances(
                        model.chains[1.0], config.chain_lengths, task
                    ),
                    "dpi_vs_de_different": task.dpi_vs_de[algo].different,
                    "dpi_vs_de_c2st": task.dpi_vs_de[algo].c2st.accuracy,
                    "dpi_vs_de_max_w1_sd": float((task.dpi_vs_de[algo].w1 / task.scale).max()),
                }
            )
    improper = [c for c in cases if c["status_T1"] == "improper"]
    mixed = [c for c in cases if c["status_T1"] == "mixed"]
    unmixed = [c for c in cases if c["status_T1"] == "not mixed"]

    def names(group):
        return ", ".join(f"{c['task']} {c['learner']}" for c in group) or "none"

    agrees = determined > 0 and shown == determined
    text = (
        f"Of {len(cases)} trained state models (EDM and decoupled EDM on {len(tasks)} tasks, "
        f"{config.updates:,} updates each), {len(improper)} are **not probability "
        f"distributions on R^d**, the continuous state space SGLD samples: `logsumexp f` does "
        f"not decrease along some rays (largest growth rate "
        f"{fmt(max((c['max_growth'] for c in cases), default=math.nan), 3)}), so "
        f"`exp(logsumexp f)` has infinite integral over R^d, p_theta cannot be normalised, and "
        f"Langevin chains drift away along those rays ({names(improper)}; at T = 1 their "
        f"chains' median distance from d_E's mean, in "
        f"d_E standard deviations, is {_range(c['chain_distance_T1'][0] for c in improper)} "
        f"after {config.chain_lengths[0]:,} steps and "
        f"{_range(c['chain_distance_T1'][-1] for c in improper)} after "
        f"{config.chain_lengths[-1]:,}). "
        "This is a property of continuous states: on a finite state set, as in the note's "
        "MDPs, `sum_s exp(logsumexp f(s))` is finite and p_theta always normalises. "
        "For the others, SGLD at temperature 1 "
        f"({config.n_chains} chains, half started from `U(-1, 1)`, half from expert states, "
        f"{config.chain_lengths[-1]:,} steps) mixed in {len(mixed)} case(s) ({names(mixed)}) "
        f"and did not mix in {len(unmixed)} ({names(unmixed)}): R-hat ≥ {RHAT_THRESHOLD} or "
        f"the two starts disagree (MMD p < {ALPHA}); their samples are reported as "
        "'SGLD after n steps', not as p_theta"
    )
    if unmixed:
        text += (
            f" (those samples differ from d_pi, MMD and C2ST both p < {ALPHA}, in "
            f"{sum(bool(c['samples_differ_from_d_pi_T1']) for c in unmixed)} of "
            f"{len(unmixed)})"
        )
    text += ". "

    if mixed:
        text += (
            f"Where chains mixed, p_theta differs from d_pi (MMD and C2ST both p < {ALPHA}) in "
            f"{sum(bool(c['different_from_d_pi_T1']) for c in mixed)} of {len(mixed)} case(s). "
        )
    text += (
        "For comparison, the learners' own visitation d_pi against the expert's d_E: both "
        f"tests reject equality in {sum(c['dpi_vs_de_different'] for c in cases)} of "
        f"{len(cases)} cases, C2ST accuracies "
        f"{_range(c['dpi_vs_de_c2st'] for c in cases)}, largest per-coordinate W1 "
        f"{_range(c['dpi_vs_de_max_w1_sd'] for c in cases)} d_E standard deviations."
    )
    return Claim(
        id="deep_ptheta_vs_dpi",
        title=(
            "On trained networks, EDM's state model p_theta is not the learner's state "
            "distribution d_pi (the note's Claim 1)."
        ),
        value=float(shown),
        agrees=agrees,
        text=text,
        check=(
            "value = number of state models shown to differ from d_pi: improper (growth of "
            "logsumexp f above -1e-6 along some of the random directions) or, at T = 1, "
            f"chains mixed (R-hat < {RHAT_THRESHOLD}, starts agree) and MMD and C2ST both "
            f"reject equality with d_pi at {ALPHA}; agrees when every state model whose "
            "p_theta could be determined this way differs from d_pi (and at least one could)"
        ),
        details={"cases": cases, "n_cases": len(cases), "n_determined": determined},
        figures=("deep_ptheta.png",),
    )


def shift_claim(shifts: Sequence[ShiftResult]) -> Claim:
    """``deep_shift_invariance``: Example 2 on trained networks."""
    max_change = max(max(s.max_policy_change.values()) for s in shifts)
    flat = [s.spread["g = -lse f"] / max(s.spread["original"], 1e-300) for s in shifts]
    reversed_rank = [s.spearman["g = -2 lse f"] for s in shifts]
    agrees = max_change < 1e-6 and max(flat) < 1e-9 and max(reversed_rank) < -0.999
    rows = [
        [
            s.env_id,
            f"{s.n_states:,}",
            fmt(max(s.max_policy_change.values())),
            fmt(s.spread["original"], 3),
            fmt(s.spread["g = -lse f"]),
            fmt(s.spearman["g = -lse f"], 3),
            fmt(s.spearman["g = -2 lse f"], 3),
            fmt(s.kendall["g = -2 lse f"], 3),
        ]
        for s in shifts
    ]
    text = (
        "Adding `g(s)` to every logit of state `s` leaves `softmax f(s)` unchanged and changes "
        "`log p_theta(s) = logsumexp f(s)` into `logsumexp f(s) + g(s)`. On the trained EDM "
        "networks (states: held-out expert states, the learner's own states, SGLD samples and "
        "uniform draws in the data's box, float64): the largest change of any action "
        f"probability is {fmt(max_change)}; with `g = -logsumexp f` every state gets the same "
        f"log density (spread at most {fmt(max(flat))} of the original), so p_theta's ranking "
        "of states is erased; with `g = -2 logsumexp f` it is reversed (Spearman "
        f"{fmt(max(reversed_rank), 4)} or lower). The policy therefore does not determine "
        "p_theta: a learner's state model carries information its policy does not, and two "
        "networks with one policy can have opposite state models.\n\n"
        + table(
            [
                "task",
                "states",
                "max change of pi",
                "spread of log p_theta",
                "spread, g = -lse f",
                "Spearman, g = -lse f",
                "Spearman, g = -2 lse f",
                "Kendall, g = -2 lse f",
            ],
            rows,
        )
    )
    return Claim(
        id="deep_shift_invariance",
        title=(
            "Shifting a trained network's logits per state leaves its policy unchanged while "
            "p_theta's ranking of states changes completely (the note's Example 2)."
        ),
        value=max_change,
        agrees=agrees,
        text=text,
        check=(
            "value = largest action-probability change over tasks, states and both shifts; "
            "agrees when it is below 1e-6, the spread of log p_theta under g = -lse f is below "
            "1e-9 of the original and Spearman's rank correlation under g = -2 lse f is below "
            "-0.999 on every task"
        ),
        tolerance=1e-6,
        details={
            s.env_id: {
                "max_policy_change": s.max_policy_change,
                "spearman": s.spearman,
                "kendall": s.kendall,
                "spread": s.spread,
                "n_states": s.n_states,
            }
            for s in shifts
        },
        figures=("deep_shift.png",),
    )


def _mean_range(values: np.ndarray) -> str:
    """``mean (low to high)`` of per-seed values (a return's range, never outside its values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        return fmt(values[0], 1)
    return f"{fmt(values.mean(), 1)} ({fmt(values.min(), 1)} to {fmt(values.max(), 1)})"


def _mean_interval(values: np.ndarray, *, digits: int = 3, tv: bool = False) -> str:
    """``mean [low, high]`` (95% t-interval over seeds; a TV interval is clipped to [0, 1])."""
    ci = t_interval(values)
    if not np.isfinite(ci.low):
        return fmt(ci.estimate, digits)
    low, high = (max(ci.low, 0.0), min(ci.high, 1.0)) if tv else (ci.low, ci.high)
    return f"{fmt(ci.estimate, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def _drift_numbers(drift: DriftResult) -> dict[str, Any]:
    return {
        "updates": drift.updates,
        "tv_edm": drift.tv["edm"],
        "tv_bc": drift.tv["bc"],
        "return_updates": drift.return_updates,
        "returns_edm": drift.returns["edm"],
        "returns_bc": drift.returns["bc"],
        "expert_return": float(drift.expert_returns.mean()),
        "edm_rho_first_10_updates": drift.rho[:, :10].mean(axis=1),
        "edm_rho_last_10pct": drift.rho[:, -max(1, drift.rho.shape[1] // 10) :].mean(axis=1),
        "n_pairs": drift.n_pairs,
    }


def drift_claim(
    expert: RealisableExpert,
    drift: DriftResult,
    sharp: RealisableExpert,
    sharp_drift: DriftResult,
    config: DeepCritiqueConfig,
) -> Claim:
    """``deep_expert_drift``: does EDM started at a realisable expert leave it? BC?"""
    edm_final, bc_final = drift.tv["edm"][:, -1], drift.tv["bc"][:, -1]
    agrees = bool(edm_final.min() > bc_final.max())
    edm_ret, bc_ret = drift.returns["edm"][:, -1], drift.returns["bc"][:, -1]
    first_edm = drift.tv["edm"][:, 1] if drift.tv["edm"].shape[1] > 1 else edm_final
    shape = "-".join(map(str, LearnerConfig().hidden_sizes))
    text = (
        f"The expert is a {shape} ELU network cloned by BC ({config.expert_bc_updates:,} "
        f"updates) from {config.expert_bc_episodes} scripted {expert.env_id} trajectories in "
        f"which each action was replaced by a uniformly random one with probability "
        f"{expert.action_noise:g}; its greedy action is the scripted one on "
        f"{expert.scripted_match:.1%} of held-out scripted states, and acting by softmax (its "
        f"largest action probability averages {expert.max_probability:.3f}) it is a policy "
        f"the learners' class contains. From its own {drift.n_pairs:,} state-action pairs "
        f"(softmax episodes, mean return {fmt(expert.pool_returns.mean(), 1)}), "
        f"{config.drift_seeds} EDM and {config.drift_seeds} BC learners start **at the "
        f"expert's weights** and train with the published settings for "
        f"{int(drift.updates[-1]):,} updates. Mean action-probability TV to the expert on "
        f"{len(expert.tv_states):,} held-out expert states (95% t-interval over seeds): EDM "
        f"{_mean_interval(first_edm, tv=True)} after "
        f"{int(drift.updates[min(1, len(drift.updates) - 1)]):,} updates and "
        f"{_mean_interval(edm_final, tv=True)} at the end; BC "
        f"{_mean_interval(bc_final, tv=True)} at the end (per seed: EDM "
        f"{', '.join(fmt(v, 3) for v in edm_final)}; BC {', '.join(fmt(v, 3) for v in bc_final)}"
        f"); over all snapshots after the start, EDM's mean TV stays within "
        f"{_range(drift.tv['edm'][:, 1:].mean(axis=0))} and BC's within "
        f"{_range(drift.tv['bc'][:, 1:].mean(axis=0))}. EDM's rho averaged "
        f"{_range(drift.rho[:, :10].mean(axis=1))} over the first 10 "
        f"updates and {_range(drift.rho[:, -max(1, drift.rho.shape[1] // 10) :].mean(axis=1))} "
        "over the last tenth. Softmax-acting return at the end "
        f"({config.return_episodes} episodes per learner, mean and range over learners; the "
        f"expert {fmt(drift.expert_returns.mean(), 1)} on the same seeds): EDM "
        f"{_mean_range(edm_ret)}, BC {_mean_range(bc_ret)}. "
        + (
            "Every EDM learner ends further from the expert than every BC learner, by "
            f"{fmt(edm_final.mean() - bc_final.mean(), 3)} in mean TV."
            if agrees
            else "Not every EDM learner ends further from the expert than every BC learner."
        )
        + "\n\nThe same from a clone of the **noise-free** scripted demonstrations (separable "
        "data, so BC's logits grow large: its largest action probability averages "
        f"{sharp.max_probability:.4f}; greedy match {sharp.scripted_match:.1%}), "
        f"{int(sharp_drift.updates[-1]):,} updates on {sharp_drift.n_pairs:,} of its pairs: "
        f"EDM's rho starts at {_range(sharp_drift.rho[:, :10].mean(axis=1))} (mean of the "
        f"first 10 updates), its TV to that expert is "
        f"{', '.join(fmt(v, 3) for v in sharp_drift.tv['edm'][:, -1])} at the end and its "
        f"return {', '.join(fmt(v, 1) for v in sharp_drift.returns['edm'][:, -1])} (the expert "
        f"{fmt(sharp_drift.expert_returns.mean(), 1)}); BC's TV "
        f"{', '.join(fmt(v, 3) for v in sharp_drift.tv['bc'][:, -1])}, return "
        f"{', '.join(fmt(v, 1) for v in sharp_drift.returns['bc'][:, -1])}."
    )
    return Claim(
        id="deep_expert_drift",
        title=(
            "EDM started at the weights of a realisable expert ends further from it than BC "
            "started there (Theorem 1 on networks)."
        ),
        value=float(edm_final.mean()),
        agrees=agrees,
        text=text,
        check=(
            "value = EDM's mean final TV to the (noisy-clone) expert; agrees when every EDM "
            "learner ends further from the expert (TV) than every BC learner (with "
            f"{config.drift_seeds} learners each, an ordering of probability "
            f"1/{math.comb(2 * config.drift_seeds, config.drift_seeds)} when EDM and BC do "
            "not differ)"
        ),
        details={
            **_drift_numbers(drift),
            "scripted_match": expert.scripted_match,
            "expert_max_probability": expert.max_probability,
            "action_noise": expert.action_noise,
            "noise_free_clone": {
                **_drift_numbers(sharp_drift),
                "scripted_match": sharp.scripted_match,
                "expert_max_probability": sharp.max_probability,
            },
        },
        figures=("deep_drift.png",),
    )


def consistency_claim(
    cons: ConsistencyResult, drift: DriftResult, config: DeepCritiqueConfig
) -> Claim:
    """``deep_consistency``: BC's and EDM's TV to a realisable expert against N.

    ``drift`` (BC started at the expert's own weights) gives the TV floor of the optimiser.
    """
    bc_big, edm_big = cons.tv["bc"][-1], cons.tv["edm"][-1]
    bc_small = cons.tv["bc"][0]
    agrees = bool(bc_big.max() < edm_big.min())
    rows = [
        [
            f"{int(n):,}",
            _mean_interval(cons.tv["bc"][i], tv=True),
            _mean_interval(cons.tv["edm"][i], tv=True),
            _mean_range(cons.returns["bc"][i]),
            _mean_range(cons.returns["edm"][i]),
        ]
        for i, n in enumerate(cons.sizes)
    ]
    text = (
        f"{config.consistency_seeds} learners per algorithm and N, each on its own random N "
        f"pairs of the realisable expert's data, from a random initialisation, "
        f"{cons.updates:,} updates with the published settings otherwise (at N = "
        f"{int(max(cons.sizes)):,} each pair is drawn about "
        f"{cons.updates * 32 / max(cons.sizes):.2f} times, so the largest N also measures "
        "optimisation). TV is the mean action-probability TV to the expert on "
        f"held-out expert states (95% t-interval over seeds); returns act by softmax (mean, "
        f"and the range over seeds; the expert: {fmt(cons.expert_returns.mean(), 1)}).\n\n"
        + table(["N", "BC TV", "EDM TV", "BC return", "EDM return"], rows)
        + "\n\n"
        + (
            f"For N = {int(cons.sizes[1]):,} and more, BC's mean TV lies in "
            f"{_range(cons.tv['bc'][1:].mean(axis=1))} and EDM's in "
            f"{_range(cons.tv['edm'][1:].mean(axis=1))}; for scale, BC started at the "
            f"expert's own weights ends at {fmt(drift.tv['bc'][:, -1].mean(), 3)} after "
            f"{int(drift.updates[-1]):,} updates (the study above), the level at which "
            "minibatch noise at this learning rate holds any learner. "
            if len(cons.sizes) > 1
            else ""
        )
        + f"At N = {int(cons.sizes[-1]):,} EDM's mean TV exceeds BC's by "
        f"{fmt(edm_big.mean() - bc_big.mean(), 3)} (BC {fmt(bc_big.mean(), 3)}, EDM "
        f"{fmt(edm_big.mean(), 3)}; BC at N = {int(cons.sizes[0]):,}: "
        f"{fmt(bc_small.mean(), 3)}); "
        + (
            "every EDM learner is further from the expert than every BC learner. "
            if agrees
            else "not every EDM learner is further from the expert than every BC learner. "
        )
        + "Neither TV keeps falling once N is large: minibatch noise, not data, limits both "
        "here, so Theorem 1's prediction (BC's TV going to 0, EDM's not) shows only as this "
        "gap, which is small next to the spread over seeds."
    )
    return Claim(
        id="deep_consistency",
        title=(
            "With data from a realisable expert, EDM ends further from the expert than BC at "
            "the largest N (Theorem 1's inconsistency, against N, on networks)."
        ),
        value=float(edm_big.mean()),
        agrees=agrees,
        text=text,
        check=(
            "value = EDM's mean TV to the expert at the largest N; agrees when there every EDM "
            "learner has higher TV than every BC learner (with "
            f"{config.consistency_seeds} learners each, an ordering of probability "
            f"1/{math.comb(2 * config.consistency_seeds, config.consistency_seeds)} when EDM "
            "and BC do not differ)"
        ),
        details={
            "sizes": cons.sizes,
            "tv_bc": cons.tv["bc"],
            "tv_edm": cons.tv["edm"],
            "returns_bc": cons.returns["bc"],
            "returns_edm": cons.returns["edm"],
            "expert_return": float(cons.expert_returns.mean()),
            "updates": cons.updates,
        },
        figures=("deep_consistency.png",),
    )


def rho_claim(tasks: Sequence[TaskStudy], config: DeepCritiqueConfig) -> Claim:
    """``deep_rho``: where EDM's rho settles and what that does to the state term."""
    summaries = [rho_summary(t.env_id, a, t.rho[a]) for t in tasks for a in STATE_MODEL_ALGOS]
    edm = [s for s in summaries if s.algo == "edm"]
    at_half = [s for s in edm if abs(s.final + 0.5) < 0.05]
    near_zero = [s for s in edm if abs(s.final) < 0.1]
    rows = []
    for task in tasks:
        e = next(s for s in summaries if s.env_id == task.env_id and s.algo == "edm")
        d = next(s for s in summaries if s.env_id == task.env_id and s.algo == "edm-decoupled")
        rows.append(
            [
                task.env_id,
                f"{fmt(e.first, 3)}",
                f"{fmt(e.final, 3)} ± {fmt(e.final_sd, 3)}",
                fmt(e.factor, 3),
                f"{fmt(d.final, 3)} ± {fmt(d.final_sd, 3)}",
                fmt(task.learner_returns["edm"], 1),
                fmt(task.learner_returns["edm-decoupled"], 1),
            ]
        )
    tail = max(1, config.updates // 10)

    def names(group):
        return ", ".join(s.env_id for s in group) or "none"

    text = (
        "EDM's loss adds `rho + rho**2` to the cross-entropy, with `rho = mean_q lse f - "
        "mean_D lse f` on detached SGLD samples `q`. Its gradient is `(1 + 2 rho) grad rho`: "
        "for fixed samples a step lowers rho while rho > -1/2 and raises it while rho < -1/2, "
        "so `rho = -1/2`, the minimiser of `rho + rho**2`, is where the state term's gradient "
        "factor `1 + 2 rho` vanishes. The chains pull the other way: they climb `lse f`, "
        "raising rho. So rho sits near -1/2 when the network's descent outpaces the chains, "
        "and the state term then switches itself off (its gradient averages near zero); it "
        "sits near 0, the contrastive-divergence balance, when the chains keep up, and the "
        "factor is then near 1. Which of the two happens on a task is measured here, not "
        f"predicted. Over the last {tail:,} of {config.updates:,} updates (mean ± update-to-"
        f"update sd), EDM's rho is within 0.05 of -1/2 on {names(at_half)} and within 0.1 of "
        f"0 on {names(near_zero)}; the state term's mean gradient factor abs(1 + 2 rho) is "
        f"above 1/2 (the term stays on) on {names([s for s in edm if s.factor > 0.5])}.\n\n"
        + table(
            [
                "task",
                "EDM rho, first updates",
                "EDM rho, end",
                "mean abs(1 + 2 rho), end",
                "decoupled rho, end",
                "EDM return",
                "decoupled (= BC policy) return",
            ],
            rows,
        )
        + f"\n\nReturns: greedy learners, {config.rollout_episodes} episodes each."
    )
    return Claim(
        id="deep_rho",
        title=(
            "EDM's rho does not stay near zero: on some tasks it settles at -1/2, the minimiser "
            "of rho + rho**2, where the state term's gradient factor 1 + 2 rho vanishes."
        ),
        value=float(len(at_half)),
        agrees=bool(at_half),
        text=text,
        check=(
            f"value = number of tasks where EDM's mean rho over the last {tail:,} updates is "
            "within 0.05 of -1/2; agrees when there is at least one"
        ),
        tolerance=0.05,
        details={
            f"{s.env_id} {s.algo}": {
                "final": s.final,
                "final_sd": s.final_sd,
                "factor": s.factor,
                "first": s.first,
            }
            for s in summaries
        },
        figures=("deep_rho.png",),
    )


# --- figures --------------------------------------------------------------------------------------

_ALGO_COLOURS = {"edm": "tab:red", "edm-decoupled": "tab:purple", "bc": "tab:blue"}
_ALGO_LABELS = {"edm": "EDM", "edm-decoupled": "decoupled EDM", "bc": "BC"}


def _figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def plot_ptheta(tasks: Sequence[TaskStudy]):
    """Row 1: one coordinate's histograms of d_E, d_pi and SGLD samples (EDM) per task.
    Row 2: median standardised distance of the chains from d_E's mean against SGLD steps."""
    fig, axes = _figure(2, len(tasks))
    for col, task in enumerate(tasks):
        j = _slice_coordinate(task.env_id, task.d_e.shape[1])
        samples = {
            "d_E": task.d_e[:, j],
            "d_pi (EDM)": task.d_pi["edm"][:, j],
        }
        for temperature in TEMPERATURES:
            final = task.models["edm"].chains[temperature].states[-1][:, j]
            samples[f"SGLD T={temperature:g}"] = final[np.isfinite(final)]
        pooled = np.concatenate([v for v in samples.values() if v.size])
        low, high = np.quantile(pooled, [0.01, 0.99])
        bins = np.linspace(low, high, 60)
        ax = axes[0, col]
        for name, values in samples.items():
            inside = np.mean((values >= low) & (values <= high)) if values.size else 0.0
            ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.4,
                label=f"{name} ({inside:.0%} shown)",
                log=True,
            )
        ax.set_title(f"{task.env_id}: EDM, {coordinate_name(task.env_id, j)}", fontsize=9)
        ax.set_xlabel(coordinate_name(task.env_id, j))
        ax.set_ylabel("density (log scale)")
        ax.legend(fontsize=6)
        ax = axes[1, col]
        centre = task.d_e.mean(axis=0)
        for algo, model in task.models.items():
            for temperature, style in zip(TEMPERATURES, ("-", "--"), strict=True):
                run = model.chains[temperature]
                with np.errstate(all="ignore"):
                    dist = np.linalg.norm((run.states - centre) / task.scale, axis=2)
                ax.plot(
                    run.steps,
                    np.nanmedian(np.where(np.isfinite(dist), dist, np.nan), 1),
                    style,
                    color=_ALGO_COLOURS[algo],
                    label=f"{_ALGO_LABELS[algo]}, T={temperature:g}",
                )
        ref = np.median(np.linalg.norm((task.d_e - centre) / task.scale, axis=1))
        ax.axhline(ref, color="k", lw=0.8, ls=":", label="d_E")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SGLD steps")
        ax.set_ylabel("median distance from d_E mean (d_E std units)")
        ax.legend(fontsize=6)
    return fig


def plot_shift(shift: ShiftResult):
    """The policy and log p_theta along one coordinate, and log p_theta before and after."""
    fig, axes = _figure(1, 3)
    grid = shift.slice_states[:, shift.slice_coordinate]
    styles = {"original": "-", "g = -lse f": "--", "g = -2 lse f": ":"}
    for name, probs in shift.slice_policy.items():
        axes[0, 0].plot(
            grid, probs[:, -1], styles[name], lw=2 if name == "original" else 1.3, label=name
        )
        axes[0, 1].plot(grid, shift.slice_log_density[name], styles[name], label=name)
    coordinate = coordinate_name(shift.env_id, shift.slice_coordinate)
    axes[0, 0].set_xlabel(coordinate)
    axes[0, 0].set_ylabel("pi(last action | s)")
    axes[0, 0].set_title(f"{shift.env_id} EDM: policy, other coordinates at d_E's mean", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].set_xlabel(coordinate)
    axes[0, 1].set_ylabel("log p_theta(s) (unnormalised)")
    axes[0, 1].set_title("state model along the same line", fontsize=9)
    axes[0, 1].legend(fontsize=7)
    ax = axes[0, 2]
    original = shift.log_density["original"]
    for name in SHIFTS:
        ax.scatter(
            original,
            shift.log_density[name],
            s=2,
            alpha=0.4,
            label=f"{name} (Spearman {fmt(shift.spearman[name], 3)})",
        )
    ax.set_xlabel("log p_theta(s)")
    ax.set_ylabel("log p_theta'(s) after the shift")
    ax.set_title(f"{shift.n_states:,} states", fontsize=9)
    ax.legend(fontsize=7, markerscale=4)
    return fig


def plot_drift(drift: DriftResult, sharp_drift: DriftResult):
    """TV to the expert and return over updates, for EDM and BC started at the expert; and TV
    from the noise-free clone."""
    fig, axes = _figure(1, 3, width=4.6)
    for algo in ("edm", "bc"):
        colour = _ALGO_COLOURS[algo]
        for ax, result in ((axes[0, 0], drift), (axes[0, 2], sharp_drift)):
            tv = result.tv[algo]
            for row in tv:
                ax.plot(result.updates, row, color=colour, lw=0.7, alpha=0.5)
            ax.plot(result.updates, tv.mean(0), color=colour, lw=2, label=_ALGO_LABELS[algo])
        ret = drift.returns[algo]
        for row in ret:
            axes[0, 1].plot(drift.return_updates, row, "o", color=colour, ms=3, alpha=0.5)
        axes[0, 1].plot(
            drift.return_updates, ret.mean(0), "-", color=colour, lw=2, label=_ALGO_LABELS[algo]
        )
    axes[0, 1].axhline(drift.expert_returns.mean(), color="k", ls=":", lw=1, label="expert")
    axes[0, 0].set_title(
        f"expert cloned from noisy demonstrations; {drift.n_pairs:,} of its pairs", fontsize=9
    )
    axes[0, 0].set_ylabel("mean action-probability TV to the expert")
    axes[0, 1].set_title("the same learners' returns", fontsize=9)
    axes[0, 1].set_ylabel("return (acting by softmax)")
    axes[0, 2].set_title(
        f"expert cloned from noise-free demonstrations; {sharp_drift.n_pairs:,} pairs", fontsize=9
    )
    axes[0, 2].set_ylabel("mean action-probability TV to that expert")
    for ax in axes[0]:
        ax.set_xlabel("updates from the expert's weights")
        ax.legend(fontsize=8)
    return fig


def plot_consistency(cons: ConsistencyResult):
    """TV to the expert (95% t-intervals over seeds, clipped at 0) and return against N."""
    fig, axes = _figure(1, 2, width=5.0)
    for offset, algo in zip((0.96, 1.04), ("bc", "edm"), strict=True):
        colour = _ALGO_COLOURS[algo]
        intervals = [t_interval(v) for v in cons.tv[algo]]
        mean = np.array([i.estimate for i in intervals])
        low = np.maximum(np.array([i.low for i in intervals]), 0.0)
        high = np.array([i.high for i in intervals])
        axes[0, 0].errorbar(
            cons.sizes * offset,
            mean,
            yerr=[
                mean - np.where(np.isfinite(low), low, mean),
                np.where(np.isfinite(high), high, mean) - mean,
            ],
            fmt="o-",
            color=colour,
            capsize=3,
            label=_ALGO_LABELS[algo],
        )
        returns = cons.returns[algo]
        axes[0, 1].plot(
            cons.sizes * offset,
            returns.mean(1),
            "o-",
            color=colour,
            label=f"{_ALGO_LABELS[algo]} (mean; dots: learners)",
        )
        for k in range(returns.shape[1]):
            axes[0, 1].plot(cons.sizes * offset, returns[:, k], ".", color=colour, alpha=0.5)
    axes[0, 1].axhline(cons.expert_returns.mean(), color="k", ls=":", lw=1, label="expert")
    for ax, label in (
        (axes[0, 0], "mean action-probability TV to the expert"),
        (axes[0, 1], "return (acting by softmax)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("N (expert state-action pairs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[0, 0].set_title(f"{cons.updates:,} updates, 95% t-intervals over seeds", fontsize=9)
    return fig


def plot_rho(tasks: Sequence[TaskStudy]):
    """rho over updates (moving average of 100) per task, EDM and decoupled EDM."""
    fig, axes = _figure(1, len(tasks), width=3.6)
    for col, task in enumerate(tasks):
        ax = axes[0, col]
        for algo, rho in task.rho.items():
            window = max(1, min(100, len(rho) // 10))
            smooth = np.convolve(rho, np.ones(window) / window, mode="valid")
            ax.plot(
                np.arange(window, len(rho) + 1),
                smooth,
                color=_ALGO_COLOURS[algo],
                lw=1,
                label=_ALGO_LABELS[algo],
            )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axhline(-0.5, color="k", ls=":", lw=1, label="-1/2")
        ax.set_title(task.env_id, fontsize=9)
        ax.set_xlabel("update")
        ax.set_ylabel("rho (moving average)")
        ax.legend(fontsize=7)
    return fig


# --- tables ---------------------------------------------------------------------------------------


def _comparison_row(c: Comparison, **keys: Any) -> dict[str, Any]:
    row = {
        **keys,
        "first": c.first,
        "second": c.second,
        "mmd2": c.mmd.mmd2,
        "mmd_p": c.mmd.p_value,
        "mmd_bandwidth": c.mmd.bandwidth,
        "c2st_accuracy": c.c2st.accuracy,
        "c2st_low": c.c2st.interval.low,
        "c2st_high": c.c2st.interval.high,
        "c2st_p": c.c2st.p_value,
    }
    row.update({f"w1_{j}": float(w) for j, w in enumerate(c.w1)})
    return row


def ptheta_frame(tasks: Sequence[TaskStudy]):
    """Every comparison of study 1 as a tidy table (one row per comparison)."""
    import pandas as pd

    rows = []
    for task in tasks:
        for algo, model in task.models.items():
            common = {
                "task": task.env_id,
                "learner": algo,
                "max_growth": float(model.slopes.max()),
                "share_growing": _share_growing(model.slopes),
            }
            rows.append(
                _comparison_row(task.dpi_vs_de[algo], **common, temperature=None, status=None)
            )
            for temperature in TEMPERATURES:
                run = model.chains[temperature]
                extra = {
                    "temperature": temperature,
                    "status": model.status(temperature),
                    "rhat": run.rhat,
                    "start_mmd_p": None if run.start_mmd is None else run.start_mmd.p_value,
                    "nonfinite_chains": run.n_nonfinite,
                    "chain_steps": int(run.steps[-1]),
                }
                for c in (model.vs_dpi.get(temperature), model.vs_de.get(temperature)):
                    if c is not None:
                        rows.append(_comparison_row(c, **common, **extra))
    return pd.DataFrame(rows)


def _drift_frame(drift: DriftResult, sharp_drift: DriftResult):
    import pandas as pd

    rows = []
    for expert, result in (("noisy clone", drift), ("noise-free clone", sharp_drift)):
        for algo, tv in result.tv.items():
            for k, row in enumerate(tv):
                for i, update in enumerate(result.updates):
                    measured = np.flatnonzero(result.return_updates == update)
                    rows.append(
                        {
                            "expert": expert,
                            "algo": algo,
                            "learner": k,
                            "update": int(update),
                            "tv": float(row[i]),
                            "return": float(result.returns[algo][k, measured[0]])
                            if measured.size
                            else None,
                        }
                    )
    return pd.DataFrame(rows)


def _consistency_frame(cons: ConsistencyResult):
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "algo": algo,
                "n_pairs": int(n),
                "learner": k,
                "tv": float(cons.tv[algo][i, k]),
                "return": float(cons.returns[algo][i, k]),
            }
            for algo in cons.tv
            for i, n in enumerate(cons.sizes)
            for k in range(cons.tv[algo].shape[1])
        ]
    )


def _rho_frame(tasks: Sequence[TaskStudy]):
    import pandas as pd

    return pd.DataFrame(
        [
            dataclasses.asdict(rho_summary(t.env_id, algo, rho))
            for t in tasks
            for algo, rho in t.rho.items()
        ]
    )


# --- the report section ---------------------------------------------------------------------------

#: Files :func:`run_deep_critique` writes into the report folder.
DEEP_FILES = (
    "deep_ptheta.png",
    "deep_shift.png",
    "deep_drift.png",
    "deep_consistency.png",
    "deep_rho.png",
    "deep_ptheta.csv",
    "deep_drift.csv",
    "deep_consistency.csv",
    "deep_rho.csv",
)


def run_deep_critique(
    config: DeepCritiqueConfig, out_dir: str | Path, progress: ProgressCallback | None = None
) -> ClaimSection:
    """Run the four deep studies, write their figures and tables to ``out_dir``, return the section.

    Args:
        config: budgets (:meth:`DeepCritiqueConfig.preset` for the full and quick runs).
        out_dir: an existing folder; :data:`DEEP_FILES` are written into it atomically.
        progress: called as ``progress(done, total)`` after each stage.

    Returns:
        The ``"deep"`` :class:`~sbil.experiments.claims.ClaimSection`.
    """
    from sbil.experiments.io import save_figure_atomic, write_csv_atomic

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is not an existing folder; create it first.")
    start = time.perf_counter()
    total = 4 * len(config.tasks) + 9
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    tasks = [ptheta_study(env_id, config, tick) for env_id in config.tasks]
    shifts = [shift_study(task, config) for task in tasks]
    expert = realisable_expert(
        config, action_noise=config.expert_action_noise, pool_pairs=config.pool_pairs
    )
    tick()
    drift = drift_study(expert, config, n_updates=config.drift_updates, progress=tick)
    sharp = realisable_expert(config, action_noise=0.0, pool_pairs=min(config.pool_pairs, 100_000))
    tick()
    sharp_drift = drift_study(sharp, config, n_updates=config.sharp_drift_updates, progress=tick)
    consistency = consistency_study(expert, config, tick)
    figures = {
        "deep_ptheta.png": plot_ptheta(tasks),
        "deep_shift.png": plot_shift(shifts[0]),
        "deep_drift.png": plot_drift(drift, sharp_drift),
        "deep_consistency.png": plot_consistency(consistency),
        "deep_rho.png": plot_rho(tasks),
    }
    for name, figure in figures.items():
        save_figure_atomic(figure, out_dir / name, dpi=110)
    frames = {
        "deep_ptheta.csv": ptheta_frame(tasks),
        "deep_drift.csv": _drift_frame(drift, sharp_drift),
        "deep_consistency.csv": _consistency_frame(consistency),
        "deep_rho.csv": _rho_frame(tasks),
    }
    for name, frame in frames.items():
        write_csv_atomic(frame, out_dir / name)
    tick()
    runtime = time.perf_counter() - start
    return _section(
        tasks, shifts, (expert, drift, sharp, sharp_drift), consistency, config, runtime
    )


def _section(tasks, shifts, drifts, consistency, config, runtime) -> ClaimSection:
    mixing, spread = ptheta_tables(tasks, config)
    intro = (
        f"Trained networks instead of finite MDPs (seed {config.seed}; this part ran in "
        f"{runtime / 60:.1f} minutes). Learners use EDM's published settings (Adam 1e-3, "
        "batch 32, SGLD 20 steps of step 0.01 and noise 0.01 from a `U(-1, 1)` buffer of "
        f"10,000, greedy actions) on {config.demo_episodes} scripted-expert trajectories of "
        f"each task, every step, {config.updates:,} updates, seed {config.seed}. d_E: "
        f"{config.n_states} states of {config.rollout_episodes} held-out expert episodes; "
        f"d_pi: {config.n_states} states of {config.rollout_episodes} of the learner's own. "
        "MMD uses an RBF kernel with the median-heuristic bandwidth on coordinates divided "
        f"by d_E's standard deviations and {config.n_permutations} permutations; the C2ST is "
        "a k-nearest-neighbour classifier (k near the square root of the training size) "
        "trained on half of each sample, its held-out accuracy with a 95% Wilson interval; "
        "W1 is per coordinate in raw units (`deep_ptheta.csv` has every coordinate)."
    )
    p_claim = ptheta_claim(tasks, config)
    blocks: list[str | Claim] = [
        intro,
        "### p_theta, d_pi and d_E",
        "Mixing and distances (T = 1 samples p_theta; T = 0.005, EDM's training setting, "
        "samples about p_theta^200). 'p_theta' is *improper* (not normalisable on R^d, the "
        "states SGLD samples) when `logsumexp f` does not decay along "
        f"some of {config.n_directions:,} random directions (then no chain can mix), *mixed* "
        f"when R-hat < {RHAT_THRESHOLD} and the two starts agree, else *not mixed*; distances "
        f"are those of the chains after {config.chain_lengths[-1]:,} steps (the T = 1 rows "
        "compare with d_pi; the last row of each learner compares d_pi with d_E).",
        mixing,
        "Spread (standard deviation) of one coordinate in each sample (EDM, chains after "
        f"{config.chain_lengths[-1]:,} steps):",
        spread,
        "![p_theta against d_pi and d_E](deep_ptheta.png)",
        p_claim,
        "### Example 2: a per-state shift",
        "![policy and state model before and after the shift](deep_shift.png)",
        shift_claim(shifts),
        "### Theorem 1 with a realisable expert",
        "![EDM and BC started at the expert's weights](deep_drift.png)",
        drift_claim(*drifts, config),
        "![TV and return against N](deep_consistency.png)",
        consistency_claim(consistency, drifts[1], config),
        "### Where rho settles",
        "![rho over updates](deep_rho.png)",
        rho_claim(tasks, config),
    ]
    caveats = (
        f"Deep studies: one learner (seed {config.seed}) per task and algorithm for the "
        f"p_theta, shift and rho studies; {config.drift_seeds} per algorithm in the drift "
        f"study and {config.consistency_seeds} per algorithm and N in the consistency study, "
        "whose intervals over so few seeds are wide.",
        f"The consistency study trains {config.consistency_updates:,} updates per learner "
        f"(the published 10,000 elsewhere), to keep `sbil reproduce --deep` within about 20 "
        "minutes on two cores. "
        f"The realisable-expert studies run on {config.expert_task} only, and compare "
        "softmax-acting learners with a softmax-acting expert; the p_theta study's learners "
        "act greedily, as sbil's learners do.",
        "SGLD diagnostics can show that chains have not mixed, never prove that they have: "
        "'mixed' means no diagnostic here found otherwise.",
    )
    return ClaimSection(
        id="deep",
        title="The critique at deep scale",
        blocks=tuple(blocks),
        files=DEEP_FILES,
        caveats=caveats,
        config={**config.to_dict(), "runtime_s": round(runtime, 1)},
        claim_style="heading",
    )


def deep_claims(
    out_dir: Path, *, seed: int, quick: bool, progress: ProgressCallback | None = None
) -> ClaimSection:
    """The ``sbil reproduce --deep`` entry point: the full (or quick) deep studies.

    Args:
        out_dir: the report's staging folder (exists); :data:`DEEP_FILES` are written there.
        seed: ``--seed``.
        quick: ``--quick``: a smoke-test size (about a minute).
        progress: ``progress(done, total)``, or None.
    """
    if not isinstance(quick, (bool, np.bool_)):
        raise ValueError(f"quick must be True or False, got {quick!r}.")
    return run_deep_critique(
        DeepCritiqueConfig.preset(quick=bool(quick), seed=seed), out_dir, progress
    )

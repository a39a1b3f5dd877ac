"""SGLD chains of the deep studies and their mixing diagnostics: chains from two starts,
split-R-hat, a network's growth along rays.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps

from sbil.deep.learners import torch_threads
from sbil.deep.networks import StackedMLP
from sbil.deep.sgld import langevin_noise_scale, sgld_logsumexp
from sbil.experiments.deep_critique.config import ALPHA, GROWTH_TOLERANCE, RHAT_THRESHOLD
from sbil.experiments.deep_critique.networks import _forward, _logsumexp
from sbil.experiments.deep_critique.rollouts import _draw_rows
from sbil.experiments.two_sample import (
    MMDResult,
    mmd_test,
)


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

"""Consistency study: BC and EDM estimates against data size, and their infinite-data limits.

Problems are (MDP, shared linear features ``Phi[s, a, k]``, expert ``theta_E``) triples: the
Example 3 MDP of Theorem 1, and random MDPs with random features and a random expert in the
same class (so BC is realisable). The expert's data distribution is its exact state-action
visitation ``d_E[s, a]``; a data set of size N is ``N`` iid draws from ``d_E`` (multinomial
counts / N via :func:`sbil.tabular.demos.sample_visitation`), not trajectories. "Infinite
data" is ``d_E`` itself. All fits of one kind run as one batched Newton solve.

A fit with no finite minimiser (e.g. an action never observed in a state, so the likelihood
keeps increasing as a logit goes to infinity; the estimators detect it and say so in their
``status``) is kept with error ``+inf``: the estimator does not exist. Any other failure
(iteration limit, line search) is kept the same way and counted separately. Nothing is
dropped; the interquartile mean stays finite while fewer than a quarter of fits are infinite.

Results are tidy rows (:class:`pandas.DataFrame`), one per (problem, method, N, seed), with the
configuration and the git commit.

Longer than ~400 lines: one study's pipeline (its configuration and checks, the problems,
the batched fits per data size, the infinite-data and oracle limits, and the summaries the
report and the claims read), whose stages pass arrays of one layout; the report and the claims
live elsewhere (:mod:`sbil.experiments.reproduce`, :mod:`sbil.experiments.claims_beyond`).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sbil.experiments.stats import Interval, iqm, stratified_bootstrap_ci, wilson_interval
from sbil.files import git_commit
from sbil.progress import ProgressCallback
from sbil.tabular.critique import theorem1_mdp
from sbil.tabular.demos import sample_visitation
from sbil.tabular.estimators import NO_FINITE_MINIMISER, fit_bc, fit_edm
from sbil.tabular.mdp import TabularMDP, random_mdp
from sbil.tabular.numeric import total_variation
from sbil.tabular.oracle import fit_occupancy_matching
from sbil.tabular.policies import (
    example3_features,
    policy_probs,
    random_features,
    tabular_features,
)
from sbil.tabular.visitation import state_action_visitation

#: Eight data sizes, log-spaced from 10 to 10^6.
DEFAULT_SIZES = tuple(int(n) for n in np.round(np.logspace(1, 6, 8)))


@dataclass(frozen=True)
class ConsistencyConfig:
    """Configuration of the consistency study.

    Attributes:
        n_mdps: number of random MDPs.
        n_states: states per random MDP.
        n_actions: actions per random MDP.
        n_params: number of shared parameters (feature dimension K).
        sizes: data sizes N (each at least 1).
        n_seeds: data sets drawn per (random MDP, N).
        n_seeds_example3: data sets drawn per N on the Example 3 MDP.
        n_oracle: random MDPs (the first ones) on which occupancy matching is also fitted,
            with infinite data and, on the first ``n_oracle_seeds`` data sets of every N,
            with finite data (the same data sets BC and EDM see).
        n_oracle_seeds: data sets per (random MDP, N) for the finite-data oracle fits; at most
            ``n_seeds`` are used (:attr:`oracle_seeds`) (0:
            infinite data only); on the Example 3 MDP the oracle sees all
            ``n_seeds_example3`` data sets whenever ``n_oracle > 0``.
        n_tabular: random MDPs used for the one-hot (fully tabular) comparison.
        theta_scale: the expert's theta_E is drawn N(0, theta_scale^2) per coordinate.
        limit_tolerance: |theta_inf - theta_E| above this counts as inconsistent.
        seed: root seed; everything else is derived from it.
    """

    n_mdps: int = 200
    n_states: int = 20
    n_actions: int = 4
    n_params: int = 5
    sizes: tuple[int, ...] = DEFAULT_SIZES
    n_seeds: int = 5
    n_seeds_example3: int = 50
    n_oracle: int = 20
    n_oracle_seeds: int = 3
    n_tabular: int = 50
    theta_scale: float = 1.0
    limit_tolerance: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        counts = (
            "n_mdps",
            "n_states",
            "n_actions",
            "n_params",
            "n_seeds",
            "n_seeds_example3",
            "n_oracle",
            "n_oracle_seeds",
            "n_tabular",
            "seed",
        )
        for name in counts:
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer; got {getattr(self, name)!r}.")
        for name in ("n_mdps", "n_states", "n_actions", "n_params", "n_seeds", "n_seeds_example3"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if self.n_states < 2 or self.n_actions < 2:
            raise ValueError("random MDPs need at least 2 states and 2 actions.")
        for name in ("n_oracle", "n_tabular"):
            if not 0 <= getattr(self, name) <= self.n_mdps:
                raise ValueError(f"{name} must lie in [0, n_mdps]; got {getattr(self, name)}.")
        if self.n_oracle_seeds < 0:
            raise ValueError(f"n_oracle_seeds must be at least 0; got {self.n_oracle_seeds}.")
        if self.seed < 0:
            raise ValueError(
                f"seed must be a non-negative integer (numpy seeds cannot be negative); got "
                f"{self.seed}."
            )
        if (
            not isinstance(self.sizes, tuple)
            or len(self.sizes) == 0
            or not all(_is_int(n) and n >= 1 for n in self.sizes)
        ):
            raise ValueError(f"sizes must be a non-empty tuple of positive ints; got {self.sizes}.")
        for name in ("theta_scale", "limit_tolerance"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not (
                np.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a positive finite number; got {value!r}.")

    @property
    def oracle_seeds(self) -> int:
        """Data sets per (random MDP, N) the oracle sees: ``min(n_oracle_seeds, n_seeds)``."""
        return min(self.n_oracle_seeds, self.n_seeds)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Problem:
    """One imitation problem: an MDP, shared features and a realisable expert.

    Attributes:
        name: "example3" or "random".
        index: index within its kind.
        mdp: the MDP.
        features: ``Phi[s, a, k]``.
        theta_expert: ``theta_E[k]``.
        d_expert: ``d_E[s, a]``, the expert's exact visitation.
    """

    name: str
    index: int
    mdp: TabularMDP
    features: np.ndarray
    theta_expert: np.ndarray
    d_expert: np.ndarray


def _seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def example3_problem(k: float = 0.5, theta_expert: float = 1.0) -> Problem:
    """The Example 3 class on Theorem 1's MDP (action 0 stays, action 1 switches)."""
    mdp = theorem1_mdp()
    features = example3_features(k)
    theta = np.array([theta_expert])
    return Problem(
        "example3",
        0,
        mdp,
        features,
        theta,
        state_action_visitation(mdp, policy_probs(features, theta)),
    )


def random_problems(
    config: ConsistencyConfig, *, one_hot: bool = False, count: int | None = None
) -> list[Problem]:
    """Random MDPs, random shared features, random experts (seeded from ``config.seed``).

    Args:
        config: study configuration.
        one_hot: use tabular (one-hot) features instead of random shared ones.
        count: number of problems (default ``config.n_mdps``).
    """
    problems = []
    for i in range(config.n_mdps if count is None else count):
        mdp = random_mdp(config.n_states, config.n_actions, seed=_seed(config.seed, 1, i))
        if one_hot:
            features = tabular_features(config.n_states, config.n_actions)
        else:
            features = random_features(
                config.n_states, config.n_actions, config.n_params, seed=_seed(config.seed, 2, i)
            )
        rng = np.random.default_rng(_seed(config.seed, 3, i))
        theta = config.theta_scale * rng.normal(size=features.shape[-1])
        d_e = state_action_visitation(mdp, policy_probs(features, theta))
        problems.append(Problem("random", i, mdp, features, theta, d_e))
    return problems


def policy_tv(pi: np.ndarray, d_e: np.ndarray, pi_e: np.ndarray) -> np.ndarray:
    """``sum_s d_E(s) TV(pi(.|s), pi_E(.|s))``: policy TV averaged over the expert's states.

    Args:
        pi: learned policies ``pi[..., s, a]``.
        d_e: the expert's visitation ``d_E[..., s, a]``.
        pi_e: the expert's policy ``pi_E[..., s, a]``.

    Returns:
        ``tv[...]``.
    """
    return (d_e.sum(-1) * total_variation(pi, pi_e, axis=-1)).sum(-1)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


def _fit(
    method: str, features: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched fit; returns theta ``[B, K]``, converged ``[B]`` and status strings ``[B]``."""
    fit = (fit_bc if method == "bc" else fit_edm)(features, d, raise_on_failure=False)
    theta = np.asarray(fit.theta, dtype=np.float64)
    converged = np.asarray(fit.converged, dtype=bool).reshape(theta.shape[:-1])
    status = np.asarray(fit.status, dtype=str).reshape(converged.shape)
    return theta, converged, status


def _study_group(
    problems: list[Problem],
    sizes: tuple[int, ...],
    n_seeds: int,
    root_seed: int,
    group: int,
    *,
    oracle_count: int = 0,
    oracle_seeds: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Fits for problems that share shapes; returns column blocks for the tidy table.

    BC and EDM are fitted on every (N, seed, problem); occupancy matching (one L-BFGS-B fit
    at a time, so much slower) on the same data sets for the first ``oracle_count`` problems
    and first ``oracle_seeds`` seeds.
    """
    features = np.stack([p.features for p in problems])  # [B, S, A, K]
    theta_e = np.stack([p.theta_expert for p in problems])  # [B, K]
    d_e = np.stack([p.d_expert for p in problems])  # [B, S, A]
    pi_e = policy_probs(features, theta_e)
    blocks = []
    # Finite data: every (N, seed) for every problem in one batch per method.
    d_hat = np.stack(
        [
            np.stack(
                [
                    sample_visitation(d_e, n, seed=_seed(root_seed, 4, group, j, r))
                    for r in range(n_seeds)
                ]
            )
            for j, n in enumerate(sizes)
        ]
    )  # [n_sizes, n_seeds, B, S, A]
    shape = d_hat.shape[:3]
    flat_features = np.broadcast_to(features, (*shape, *features.shape[1:])).reshape(
        -1, *features.shape[1:]
    )
    n_col = np.broadcast_to(np.asarray(sizes, dtype=np.float64)[:, None, None], shape)
    seed_col = np.broadcast_to(np.arange(n_seeds)[None, :, None], shape)
    pid_col = np.broadcast_to(np.array([p.index for p in problems])[None, None, :], shape)
    for method in ("bc", "edm"):
        theta, ok, status = _fit(method, flat_features, d_hat.reshape(-1, *d_hat.shape[3:]))
        theta = theta.reshape(*shape, -1)
        ok = ok.reshape(shape)
        err = np.where(ok, np.linalg.norm(theta - theta_e, axis=-1), np.inf)
        safe_theta = np.where(ok[..., None], theta, 0.0)
        ptv = np.where(ok, policy_tv(policy_probs(features, safe_theta), d_e, pi_e), np.nan)
        blocks.append(
            {
                "problem": np.full(ok.size, problems[0].name),
                "problem_id": pid_col.reshape(-1),
                "method": np.full(ok.size, method),
                "n_samples": n_col.reshape(-1),
                "seed": seed_col.reshape(-1),
                "converged": ok.reshape(-1),
                "status": status.reshape(-1),
                "error": err.reshape(-1),
                "policy_tv": ptv.reshape(-1),
                "visitation_tv": np.full(ok.size, np.nan),
                "kl_expert_to_learner": np.full(ok.size, np.nan),
            }
        )
    if oracle_count and oracle_seeds:
        blocks.append(
            _oracle_finite_block(
                problems[:oracle_count], d_hat[:, :oracle_seeds, :oracle_count], sizes
            )
        )
    # Infinite data: fit on d_E itself, and measure the learned policy's true visitation.
    for method in ("bc", "edm"):
        theta, ok, status = _fit(method, features, d_e)
        blocks.append(_limit_block(problems, method, theta, ok, status, pi_e))
    return blocks


def _limit_block(
    problems: list[Problem],
    method: str,
    theta: np.ndarray,
    ok: np.ndarray,
    status: np.ndarray,
    pi_e: np.ndarray,
) -> dict[str, np.ndarray]:
    n_b = len(problems)
    err = np.full(n_b, np.inf)
    ptv = np.full(n_b, np.nan)
    vtv = np.full(n_b, np.nan)
    kl = np.full(n_b, np.nan)
    for b, p in enumerate(problems):
        if not ok[b]:
            continue
        err[b] = float(np.linalg.norm(theta[b] - p.theta_expert))
        pi = policy_probs(p.features, theta[b])
        ptv[b] = float(policy_tv(pi, p.d_expert, pi_e[b]))
        d_pi = state_action_visitation(p.mdp, pi)
        vtv[b] = float(total_variation(d_pi, p.d_expert, axis=(-2, -1)))
        kl[b] = _kl(p.d_expert, d_pi)
    return {
        "problem": np.full(n_b, problems[0].name),
        "problem_id": np.array([p.index for p in problems]),
        "method": np.full(n_b, method),
        "n_samples": np.full(n_b, np.inf),
        "seed": np.full(n_b, -1),
        "converged": np.asarray(ok, dtype=bool),
        "status": np.asarray(status, dtype=str),
        "error": err,
        "policy_tv": ptv,
        "visitation_tv": vtv,
        "kl_expert_to_learner": kl,
    }


def _fit_oracle(problem: Problem, d: np.ndarray) -> tuple[np.ndarray, bool, str]:
    fit = fit_occupancy_matching(problem.mdp, problem.features, d, raise_on_failure=False)
    return np.asarray(fit.theta, dtype=np.float64), bool(np.all(fit.converged)), str(fit.status)


def _oracle_finite_block(
    problems: list[Problem], d_hat: np.ndarray, sizes: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Occupancy matching on finite data sets ``d_hat[size, seed, problem, s, a]``."""
    n_sizes, n_seeds, n_b = d_hat.shape[:3]
    theta = np.zeros((n_sizes, n_seeds, n_b, problems[0].features.shape[-1]))
    ok = np.zeros((n_sizes, n_seeds, n_b), dtype=bool)
    status = np.empty((n_sizes, n_seeds, n_b), dtype=object)
    for index in np.ndindex(n_sizes, n_seeds, n_b):
        theta[index], ok[index], status[index] = _fit_oracle(problems[index[2]], d_hat[index])
    features = np.stack([p.features for p in problems])
    theta_e = np.stack([p.theta_expert for p in problems])
    d_e = np.stack([p.d_expert for p in problems])
    pi_e = policy_probs(features, theta_e)
    err = np.where(ok, np.linalg.norm(theta - theta_e, axis=-1), np.inf)
    pi = policy_probs(features, np.where(ok[..., None], theta, 0.0))
    ptv = np.where(ok, policy_tv(pi, d_e, pi_e), np.nan)
    shape = ok.shape
    return {
        "problem": np.full(ok.size, problems[0].name),
        "problem_id": np.broadcast_to(np.array([p.index for p in problems]), shape).reshape(-1),
        "method": np.full(ok.size, "oracle"),
        "n_samples": np.broadcast_to(np.asarray(sizes, dtype=np.float64)[:, None, None], shape)
        .reshape(-1)
        .copy(),
        "seed": np.broadcast_to(np.arange(n_seeds)[None, :, None], shape).reshape(-1).copy(),
        "converged": ok.reshape(-1),
        "status": status.reshape(-1).astype(str),
        "error": err.reshape(-1),
        "policy_tv": ptv.reshape(-1),
        "visitation_tv": np.full(ok.size, np.nan),
        "kl_expert_to_learner": np.full(ok.size, np.nan),
    }


def _oracle_block(problems: list[Problem], pi_e: np.ndarray) -> dict[str, np.ndarray]:
    fits = [_fit_oracle(p, p.d_expert) for p in problems]
    thetas, oks, statuses = zip(*fits, strict=True) if fits else ((), (), ())
    return _limit_block(
        problems, "oracle", np.stack(thetas), np.array(oks), np.array(statuses), pi_e
    )


@dataclass(frozen=True)
class ConsistencyResult:
    """Tidy results of :func:`run_consistency`.

    Attributes:
        config: the configuration that produced them.
        rows: one row per (problem, problem_id, method, n_samples, seed); ``n_samples`` is
            ``inf`` and ``seed`` is -1 for infinite-data limits. Columns: problem, problem_id,
            method ("bc", "edm", "oracle"), n_samples, seed, converged, status (the
            estimator's: "converged", "no finite minimiser", ...), error
            (``||theta_hat - theta_E||_2``, ``inf`` when not converged), policy_tv
            (TV between learned and expert policies averaged over d_E(s)), visitation_tv
            (TV between the learned policy's true d_pi(s, a) and d_E(s, a); limits only),
            kl_expert_to_learner (KL(d_E || d_pi); limits only), plus the config and commit.
        tabular: one row per one-hot problem: max abs difference between BC's and EDM's
            limiting policies and each one's policy TV to the expert.
    """

    config: ConsistencyConfig
    rows: pd.DataFrame
    tabular: pd.DataFrame = field(repr=False)


def run_consistency(
    config: ConsistencyConfig, progress: ProgressCallback | None = None
) -> ConsistencyResult:
    """Run the consistency study.

    Args:
        config: what to run.
        progress: optional ``progress(done, total)``, called after each of its stages (the
            Example 3 MDP; the random MDPs with the oracle's fits; the one-hot comparison).

    Returns:
        ConsistencyResult with tidy rows.
    """
    total = 2 + bool(config.n_tabular)
    done = 0

    def stage_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    ex3 = [example3_problem()]
    with_oracle = 1 if config.n_oracle else 0
    blocks = _study_group(
        ex3,
        config.sizes,
        config.n_seeds_example3,
        config.seed,
        0,
        oracle_count=with_oracle,
        oracle_seeds=with_oracle * config.n_seeds_example3,
    )
    stage_done()
    problems = random_problems(config)
    blocks += _study_group(
        problems,
        config.sizes,
        config.n_seeds,
        config.seed,
        1,
        oracle_count=config.n_oracle,
        oracle_seeds=config.oracle_seeds,
    )
    if config.n_oracle:
        subset = problems[: config.n_oracle]
        pi_e = np.stack([policy_probs(p.features, p.theta_expert) for p in subset])
        blocks.append(_oracle_block(subset, pi_e))
        pi_e3 = policy_probs(ex3[0].features, ex3[0].theta_expert)[None]
        blocks.append(_oracle_block(ex3, pi_e3))
    stage_done()
    rows = pd.concat([pd.DataFrame(b) for b in blocks], ignore_index=True)
    commit = git_commit()
    cfg = asdict(config)
    rows["n_states"] = np.where(rows["problem"] == "random", config.n_states, 2)
    rows["n_actions"] = np.where(rows["problem"] == "random", config.n_actions, 2)
    rows["n_params"] = np.where(rows["problem"] == "random", config.n_params, 1)
    rows["root_seed"] = cfg["seed"]
    rows["git_commit"] = commit
    tabular = pd.DataFrame()
    if config.n_tabular:
        tabular = tabular_comparison(config)
        tabular["git_commit"] = commit
        stage_done()
    return ConsistencyResult(config=config, rows=rows, tabular=tabular)


def tabular_comparison(config: ConsistencyConfig) -> pd.DataFrame:
    """Fully tabular (one-hot) features: BC's and EDM's infinite-data policies coincide.

    With one parameter per (s, a), BC recovers ``d_E(a|s)`` and EDM's joint softmax recovers
    ``d_E(s, a)``, hence the same conditional ``d_E(a|s)``.

    Returns:
        One row per problem: problem_id, converged_bc, converged_edm, max_policy_diff
        (max over (s, a) of |pi_BC - pi_EDM|), policy_tv_bc, policy_tv_edm.
    """
    problems = random_problems(config, one_hot=True, count=config.n_tabular)
    features = np.stack([p.features for p in problems])
    d_e = np.stack([p.d_expert for p in problems])
    pi_e = np.stack([policy_probs(p.features, p.theta_expert) for p in problems])
    out: dict[str, Any] = {"problem_id": np.array([p.index for p in problems])}
    pis = {}
    for method in ("bc", "edm"):
        theta, ok, _ = _fit(method, features, d_e)
        pis[method] = policy_probs(features, np.where(ok[:, None], theta, 0.0))
        out[f"converged_{method}"] = ok
        out[f"policy_tv_{method}"] = np.where(ok, policy_tv(pis[method], d_e, pi_e), np.nan)
    both = out["converged_bc"] & out["converged_edm"]
    diff = np.abs(pis["bc"] - pis["edm"]).max(axis=(-2, -1))
    out["max_policy_diff"] = np.where(both, diff, np.nan)
    return pd.DataFrame(out)


def summarise(result: ConsistencyResult, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Aggregate finite-data errors per (problem, method, N): IQM and a 95% bootstrap CI.

    The CI is a stratified bootstrap with problems as strata and data seeds as runs
    (rliable-style), so it reflects sampling noise given this set of MDPs. Fits without a
    finite minimiser enter with error +inf and are counted in ``n_no_minimiser``.

    Returns:
        One row per (problem, method, n_samples) with n_problems, n_fits, n_no_minimiser,
        n_other_failures, iqm, ci_low, ci_high, iqm_policy_tv (over converged fits).
    """
    finite = result.rows[np.isfinite(result.rows["n_samples"])]
    out = []
    for (problem, method, n), grp in finite.groupby(["problem", "method", "n_samples"], sort=True):
        matrix = grp.pivot(index="seed", columns="problem_id", values="error").to_numpy()
        ci = stratified_bootstrap_ci(matrix, n_resamples=n_resamples, seed=seed)
        ok = grp["converged"].to_numpy()
        no_min = (grp["status"] == NO_FINITE_MINIMISER).to_numpy()
        out.append(
            {
                "problem": problem,
                "method": method,
                "n_samples": int(n),
                "n_problems": int(grp["problem_id"].nunique()),
                "n_fits": len(grp),
                "n_no_minimiser": int(no_min.sum()),
                "n_other_failures": int((~ok & ~no_min).sum()),
                "iqm": ci.estimate,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "iqm_policy_tv": float(iqm(grp["policy_tv"].to_numpy()[ok]))
                if ok.any()
                else float("nan"),
            }
        )
    return pd.DataFrame(out)


def oracle_subset(result: ConsistencyResult) -> ConsistencyResult:
    """The rows of the problems and data sets on which the oracle was also fitted.

    For a paired comparison of BC, EDM and occupancy matching: the Example 3 MDP (all its
    data sets) and the first ``n_oracle`` random MDPs with their first ``n_oracle_seeds``
    data sets per N, plus their infinite-data limits. Empty rows if ``n_oracle`` is 0.
    """
    cfg = result.config
    rows = result.rows
    on_subset = (rows["problem"] == "example3") | (
        (rows["problem_id"] < cfg.n_oracle)
        & ((rows["seed"] < cfg.oracle_seeds) | (rows["seed"] == -1))
    )
    keep = on_subset & (cfg.n_oracle > 0)
    return ConsistencyResult(
        config=cfg, rows=rows[keep].reset_index(drop=True), tabular=result.tabular
    )


def limits(result: ConsistencyResult) -> pd.DataFrame:
    """The infinite-data rows (``n_samples == inf``)."""
    rows = result.rows
    return rows[~np.isfinite(rows["n_samples"])].reset_index(drop=True)


def inconsistency_summary(result: ConsistencyResult, problem: str = "random") -> dict[str, Any]:
    """Headline numbers on the infinite-data limits of one problem kind.

    Returns:
        A JSON-ready dict: counts and fraction (with Wilson 95% interval) of problems where
        EDM's limit differs from theta_E beyond ``limit_tolerance``; quantiles of EDM's
        limiting error, policy TV and true-visitation TV; the same maxima for BC and the
        oracle; counts of limits without a finite minimiser.
    """
    tol = result.config.limit_tolerance
    lim = limits(result)
    lim = lim[lim["problem"] == problem]
    out: dict[str, Any] = {"limit_tolerance": tol}
    for method in ("bc", "edm", "oracle"):
        m = lim[lim["method"] == method]
        if m.empty:
            continue
        ok = m["converged"].to_numpy()
        no_min = (m["status"] == NO_FINITE_MINIMISER).to_numpy()
        err = m["error"].to_numpy()
        bad = int((err > tol).sum())
        frac = wilson_interval(bad, len(m))
        out[method] = {
            "n_problems": len(m),
            "n_no_minimiser": int(no_min.sum()),
            "n_other_failures": int((~ok & ~no_min).sum()),
            "n_inconsistent": bad,
            "fraction_inconsistent": frac.estimate,
            "fraction_ci95": [frac.low, frac.high],
            "error_quantiles": _quantiles(m["error"].to_numpy()[ok]),
            "policy_tv_quantiles": _quantiles(m["policy_tv"].to_numpy()[ok]),
            "visitation_tv_quantiles": _quantiles(m["visitation_tv"].to_numpy()[ok]),
            "kl_quantiles": _quantiles(m["kl_expert_to_learner"].to_numpy()[ok]),
            "error_iqm": float(iqm(err[ok])) if ok.any() else None,
            "visitation_tv_iqm": float(iqm(m["visitation_tv"].to_numpy()[ok]))
            if ok.any()
            else None,
        }
    return out


def _quantiles(values: np.ndarray) -> list[float]:
    """(min, q1, median, q3, max) as floats, or [] for no values."""
    if values.size == 0:
        return []
    return [float(x) for x in np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])]


def error_slope(summary: pd.DataFrame, problem: str, method: str, *, min_n: int = 1000) -> float:
    """Least-squares slope of log IQM error against log N over ``N >= min_n`` (NaN if < 2)."""
    s = summary[
        (summary["problem"] == problem)
        & (summary["method"] == method)
        & (summary["n_samples"] >= min_n)
    ]
    s = s[np.isfinite(s["iqm"]) & (s["iqm"] > 0)]
    if len(s) < 2:
        return float("nan")
    return float(np.polyfit(np.log(s["n_samples"]), np.log(s["iqm"]), 1)[0])


def error_slope_interval(
    result: ConsistencyResult,
    problem: str,
    method: str,
    *,
    min_n: int = 1000,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """:func:`error_slope` with a stratified-bootstrap confidence interval.

    The data sets at each N are independent draws, so each resample redraws, for every
    (N, problem) independently, that problem's data seeds with replacement (rliable's
    stratified bootstrap, strata = (N, problem) pairs), takes the IQM over problems and seeds
    at each N and fits the least-squares slope of log IQM on log N over ``N >= min_n``.

    Returns:
        Interval whose estimate equals :func:`error_slope` on :func:`summarise`; NaN ends when
        fewer than two sizes qualify or an IQM is infinite or zero.
    """
    rows = result.rows
    rows = rows[
        (rows["problem"] == problem)
        & (rows["method"] == method)
        & np.isfinite(rows["n_samples"])
        & (rows["n_samples"] >= min_n)
    ]
    sizes = sorted(set(rows["n_samples"]))
    nan = Interval(float("nan"), float("nan"), float("nan"), confidence)
    if len(sizes) < 2:
        return nan
    blocks = [
        rows[rows["n_samples"] == n].pivot(index="seed", columns="problem_id", values="error")
        for n in sizes
    ]
    matrix = np.concatenate([b.to_numpy() for b in blocks], axis=1)  # [seed, (N, problem)]
    if not np.all(np.isfinite(matrix)) or np.any(matrix <= 0):
        return nan
    widths = [b.shape[1] for b in blocks]
    edges = np.cumsum([0, *widths])
    log_n = np.log(np.asarray(sizes, dtype=np.float64))
    centred = log_n - log_n.mean()

    def slope(batch: np.ndarray) -> np.ndarray:  # [..., seed, (N, problem)] -> [...]
        logs = np.stack(
            [np.log(iqm(batch[..., lo:hi], axis=(-2, -1))) for lo, hi in itertools.pairwise(edges)],
            axis=-1,
        )
        return (logs * centred).sum(-1) / (centred * centred).sum()

    return stratified_bootstrap_ci(
        matrix, slope, n_resamples=n_resamples, confidence=confidence, seed=seed
    )

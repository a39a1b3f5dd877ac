"""Study 1: p_theta of trained EDM and decoupled-EDM learners against the learner's own
visitation d_pi and the expert's d_E; its claim, figure and table.

Longer than the package's other modules: the study, its claim, figure and table are kept in
one file, so that whoever changes the study finds everything that reports it here.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sbil.deep.experts import get_expert
from sbil.deep.learners import Learner, LearnerConfig, TrainResult, train
from sbil.experiments.claims import Claim, fmt, table
from sbil.experiments.deep_critique.common import (
    _ALGO_COLOURS,
    _ALGO_LABELS,
    _figure,
    _range,
    _slice_coordinate,
    coordinate_name,
)
from sbil.experiments.deep_critique.config import (
    _DEMO_SEEDS,
    _EXPERT_EVAL_SEEDS,
    _LEARNER_EVAL_SEEDS,
    ALPHA,
    GROWTH_TOLERANCE,
    PUBLISHED_TEMPERATURE,
    RHAT_THRESHOLD,
    TEMPERATURES,
    DeepCritiqueConfig,
    _episode_seed,
)
from sbil.experiments.deep_critique.mixing import (
    ChainRun,
    _share_growing,
    asymptotic_slopes,
    run_chains,
)
from sbil.experiments.deep_critique.networks import stacked_network
from sbil.experiments.deep_critique.rollouts import _draw_rows, recorded_episodes
from sbil.experiments.two_sample import (
    C2STResult,
    MMDResult,
    classifier_two_sample_test,
    mmd_test,
    wasserstein_per_dimension,
)


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

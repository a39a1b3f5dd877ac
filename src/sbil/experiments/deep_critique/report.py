"""The deep section of the report: :func:`run_deep_critique` runs the studies and writes their
files, :func:`deep_claims` is ``sbil reproduce --deep``'s entry point.

Part of :mod:`sbil.experiments.deep_critique` (its module doc says what the studies ask).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sbil.experiments.claims import Claim, ClaimSection
from sbil.experiments.deep_critique.config import RHAT_THRESHOLD, DeepCritiqueConfig
from sbil.experiments.deep_critique.study_ptheta import (
    plot_ptheta,
    ptheta_claim,
    ptheta_frame,
    ptheta_study,
    ptheta_tables,
)
from sbil.experiments.deep_critique.study_realisable import (
    _consistency_frame,
    _drift_frame,
    consistency_claim,
    consistency_study,
    drift_claim,
    drift_study,
    plot_consistency,
    plot_drift,
    realisable_expert,
)
from sbil.experiments.deep_critique.study_rho import _rho_frame, plot_rho, rho_claim
from sbil.experiments.deep_critique.study_shift import plot_shift, shift_claim, shift_study
from sbil.progress import ProgressCallback

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

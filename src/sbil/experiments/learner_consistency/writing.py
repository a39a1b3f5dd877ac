"""Writing the learner-consistency study: its README and files, atomically, and its argparse
command line (``python -m sbil.experiments.learner_consistency``).

Part of :mod:`sbil.experiments.learner_consistency`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from sbil.experiments.learner_consistency.config import (
    LearnerConsistencyConfig,
    LearnerConsistencyResult,
)
from sbil.experiments.learner_consistency.run import run_learner_consistency
from sbil.experiments.learner_consistency.summary import (
    EXPLANATIONS,
    summarise_action_independent,
    summarise_discount_scan,
    summarise_first_order,
    summarise_learners,
)
from sbil.files import lock, staged_folder, write_json_atomic, write_text_atomic

COMMAND = "sbil consistency --out docs/results/learner-consistency --workers 2"


def _fmt(x: float) -> str:
    return f"{x:.2e}" if np.isfinite(x) else "nan"


def render_readme(result: LearnerConsistencyResult, summary: pd.DataFrame) -> str:
    """The results README (renders ``summary`` and :data:`EXPLANATIONS`; computes nothing)."""
    cfg = result.config
    rows = result.rows
    lines = [
        "# Are the strictly batch learners consistent where BC is? (tabular, infinite data)",
        "",
        "The critique's question asked of every learner with a tabular form: on "
        f"{cfg.n_mdps} random MDPs (|S| = {cfg.n_states}, |A| = {cfg.n_actions}) with "
        f"K = {cfg.n_params} shared linear features and a realisable expert (the consistency "
        f"study's problems: the same seeds, root seed {cfg.seed}), with infinite expert data, "
        "does the learner's optimum recover the expert's policy?",
        "",
        "A fit *recovers* pi_E when it converged (gradient norm <= "
        f"{cfg.fit_tolerance:g}) and its policy TV averaged over the expert's states, "
        f"sum_s d_E(s) TV(pi(.|s), pi_E(.|s)), is <= {cfg.recovery_tolerance:g}. "
        "'pi_E not stationary' counts problems where the gradient of the learner's objective "
        "at the expert (minimised over everything that keeps the policy at pi_E) exceeds "
        f"{cfg.stationarity_tolerance:g}: there no parameter with the expert's policy is an "
        "optimum, whatever the optimiser. TV intervals: IQM over problems, 95% percentile "
        f"bootstrap over problems ({cfg.n_resamples} resamples, seed 0); recovery fractions: "
        "Wilson 95%.",
        "",
    ]
    for data in cfg.data:
        sub = summary[summary["data"] == data]
        lines += [f"## Data: {data}", "", _DATA_TEXT[data].format(gamma=cfg.discount), ""]
        lines += [
            "| learner | verdict | recovered | policy TV, IQM [95% CI] | median | max | "
            "pi_E not stationary | converged | no finite minimiser |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sub.itertuples():
            lines.append(
                f"| {r.learner} | {r.verdict} | {r.n_recovered}/{r.n_problems} "
                f"({r.fraction_low:.2f}-{r.fraction_high:.2f}) | {_fmt(r.tv_iqm)} "
                f"[{_fmt(r.tv_low)}, {_fmt(r.tv_high)}] | {_fmt(r.tv_median)} | "
                f"{_fmt(r.tv_max)} | {r.n_expert_not_stationary}/{r.n_problems} | "
                f"{r.n_converged}/{r.n_problems} | {r.n_no_minimiser} |"
            )
        part = rows[rows["data"] == data].drop_duplicates("problem_id")
        lines += [
            "",
            "Flow residuals sum_s |d_E(s) - (1 - gamma) mu0(s) - gamma (P^T d_E)(s)| over "
            "problems (median, max): from the MDP's start distribution "
            f"{_fmt(part['flow_residual_initial'].median())}, "
            f"{_fmt(part['flow_residual_initial'].max())}; from d_E(s) "
            f"{_fmt(part['flow_residual_expert'].median())}, "
            f"{_fmt(part['flow_residual_expert'].max())}. Greedy-policy TV floor (RCAL) "
            f"median {part['greedy_tv_floor'].median():.3f}, min "
            f"{part['greedy_tv_floor'].min():.3f}.",
            "",
        ]
    lines += ["## Why", ""]
    for name, text in EXPLANATIONS.items():
        lines += [f"- **{name}**: {text}", ""]
        if name == "valuedice":
            lines += _action_independent_lines(summarise_action_independent(result))
        elif name == "iqlearn":
            lines += _first_order_lines(result)
    gc = rows["gradient_check"].dropna()
    lines += [
        "## Protocol",
        "",
        "- Objectives and solvers: `sbil.tabular.learners` (equations in its docstring). "
        "Every expectation over the data is an exact sum over d_E[s, a] and P[s, a, s'] (the "
        "limit of the sampled minibatch losses).",
        "- ValueDICE: tabular critic nu (minimised exactly by Newton's method at every "
        "policy), policy softmax(Phi theta); `-initial` starts the (1 - gamma) term at the "
        "MDP's start distribution (the paper), `-expert` at d_E(s) (the authors' code and "
        "sbil's deep learner); `-expected` is the paper's Bellman-operator form exp(nu - "
        "gamma P^pi nu), the others keep s' inside the exponential's expectation (what the "
        "sampled loss converges to).",
        f"- IQ-Learn: chi-squared, value_expert form, tau = {cfg.temperature:g}, alpha = "
        f"{cfg.chi2_alpha:g}; Q = tau Phi theta (so pi_Q = softmax(Phi theta), BC's class, "
        "the expert at theta_E) with the shared features, or one free Q(s, a) (`-tabular`).",
        f"- AVRIL: state-only posterior N(mu_s, sigma_s^2), prior N(0, 1), lambda = "
        f"{cfg.likelihood_weight:g}, a' ~ pi_E(.|s'); Q = Phi theta (shared) or tabular; "
        "policy softmax(Q).",
        f"- Discount gamma = {cfg.discount:g} in every objective and in the discounted data.",
        "- Fits start at theta = 0 (the uniform policy; AVRIL's posterior at the prior): "
        "L-BFGS-B with analytic gradients, a Newton polish with a finite-difference Hessian "
        "if needed, and a central-difference gradient check at the end point (largest "
        f"relative error over all fits: {_fmt(gc.max()) if len(gc) else 'nan'}).",
        f"- Wall time: {result.wall_seconds:.0f} s; git commit "
        f"{rows['git_commit'].iloc[0] if len(rows) else 'unknown'}.",
        "",
        "Files: `rows.csv` (one row per problem, data and learner), `summary.csv` (the "
        "tables above), `valuedice-action-independent.csv` and `iqlearn-discounts.csv` (the "
        "side studies' rows), `config.json` (the configuration, the git commit and the "
        "command). Re-create with (or `python -m sbil.experiments.learner_consistency` with "
        "the same options)",
        "",
        "```",
        COMMAND,
        "```",
        "",
    ]
    return "\n".join(lines)


def _action_independent_lines(summary: pd.DataFrame) -> list[str]:
    if not len(summary):
        return []
    lines = [
        "  ValueDICE with action-independent transitions, and the problems as drawn "
        "(stationary data; flow residual from mu0: median [min, max]; -min_nu J at theta_E "
        "against the state mismatch KL(rho || d_E): equal in the expected form, below it in "
        "the sampled one):",
        "",
        "  | transitions | start | learner | recovered | flow residual | policy TV median, max "
        "| max grad at theta_E | -min_nu J at theta_E, median | KL(rho \\|\\| d_E), median | "
        "max \\|difference\\| |",
        "  |---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"  | {r.transitions} | {r.start} | {r.learner} | {r.n_recovered}/{r.n_problems} "
            f"| {_fmt(r.flow_residual_median)} [{_fmt(r.flow_residual_min)}, "
            f"{_fmt(r.flow_residual_max)}] | {_fmt(r.tv_median)}, {_fmt(r.tv_max)} | "
            f"{_fmt(r.expert_grad_max)} | {_fmt(r.expert_value_median)} | "
            f"{_fmt(r.state_kl_median)} | {_fmt(r.expert_value_minus_state_kl_max)} |"
        )
    return [*lines, ""]


def _first_order_lines(result: LearnerConsistencyResult) -> list[str]:
    first = summarise_first_order(result)
    if not len(first):
        return []
    cfg = result.config
    eps = cfg.temperature / (4.0 * cfg.chi2_alpha)
    lines = [
        f"  IQ-Learn's miss against its first-order prediction (eps = tau/(4 alpha) = "
        f"{eps:g}; ratios measured / predicted per problem, median [min, max]; the measured "
        "|theta* - theta_E| in units of eps, the size stated before; cosine: between the "
        "predicted and the fitted displacement in BC's Hessian (Fisher) metric, where a "
        "tabular Q's shifts have norm zero):",
        "",
        "  | data | learner | \\|theta* - theta_E\\|, median | predicted | ratio | "
        "\\|theta* - theta_E\\| / eps | policy TV, median | predicted | ratio | min cosine |",
        "  |---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in first.itertuples():
        shared = np.isfinite(r.theta_ratio_median)
        theta = (
            f"{_fmt(r.theta_error_median)} | {_fmt(r.first_order_theta_error_median)} | "
            f"{r.theta_ratio_median:.3f} [{r.theta_ratio_min:.3f}, {r.theta_ratio_max:.3f}] | "
            f"{r.miss_over_eps_median:.1f} [{r.miss_over_eps_min:.1f}, "
            f"{r.miss_over_eps_max:.1f}]"
            if shared
            else "- | - | - | -"
        )
        lines.append(
            f"  | {r.data} | {r.learner} | {theta} | {_fmt(r.tv_median)} | "
            f"{_fmt(r.first_order_tv_median)} | {r.tv_ratio_median:.3f} "
            f"[{r.tv_ratio_min:.3f}, {r.tv_ratio_max:.3f}] | {r.cosine_min:.4f} |"
        )
    scan = summarise_discount_scan(result)
    if len(scan):
        lines += [
            "",
            f"  Against gamma (the first {scan['n_problems'].iloc[0]} problems, stationary "
            "data, the same at every gamma; medians; logit level: sum d_E(s, a) Q(s, a)/tau "
            "at the optimum):",
            "",
            "  | gamma | learner | \\|theta* - theta_E\\| | predicted | policy TV | "
            "predicted | logit level |",
            "  |---|---|---|---|---|---|---|",
        ]
        for r in scan.itertuples():
            theta = (
                f"{_fmt(r.theta_error)} | {_fmt(r.first_order_theta_error)}"
                if np.isfinite(r.theta_error)
                else "- | -"
            )
            lines.append(
                f"  | {r.discount:g} | {r.learner} | {theta} | {_fmt(r.policy_tv)} | "
                f"{_fmt(r.first_order_policy_tv)} | {r.logit_level:.3g} |"
            )
    return [*lines, ""]


_DATA_TEXT = {
    "discounted": (
        "d_E is the expert's normalised discounted occupancy (gamma = {gamma:g}) from the "
        "MDP's uniform start distribution: the objectives' own discount, the papers' setting."
    ),
    "stationary": (
        "d_E is the consistency study's own d_E: the expert's stationary distribution (those "
        "MDPs carry no discount); the objectives keep gamma = {gamma:g}."
    ),
}


#: The files of a study folder, and how its README starts (what marks an earlier study).
STUDY_FILES = (
    "README.md",
    "rows.csv",
    "summary.csv",
    "valuedice-action-independent.csv",
    "iqlearn-discounts.csv",
    "config.json",
)
_README_TITLE = "# Are the strictly batch learners consistent where BC is?"


def check_out_folder(out: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``out`` may receive a study: a new or empty folder, or an
    earlier study (its README and tables only), which is replaced whole.

    Raises:
        ValueError: ``out`` is empty, an existing file, or a folder holding other files.
    """
    if not os.fspath(out).strip():
        raise ValueError("--out is empty; pass a folder path, e.g. --out learner-consistency.")
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"--out {out} is an existing file, not a folder; pass a folder path.")
    if out.is_dir():
        entries = list(out.iterdir())
        foreign = sorted(
            e.name
            for e in entries
            if e.is_symlink()
            or not e.is_file()
            or not (e.name in STUDY_FILES or re.fullmatch(r"\..+\.tmp", e.name))
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise ValueError(
                f"--out {out} holds files that are not a learner consistency study ({shown}); "
                "a new study replaces the whole folder, so pass a new or empty folder."
            )
        if entries and not _is_study_readme(out / "README.md"):
            raise ValueError(
                f"--out {out} holds study file names but no README.md of a learner "
                "consistency study (an interrupted one, or another's); delete the folder or "
                "pass another one."
            )
    return out


def _is_study_readme(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as file:
            return file.read(len(_README_TITLE)) == _README_TITLE
    except (OSError, UnicodeDecodeError):
        return False


def write_learner_consistency(result: LearnerConsistencyResult, out: str | Path) -> Path:
    """Write :data:`STUDY_FILES` into the folder ``out``; config.json holds the configuration,
    the wall time, the git commit and the command that re-creates the study.

    The folder is written whole into a staging folder beside it and swapped in when complete
    (:func:`sbil.files.staged_folder`), so an error or Ctrl-C leaves an earlier study as it
    was; ``out`` must pass :func:`check_out_folder`.

    Returns:
        The README's path.
    """
    out = check_out_folder(out)
    summary = summarise_learners(result)
    with lock(out):
        check_out_folder(out)  # again: it may have changed while the study ran
        with staged_folder(out) as staging:
            write_text_atomic(staging / "rows.csv", result.rows.to_csv(index=False))
            write_text_atomic(staging / "summary.csv", summary.to_csv(index=False))
            write_text_atomic(
                staging / "valuedice-action-independent.csv",
                result.valuedice_action_independent.to_csv(index=False),
            )
            write_text_atomic(
                staging / "iqlearn-discounts.csv", result.iqlearn_discounts.to_csv(index=False)
            )
            config = asdict(result.config)
            commit = result.rows["git_commit"].iloc[0] if len(result.rows) else None
            write_json_atomic(
                staging / "config.json",
                {
                    **config,
                    "wall_seconds": result.wall_seconds,
                    "git_commit": None if pd.isna(commit) else str(commit),
                    "command": COMMAND,
                },
            )
            write_text_atomic(staging / "README.md", render_readme(result, summary))
    return out / "README.md"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sbil.experiments.learner_consistency --out FOLDER [--n-mdps N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sbil.experiments.learner_consistency",
        description="Infinite-data consistency of ValueDICE, IQ-Learn and AVRIL on random MDPs.",
    )
    parser.add_argument("--out", required=True, help="folder for README.md and the tables")
    parser.add_argument("--n-mdps", type=int, default=LearnerConsistencyConfig.n_mdps)
    parser.add_argument("--seed", type=int, default=LearnerConsistencyConfig.seed)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args(argv)
    try:
        config = LearnerConsistencyConfig(n_mdps=args.n_mdps, seed=args.seed)
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1; got {args.workers}.")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        check_out_folder(args.out)  # before the work
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    def report(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            print(f"{done}/{total} problems", file=sys.stderr, flush=True)

    result = run_learner_consistency(config, progress=report, workers=args.workers)
    path = write_learner_consistency(result, args.out)
    summary = summarise_learners(result)
    cols = ["data", "learner", "verdict", "n_recovered", "tv_iqm"]
    print(json.dumps(summary[cols].to_dict("records"), indent=1))
    print(f"wrote {path}")
    return 0

"""``sbil evaluate``: a trained learner's, an expert's or a random policy's return on a task,
with the figures and run log of a folder of learners.

Registered by :func:`sbil.cli.deep.register` with the other deep data commands; the command
checks its options (a wrong command line exits with status 2), calls :mod:`sbil.deep` and
prints the result. Heavy imports happen inside the command.

Longer than ~400 lines: one command (its 17 options alone take 76 lines) and the helpers
that only it uses: which policies a folder holds, which data each is matched on, its figures,
run log and table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from sbil.cli._common import (
    MAX_ENVS,
    MAX_EPISODES,
    ExpertsDirOption,
    ProgressOption,
    UsageError,
    check_seed,
    console,
    err_console,
    errors_as_messages,
    progress_bar,
    require,
)
from sbil.cli.deep import (
    EvalNoiseOption,
    RootOption,
    SeedOption,
    _parse_noise,
    _print_result,
)


def evaluate_command(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="A training run folder written by `sbil train` (every seed-<s>/ learner is "
            "evaluated, then the seeds are summarised) or one learner checkpoint folder.",
            metavar="RUN_OR_CHECKPOINT",
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Gymnasium task id (default: the checkpoint's task)."),
    ] = None,
    episodes: Annotated[int, typer.Option(help="Number of evaluation episodes.")] = 300,
    seed: SeedOption = 0,
    expert: Annotated[
        str | None,
        typer.Option(help="Evaluate this expert (e.g. scripted) instead of a checkpoint."),
    ] = None,
    expert_noise: EvalNoiseOption = "none",
    n_envs: Annotated[
        int,
        typer.Option(help="Environments stepped together; at most 1024 (SBIL_MAX_ENVS)."),
    ] = 16,
    experts_root: ExpertsDirOption = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Also report the action-match rate against this Minari dataset's expert "
            "actions (e.g. sbil/cartpole/scripted-v0), on episodes the learner did not train "
            "on (its checkpoint records which it did)."
        ),
    ] = None,
    root: RootOption = None,
    holdout_from: Annotated[
        int | None,
        typer.Option(
            help="With --dataset: match only on episodes K.. of it (default: every episode "
            "the learner did not train on); refused if it trained on any of them.",
            metavar="K",
        ),
    ] = None,
    iqm: Annotated[
        bool,
        typer.Option(
            "--iqm",
            help="For a run: also the interquartile mean of the seeds' mean returns, with a "
            "95% stratified bootstrap interval (rliable's convention).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the tidy per-seed figures evaluation.csv and evaluation.json "
            "(default: the run folder when evaluating a run; with one checkpoint or an "
            "expert, only when given).",
            metavar="DIR",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Also write the per-episode returns (and match rate) to this JSON file."),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Also write mp4 videos of the first --record-episodes episodes to this folder "
            "(seed-<s>/ per learner of a run); needs the video extra.",
            metavar="DIR",
        ),
    ] = None,
    record_count: Annotated[
        int, typer.Option("--record-episodes", help="Episodes to record with --record.")
    ] = 3,
    progress: ProgressOption = None,
) -> None:
    """Evaluate a training run, a learner or an expert over seeded episodes; print mean ± std."""
    with errors_as_messages():
        if (checkpoint is None) == (expert is None):
            raise UsageError(
                "Give either a RUN_OR_CHECKPOINT folder or --expert NAME (exactly one)."
            )
        require("--episodes", episodes, 1, limit=MAX_EPISODES)
        check_seed("--seed", seed, episodes)
        require("--n-envs", n_envs, 1, limit=MAX_ENVS)
        noise = _parse_noise(expert_noise)
        if dataset is None and (holdout_from is not None or root is not None):
            raise UsageError("--holdout-from and --root need --dataset ID.")
        if holdout_from is not None:
            require("--holdout-from", holdout_from, 0)
        if expert is not None and env is None:
            raise UsageError("--env is required with --expert.")
        if expert is None and not noise.deterministic:
            raise UsageError("--expert-noise applies to --expert only.")
        if output is not None:
            from sbil.files import check_writable_file

            check_writable_file(output, what="--output")  # before any episode runs
        if record is not None:
            require("--record-episodes", record_count, 1)
            from sbil.deep.video import check_recording

            check_recording(record)  # moviepy installed, folder writable

        policies = _policies(checkpoint, expert, env, noise, seed, experts_root)
        env = env or policies[0].env_id
        figures = _figures_folder(out, checkpoint, policies)  # checked before any episode
        log = _run_log(checkpoint, policies)
        matches = None
        if dataset is not None:
            matches = _match_sets(policies, dataset, root, holdout_from, env)

        from sbil.deep.evaluation import action_match_rate, evaluate
        from sbil.experiments.run_log import tee

        if log is not None:
            log.write(f"evaluate: {len(policies)} learner(s), {episodes} episodes of {env}")
        results = []
        for item in policies:  # each its own progress lines, naming it
            description = f"evaluating {_name(item)} on {env}"
            with progress_bar(progress, description) as callback:
                logged = None if log is None else log.progress(description)
                progress_of = tee(callback, logged)
                results.append(
                    evaluate(item.policy, env, episodes, seed, n_envs=n_envs, progress=progress_of)
                )
        rates = None
        if matches is not None:
            rates = [
                action_match_rate(item.policy, demos)
                for item, (demos, _) in zip(policies, matches, strict=True)
            ]
        payload = _report(policies, results, matches, rates, dataset, checkpoint, iqm)
        if output is not None:
            from sbil.files import write_json_atomic

            write_json_atomic(output, payload, allow_nan=True)
        _save_figures(figures, log, policies, results, matches, rates)
        if record is not None:
            from sbil.deep.video import record_episodes

            for item in policies:
                folder = record if item.seed is None else record / f"seed-{item.seed}"
                videos = record_episodes(
                    item.policy, env, folder, record_count, seed, label=item.label
                )
                console.print(
                    f"Recorded {len(videos.videos)} video(s) of {item.label} in {folder}",
                    highlight=False,
                )


@dataclass(frozen=True)
class _Evaluated:
    """One policy to evaluate: a learner of a run (``seed`` set), one checkpoint, or an expert
    (``folder`` None)."""

    policy: Any
    label: str
    env_id: str | None
    folder: Path | None
    seed: int | None = None


def _name(item: _Evaluated) -> str:
    """``seed 3`` for a learner of a run, else its label."""
    return item.label if item.seed is None else f"seed {item.seed}"


def _figures_folder(out: Path | None, checkpoint: Path | None, policies) -> Path | None:
    """Where the tidy figures go: ``--out``, else a run's own folder (skipped, with a warning,
    when it is not writable), else nowhere."""
    from sbil.files import check_writable_folder

    if out is not None:
        return check_writable_folder(out, what="--out")
    if policies[0].seed is None:  # one checkpoint or an expert
        return None
    import os

    if not os.access(checkpoint, os.W_OK | os.X_OK):
        err_console.print(
            f"[yellow]Warning:[/] the run folder {checkpoint} is not writable, so its "
            "evaluation.csv/.json are not written; pass --out DIR for them.",
            highlight=False,
        )
        return None
    return checkpoint


def _run_log(checkpoint: Path | None, policies):
    """The evaluated run's log (``RUN/log.txt``) when it has a writable one, else None."""
    import os

    from sbil.experiments.run_log import LOG_FILE, RunLog

    if checkpoint is None or policies[0].seed is None:
        return None
    path = checkpoint / LOG_FILE
    return RunLog(path) if path.is_file() and os.access(path, os.W_OK) else None


def _save_figures(folder, log, policies, results, matches, rates) -> None:
    """Write ``evaluation.csv``/``.json`` (one row per policy) and log each one's figures."""
    from sbil.experiments.runs import EVALUATION_FIGURES
    from sbil.experiments.seed_figures import evaluation_row, write_seed_figures

    rows = []
    for index, (item, result) in enumerate(zip(policies, results, strict=True)):
        states = None if matches is None else matches[index][0].n_steps
        row = evaluation_row(
            item.policy,
            result,
            policy_name=item.label if item.folder is None else str(item.folder),
            seed=item.seed,
            checkpoint=item.folder,
            action_match=None if rates is None else rates[index],
            action_match_states=states,
        )
        rows.append(row)
        if log is not None:
            text = f"return {row.mean_return:.2f} ± {row.std_return:.2f} ({row.n_episodes} ep.)"
            if row.action_match is not None:
                text += f", action match {row.action_match:.3f} on {states} states"
            log.write(f"evaluate {_name(item)}: {text}")
    if folder is not None:
        csv_path, json_path = write_seed_figures(folder, EVALUATION_FIGURES, rows)
        if log is not None:
            log.write(f"evaluate: wrote {csv_path.name} and {json_path.name}")


def _policies(checkpoint, expert, env, noise, seed, experts_root) -> list[_Evaluated]:
    """Load what is to be evaluated, checked against ``env``, before any episode runs."""
    if expert is not None:
        from sbil.deep.experts import get_expert

        policy = get_expert(env, expert, root=experts_root, noise=noise, seed=seed)
        label = f"{expert} expert" + ("" if noise.deterministic else f" ({noise})")
        return [_Evaluated(policy, label, env, None)]
    from sbil.deep.evaluation import checkpoint_folders

    folders = checkpoint_folders(checkpoint)
    from sbil.deep.checkpoint import load_learner  # torch missing: main names the extra

    loaded = []
    for learner_seed, folder in folders.items():
        policy = load_learner(folder)
        task = env or _checkpoint_env(policy)
        warning = _check_checkpoint_fits(policy, folder, task)
        if warning:
            err_console.print(f"[yellow]Warning:[/] {warning}", highlight=False)
        loaded.append(_Evaluated(policy, f"learner {folder}", task, folder, learner_seed))
    return loaded


def _match_sets(policies, dataset_id: str, root, holdout_from: int | None, env: str):
    """For each policy: ``(demonstrations it is matched on, their episode indices)``.

    Episodes a learner trained on are never used: with ``--holdout-from K`` every episode
    ``K..`` must be unseen (else refused); without it, every unseen episode is used. A
    checkpoint that does not record its training episodes is matched on ``K..`` (or all)
    with a loud warning.
    """
    from sbil.deep.datasets import load_demonstrations
    from sbil.deep.evaluation import training_episodes

    demos = load_demonstrations(dataset_id, root=root, env_id=env)
    n = demos.n_episodes
    if holdout_from is not None and holdout_from >= n:
        raise ValueError(
            f"--holdout-from must be in 0..{n - 1} ({dataset_id} has {n} episodes), got "
            f"{holdout_from}."
        )
    first = holdout_from or 0
    sets = []
    for item in policies:
        candidates = list(range(first, n))
        trained = None if item.folder is None else training_episodes(item.folder, dataset_id, root)
        who = "this learner" if item.seed is None else f"seed {item.seed}"
        if item.folder is not None and trained is None:
            err_console.print(
                f"[bold yellow]Warning:[/] {item.folder} does not record which episodes it "
                f"trained on, so the action match on {dataset_id} episodes "
                f"{_ranges(candidates)} may include training episodes (not held-out).",
                highlight=False,
            )
        elif trained:
            overlap = sorted(trained.intersection(candidates))
            if overlap and holdout_from is not None:
                raise ValueError(
                    f"{who} trained on {_episodes(overlap)} of {dataset_id}, which "
                    f"--holdout-from {holdout_from} would report as held-out; pass a larger "
                    "--holdout-from, or leave it out to match on every episode it did not "
                    "train on."
                )
            candidates = [e for e in candidates if e not in trained]
            if not candidates:
                raise ValueError(
                    f"{who} trained on every episode of {dataset_id} ({_ranges(sorted(trained))}"
                    "), so none is held out for the action match; collect a dataset with more "
                    "episodes, or leave out --dataset."
                )
        sets.append((demos.select(candidates), candidates))
    return sets


def _episodes(episodes: list[int]) -> str:
    """``"episode 3"`` or ``"episodes 0..2, 5"``."""
    return f"episode{'s' if len(episodes) > 1 else ''} {_ranges(episodes)}"


def _ranges(episodes: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0..2, 5, 7..8"``."""
    parts, start = [], None
    for i, e in enumerate(episodes):
        if start is None:
            start = e
        if i + 1 == len(episodes) or episodes[i + 1] != e + 1:
            parts.append(str(e) if e == start else f"{start}..{e}")
            start = None
    return ", ".join(parts)


def _report(policies, results, matches, rates, dataset, checkpoint, iqm) -> dict:
    """Print each result (and, for a run, the summary over seeds); return the JSON payload."""
    entries = []
    for index, (item, result) in enumerate(zip(policies, results, strict=True)):
        _print_result(item.label, result)
        entry = {"policy": item.label, **result.to_dict()}
        if matches is not None:
            demos, episodes = matches[index]
            entry["action_match"] = {
                "dataset": dataset,
                "episodes": episodes,
                "n_states": demos.n_steps,
                "rate": rates[index],
            }
            console.print(
                f"Action match with {dataset} episodes {_ranges(episodes)} ({demos.n_steps} "
                f"states): {rates[index]:.2%}",
                highlight=False,
            )
        entries.append(entry)
    if policies[0].seed is None:  # one checkpoint or an expert: the format of a single result
        return entries[0]
    for entry, item in zip(entries, policies, strict=True):
        entry["learner_seed"] = item.seed
    summary = _summarise(results, iqm)
    console.print(_summary_line(checkpoint, summary), highlight=False)
    return {"run": str(checkpoint), "learners": entries, "summary": summary}


def _summarise(results, iqm: bool) -> dict:
    """Mean over seeds of each seed's mean return, a 95% t-interval and optionally the IQM."""
    import numpy as np

    means = np.array([r.mean for r in results])
    summary: dict = {
        "n_seeds": len(means),
        "seed_means": means.tolist(),
        "mean": float(means.mean()),
    }
    if len(means) > 1:
        from scipy import stats

        half = float(stats.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means)))
        summary["std"] = float(means.std(ddof=1))
        summary["ci95"] = [summary["mean"] - half, summary["mean"] + half]
    if iqm:
        from sbil.experiments.stats import stratified_bootstrap_ci

        interval = stratified_bootstrap_ci(means, n_resamples=2000, seed=0)
        summary["iqm"] = {
            "estimate": interval.estimate,
            "ci95": [interval.low, interval.high],
            "method": "stratified bootstrap of the seeds, 2000 resamples, seed 0",
        }
    return summary


def _summary_line(run, summary: dict) -> str:
    line = f"Run {run}, {summary['n_seeds']} seed(s): mean return {summary['mean']:.2f}"
    if "ci95" in summary:
        low, high = summary["ci95"]
        line += f", 95% CI {low:.2f} .. {high:.2f} (Student t over the seeds' means)"
    if "iqm" in summary:
        low, high = summary["iqm"]["ci95"]
        line += (
            f"; IQM {summary['iqm']['estimate']:.2f}, 95% CI {low:.2f} .. {high:.2f} "
            "(stratified bootstrap)"
        )
    return line


def _check_checkpoint_fits(policy, checkpoint: Path, env: str) -> str | None:
    """Raise if the checkpoint cannot act on ``env``; return a warning if it is another task.

    A learner trained on one task can run on another only if the observation size and the
    number of actions agree, and then its numbers mean little: say so before evaluating.
    """
    from sbil.deep.envs import env_spec

    spec = env_spec(env)
    trained_on = getattr(policy, "env_id", None)
    obs_dim = getattr(policy, "obs_dim", None)
    n_actions = getattr(policy, "n_actions", None)
    task = trained_on or "its training data"
    if obs_dim is not None and n_actions is not None:
        if (obs_dim, n_actions) != (spec.obs_dim, spec.n_actions):
            raise ValueError(
                f"The checkpoint {checkpoint} was trained on {task} (observations of size "
                f"{obs_dim}, {n_actions} actions) but {env} has observations of size "
                f"{spec.obs_dim} and {spec.n_actions} actions; evaluate it with --env "
                f"{trained_on or '<its task>'} or pass a checkpoint trained on {env}."
            )
    if trained_on and trained_on != env:
        return (
            f"the checkpoint was trained on {trained_on} but is evaluated on {env} "
            "(their observation and action sizes agree)."
        )
    return None


def _checkpoint_env(policy) -> str:
    for owner in (policy, getattr(policy, "config", None)):
        env_id = getattr(owner, "env_id", None)
        if isinstance(env_id, str) and env_id:
            return env_id
    raise ValueError("The checkpoint does not record its task; pass --env.")

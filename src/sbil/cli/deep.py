"""Deep data commands: ``sbil collect``, ``sbil expert list|eval|train``, ``sbil evaluate``.

Each command parses its options, calls one function of :mod:`sbil.deep` and prints the result.
Library errors (bad input, unsupported tasks, missing datasets or packages) are printed as one
line and exit with status 1; heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import (
    ExpertsDirOption,
    ProgressOption,
    console,
    err_console,
    errors_as_messages,
    progress_bar,
    require,
)

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Gymnasium task id, e.g. CartPole-v1.")]
SeedOption = Annotated[int, typer.Option(help="Episode i is reset with seed SEED + i.")]
RootOption = Annotated[
    Path | None,
    typer.Option(help="Datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)."),
]


def _write_json_atomically(path: Path, payload: dict) -> None:
    from sbil.files import write_json_atomic

    try:
        write_json_atomic(path, payload, allow_nan=True)
    except OSError as error:
        raise ValueError(
            f"Cannot write --output {path} ({error.strerror or error}); pass a writable path."
        ) from None


def collect_command(
    env: EnvOption,
    episodes: Annotated[int, typer.Option(help="Number of expert episodes to record.")],
    expert: Annotated[str, typer.Option(help="Expert name (see `sbil expert list`).")] = "scripted",
    seed: SeedOption = 0,
    dataset_id: Annotated[
        str | None,
        typer.Option(help="Minari dataset id (default: sbil/<task>/<expert>-v0)."),
    ] = None,
    root: RootOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset.")] = False,
    experts_root: ExpertsDirOption = None,
    progress: ProgressOption = None,
) -> None:
    """Record expert episodes into a new local Minari dataset."""
    from sbil.deep.data import collect

    with errors_as_messages(), progress_bar(progress, f"collecting {env}") as callback:
        require("--episodes", episodes, 1)
        require("--seed", seed, 0)
        result = collect(
            env,
            episodes,
            expert=expert,
            experts_root=experts_root,
            seed=seed,
            dataset_id=dataset_id,
            root=root,
            overwrite=overwrite,
            progress=callback,
        )
    console.print(
        f"Wrote [bold]{result.dataset_id}[/] ({result.n_episodes} episodes, {result.n_steps} "
        f"steps) to {result.path}\nExpert {expert} return: {_mean_std(result.mean, result.std)}",
        highlight=False,
    )


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def _print_result(label: str, result) -> None:
    console.print(
        f"{result.env_id} {label}: {_mean_std(result.mean, result.std)} "
        f"(mean ± std over {result.n_episodes} episodes, seeds {result.seed}.."
        f"{result.seed + result.n_episodes - 1})",
        highlight=False,
    )


def evaluate_command(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="A learner checkpoint saved by `sbil train`.")
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
    n_envs: Annotated[int, typer.Option(help="Environments stepped together.")] = 16,
    experts_root: ExpertsDirOption = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Also report the action-match rate against this Minari dataset's expert "
            "actions (e.g. sbil/cartpole/scripted-v0)."
        ),
    ] = None,
    root: RootOption = None,
    holdout_from: Annotated[
        int | None,
        typer.Option(
            help="With --dataset: match only on episodes K.. of it, those not trained on "
            "by `sbil train --episodes K` (default: all episodes).",
            metavar="K",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Also write the per-episode returns (and match rate) to this JSON file."),
    ] = None,
    progress: ProgressOption = None,
) -> None:
    """Evaluate a trained learner (or an expert) over seeded episodes; print mean ± std."""
    from sbil.deep.evaluation import action_match_rate, evaluate

    with errors_as_messages():
        if (checkpoint is None) == (expert is None):
            raise ValueError("Give either a CHECKPOINT or --expert NAME (exactly one).")
        require("--episodes", episodes, 1)
        require("--seed", seed, 0)
        require("--n-envs", n_envs, 1)
        if dataset is None and (holdout_from is not None or root is not None):
            raise ValueError("--holdout-from and --root need --dataset ID.")
        if expert is not None:
            from sbil.deep.experts import get_expert

            if env is None:
                raise ValueError("--env is required with --expert.")
            policy, label = get_expert(env, expert, root=experts_root), f"{expert} expert"
        else:
            policy, label = _load_checkpoint(checkpoint), f"learner {checkpoint}"
            env = env or _checkpoint_env(policy)
            warning = _check_checkpoint_fits(policy, checkpoint, env)
            if warning:
                err_console.print(f"[yellow]Warning:[/] {warning}", highlight=False)
        held_out = None if dataset is None else _held_out(dataset, root, holdout_from, env)
        with progress_bar(progress, f"evaluating on {env}") as callback:
            result = evaluate(policy, env, episodes, seed, n_envs=n_envs, progress=callback)
        match = None
        if held_out is not None:
            demos, first = held_out
            match = {
                "dataset": dataset,
                "episodes": [first, first + demos.n_episodes - 1],
                "n_states": demos.n_steps,
                "rate": action_match_rate(policy, demos),
            }
        if output is not None:
            payload = {"policy": label, **result.to_dict()}
            if match is not None:
                payload["action_match"] = match
            _write_json_atomically(output, payload)
    _print_result(label, result)
    if match is not None:
        first, last = match["episodes"]
        console.print(
            f"Action match with {dataset} episodes {first}..{last} ({match['n_states']} "
            f"states): {match['rate']:.2%}",
            highlight=False,
        )


def _held_out(dataset_id: str, root: Path | None, holdout_from: int | None, env: str):
    """``(demonstrations of episodes K.. of the dataset, K)``, checked against ``env``."""
    from sbil.deep.data import load_demonstrations

    demos = load_demonstrations(dataset_id, root=root, env_id=env)
    if holdout_from is None or holdout_from == 0:
        return demos, 0
    if not 0 <= holdout_from < demos.n_episodes:
        raise ValueError(
            f"--holdout-from must be in 0..{demos.n_episodes - 1} ({dataset_id} has "
            f"{demos.n_episodes} episodes), got {holdout_from}."
        )
    return demos.split(holdout_from)[1], holdout_from


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


def _load_checkpoint(path: Path):
    if not path.exists():
        raise ValueError(f"Checkpoint {path} does not exist.")
    from sbil.deep.checkpoint import load_learner  # torch missing: main names the extra

    return load_learner(path)


def _checkpoint_env(policy) -> str:
    for owner in (policy, getattr(policy, "config", None)):
        env_id = getattr(owner, "env_id", None)
        if isinstance(env_id, str) and env_id:
            return env_id
    raise ValueError("The checkpoint does not record its task; pass --env.")


def expert_list_command(
    experts_root: ExpertsDirOption = None,
) -> None:
    """List the available experts: scripted ones and trained ones cached on disk."""
    from rich.table import Table

    from sbil.deep.envs import BUILTIN_ENVS
    from sbil.deep.experts import SCRIPTED, experts_dir, trained_experts

    table = Table("task", "expert", "source", "reported return")
    for env_id in BUILTIN_ENVS:
        table.add_row(env_id, SCRIPTED, "sbil.deep.experts", "see docs/experts.md")
    for trained in trained_experts(experts_root):
        table.add_row(
            trained.env_id,
            trained.name,
            trained.model_path,
            f"{_mean_std(trained.return_mean, trained.return_std)} ({trained.n_eval_episodes} ep.)",
        )
    console.print(table)
    console.print(f"Trained experts are cached in {experts_dir(experts_root)}", highlight=False)


def expert_eval_command(
    env: Annotated[str, typer.Argument(help="Gymnasium task id, e.g. CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Expert name (see `sbil expert list`).")] = "scripted",
    episodes: Annotated[int, typer.Option(help="Number of evaluation episodes.")] = 100,
    seed: SeedOption = 0,
    experts_root: ExpertsDirOption = None,
    progress: ProgressOption = None,
) -> None:
    """Evaluate an expert over seeded episodes; print mean ± std of its return."""
    from sbil.deep.evaluation import evaluate
    from sbil.deep.experts import get_expert

    with errors_as_messages():
        require("--episodes", episodes, 1)
        require("--seed", seed, 0)
        policy = get_expert(env, expert, root=experts_root)
        with progress_bar(progress, f"evaluating {expert} on {env}") as callback:
            result = evaluate(policy, env, episodes, seed, progress=callback)
    _print_result(f"{expert} expert", result)


def expert_train_command(
    env: Annotated[str, typer.Argument(help="Gymnasium task id, e.g. CartPole-v1.")],
    algo: Annotated[str, typer.Option(help="stable-baselines3 algorithm: ppo or dqn.")] = "ppo",
    timesteps: Annotated[int, typer.Option(help="Training environment steps.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    eval_episodes: Annotated[int, typer.Option(help="Episodes to report its return.")] = 100,
    experts_root: Annotated[
        Path | None,
        typer.Option(
            "--experts-dir",
            help="Cache folder (default: $SBIL_EXPERTS_DIR or ~/.cache/sbil/experts).",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a cached expert.")] = False,
    device: Annotated[str, typer.Option(help="Torch device for training.")] = "cpu",
) -> None:
    """Train a stable-baselines3 expert locally (needs the `experts` extra) and cache it."""
    from sbil.deep.experts import train_sb3_expert

    with errors_as_messages():
        require("--timesteps", timesteps, 1)
        require("--eval-episodes", eval_episodes, 1)
        trained = train_sb3_expert(
            env,
            algo=algo,
            total_timesteps=timesteps,
            seed=seed,
            root=experts_root,
            n_eval_episodes=eval_episodes,
            overwrite=overwrite,
            device=device,
        )
    console.print(
        f"Trained {trained.name} on {env} ({timesteps} steps, seed {seed})"
        f" -> {trained.model_path}\n"
        f"Return: {_mean_std(trained.return_mean, trained.return_std)} over "
        f"{trained.n_eval_episodes} episodes (seeds {trained.eval_seed}..)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the deep data commands to ``app``."""
    app.command("collect")(collect_command)
    app.command("evaluate")(evaluate_command)
    expert_app = typer.Typer(
        help="Scripted and locally trained experts.", no_args_is_help=True, add_completion=False
    )
    expert_app.command("list")(expert_list_command)
    expert_app.command("eval")(expert_eval_command)
    expert_app.command("train")(expert_train_command)
    app.add_typer(expert_app, name="expert")

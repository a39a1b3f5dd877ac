"""Deep data commands: ``sbil collect``, ``sbil expert list|eval|train``, and ``sbil evaluate``
(its own module, :mod:`sbil.cli.evaluate`, registered here with the others).

Each command checks its options (a wrong command line exits with status 2), calls
:mod:`sbil.deep` and prints the result; the library's errors (missing datasets, unsupported
tasks, unwritable paths) are printed as one line with status 1 (see :mod:`sbil.cli._common`).
Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import (
    MAX_EPISODES,
    ExpertsDirOption,
    ProgressOption,
    UsageError,
    check_seed,
    console,
    errors_as_messages,
    progress_bar,
    require,
)

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Gymnasium task id, e.g. CartPole-v1.")]
SeedOption = Annotated[
    int, typer.Option(help="Episode i is reset with seed SEED + i (all in 0..2**32-1).")
]
RootOption = Annotated[
    Path | None,
    typer.Option(help="Datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)."),
]
_NOISES = (
    "none (deterministic expert), epsilon:E (a uniformly random action with probability E; "
    "any expert) or sample (draw from an SB3 expert's own policy, as "
    "predict(deterministic=False))"
)
NoiseOption = Annotated[
    str,
    typer.Option(
        "--expert-noise",
        help=f"The noise of the expert that records the episodes: {_NOISES}; seeded by "
        "--seed, and named in the dataset's id and metadata.",
        metavar="NOISE",
    ),
]
EvalNoiseOption = Annotated[
    str,
    typer.Option(
        "--expert-noise",
        help=f"The noise applied to the expert being evaluated (for sbil evaluate, with "
        f"--expert only), so the return measured is the noisy expert's, as recorded by "
        f"`sbil collect` with the same --expert-noise: {_NOISES}; seeded by --seed.",
        metavar="NOISE",
    ),
]


def _parse_noise(text: str):
    from sbil.deep.experts import ExpertNoise

    try:
        return ExpertNoise.parse(text)
    except ValueError as error:
        raise UsageError(f"--expert-noise: {error}") from None


def collect_command(
    env: EnvOption,
    episodes: Annotated[int, typer.Option(help="Number of expert episodes to record.")],
    expert: Annotated[str, typer.Option(help="Expert name (see `sbil expert list`).")] = "scripted",
    seed: SeedOption = 0,
    dataset_id: Annotated[
        str | None,
        typer.Option(
            help="Minari dataset id (default: sbil/<task>/<expert>-v0, with the noise in the "
            "name for a stochastic expert, e.g. sbil/cartpole/scripted-eps0_1-v0)."
        ),
    ] = None,
    root: RootOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset.")] = False,
    expert_noise: NoiseOption = "none",
    experts_root: ExpertsDirOption = None,
    progress: ProgressOption = None,
) -> None:
    """Record expert episodes into a new local Minari dataset."""
    with errors_as_messages():
        require("--episodes", episodes, 1, limit=MAX_EPISODES)
        check_seed("--seed", seed, episodes)
        noise = _parse_noise(expert_noise)
        if dataset_id is not None:
            _check_dataset_id(dataset_id)
        from sbil.deep.collection import collect

        with progress_bar(progress, f"collecting {env}") as callback:
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
                noise=noise,
            )
    console.print(
        f"Wrote [bold]{result.dataset_id}[/] ({result.n_episodes} episodes, {result.n_steps} "
        f"steps) to {result.path}\nExpert {result.expert} return: "
        f"{_mean_std(result.mean, result.std)}",
        highlight=False,
    )


def _check_dataset_id(dataset_id: str) -> None:
    from sbil.deep.datasets import check_dataset_id

    try:
        check_dataset_id(dataset_id)
    except ValueError as error:
        raise UsageError(f"--dataset-id: {error}") from None


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def _print_result(label: str, result) -> None:
    console.print(
        f"{result.env_id} {label}: {_mean_std(result.mean, result.std)} "
        f"(mean ± std over {result.n_episodes} episodes, seeds {result.seed}.."
        f"{result.seed + result.n_episodes - 1})",
        highlight=False,
    )


def expert_list_command(
    experts_root: ExpertsDirOption = None,
) -> None:
    """List the available experts: scripted ones and trained ones cached on disk."""
    from rich.table import Table

    from sbil.deep.envs import BUILTIN_ENVS
    from sbil.deep.experts import (
        SCRIPTED,
        SCRIPTED_RETURNS,
        SCRIPTED_RETURNS_EPISODES,
        ShippedExpert,
        experts_dir,
        trained_experts,
    )

    with errors_as_messages():
        table = Table("task", "expert", "source", "measured return (mean ± std)")
        for env_id in BUILTIN_ENVS:
            mean, std = SCRIPTED_RETURNS[env_id]
            table.add_row(
                env_id,
                SCRIPTED,
                "built-in controller",
                f"{_mean_std(mean, std)} ({SCRIPTED_RETURNS_EPISODES} ep., seeds 0..)",
            )
        for trained in trained_experts(experts_root):
            measured = (
                f"{_mean_std(trained.return_mean, trained.return_std)} "
                f"({trained.n_eval_episodes} ep., seeds {trained.eval_seed}..)"
            )
            source = trained.model_path
            if isinstance(trained, ShippedExpert):  # greedy and sampled: both are recorded
                measured = (
                    f"greedy {_mean_std(trained.return_mean, trained.return_std)}, sampled "
                    f"{_mean_std(trained.sampled_mean, trained.sampled_std)} "
                    f"({trained.n_eval_episodes} ep., seeds {trained.eval_seed}..)"
                )
                source = "shipped with sbil (RL Zoo PPO)"
            table.add_row(trained.env_id, trained.name, source, measured)
        console.print(table)
        console.print(
            f"Trained experts are cached in {experts_dir(experts_root)}. Any expert can act "
            "stochastically with --expert-noise (collect, expert eval, evaluate --expert); "
            "measure it with `sbil expert eval TASK --expert-noise ...`.",
            highlight=False,
        )


def expert_eval_command(
    env: Annotated[str, typer.Argument(help="Gymnasium task id, e.g. CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Expert name (see `sbil expert list`).")] = "scripted",
    episodes: Annotated[int, typer.Option(help="Number of evaluation episodes.")] = 100,
    seed: SeedOption = 0,
    expert_noise: EvalNoiseOption = "none",
    experts_root: ExpertsDirOption = None,
    progress: ProgressOption = None,
) -> None:
    """Evaluate an expert over seeded episodes; print mean ± std of its return."""
    with errors_as_messages():
        require("--episodes", episodes, 1, limit=MAX_EPISODES)
        check_seed("--seed", seed, episodes)
        noise = _parse_noise(expert_noise)
        from sbil.deep.evaluation import evaluate
        from sbil.deep.experts import get_expert

        policy = get_expert(env, expert, root=experts_root, noise=noise, seed=seed)
        with progress_bar(progress, f"evaluating {expert} on {env}") as callback:
            result = evaluate(policy, env, episodes, seed, progress=callback)
    label = f"{expert} expert" + ("" if noise.deterministic else f" ({noise})")
    _print_result(label, result)


def expert_train_command(
    env: Annotated[str, typer.Argument(help="Gymnasium task id, e.g. CartPole-v1.")],
    algo: Annotated[str, typer.Option(help="stable-baselines3 algorithm: ppo or dqn.")] = "ppo",
    timesteps: Annotated[int, typer.Option(help="Training environment steps.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Training seed (0..2**32-1).")] = 0,
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
    with errors_as_messages():
        require("--timesteps", timesteps, 1)
        require("--eval-episodes", eval_episodes, 1)
        check_seed("--seed", seed)
        from sbil.deep.experts import train_sb3_expert

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
    from sbil.cli.evaluate import evaluate_command  # its own module; registered here

    app.command("evaluate")(evaluate_command)
    expert_app = typer.Typer(
        help="Scripted and locally trained experts.", no_args_is_help=True, add_completion=False
    )
    expert_app.command("list")(expert_list_command)
    expert_app.command("eval")(expert_eval_command)
    expert_app.command("train")(expert_train_command)
    app.add_typer(expert_app, name="expert")

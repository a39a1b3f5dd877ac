"""Deep data commands: ``sbil collect``, ``sbil expert list|eval|train``, ``sbil evaluate``.

Each command parses its options, calls one function of :mod:`sbil.deep` and prints the result.
Library errors (bad input, unsupported tasks, missing datasets or packages) are printed as one
line and exit with status 1; heavy imports happen inside the commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# soft_wrap: long paths and messages stay on one line when piped or copied.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Gymnasium task id, e.g. CartPole-v1.")]
SeedOption = Annotated[int, typer.Option(help="Episode i is reset with seed SEED + i.")]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar (on stderr).")
]


@contextlib.contextmanager
def _errors_as_messages() -> Iterator[None]:
    """Turn the library's clear errors into one red line and exit status 1."""
    try:
        yield
    except (ValueError, ImportError, FileNotFoundError) as error:
        from rich.markup import escape

        err_console.print(f"[bold red]Error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(code=1) from None


@contextlib.contextmanager
def _progress_bar(enabled: bool, description: str) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _write_json_atomically(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(payload, tmp, indent=2)
        tmp.write("\n")
    os.replace(tmp.name, path)


def collect_command(
    env: EnvOption,
    episodes: Annotated[int, typer.Option(help="Number of expert episodes to record.")],
    expert: Annotated[str, typer.Option(help="Expert name (see `sbil expert list`).")] = "scripted",
    seed: SeedOption = 0,
    dataset_id: Annotated[
        str | None,
        typer.Option(help="Minari dataset id (default: sbil/<task>/<expert>-v0)."),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset.")] = False,
    experts_root: Annotated[
        Path | None, typer.Option("--experts-dir", help="Cache of trained experts.")
    ] = None,
    progress: ProgressOption = False,
) -> None:
    """Record expert episodes into a new local Minari dataset."""
    from sbil.deep.data import collect
    from sbil.deep.experts import get_expert

    with _errors_as_messages(), _progress_bar(progress, f"collecting {env}") as callback:
        policy = get_expert(env, expert, root=experts_root)
        policy_name = expert
        result = collect(
            env,
            episodes,
            expert=_Named(policy, policy_name),
            seed=seed,
            dataset_id=dataset_id,
            root=root,
            overwrite=overwrite,
            progress=callback,
        )
    console.print(
        f"Wrote [bold]{result.dataset_id}[/] ({len(result.returns)} episodes, {result.n_steps} "
        f"steps) to {result.path}\nExpert {expert} return: {result.mean:.2f} ± {result.std:.2f}",
        highlight=False,
    )


class _Named:
    """A policy with the name that collect() records in the dataset metadata."""

    def __init__(self, policy, name: str) -> None:
        self.policy, self.name = policy, name

    def __call__(self, obs):
        return self.policy(obs)


def _print_result(label: str, result) -> None:
    console.print(
        f"{result.env_id} {label}: {result.mean:.2f} ± {result.std:.2f} "
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
    experts_root: Annotated[
        Path | None, typer.Option("--experts-dir", help="Cache of trained experts.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Also write the per-episode returns to this JSON file.")
    ] = None,
    progress: ProgressOption = False,
) -> None:
    """Evaluate a trained learner (or an expert) over seeded episodes; print mean ± std."""
    from sbil.deep.evaluation import evaluate

    with _errors_as_messages():
        if (checkpoint is None) == (expert is None):
            raise ValueError("Give either a CHECKPOINT or --expert NAME (exactly one).")
        if expert is not None:
            from sbil.deep.experts import get_expert

            if env is None:
                raise ValueError("--env is required with --expert.")
            policy, label = get_expert(env, expert, root=experts_root), f"{expert} expert"
        else:
            policy, label = _load_checkpoint(checkpoint), f"learner {checkpoint}"
            env = env or _checkpoint_env(policy)
        with _progress_bar(progress, f"evaluating on {env}") as callback:
            result = evaluate(policy, env, episodes, seed, n_envs=n_envs, progress=callback)
        if output is not None:
            _write_json_atomically(output, {"policy": label, **result.to_dict()})
    _print_result(label, result)


def _load_checkpoint(path: Path):
    if not path.exists():
        raise ValueError(f"Checkpoint {path} does not exist.")
    try:
        from sbil.deep.checkpoint import load_learner
    except ImportError as error:
        raise ImportError(
            f"Cannot load checkpoints: sbil.deep.checkpoint is unavailable ({error})."
        ) from None
    return load_learner(path)


def _checkpoint_env(policy) -> str:
    for owner in (policy, getattr(policy, "config", None)):
        env_id = getattr(owner, "env_id", None)
        if isinstance(env_id, str) and env_id:
            return env_id
    raise ValueError("The checkpoint does not record its task; pass --env.")


def expert_list_command(
    experts_root: Annotated[
        Path | None, typer.Option("--experts-dir", help="Cache of trained experts.")
    ] = None,
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
            f"{trained.return_mean:.2f} ± {trained.return_std:.2f} ({trained.n_eval_episodes} ep.)",
        )
    console.print(table)
    console.print(f"Trained experts are cached in {experts_dir(experts_root)}", highlight=False)


def expert_eval_command(
    env: Annotated[str, typer.Argument(help="Gymnasium task id, e.g. CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Expert name (see `sbil expert list`).")] = "scripted",
    episodes: Annotated[int, typer.Option(help="Number of evaluation episodes.")] = 100,
    seed: SeedOption = 0,
    experts_root: Annotated[
        Path | None, typer.Option("--experts-dir", help="Cache of trained experts.")
    ] = None,
    progress: ProgressOption = False,
) -> None:
    """Evaluate an expert over seeded episodes; print mean ± std of its return."""
    from sbil.deep.evaluation import evaluate
    from sbil.deep.experts import get_expert

    with _errors_as_messages():
        policy = get_expert(env, expert, root=experts_root)
        with _progress_bar(progress, f"evaluating {expert} on {env}") as callback:
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

    with _errors_as_messages():
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
        f"Return: {trained.return_mean:.2f} ± {trained.return_std:.2f} over "
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

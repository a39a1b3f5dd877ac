"""Training command: ``sbil train``.

Loads expert demonstrations (a local Minari dataset, or an ``.npz`` of arrays), trains one
learner per seed together (:func:`sbil.deep.learners.train`) and writes the run with
:func:`sbil.deep.checkpoint.save_run`: ``config.json``, ``seed-<s>/`` checkpoints (load them
with ``sbil evaluate OUT/seed-<s>``), ``losses.npz`` and ``results.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _parse_seeds(text: str) -> list[int]:
    """ "0,1,2" or "0-4" (inclusive) -> list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            seeds.extend(range(int(low), int(high) + 1) if dash else [int(part)])
        except ValueError:
            raise ValueError(
                "--seeds must be comma-separated integers or ranges like 0,1,2 or 0-9, "
                f"got {text!r}."
            ) from None
    if not seeds:
        raise ValueError(f"--seeds must name at least one seed, got {text!r}.")
    return seeds


def _parse_noise(text: str, step_size: float) -> float:
    if text.strip().lower() == "langevin":
        from sbil.deep.sgld import langevin_noise_scale

        return langevin_noise_scale(step_size)
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"--sgld-noise must be a number or 'langevin' (= sqrt(2 * step)), got {text!r}."
        ) from None


def _load_npz(path: Path, env_id: str | None):
    import numpy as np

    from sbil.deep.data import from_arrays

    if not path.is_file():
        raise ValueError(f"--data {path} does not exist.")
    try:
        with np.load(path) as arrays:
            missing = {"observations", "actions"} - set(arrays.files)
            if missing:
                raise ValueError(
                    f"--data {path} lacks {sorted(missing)}; it needs arrays 'observations' "
                    "[N, obs_dim] and 'actions' [N] (and optionally 'episode_lengths' [E])."
                )
            lengths = arrays["episode_lengths"] if "episode_lengths" in arrays.files else None
            return from_arrays(
                arrays["observations"], arrays["actions"], episode_lengths=lengths, env_id=env_id
            )
    except (OSError, EOFError) as error:
        raise ValueError(f"Cannot read --data {path}: {error}") from None


def train_command(
    out: Annotated[Path, typer.Option(help="Output folder for the run (created).")],
    dataset: Annotated[
        str | None, typer.Option(help="Local Minari dataset id, e.g. sbil/cartpole/scripted-v0.")
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Minari datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --dataset: .npz of observations, actions (optional: episode_lengths)."
        ),
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="Task id (default: the dataset's task).")
    ] = None,
    algo: Annotated[str, typer.Option(help="Learner: bc, edm or edm-decoupled.")] = "edm",
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0,1,2 or 0-9; trained together.")] = "0",
    episodes: Annotated[
        int | None, typer.Option(help="Use the first K trajectories (default: all).")
    ] = None,
    every_nth_step: Annotated[
        int,
        typer.Option(help="Keep every n-th step of each trajectory (the EDM reference uses 20)."),
    ] = 1,
    updates: Annotated[int, typer.Option(help="Adam updates.")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="Expert pairs (= SGLD chains) per update.")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    hidden: Annotated[str, typer.Option(help="Hidden layer widths, comma-separated.")] = "64,64",
    sgld_steps: Annotated[int, typer.Option(help="SGLD steps per update.")] = 20,
    sgld_step_size: Annotated[float, typer.Option(help="SGLD drift coefficient.")] = 0.01,
    sgld_noise: Annotated[
        str, typer.Option(help="SGLD noise coefficient, or 'langevin' for sqrt(2 * step).")
    ] = "0.01",
    sgld_buffer_size: Annotated[int, typer.Option(help="Persistent SGLD buffer size.")] = 10_000,
    sgld_reinit_prob: Annotated[float, typer.Option(help="Chain restart probability.")] = 0.05,
    normalize: Annotated[
        bool, typer.Option("--normalize/--no-normalize", help="Standardise observations.")
    ] = False,
    entropy_coef: Annotated[float, typer.Option(help="Policy entropy bonus (0 = off).")] = 0.0,
    l2_coef: Annotated[float, typer.Option(help="L2 penalty on policy weights (0 = off).")] = 0.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[
        int, typer.Option(help="torch intra-op threads while training (1 is fastest here).")
    ] = 1,
    eval_episodes: Annotated[
        int, typer.Option(help="After training, evaluate each learner over this many episodes.")
    ] = 0,
    eval_seed: Annotated[int, typer.Option(help="Eval episode i has seed EVAL_SEED + i.")] = 0,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar (on stderr).")
    ] = True,
) -> None:
    """Train BC / EDM / decoupled-EDM learners (one per seed) and save checkpoints."""
    from sbil.cli.deep import _errors_as_messages, _progress_bar

    with _errors_as_messages():
        import numpy as np

        from sbil.deep.checkpoint import save_run
        from sbil.deep.data import load_demonstrations
        from sbil.deep.learners import LearnerConfig, every_nth_step_rows, train

        if (dataset is None) == (data is None):
            raise ValueError("Give exactly one of --dataset ID (Minari) or --data FILE.npz.")
        seed_list = _parse_seeds(seeds)
        try:
            hidden_sizes = tuple(int(h) for h in hidden.split(","))
        except ValueError:
            raise ValueError(f"--hidden must be integers like 64,64, got {hidden!r}.") from None
        config = LearnerConfig(
            algo=algo,
            hidden_sizes=hidden_sizes,
            learning_rate=lr,
            batch_size=batch_size,
            n_updates=updates,
            sgld_steps=sgld_steps,
            sgld_step_size=sgld_step_size,
            sgld_noise=_parse_noise(sgld_noise, sgld_step_size),
            sgld_buffer_size=sgld_buffer_size,
            sgld_reinit_prob=sgld_reinit_prob,
            normalize_observations=normalize,
            entropy_coef=entropy_coef,
            l2_coef=l2_coef,
        )
        if dataset is not None:
            demos = load_demonstrations(dataset, root=root, env_id=env)
        else:
            demos = _load_npz(data, env)
        available = demos.n_episodes
        if episodes is not None:
            if episodes > available:
                raise ValueError(
                    f"--episodes {episodes} asks for more trajectories than the data has "
                    f"({available}); collect more or lower --episodes."
                )
            demos = demos.subset(episodes)
        if every_nth_step < 1:
            raise ValueError(f"--every-nth-step must be positive, got {every_nth_step}.")
        rows = every_nth_step_rows(demos.episode_lengths, every_nth_step)
        env_id = env or demos.env_id
        n_actions = demos.check_env(env_id).n_actions if env_id else int(demos.actions.max()) + 1

        started = time.perf_counter()
        with _progress_bar(progress, f"training {algo} x{len(seed_list)}") as callback:
            result = train(
                demos.observations[rows],
                demos.actions[rows],
                config,
                seeds=seed_list,
                n_actions=max(n_actions, 2),
                env_id=env_id,
                device=device,
                num_threads=threads,
                progress=callback,
            )
        seconds = time.perf_counter() - started
        run_config = {
            "command": "sbil train",
            "dataset": dataset,
            "root": None if root is None else str(root),
            "data": None if data is None else str(data),
            "env_id": env_id,
            "episodes": demos.n_episodes,
            "every_nth_step": every_nth_step,
            "n_pairs": len(rows),
            "device": device,
            "threads": threads,
        }
        extra: dict = {"train_seconds": seconds, "updates_per_second": updates / seconds}
        if eval_episodes > 0:
            if env_id is None:
                raise ValueError("--eval-episodes needs a task: pass --env.")
            from sbil.deep.evaluation import evaluate

            returns = {}
            for index, seed in enumerate(result.seeds):
                evaluation = evaluate(result.learner(index), env_id, eval_episodes, eval_seed)
                returns[str(seed)] = evaluation.to_dict()
            extra["evaluation"] = returns
        save_run(out, result, run_config=run_config, extra_results=extra)

    console.print(
        f"Trained {len(seed_list)} {algo} learner(s) on {len(rows)} pairs from "
        f"{demos.n_episodes} trajectories ({updates} updates, {seconds:.1f} s) -> {out}",
        highlight=False,
    )
    for index, seed in enumerate(result.seeds):
        line = f"  seed {seed}: final loss {float(np.mean(result.loss[index, -100:])):.4f}"
        if eval_episodes > 0:
            ev = extra["evaluation"][str(seed)]
            line += f", return {ev['mean']:.2f} ± {ev['std']:.2f} ({eval_episodes} episodes)"
        console.print(f"{line} -> {out / f'seed-{seed}'}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the training command to ``app``."""
    app.command("train")(train_command)

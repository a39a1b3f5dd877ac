"""Training command: ``sbil train``.

Loads expert demonstrations (a local Minari dataset, or an ``.npz`` of arrays), trains one
learner per seed together (:func:`sbil.deep.learners.train`) and writes the run with
:func:`sbil.deep.checkpoint.save_run`: ``config.json``, ``seed-<s>/`` checkpoints (load them
with ``sbil evaluate OUT/seed-<s>``), ``losses.npz`` and ``results.json``.

Every option is checked, and ``--out`` probed, before the data is loaded or training starts.
With ``--episodes K`` the data's remaining episodes are held out and each learner's
action-match rate on them is reported.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import ProgressOption, console


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
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(
            f"--seeds {text!r} names seed(s) {repeated} more than once; equal seeds train "
            "identical learners, so give distinct seeds."
        )
    return seeds


#: LearnerConfig / train argument names as the command's options, for error messages.
_OPTION_NAMES = {
    "n_updates": "--updates",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "hidden_sizes": "--hidden",
    "sgld_steps": "--sgld-steps",
    "sgld_step_size": "--sgld-step-size",
    "sgld_noise": "--sgld-noise",
    "sgld_buffer_size": "--sgld-buffer-size",
    "sgld_reinit_prob": "--sgld-reinit-prob",
    "entropy_coef": "--entropy-coef",
    "l2_coef": "--l2-coef",
    "num_threads": "--threads",
    "n_actions": "--n-actions",
    "algo": "--algo",
}


def _as_options(message: str) -> str:
    """Rewrite the library's argument names in ``message`` as this command's option names."""
    for name, option in _OPTION_NAMES.items():
        message = re.sub(rf"(?<![\w-]){name}\b", option, message)
    return message


@contextlib.contextmanager
def _option_names() -> Iterator[None]:
    """Re-raise the learners' input errors with option names instead of Python names."""
    from sbil.deep.learners import LearnerInputError

    try:
        yield
    except LearnerInputError as error:
        raise ValueError(_as_options(str(error))) from None


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
    expected = (
        "an .npz written by np.savez with numeric arrays 'observations' [N, obs_dim] and "
        "'actions' [N] (optionally 'episode_lengths' [E])"
    )
    try:
        loaded = np.load(path)  # allow_pickle=False: never runs code from the file
    except OSError as error:
        raise ValueError(f"Cannot read --data {path} ({error.strerror or error}).") from None
    except Exception:  # a damaged or foreign file can fail in many ways inside numpy/zipfile
        raise ValueError(f"--data {path} is not {expected}; re-create it.") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"--data {path} holds a single array; it must be {expected}.")
    arrays = {}
    with loaded:
        missing = {"observations", "actions"} - set(loaded.files)
        if missing:
            raise ValueError(f"--data {path} lacks {sorted(missing)}; it must be {expected}.")
        for name in ("observations", "actions", "episode_lengths"):
            if name not in loaded.files:
                continue
            try:
                arrays[name] = loaded[name]
            except ValueError:  # object arrays (need pickle) or a corrupt member
                raise ValueError(
                    f"--data {path}: array {name!r} is not a plain numeric array (sbil never "
                    f"loads pickled objects); it must be {expected}."
                ) from None
            except Exception:  # damaged member: BadZipFile, zlib.error, EOFError, ...
                raise ValueError(f"--data {path} is damaged; re-create it.") from None
    return from_arrays(
        arrays["observations"],
        arrays["actions"],
        episode_lengths=arrays.get("episode_lengths"),
        env_id=env_id,
    )


def _n_actions(demos, env_id: str | None, option: int | None) -> int:
    """The number of actions: from --n-actions, the dataset's action space or the task."""
    declared = demos.n_actions
    task = demos.check_env(env_id).n_actions if env_id else None
    sources = [
        (value, where)
        for value, where in (
            (option, f"--n-actions {option}"),
            (declared, f"the dataset's action space ({declared} actions)"),
            (task, f"{env_id} ({task} actions)"),
        )
        if value is not None
    ]
    if not sources:
        raise ValueError(
            "The number of actions is unknown: the data does not declare it and no task is "
            "given; pass --env ID or --n-actions N."
        )
    if len({value for value, _ in sources}) > 1:
        raise ValueError(
            f"The number of actions disagrees: {' vs '.join(where for _, where in sources)}; "
            "fix --n-actions or --env."
        )
    value = int(sources[0][0])
    if value < 2:
        raise ValueError(f"--n-actions must be at least 2, got {value}.")
    if demos.actions.max() >= value:
        raise ValueError(
            f"The data has action {int(demos.actions.max())} but the task has {value} actions "
            f"(0..{value - 1}); fix --n-actions or --env."
        )
    return value


def _split(demos, k: int):
    """``(first k episodes, the remaining episodes or None when k takes them all)``."""
    if k == demos.n_episodes:
        return demos, None
    return demos.split(k)


def train_command(
    out: Annotated[
        Path,
        typer.Option(help="Output folder for the run; must be new or empty unless --overwrite."),
    ],
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
    n_actions: Annotated[
        int | None,
        typer.Option(
            help="Number of discrete actions (default: the dataset's action space or the "
            "task's); needed for --data without --env."
        ),
    ] = None,
    algo: Annotated[str, typer.Option(help="Learner: bc, edm or edm-decoupled.")] = "edm",
    seeds: Annotated[
        str, typer.Option(help="Distinct seeds, e.g. 0,1,2 or 0-9; trained together.")
    ] = "0",
    episodes: Annotated[
        int | None,
        typer.Option(
            help="Train on the first K trajectories (default: all); the action-match rate on "
            "the remaining ones is reported."
        ),
    ] = None,
    every_nth_step: Annotated[
        int,
        typer.Option(
            help="Keep every n-th step of each trajectory. The default 1 keeps all steps; this "
            "deviates from the EDM reference, which keeps every 20th (pass 20 to match it)."
        ),
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
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a non-empty --out folder with this run."),
    ] = False,
    progress: ProgressOption = None,
) -> None:
    """Train BC / EDM / decoupled-EDM learners (one per seed) and save checkpoints."""
    from sbil.cli._common import errors_as_messages, progress_bar, require

    with errors_as_messages():
        import numpy as np

        from sbil.deep.checkpoint import check_run_folder, save_run
        from sbil.deep.data import load_demonstrations
        from sbil.deep.learners import LearnerConfig, every_nth_step_rows, resolve_device, train

        # Everything that can be checked without the data is checked before loading it.
        if (dataset is None) == (data is None):
            raise ValueError("Give exactly one of --dataset ID (Minari) or --data FILE.npz.")
        seed_list = _parse_seeds(seeds)
        try:
            hidden_sizes = tuple(int(h) for h in hidden.split(","))
        except ValueError:
            raise ValueError(f"--hidden must be integers like 64,64, got {hidden!r}.") from None
        for option, value, low in (
            ("--episodes", episodes, 1),
            ("--every-nth-step", every_nth_step, 1),
            ("--threads", threads, 1),
            ("--eval-episodes", eval_episodes, 0),
            ("--eval-seed", eval_seed, 0),
            ("--n-actions", n_actions, 2),
        ):
            if value is not None:
                require(option, value, low)
        if eval_episodes > 0 and env is None and data is not None:
            raise ValueError("--eval-episodes needs a task to play: pass --env.")
        with _option_names():
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
            resolve_device(device)
        check_run_folder(out, overwrite=overwrite)

        if dataset is not None:
            demos = load_demonstrations(dataset, root=root, env_id=env)
        else:
            demos = _load_npz(data, env)
        env_id = env or demos.env_id
        if eval_episodes > 0 and env_id is None:
            raise ValueError("--eval-episodes needs a task to play: pass --env.")
        n_actions = _n_actions(demos, env_id, n_actions)
        available = demos.n_episodes
        held_out = None
        if episodes is not None:
            if episodes > available:
                raise ValueError(
                    f"--episodes {episodes} asks for more trajectories than the data has "
                    f"({available}); collect more or lower --episodes."
                )
            demos, held_out = _split(demos, episodes)
        rows = every_nth_step_rows(demos.episode_lengths, every_nth_step)

        started = time.perf_counter()
        with _option_names(), progress_bar(progress, f"training {algo} x{len(seed_list)}") as bar:
            result = train(
                demos.observations[rows],
                demos.actions[rows],
                config,
                seeds=seed_list,
                n_actions=n_actions,
                env_id=env_id,
                device=device,
                num_threads=threads,
                progress=bar,
            )
        seconds = time.perf_counter() - started
        run_config = {
            "command": "sbil train",
            "dataset": dataset,
            "root": None if root is None else str(root),
            "data": None if data is None else str(data),
            "env_id": env_id,
            "n_actions": n_actions,
            "episodes": demos.n_episodes,
            "held_out_episodes": 0 if held_out is None else held_out.n_episodes,
            "every_nth_step": every_nth_step,
            "n_pairs": len(rows),
            "device": device,
            "threads": threads,
        }
        extra: dict = {"train_seconds": seconds, "updates_per_second": updates / seconds}
        extra["held_out_action_match"] = _held_out_match(result, held_out)
        if eval_episodes > 0:
            from sbil.deep.evaluation import evaluate

            returns = {}
            for index, seed in enumerate(result.seeds):
                evaluation = evaluate(result.learner(index), env_id, eval_episodes, eval_seed)
                returns[str(seed)] = evaluation.to_dict()
            extra["evaluation"] = returns
        save_run(out, result, run_config=run_config, extra_results=extra, overwrite=overwrite)

    console.print(
        f"Trained {len(seed_list)} {algo} learner(s) on {len(rows)} pairs from "
        f"{demos.n_episodes} trajectories ({updates} updates, {seconds:.1f} s) -> {out}",
        highlight=False,
    )
    match = extra["held_out_action_match"]
    if match is None:
        hint = (
            f"pass --episodes K below {available} to hold some out"
            if available > 1
            else "the data holds a single trajectory"
        )
        console.print(
            f"  No held-out episodes (all were trained on; {hint}): action-match rate not "
            "measured.",
            highlight=False,
        )
    for index, seed in enumerate(result.seeds):
        line = f"  seed {seed}: final loss {float(np.mean(result.loss[index, -100:])):.4f}"
        if match is not None:
            line += (
                f", held-out action match {match['rates'][str(seed)]:.3f} "
                f"({match['episodes']} episodes, {match['states']} states)"
            )
        if eval_episodes > 0:
            ev = extra["evaluation"][str(seed)]
            line += f", return {ev['mean']:.2f} ± {ev['std']:.2f} ({eval_episodes} episodes)"
        console.print(f"{line} -> {out / f'seed-{seed}'}", markup=False, highlight=False)


def _held_out_match(result, held_out) -> dict | None:
    """Each learner's action-match rate on the held-out episodes (all their steps), or None."""
    if held_out is None:
        return None
    from sbil.deep.evaluation import action_match_rate

    rates = {
        str(seed): action_match_rate(result.learner(index), held_out)
        for index, seed in enumerate(result.seeds)
    }
    return {"episodes": held_out.n_episodes, "states": len(held_out.actions), "rates": rates}


def register(app: typer.Typer) -> None:
    """Add the training command to ``app``."""
    app.command("train")(train_command)

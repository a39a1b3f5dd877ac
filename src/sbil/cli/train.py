"""Training command: ``sbil train``: parses options into a run description and prints.

The work is :func:`sbil.experiments.runs.run_training`: it claims ``--out`` (refusing a folder
another process writes), loads the demonstrations, picks each seed's trajectories
(``--windows``), trains the learners together with mid-training checkpoints (``--resume``
continues a killed run), saves one checkpoint per seed, measures the action match on held-out
episodes and, with ``--eval-episodes``, the return. Every option is checked before the data is
loaded or training starts. Progress goes to stderr and ``OUT/log.txt``; stdout holds only the
final figures. ``--tensorboard DIR`` also writes every loss term of every seed for TensorBoard
(:mod:`sbil.experiments.tensorboard_log`).

Longer than ~400 lines: its one command's signature restates about 30 of
:class:`~sbil.deep.config.LearnerConfig`'s fields as options with their help (some 370 lines);
generating them from the config is open (issue 15).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from sbil.cli._common import console
from sbil.deep.learners.registry import DISPLAY_NAMES, SGLD_ALGOS, TRANSITION_ALGOS, algo_list

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
    "every_nth_step": "--every-nth-step",
    "eval_episodes": "--eval-episodes",
    "checkpoint_every": "--checkpoint-every",
    "nu_learning_rate": "--nu-lr",
    "gradient_penalty": "--gradient-penalty",
    "orthogonal_coef": "--orthogonal-coef",
    "reward_l1_coef": "--reward-l1",
    "chi2_alpha": "--chi2-alpha",
    "soft_q_temperature": "--temperature",
    "td_likelihood_weight": "--td-weight",
    "discount": "--discount",
}


def _as_options(message: str) -> str:
    """Rewrite the library's argument names in ``message`` as this command's option names."""
    for name, option in _OPTION_NAMES.items():
        message = re.sub(rf"(?<![\w-]){name}\b", option, message)
    return message


@contextlib.contextmanager
def _option_names(usage: bool = False) -> Iterator[None]:
    """Re-raise the learners' input errors with option names instead of Python names; with
    ``usage``, any ValueError (a bad option, found before any work) is a usage error."""
    from sbil.cli._common import UsageError
    from sbil.deep.learners import LearnerInputError

    try:
        yield
    except UsageError:
        raise
    except (LearnerInputError, ValueError) as error:
        if usage:
            raise UsageError(_as_options(str(error))) from None
        if isinstance(error, LearnerInputError):
            raise ValueError(_as_options(str(error))) from None
        raise


def _parse_noise(text: str, step_size: float) -> float:
    from sbil.cli._common import UsageError

    if text.strip().lower() == "langevin":
        from sbil.deep.sgld import langevin_noise_scale

        return langevin_noise_scale(step_size)
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"--sgld-noise must be a number or 'langevin' (= sqrt(2 * step)), got {text!r}."
        ) from None


# Help panels of `sbil train --help`: the options every run has, then each learner's own.
_RUN, _DATA, _BUDGET, _EVAL, _OUTPUT = "Run", "Data", "Training", "Evaluation", "Output"
_SGLD = f"EDM's SGLD sampler ({', '.join(SGLD_ALGOS)})"
_TRANSITIONS = f"Transition learners ({', '.join(TRANSITION_ALGOS)})"
_VALUEDICE, _RCAL, _IQLEARN, _AVRIL = (
    DISPLAY_NAMES[name] for name in ("valuedice", "rcal", "iqlearn", "avril")
)

_ALGOS = algo_list()


def train_command(
    out: Annotated[
        Path,
        typer.Option(
            help="Output folder for the run; must be new or empty unless --overwrite.",
            rich_help_panel=_RUN,
        ),
    ],
    algo: Annotated[
        str | None,
        typer.Option(
            help=f"Learner: {_ALGOS} (docs/learners.md). Required, except with --resume "
            "--out alone (the run's saved settings).",
            show_default=False,
            rich_help_panel=_RUN,
        ),
    ] = None,
    seeds: Annotated[
        str,
        typer.Option(
            help="Distinct seeds, e.g. 0,1,2 or 0-9; trained together.", rich_help_panel=_RUN
        ),
    ] = "0",
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Local Minari dataset id, e.g. sbil/cartpole/scripted-v0.", rich_help_panel=_DATA
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Minari datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets).",
            rich_help_panel=_DATA,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --dataset: an .npz (np.savez) of numeric arrays: observations "
            "(N, obs_dim) and actions (N); optional episode_lengths (E; default: one episode), "
            "and for the transition learners final_observations (E, obs_dim; each episode's "
            "observation after its last action) and terminated (E; ended in a terminal state, "
            "not a time limit). Other keys are ignored.",
            rich_help_panel=_DATA,
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", help="Task id (default: the dataset's task).", rich_help_panel=_DATA
        ),
    ] = None,
    n_actions: Annotated[
        int | None,
        typer.Option(
            help="Number of discrete actions (default: the dataset's action space or the "
            "task's); needed for --data without --env.",
            rich_help_panel=_DATA,
        ),
    ] = None,
    episodes: Annotated[
        int | None,
        typer.Option(
            help="K: trajectories each seed trains on (default: all that are not held out).",
            rich_help_panel=_DATA,
        ),
    ] = None,
    windows: Annotated[
        str,
        typer.Option(
            help="Which K trajectories seed r trains on: first (0..K-1 for every seed), "
            "sliding (r..r+K-1, as the EDM reference's repetitions) or random (a seeded draw).",
            rich_help_panel=_DATA,
        ),
    ] = "first",
    holdout: Annotated[
        int | None,
        typer.Option(
            help="Reserve the data's last H episodes: never trained on, they measure the action "
            "match (default: the episodes no seed trains on).",
            rich_help_panel=_DATA,
        ),
    ] = None,
    every_nth_step: Annotated[
        int,
        typer.Option(
            help="Keep every n-th step of each trajectory. The default 1 keeps all steps; this "
            "deviates from the EDM reference, which keeps every 20th (pass 20 to match it).",
            rich_help_panel=_DATA,
        ),
    ] = 1,
    updates: Annotated[
        int,
        typer.Option(
            help="Adam updates; at most 1000000 (SBIL_MAX_UPDATES).", rich_help_panel=_BUDGET
        ),
    ] = 10_000,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Expert pairs (= SGLD chains) per update (default: the algorithm's published "
            "setting: 32; ValueDICE 256, AVRIL 64).",
            rich_help_panel=_BUDGET,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Adam learning rate (default: the algorithm's published setting: 1e-3; "
            "ValueDICE's policy 1e-5, IQ-Learn and AVRIL 1e-4).",
            rich_help_panel=_BUDGET,
        ),
    ] = None,
    hidden: Annotated[
        str,
        typer.Option(help="Hidden layer widths, comma-separated.", rich_help_panel=_BUDGET),
    ] = "64,64",
    normalize: Annotated[
        bool | None,
        typer.Option(
            "--normalize/--no-normalize",
            help="Standardise observations (default: off; on for ValueDICE, as its code).",
            rich_help_panel=_BUDGET,
        ),
    ] = None,
    entropy_coef: Annotated[
        float, typer.Option(help="Policy entropy bonus (0 = off).", rich_help_panel=_BUDGET)
    ] = 0.0,
    l2_coef: Annotated[
        float,
        typer.Option(help="L2 penalty on policy weights (0 = off).", rich_help_panel=_BUDGET),
    ] = 0.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.", rich_help_panel=_BUDGET)] = "cpu",
    threads: Annotated[
        int,
        typer.Option(
            help="torch intra-op threads while training (1 is fastest here).",
            rich_help_panel=_BUDGET,
        ),
    ] = 1,
    sgld_steps: Annotated[
        int, typer.Option(help="SGLD steps per update.", rich_help_panel=_SGLD)
    ] = 20,
    sgld_step_size: Annotated[
        float, typer.Option(help="SGLD drift coefficient.", rich_help_panel=_SGLD)
    ] = 0.01,
    sgld_noise: Annotated[
        str,
        typer.Option(
            help="SGLD noise coefficient, or 'langevin' for sqrt(2 * step).",
            rich_help_panel=_SGLD,
        ),
    ] = "0.01",
    sgld_buffer_size: Annotated[
        int, typer.Option(help="Persistent SGLD buffer size.", rich_help_panel=_SGLD)
    ] = 10_000,
    sgld_reinit_prob: Annotated[
        float, typer.Option(help="Chain restart probability.", rich_help_panel=_SGLD)
    ] = 0.05,
    discount: Annotated[
        float | None,
        typer.Option(help="Discount gamma (default 0.99).", rich_help_panel=_TRANSITIONS),
    ] = None,
    nu_lr: Annotated[
        float | None,
        typer.Option(help="nu network's learning rate (default 1e-3).", rich_help_panel=_VALUEDICE),
    ] = None,
    gradient_penalty: Annotated[
        float | None,
        typer.Option(help="nu's gradient-penalty weight (default 10).", rich_help_panel=_VALUEDICE),
    ] = None,
    orthogonal_coef: Annotated[
        float | None,
        typer.Option(
            help="Policy's orthogonal-regulariser weight (default 1e-4).",
            rich_help_panel=_VALUEDICE,
        ),
    ] = None,
    reward_l1: Annotated[
        float | None,
        typer.Option(
            help="lambda, L1 weight on the implied reward (default 1).", rich_help_panel=_RCAL
        ),
    ] = None,
    chi2_alpha: Annotated[
        float | None,
        typer.Option(
            help="The chi-squared regulariser's alpha (default 0.5).", rich_help_panel=_IQLEARN
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="Soft-Q temperature tau (default 0.01).", rich_help_panel=_IQLEARN),
    ] = None,
    td_weight: Annotated[
        float | None,
        typer.Option(help="lambda, TD-likelihood weight (default 1).", rich_help_panel=_AVRIL),
    ] = None,
    eval_episodes: Annotated[
        int,
        typer.Option(
            help="After training, evaluate each learner over this many episodes; at most "
            "100000 (SBIL_MAX_EPISODES).",
            rich_help_panel=_EVAL,
        ),
    ] = 0,
    eval_seed: Annotated[
        int, typer.Option(help="Eval episode i has seed EVAL_SEED + i.", rich_help_panel=_EVAL)
    ] = 0,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            help="Save the training state every N updates (for --resume).", rich_help_panel=_RUN
        ),
    ] = 1000,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue the interrupted run in --out (with --out alone, its saved settings).",
            rich_help_panel=_RUN,
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite/--no-overwrite",
            help="Replace an earlier run in --out with this one.",
            rich_help_panel=_RUN,
        ),
    ] = False,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            help="Also write every loss term of every seed to this TensorBoard folder as it "
            "trains (DIR/seed-<s>/, tags train/<term>; needs the tensorboard extra).",
            metavar="DIR",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar on stderr (default: when stderr is a terminal).",
            show_default=False,
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
) -> None:
    """Train offline imitation learners (one per seed) and save checkpoints."""
    from sbil.cli._common import (
        MAX_EPISODES,
        MAX_UPDATES,
        UsageError,
        errors_as_messages,
        exit_interrupted,
        parse_seeds,
        progress_bar,
        require,
    )

    with errors_as_messages():
        from sbil.deep.learners import LearnerConfig, TrainingDiverged, TrainingInterrupted
        from sbil.experiments.runs import RunSpec, load_spec, run_training

        if resume and overwrite:
            raise UsageError("Give at most one of --resume and --overwrite.")
        if tensorboard is not None:
            _check_tensorboard_folder(tensorboard, out)
        if resume and (out / "config.json").is_file() and dataset is None and data is None:
            spec = load_spec(out)  # the run's own description: nothing else is needed
        else:
            if algo is None:  # optional only for `--resume --out RUN` alone, above
                raise UsageError(
                    f"Missing option '--algo': name the learner to train ({_ALGOS}); only "
                    "`sbil train --resume --out RUN` alone reads it from the run. Try "
                    "'sbil train --help' for help."
                )
            try:
                hidden_sizes = tuple(int(h) for h in hidden.split(","))
            except ValueError:
                raise UsageError(f"--hidden must be integers like 64,64, got {hidden!r}.") from None
            specific = {  # options of some learners only: passed when given
                "discount": discount,
                "nu_learning_rate": nu_lr,
                "gradient_penalty": gradient_penalty,
                "orthogonal_coef": orthogonal_coef,
                "reward_l1_coef": reward_l1,
                "chi2_alpha": chi2_alpha,
                "soft_q_temperature": temperature,
                "td_likelihood_weight": td_weight,
            }
            with _option_names(usage=True):
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
                    **{name: value for name, value in specific.items() if value is not None},
                ).refuse_unused_options()  # SGLD options for a learner without SGLD, too
                spec = RunSpec(
                    learner=config,
                    seeds=tuple(parse_seeds(seeds)),
                    dataset=dataset,
                    root=None if root is None else str(root),
                    data=None if data is None else str(data),
                    env_id=env,
                    n_actions=n_actions,
                    episodes=episodes,
                    windows=windows,
                    holdout=holdout,
                    every_nth_step=every_nth_step,
                    eval_episodes=eval_episodes,
                    eval_seed=eval_seed,
                    device=device,
                    threads=threads,
                    checkpoint_every=checkpoint_every,
                )
            # The lower bounds are the config's; the upper ones catch a typo before any work.
            require("--updates", spec.learner.n_updates, 1, limit=MAX_UPDATES)
            require("--eval-episodes", spec.eval_episodes, 0, limit=MAX_EPISODES)
            if spec.eval_episodes > 0 and spec.env_id is None and spec.data is not None:
                raise UsageError("--eval-episodes needs a task to play: pass --env.")
        algo = spec.learner.algo
        label = f"training {algo} x{len(spec.seeds)}"
        task = spec.env_id or "the dataset's task"

        def eval_progress(seed: int):
            return progress_bar(progress, f"evaluating seed {seed} on {task}")

        try:
            with contextlib.ExitStack() as stack:
                on_terms = None
                if tensorboard is not None:
                    from sbil.experiments.tensorboard_log import TensorBoardTerms

                    on_terms = stack.enter_context(TensorBoardTerms(tensorboard))
                stack.enter_context(_option_names())
                bar = stack.enter_context(progress_bar(progress, label))
                outcome = run_training(
                    spec,
                    out,
                    overwrite=overwrite,
                    resume=resume,
                    progress=bar,
                    eval_progress=eval_progress,
                    on_terms=on_terms,
                )
        except TrainingDiverged as error:
            raise ValueError(_as_options(str(error))) from None
        except TrainingInterrupted:
            exit_interrupted(
                f"the training state was saved; continue with `sbil train --resume --out {out}`"
            )

    _print_outcome(outcome, out)


def _check_tensorboard_folder(folder: Path, out: Path) -> None:
    """``--tensorboard`` needs TensorBoard and a folder outside the run folder (which holds
    only what a run writes)."""
    from sbil.cli._common import UsageError
    from sbil.experiments.tensorboard_log import check_tensorboard

    resolved, run = folder.resolve(), out.resolve()
    if resolved == run or run in resolved.parents:
        raise UsageError(
            f"--tensorboard {folder} is inside --out {out}, which holds only the run's own "
            "files; give a folder beside it, e.g. --tensorboard tensorboard/NAME."
        )
    check_tensorboard()


def _print_outcome(outcome, out: Path) -> None:
    spec = outcome.spec
    n_episodes = spec.episodes or "all"
    pairs = sorted({s.n_pairs for s in outcome.seeds})
    pairs_text = str(pairs[0]) if len(pairs) == 1 else f"{pairs[0]}-{pairs[-1]}"
    verb = "Resumed and trained" if outcome.resumed else "Trained"
    console.print(
        f"{verb} {len(spec.seeds)} {spec.learner.algo} learner(s) on {pairs_text} pairs from "
        f"{n_episodes} trajectories each ({spec.windows} windows, every {spec.every_nth_step} "
        f"step(s); {spec.learner.n_updates} updates, {outcome.train_seconds:.1f} s) -> {out}",
        highlight=False,
    )
    if outcome.held_out_episodes == 0:
        console.print(
            "  No held-out episodes (every episode was trained on by some seed): action match "
            "not measured; pass --holdout H or a smaller --episodes to keep some out.",
            highlight=False,
        )
    else:
        console.print(
            f"  Action match on {outcome.held_out_episodes} held-out episodes "
            f"({outcome.held_out_states} states) that no learner trained on.",
            highlight=False,
        )
    for s in outcome.seeds:
        if s.status != "done":
            console.print(f"  seed {s.seed}: FAILED, {s.error}", markup=False, highlight=False)
            continue
        line = f"  seed {s.seed}: final loss {s.final_loss:.4f}"
        if s.final_rho is not None:
            line += f" (CE {s.final_cross_entropy:.4f} + rho + rho^2, rho {s.final_rho:.3f}"
            if s.final_loss < 0:
                line += "; negative because rho + rho^2 < 0 for -1 < rho < 0"
            line += ")"
        if s.action_match is not None:
            line += f", held-out action match {s.action_match:.3f}"
        if s.returns:
            import numpy as np

            line += (
                f", return {np.mean(s.returns):.2f} ± {np.std(s.returns):.2f} "
                f"({len(s.returns)} episodes)"
            )
        console.print(f"{line} -> {out / f'seed-{s.seed}'}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the training command to ``app``."""
    app.command("train")(train_command)

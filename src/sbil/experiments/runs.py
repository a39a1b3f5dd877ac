"""One training run from one description: what ``sbil train`` and every sweep cell call.

A :class:`RunSpec` says everything a run needs (data source, task, learner config, how many
trajectories ``k`` each seed trains on and which ones, seeds, held-out episodes, evaluation
settings); :func:`run_training` turns it into a run folder::

    OUT/config.json      {"spec": RunSpec.to_dict(), "resolved": {...}, "provenance": {...}}
    OUT/log.txt          timestamped progress and figures, appended as they happen
                         (sbil.experiments.run_log)
    OUT/seed-<s>/        one checkpoint per seed (learner.json + weights.pt)
    OUT/losses.npz       every loss term of every update by name, [K, n_updates] each
                         (see save_curves), and the seeds
    OUT/training.csv     one tidy row per seed: task, learner, k, seed, final training
    OUT/training.json    figures, action match, mean/std return, commit (the same rows)
    OUT/results.json     per seed: training figures, held-out action match, returns;
                         written last, so its presence marks a complete run
    OUT/.state/          mid-training state while the run is unfinished (for --resume)
    OUT/evaluation.csv   written by `sbil evaluate OUT`: its tidy rows per seed
    OUT/evaluation.json
    OUT/curves.png       written by `sbil plot OUT`: the training curves
    OUT/demonstrations.npz  for a spec given in-memory demonstrations: them, as the .npz
                         that ``data`` then names (so the run resumes from its folder)

While a process writes the run it holds :func:`sbil.files.lock` on ``OUT``, so a second
process asked to write the same folder fails at once instead of after training.

``config.json`` stores the spec, so a run can be re-created, or resumed, from it alone
(:func:`load_spec`). Which trajectories seed ``r`` trains on (:func:`training_episodes`):

* ``"first"``: episodes ``0..k-1`` for every seed (the same data; the spread across seeds is
  initialisation and minibatch noise only);
* ``"sliding"``: episodes ``r, r+1, ..., r+k-1`` (modulo the pool), as the EDM reference's
  repetitions do, so the spread across seeds includes data variance;
* ``"random"``: ``k`` distinct episodes drawn with a generator seeded by ``(r, k)``.

The last ``holdout`` episodes of the dataset are never trained on; each learner's action-match
rate is measured on them (every step). By default (``holdout=None``) they are the episodes that
no seed of the run trains on.

Decoupled EDM's policy is BC's bit for bit (same seeds, data and shared options:
:func:`policy_twin`). Given that BC run's finished folder (``run_training(policy_from=...)``,
as a sweep does), a decoupled EDM run trains its state model alone and takes the rest from it:
each checkpoint holds BC's policy weights (the ones it would have trained) and its own state
model, its curves take the policy's terms from BC's ``losses.npz``, and its action match and
returns are BC's (``results.json`` names the folder as ``policy_from``). Every file it writes is
the one a full training writes, timings aside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbil.experiments.run_log import LOG_FILE, RunLog, tee
from sbil.experiments.seed_figures import (
    SeedFigures,
    provenance_fields,
    write_seed_figures,
)
from sbil.files import write_bytes_atomic, write_json_atomic
from sbil.progress import ProgressCallback
from sbil.seeds import check_seed_range

if TYPE_CHECKING:
    from sbil.deep.training import TermsCallback

WINDOWS: tuple[str, ...] = ("first", "sliding", "random")
CONFIG_FILE, RESULTS_FILE, LOSSES_FILE = "config.json", "results.json", "losses.npz"
STATE_DIR = ".state"
#: ``sbil plot``'s figure of the training curves (:mod:`sbil.experiments.training_plots`).
CURVES_FIGURE = "curves.png"
#: The names (without .csv/.json) of the tidy per-seed figures of training and evaluation.
TRAINING_FIGURES, EVALUATION_FIGURES = "training", "evaluation"
#: Where a run given in-memory demonstrations keeps them (the ``data`` its config records).
DEMONSTRATIONS_FILE = "demonstrations.npz"
_RUN_NAMES = {
    CONFIG_FILE,
    DEMONSTRATIONS_FILE,
    RESULTS_FILE,
    LOSSES_FILE,
    STATE_DIR,
    LOG_FILE,
    CURVES_FIGURE,
    *(
        f"{name}.{ext}"
        for name in (TRAINING_FIGURES, EVALUATION_FIGURES)
        for ext in ("csv", "json")
    ),
}
#: The legacy arrays of ``losses.npz``, always present (see :func:`save_curves`).
_LEGACY_CURVES = ("loss", "cross_entropy", "rho")


class RunError(ValueError):
    """A run description, data source or run folder that cannot be used as asked."""


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs; ``config.json`` stores exactly this.

    Exactly one of ``dataset`` (a local Minari dataset) and ``data`` (an ``.npz`` file, or
    :class:`~sbil.deep.demonstrations.Demonstrations` in memory) is set. In-memory
    demonstrations have no JSON form: :func:`run_training` saves them into the run folder
    (``OUT/demonstrations.npz``) and records that path, so the run resumes from its folder.

    Example (``demos`` built with :func:`sbil.deep.demonstrations.from_arrays`)::

        spec = RunSpec(learner=LearnerConfig(algo="bc"), seeds=(0, 1), data=demos)
        outcome = run_training(spec, "runs/bc")  # writes runs/bc/demonstrations.npz too
    """

    learner: Any
    """The learners' hyperparameters (:class:`sbil.deep.learners.LearnerConfig`)."""
    seeds: tuple[int, ...]
    """One learner per seed; all train together as one stacked model."""
    dataset: str | None = None
    """Local Minari dataset id, e.g. ``sbil/cartpole/scripted-v0``."""
    root: str | None = None
    """Minari datasets folder (absolute); None: ``$MINARI_DATASETS_PATH`` or ``~/.minari``,
    resolved and recorded when the run starts."""
    data: Any = None
    """Instead of ``dataset``: an ``.npz`` of the arrays :data:`NPZ_ARRAYS`
    (``observations``, ``actions``; optional ``episode_lengths``, ``final_observations``,
    ``terminated``), or :class:`~sbil.deep.demonstrations.Demonstrations` in memory."""
    env_id: str | None = None
    """The task (default: the dataset's)."""
    n_actions: int | None = None
    """Number of discrete actions (default: the dataset's action space or the task's)."""
    episodes: int | None = None
    """``k``: trajectories each seed trains on (None: all that are not held out)."""
    windows: str = "first"
    """Which ``k`` trajectories each seed trains on: first, sliding or random."""
    holdout: int | None = None
    """The last ``holdout`` episodes are never trained on and measure the action match;
    None: the episodes that no seed trains on."""
    every_nth_step: int = 1
    """Keep steps ``0, n, 2n, ...`` of each trajectory (the EDM reference keeps every 20th)."""
    eval_episodes: int = 0
    """Evaluate each learner over this many seeded episodes after training (0: none)."""
    eval_seed: int = 0
    """Evaluation episode ``i`` starts from ``reset(seed=eval_seed + i)``."""
    device: str = "cpu"
    """Torch device: cpu or cuda."""
    threads: int = 1
    """Torch intra-op threads while training (1 is fastest for these small networks)."""
    checkpoint_every: int = 1000
    """Write the training state every this many updates (for resume)."""

    def __post_init__(self) -> None:
        from sbil.deep.learners import LearnerConfig, check_seeds

        if isinstance(self.learner, dict):
            object.__setattr__(self, "learner", LearnerConfig.from_dict(self.learner))
        if not isinstance(self.learner, LearnerConfig):
            raise RunError(f"learner must be a LearnerConfig, got {type(self.learner).__name__}.")
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        if (self.dataset is None) == (self.data is None):
            raise RunError("Give exactly one of --dataset ID (Minari) or --data FILE.npz.")
        if self.windows not in WINDOWS:
            raise RunError(f"--windows must be one of {', '.join(WINDOWS)}, got {self.windows!r}.")
        for name, low in (
            ("episodes", 1),
            ("holdout", 0),
            ("every_nth_step", 1),
            ("eval_episodes", 0),
            ("eval_seed", 0),
            ("threads", 1),
            ("checkpoint_every", 1),
            ("n_actions", 2),
        ):
            value = getattr(self, name)
            if value is None and name in ("episodes", "holdout", "n_actions"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise RunError(
                    f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}."
                )
        try:
            check_seed_range(self.eval_seed, max(self.eval_episodes, 1), name="--eval-seed")
        except ValueError as error:
            raise RunError(str(error)) from None
        if self.root is not None:
            object.__setattr__(self, "root", str(Path(self.root).expanduser().absolute()))
        if isinstance(self.data, (str, os.PathLike)):
            object.__setattr__(self, "data", str(Path(self.data).expanduser().absolute()))
        elif self.data is not None:
            from sbil.deep.demonstrations import Demonstrations

            if not isinstance(self.data, Demonstrations):
                raise RunError(
                    "data must be the path of an .npz or Demonstrations in memory, got "
                    f"{type(self.data).__name__}."
                )

    @property
    def in_memory(self) -> bool:
        """Whether ``data`` is :class:`~sbil.deep.demonstrations.Demonstrations` in memory
        (not yet saved into a run folder)."""
        return self.data is not None and not isinstance(self.data, str)

    def to_dict(self) -> dict:
        """JSON-ready fields (the learner config nested).

        Raises:
            RunError: for in-memory demonstrations, which have no JSON form (run_training
                saves them into the run folder and records their path).
        """
        if self.in_memory:
            raise RunError(
                "A RunSpec holding in-memory demonstrations has no JSON form; run_training "
                f"saves them as OUT/{DEMONSTRATIONS_FILE} and records that path (or save "
                "them with save_npz_demonstrations and pass data=PATH)."
            )
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["learner"] = self.learner.to_dict()
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise RunError("A run description must be a JSON object.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(f"Unknown run description keys {unknown}; known keys: {sorted(known)}.")
        return cls(**{**data, "seeds": tuple(data.get("seeds", ()))})

    def digest(self) -> str:
        """sha256 of the description (what identifies a run, its seeds included)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# --- data: which episodes each seed trains on -----------------------------------------------


def training_episodes(windows: str, *, k: int, seed: int, pool: int) -> np.ndarray:
    """The episode indices seed ``seed`` trains on, ``[k]`` int64, sorted for ``random``.

    Args:
        windows: ``"first"``, ``"sliding"`` or ``"random"`` (see the module doc).
        k: trajectories per seed, ``1 <= k <= pool``.
        seed: the learner's seed.
        pool: episodes ``0..pool-1`` may be trained on.
    """
    if not 1 <= k <= pool:
        raise RunError(
            f"--episodes {k} asks for more trajectories than the {pool} available for training "
            "(the held-out ones excluded); collect more episodes or lower --episodes/--holdout."
        )
    if windows == "first":
        return np.arange(k, dtype=np.int64)
    if windows == "sliding":
        return (seed + np.arange(k, dtype=np.int64)) % pool
    if windows == "random":
        rng = np.random.default_rng([seed, k, 0x5B11])
        return np.sort(rng.choice(pool, size=k, replace=False)).astype(np.int64)
    raise RunError(f"--windows must be one of {', '.join(WINDOWS)}, got {windows!r}.")


def every_nth_step(demos, n: int):
    """Steps ``0, n, 2n, ...`` of every episode of ``demos`` (the EDM reference keeps every
    20th, ``BaseStudent._fill_buffer``); ``n = 1`` returns ``demos`` itself."""
    if n == 1:
        return demos
    rows = np.concatenate(
        [
            start + np.arange(0, length, n)
            for start, length in zip(demos.episode_starts, demos.episode_lengths, strict=True)
        ]
    )
    lengths = (demos.episode_lengths + n - 1) // n
    # Each kept step keeps its own next state and action (steps t and t+1, not t + n).
    return dataclasses.replace(
        demos,
        observations=demos.observations[rows],
        actions=demos.actions[rows],
        episode_lengths=lengths.astype(np.int64),
        next_observations=demos.next_observations[rows],
        next_actions=demos.next_actions[rows],
        terminals=demos.terminals[rows],
    )


#: The arrays :func:`load_npz_demonstrations` reads from an ``.npz`` (any other is ignored).
NPZ_ARRAYS = ("observations", "actions", "episode_lengths", "final_observations", "terminated")


def load_npz_demonstrations(path: str | os.PathLike, env_id: str | None):
    """Demonstrations from an ``.npz`` of ``observations``, ``actions`` (and optionally
    ``episode_lengths``, and for the learners that use transitions ``final_observations``
    ``[E, obs_dim]`` and ``terminated`` ``[E]``), never unpickling anything; every failure is
    one :class:`RunError`."""
    from sbil.deep.data import from_arrays

    path = Path(path)
    expected = (
        "an .npz written by np.savez with numeric arrays 'observations' [N, obs_dim] and "
        "'actions' [N] (optionally 'episode_lengths' [E], 'final_observations' [E, obs_dim] "
        "and 'terminated' [E])"
    )
    if path.is_dir():
        raise RunError(f"--data {path} is a folder; give the .npz file, which is {expected}.")
    if not path.is_file():
        raise RunError(f"--data {path} does not exist.")
    try:
        loaded = np.load(path)  # allow_pickle=False: never runs code from the file
    except OSError as error:
        raise RunError(f"Cannot read --data {path} ({error.strerror or error}).") from None
    except Exception:  # a damaged or foreign file can fail in many ways inside numpy/zipfile
        raise RunError(f"--data {path} is not {expected}; re-create it.") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise RunError(f"--data {path} holds a single array; it must be {expected}.")
    arrays = {}
    with loaded:
        missing = {"observations", "actions"} - set(loaded.files)
        if missing:
            raise RunError(f"--data {path} lacks {sorted(missing)}; it must be {expected}.")
        for name in NPZ_ARRAYS:
            if name not in loaded.files:
                continue
            try:
                arrays[name] = loaded[name]
            except ValueError:  # object arrays (need pickle) or a corrupt member
                raise RunError(
                    f"--data {path}: array {name!r} is not a plain numeric array (sbil never "
                    f"loads pickled objects); it must be {expected}."
                ) from None
            except Exception:  # damaged member: BadZipFile, zlib.error, EOFError, ...
                raise RunError(f"--data {path} is damaged; re-create it.") from None
    return from_arrays(
        arrays["observations"],
        arrays["actions"],
        episode_lengths=arrays.get("episode_lengths"),
        env_id=env_id,
        final_observations=arrays.get("final_observations"),
        terminated=arrays.get("terminated"),
    )


def npz_arrays(demos) -> dict[str, np.ndarray]:
    """The :data:`NPZ_ARRAYS` of ``demos``, as :func:`load_npz_demonstrations` reads them.

    ``final_observations`` is written when every episode's last next state is known,
    ``terminated`` when any episode ended in a terminal state.

    Raises:
        RunError: if the file would not read back as ``demos`` (e.g. thinned demonstrations,
            whose next states are not the following rows, or last next states known for some
            episodes only).
    """
    from sbil.deep.data import from_arrays

    ends = np.cumsum(demos.episode_lengths) - 1
    arrays = {
        "observations": np.asarray(demos.observations),
        "actions": np.asarray(demos.actions),
        "episode_lengths": np.asarray(demos.episode_lengths),
    }
    final = demos.next_observations[ends]
    if np.isfinite(final).all():
        arrays["final_observations"] = np.asarray(final)
    if demos.terminals[ends].any():
        arrays["terminated"] = np.asarray(demos.terminals[ends])
    again = from_arrays(
        arrays["observations"],
        arrays["actions"],
        episode_lengths=arrays["episode_lengths"],
        final_observations=arrays.get("final_observations"),
        terminated=arrays.get("terminated"),
    )
    if not same_transitions(again, demos):
        raise RunError(
            "These demonstrations cannot be saved as an .npz that reads back the same: their "
            "next states are not each episode's following rows (thinned, e.g. by "
            "every_nth_step? pass the full demonstrations and set every_nth_step instead), or "
            "the final observation is known for some episodes only."
        )
    return arrays


def same_transitions(a, b) -> bool:
    """Whether two Demonstrations hold the same steps: observations, actions, episodes, next
    observations and actions, terminals (returns, task and action count aside)."""
    return all(
        np.array_equal(getattr(a, name), getattr(b, name), equal_nan=name == "next_observations")
        for name in (
            "observations",
            "actions",
            "episode_lengths",
            "next_observations",
            "next_actions",
            "terminals",
        )
    )


def save_npz_demonstrations(demos, path: str | os.PathLike) -> Path:
    """Write ``demos`` to ``path`` atomically as an ``.npz`` that :func:`load_npz_demonstrations`
    (and ``sbil train --data``) reads back as the same steps (:func:`npz_arrays`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **npz_arrays(demos))
    return write_bytes_atomic(path, buffer.getvalue())


def resolve_n_actions(demos, env_id: str | None, option: int | None) -> int:
    """The number of actions: from ``option``, the dataset's action space or the task; any
    disagreement between them is an error (never guessed from the largest action)."""
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
        raise RunError(
            "The number of actions is unknown: the data does not declare it and no task is "
            "given; pass --env ID or --n-actions N."
        )
    if len({value for value, _ in sources}) > 1:
        raise RunError(
            f"The number of actions disagrees: {' vs '.join(where for _, where in sources)}; "
            "fix --n-actions or --env."
        )
    value = int(sources[0][0])
    if demos.actions.max() >= value:
        raise RunError(
            f"The data has action {int(demos.actions.max())} but the task has {value} actions "
            f"(0..{value - 1}); fix --n-actions or --env."
        )
    return value


@dataclass(frozen=True)
class RunData:
    """The demonstrations of a run, resolved from its spec."""

    env_id: str | None
    n_actions: int
    train_episodes: dict[int, list[int]]
    """Per seed, the dataset episodes it trains on."""
    held_out: list[int]
    """Dataset episodes no seed trains on, used for the action match."""
    per_seed: list = field(repr=False)
    """One (thinned) Demonstrations per seed, in seed order."""
    held_out_demos: Any = field(repr=False)
    """The held-out episodes (every step), or None."""
    root: str | None = None


def load_run_data(spec: RunSpec) -> RunData:
    """Load the spec's demonstrations and select each seed's trajectories."""
    from sbil.deep.data import datasets_root, load_demonstrations

    root = spec.root
    if spec.dataset is not None:
        root = str(datasets_root(spec.root).absolute())
        demos = load_demonstrations(spec.dataset, root=root, env_id=spec.env_id)
    else:
        demos = load_npz_demonstrations(spec.data, spec.env_id)
    env_id = spec.env_id or demos.env_id
    n_actions = resolve_n_actions(demos, env_id, spec.n_actions)
    total = demos.n_episodes
    k = spec.episodes
    if spec.holdout is not None:
        if spec.holdout >= total:
            raise RunError(
                f"--holdout {spec.holdout} leaves no episode to train on (the data has {total}); "
                "lower --holdout or collect more episodes."
            )
        pool = total - spec.holdout
    else:
        pool = total
    if k is None:
        k = pool
    chosen = {s: training_episodes(spec.windows, k=k, seed=s, pool=pool) for s in spec.seeds}
    if spec.holdout is not None:
        held_out = list(range(pool, total))
    else:
        used = np.unique(np.concatenate(list(chosen.values())))
        held_out = sorted(set(range(total)) - set(used.tolist()))
    per_seed = [every_nth_step(demos.select(chosen[s]), spec.every_nth_step) for s in spec.seeds]
    return RunData(
        env_id=env_id,
        n_actions=n_actions,
        train_episodes={s: chosen[s].tolist() for s in spec.seeds},
        held_out=held_out,
        per_seed=per_seed,
        held_out_demos=demos.select(held_out) if held_out else None,
        root=root,
    )


# --- the run folder: claimed, written, resumed ------------------------------------------------


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only what :func:`run_training` writes (safe to replace)."""
    return (folder / CONFIG_FILE).is_file() and all(
        entry.name in _RUN_NAMES or (entry.is_dir() and entry.name.startswith("seed-"))
        for entry in folder.iterdir()
    )


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether a run folder holds a finished run (its ``results.json``)."""
    return (Path(folder) / RESULTS_FILE).is_file()


def load_spec(folder: str | os.PathLike) -> RunSpec:
    """The :class:`RunSpec` stored in a run folder's ``config.json``."""
    path = Path(folder) / CONFIG_FILE
    try:
        doc = json.loads(path.read_text())
        return RunSpec.from_dict(doc["spec"])
    except FileNotFoundError:
        raise RunError(f"{folder} is not an sbil run: it has no {CONFIG_FILE}.") from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunError(f"Cannot read the run description {path} ({error}).") from None


def claim_run_folder(out: str | os.PathLike, *, overwrite: bool, resume: bool) -> Path:
    """Check that a run may be written to ``out`` (call it holding :func:`sbil.files.lock`).

    New or empty folders are fine; an interrupted run only with ``resume``; an earlier run is
    replaced only with ``overwrite``; anything else is refused before any data is loaded.
    """
    from sbil.files import check_writable_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a folder for the run.")
    if out.resolve() in (Path.cwd(), *Path.cwd().parents):  # resolve: also "..", symlinks
        raise RunError(
            f"--out {out} is the current folder or one of its parents; give a new subfolder."
        )
    if out.is_dir() and any(out.iterdir()):
        if not is_run_folder(out):
            raise RunError(
                f"--out {out} holds files that are not an sbil training run; give a new "
                "folder (--overwrite only replaces an earlier run)."
            )
        if overwrite:
            _remove_run(out)
        elif not resume:
            state = "a finished run" if is_complete(out) else "an interrupted run"
            raise RunError(
                f"--out {out} already holds {state}; pass --resume to continue it, "
                "--overwrite to replace it, or give a new folder."
            )
    check_writable_folder(out, what="the run folder")
    return out


def _remove_run(folder: Path) -> None:
    """Delete an earlier run's files (only names a run writes)."""
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedOutcome:
    """What one learner of a run produced (``status`` "done" or "failed")."""

    seed: int
    status: str
    error: str | None
    train_episodes: list[int]
    n_pairs: int
    final_loss: float | None
    final_cross_entropy: float | None
    final_rho: float | None
    action_match: float | None
    returns: list[float] | None
    checkpoint: str | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its folder, its per-seed outcomes and timings."""

    folder: Path
    spec: RunSpec
    env_id: str | None
    held_out_episodes: int
    held_out_states: int
    seeds: list[SeedOutcome]
    train_seconds: float
    eval_seconds: float
    resumed: bool


def _tail_mean(values: np.ndarray) -> float | None:
    values = values[-100:]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


#: Called with a seed, returns a context manager that yields the progress callback of that
#: seed's evaluation (or None), e.g. ``lambda seed: progress_bar(True, f"seed {seed}")``.
EvalProgress = Callable[[int], AbstractContextManager[ProgressCallback | None]]


def run_training(
    spec: RunSpec,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    stop_on_divergence: bool = True,
    progress: ProgressCallback | None = None,
    eval_progress: EvalProgress | None = None,
    on_terms: TermsCallback | None = None,
    policy_from: str | os.PathLike | None = None,
) -> RunOutcome:
    """Train, save and evaluate the run described by ``spec`` into ``out``.

    With ``resume`` an interrupted run in ``out`` (same spec) continues from its last saved
    training state, and a finished one is returned as it is. A diverged learner is never saved
    as finished: with ``stop_on_divergence`` the run stops with
    :class:`~sbil.deep.learners.TrainingDiverged`; otherwise that seed's outcome is "failed"
    and the others finish. Progress and each seed's figures also go to ``OUT/log.txt``.

    Args:
        progress: ``progress(done, total)`` over the training updates.
        eval_progress: for each seed, the context of its evaluation's progress callback
            (:data:`EvalProgress`).
        on_terms: every update's loss terms as training goes
            (:data:`sbil.deep.training.TermsCallback`, e.g. a TensorBoard writer).
        policy_from: for decoupled EDM, the folder of its finished BC twin
            (:func:`policy_twin`): only the state model trains and the policy's weights,
            terms, action match and returns are taken from there (see the module doc). A
            folder that is not that twin's finished run is ignored (logged): the run trains
            in full, with the same results.

    Raises:
        RunError: for a bad spec, data source or folder.
        TrainingDiverged, TrainingInterrupted: see :func:`sbil.deep.training.train`.
    """
    from sbil.deep.learners import resolve_device

    if not isinstance(spec, RunSpec):
        raise RunError(f"spec must be a RunSpec, got {type(spec).__name__}.")
    resolve_device(spec.device)
    if policy_from is not None and policy_twin(spec) is None:
        raise RunError(f"policy_from is for decoupled EDM runs, not {spec.learner.algo}.")
    from sbil.files import lock

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(lock(out))
        except OSError as error:  # its lock file beside --out cannot be made, e.g. /proc/x
            raise RunError(
                f"Cannot write the run folder {out} ({error.strerror or error}); pass a "
                "writable --out."
            ) from None
        path = claim_run_folder(out, overwrite=overwrite, resume=resume)
        if spec.in_memory:
            spec = _saved_demonstrations(spec, path)
        return _run(spec, path, stop_on_divergence, progress, eval_progress, on_terms, policy_from)


def policy_twin(spec: RunSpec) -> RunSpec | None:
    """The BC run whose learners' policies are ``spec``'s bit for bit, for a decoupled EDM
    ``spec`` (None for other learners): ``spec`` with BC's learner config of the same options
    (its ``sgld_*`` fields too, which BC records but does not use)."""
    from sbil.deep.learners import LearnerConfig

    if spec.learner.algo != "edm-decoupled":
        return None
    bc = LearnerConfig.from_dict({**spec.learner.to_dict(), "algo": "bc"})
    return dataclasses.replace(spec, learner=bc)


@dataclass(frozen=True)
class _GivenPolicy:
    """A decoupled EDM run's policy taken from its finished BC twin."""

    folder: Path
    trained: Any
    """:class:`sbil.deep.training.TrainedPolicy`."""
    seeds: dict[int, SeedOutcome]
    """The twin's outcome per seed (action match, returns)."""


def _given_policy(spec: RunSpec, folder: Path, log: RunLog) -> _GivenPolicy | None:
    """The policy of ``spec``'s BC twin from its run ``folder``, or None (logged) if the folder
    is not that twin's finished run with every finished seed's checkpoint."""
    import torch

    from sbil.deep.checkpoint import CheckpointError, load_learner
    from sbil.deep.training import TrainedPolicy

    twin = policy_twin(spec)

    def unusable(why: str) -> None:
        log.write(f"train: the policy is trained here: {folder} {why}")

    if not is_complete(folder):
        return unusable("is not a finished run")
    try:
        if load_spec(folder).digest() != twin.digest():
            return unusable("is not this run's BC twin (its description differs)")
        outcome = load_outcome(folder)
        seeds, curves = load_curves(folder)
        by_seed = {s.seed: s for s in outcome.seeds}
        if seeds != spec.seeds or set(by_seed) != set(spec.seeds):
            return unusable("holds other seeds")
        weights = []
        for seed in spec.seeds:
            if by_seed[seed].status == "done":
                weights.append(load_learner(folder / str(by_seed[seed].checkpoint)).policy_state)
            else:
                weights.append(None)  # its BC diverged, so this run's learner diverges too
        template = next((w for w in weights if w is not None), None)
    except (RunError, CheckpointError, OSError, ValueError, KeyError, TypeError) as error:
        return unusable(f"cannot be read ({type(error).__name__}: {error})")
    if template is None:
        return unusable("has no finished learner")
    stacked = {
        name: torch.cat(
            [torch.full_like(value, float("nan")) if w is None else w[name] for w in weights]
        )
        for name, value in template.items()
    }
    log.write(
        f"train: the policy is BC's from {folder} (equal by construction); only the state "
        "model trains, and the action match and returns are BC's"
    )
    return _GivenPolicy(folder, TrainedPolicy(stacked, curves), by_seed)


def _saved_demonstrations(spec: RunSpec, path: Path) -> RunSpec:
    """``spec`` with its in-memory demonstrations saved as ``path/demonstrations.npz`` (or,
    resuming, checked against the ones saved there) and ``data`` naming that file; the task
    and action count the demonstrations declare become the spec's where it gives none."""
    demos = spec.data
    saved = path / DEMONSTRATIONS_FILE
    if (path / CONFIG_FILE).is_file():  # resuming: the run's own demonstrations must be these
        if not saved.is_file():
            raise RunError(
                f"--out {path} holds a run without its {DEMONSTRATIONS_FILE}, so it cannot be "
                "resumed from in-memory demonstrations; use --overwrite or a new folder."
            )
        if not same_transitions(load_npz_demonstrations(saved, None), demos):
            raise RunError(
                f"--out {path} holds a run trained on other demonstrations than these; resume "
                "it with its own (load_spec(OUT)), or use --overwrite or a new folder."
            )
    else:
        save_npz_demonstrations(demos, saved)
    return dataclasses.replace(
        spec,
        data=str(saved.absolute()),
        env_id=spec.env_id or demos.env_id,
        n_actions=spec.n_actions or demos.n_actions,
    )


def save_curves(path: str | os.PathLike, result) -> Path:
    """Write a training result's curves to ``path`` (``losses.npz``) atomically.

    The file holds ``seeds`` ``[K]``, ``terms`` (the learner's term names, in order) and one
    ``[K, n_updates]`` float32 array per term (:attr:`sbil.deep.training.TrainResult.curves`),
    plus, for readers of older runs, ``loss``, ``cross_entropy`` and ``rho`` always (``rho``
    NaN for the learners without one; ValueDICE's ``loss`` is its ``objective``).
    """
    arrays = {"loss": result.loss, "cross_entropy": result.cross_entropy, "rho": result.rho}
    arrays.update(result.curves)
    buffer = io.BytesIO()
    np.savez(buffer, seeds=np.asarray(result.seeds), terms=np.array(list(result.curves)), **arrays)
    return write_bytes_atomic(path, buffer.getvalue())


def load_curves(folder: str | os.PathLike) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
    """``(seeds, {term: [K, n_updates]})`` from a run folder's ``losses.npz``; a run written
    before the terms were named gives its ``loss``, ``cross_entropy`` and (where finite)
    ``rho``.

    Raises:
        RunError: if the run has no readable curves.
    """
    path = Path(folder) / LOSSES_FILE
    try:
        with np.load(path) as saved:  # allow_pickle=False: never runs code from the file
            seeds = tuple(int(s) for s in saved["seeds"])
            if "terms" in saved.files:
                names = [str(n) for n in saved["terms"]]
            else:
                names = [n for n in _LEGACY_CURVES if not np.isnan(saved[n]).all()]
            return seeds, {name: saved[name] for name in names}
    except FileNotFoundError:
        raise RunError(
            f"{folder} holds no training curves ({LOSSES_FILE}); give a run folder written by "
            "`sbil train` (a finished run)."
        ) from None
    except Exception as error:  # a damaged file fails in many ways inside numpy/zipfile
        raise RunError(
            f"Cannot read {path} ({type(error).__name__}); re-run the training."
        ) from None


def _run(
    spec, path: Path, stop_on_divergence, progress, eval_progress, on_terms, policy_from=None
) -> RunOutcome:
    from sbil.deep.learners import train

    begun = _begin(spec, path)
    if isinstance(begun, RunOutcome):
        return begun
    given = None if policy_from is None else _given_policy(spec, Path(policy_from), begun.log)
    label = f"training {spec.learner.algo} x{len(spec.seeds)}"
    started = time.perf_counter()
    with _failing([begun]):
        result = train(
            begun.data.per_seed,
            spec.learner,
            seeds=spec.seeds,
            n_actions=begun.data.n_actions,
            env_id=begun.data.env_id,
            device=spec.device,
            num_threads=spec.threads,
            progress=tee(progress, begun.log.progress(label)),
            state_dir=path / STATE_DIR,
            checkpoint_every=spec.checkpoint_every,
            stop_on_divergence=stop_on_divergence,
            on_terms=on_terms,
            trained_policy=None if given is None else given.trained,
        )
    return _finish(begun, result, time.perf_counter() - started, eval_progress, given)


@dataclass(frozen=True)
class _Begun:
    """A run whose folder holds its description and whose data is loaded: it trains next."""

    spec: RunSpec
    path: Path
    data: RunData
    resumed: bool
    log: RunLog


def _begin(spec: RunSpec, path: Path) -> RunOutcome | _Begun:
    """Check a resumed folder against ``spec`` (its outcome if it is finished), load the data
    and write the run's description: what every run does before it trains."""
    from sbil.files import provenance

    resumed = (path / CONFIG_FILE).is_file()
    if resumed:
        stored = load_spec(path)
        if stored.digest() != spec.digest():
            raise RunError(
                f"--out {path} holds a run with a different description; resume it with its own "
                f"settings (`sbil train --resume --out {path}` alone reads them), or use "
                "--overwrite."
            )
        if is_complete(path):
            return load_outcome(path)
    data = load_run_data(spec)
    resolved = {
        "env_id": data.env_id,
        "n_actions": data.n_actions,
        "root": data.root,
        "train_episodes": {str(s): e for s, e in data.train_episodes.items()},
        "held_out_episodes": data.held_out,
        "n_pairs": {str(s): d.n_steps for s, d in zip(spec.seeds, data.per_seed, strict=True)},
    }
    if not resumed:
        write_json_atomic(
            path / CONFIG_FILE,
            {"spec": spec.to_dict(), "resolved": resolved, "provenance": provenance()},
        )
    algo, seeds = spec.learner.algo, spec.seeds
    log = RunLog(path / LOG_FILE)
    log.write(
        f"train: {'resumed' if resumed else 'started'} {algo} x{len(seeds)} (seeds "
        f"{', '.join(map(str, seeds))}) on {spec.dataset or spec.data}, "
        f"{spec.learner.n_updates} updates"
    )
    return _Begun(spec, path, data, resumed, log)


@contextlib.contextmanager
def _failing(runs: Sequence[_Begun]) -> Iterator[None]:
    """Log a training that fails or is interrupted in each of ``runs``; a refused or diverged
    one (nothing to resume) leaves a new folder as it was found rather than looking like an
    interrupted run."""
    from sbil.deep.learners import LearnerInputError, TrainingDiverged, TrainingInterrupted

    try:
        yield
    except (LearnerInputError, TrainingDiverged) as error:
        for run in runs:
            run.log.write(f"train: failed: {error}")
            if not run.resumed:
                _remove_run(run.path)
        raise
    except (TrainingInterrupted, KeyboardInterrupt) as error:
        for run in runs:
            run.log.write(f"train: interrupted: {str(error) or 'Ctrl-C'}")
        raise


def _finish(
    begun: _Begun, result, train_seconds: float, eval_progress, given=None, together=None
) -> RunOutcome:
    """Save a trained run's curves, evaluate and save its learners, and write its results."""
    from sbil.deep.checkpoint import save_learner

    spec, path, data, log = begun.spec, begun.path, begun.data, begun.log
    save_curves(path / LOSSES_FILE, result)
    log.write(f"train: {spec.learner.n_updates} updates in {train_seconds:.1f} s")
    outcomes, eval_seconds = _evaluate_seeds(
        spec, path, data, result, eval_progress, log, save_learner, given
    )
    held = data.held_out_demos
    results = {
        "env_id": data.env_id,
        "held_out_episodes": 0 if held is None else held.n_episodes,
        "held_out_states": 0 if held is None else int(held.n_steps),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "updates_per_second": spec.learner.n_updates / max(train_seconds, 1e-9),
        "learners": [o.to_dict() for o in outcomes],
    }
    if given is not None:
        results["policy_from"] = os.path.relpath(given.folder.absolute(), path.absolute())
    if together is not None:
        results["trained_together"] = together
    outcome = _outcome(path, spec, results, begun.resumed)
    stamp = json.loads((path / CONFIG_FILE).read_text()).get("provenance", {})
    write_seed_figures(path, TRAINING_FIGURES, training_rows(outcome, stamp))
    write_json_atomic(path / RESULTS_FILE, results, allow_nan=True)
    shutil.rmtree(path / STATE_DIR, ignore_errors=True)
    log.write(f"train: finished; {RESULTS_FILE} written")
    return outcome


def run_training_together(
    specs: Sequence[RunSpec],
    outs: Sequence[str | os.PathLike],
    *,
    state_dir: str | os.PathLike,
    stop_on_divergence: bool = True,
) -> list[RunOutcome]:
    """Train the runs ``specs`` (one learner config, on one task; each into its folder of
    ``outs``, resumed where it holds the same run) in one set of stacks
    (:func:`sbil.deep.training.train_together`), then evaluate each: every folder ends as
    :func:`run_training` alone writes it, with the same numbers bit for bit; only each
    ``results.json``'s ``train_seconds`` is its share of the shared training (by learners)
    and ``trained_together`` records the whole (its runs, learners and seconds).

    ``state_dir`` holds the shared training's state while it runs (an interrupted training
    of the same runs continues from it). Finished runs are returned as they are.

    Raises:
        RunError, TrainingDiverged, TrainingInterrupted: as :func:`run_training`.
    """
    from sbil.deep.learners import resolve_device, train_together
    from sbil.files import lock

    specs, outs = list(specs), [Path(o) for o in outs]
    if len(specs) != len(outs) or not specs:
        raise RunError("Give one run folder per spec (and at least one spec).")
    for spec in specs:
        if not isinstance(spec, RunSpec):
            raise RunError(f"spec must be a RunSpec, got {type(spec).__name__}.")
    shared = {(s.learner, s.device, s.threads, s.checkpoint_every) for s in specs}
    if len(shared) != 1:
        raise RunError(
            "Runs trained together share one learner config, device, threads and "
            "checkpoint_every; these differ."
        )
    resolve_device(specs[0].device)
    with contextlib.ExitStack() as held:
        pending: list[tuple[int, _Begun]] = []  # (position in specs, run) of those to train
        outcomes: dict[int, RunOutcome] = {}
        for number, (spec, out) in enumerate(zip(specs, outs, strict=True)):
            held.enter_context(lock(out))
            path = claim_run_folder(out, overwrite=False, resume=True)
            if spec.in_memory:
                spec = _saved_demonstrations(spec, path)
            run = _begin(spec, path)
            if isinstance(run, RunOutcome):
                outcomes[number] = run
            else:
                pending.append((number, run))
        begun = [run for _, run in pending]
        if begun:
            spec = begun[0].spec
            total = sum(len(run.spec.seeds) for run in begun)
            label = f"training {spec.learner.algo} x{total} (with {len(begun) - 1} other runs)"
            for run in begun:
                run.log.write(
                    f"train: in one stack of {total} learners with "
                    + ", ".join(other.path.name for other in begun if other is not run)
                )
            started = time.perf_counter()
            with _failing(begun):
                results = train_together(
                    [(run.data.per_seed, run.spec.seeds) for run in begun],
                    spec.learner,
                    n_actions=begun[0].data.n_actions,
                    env_id=begun[0].data.env_id,
                    device=spec.device,
                    num_threads=spec.threads,
                    progress=tee(*(run.log.progress(label) for run in begun)),
                    state_dir=state_dir,
                    checkpoint_every=spec.checkpoint_every,
                    stop_on_divergence=stop_on_divergence,
                )
            seconds = time.perf_counter() - started
            together = {
                "runs": [run.path.name for run in begun],
                "learners": total,
                "train_seconds": seconds,
            }
            for (number, run), result in zip(pending, results, strict=True):
                share = seconds * len(run.spec.seeds) / total
                outcomes[number] = _finish(run, result, share, None, None, together)
            shutil.rmtree(state_dir, ignore_errors=True)
    return [outcomes[number] for number in range(len(specs))]


def _evaluate_seeds(spec, path, data, result, eval_progress, log, save_learner, given=None):
    """Save each seed's checkpoint and measure it: ``(outcomes, seconds)``.

    The seeds' evaluation episodes are played together, in lockstep
    (:func:`sbil.deep.evaluation.evaluate_group`): each seed's returns are those
    ``evaluate(learner, ...)`` gives alone, for about the cost of one seed's. With ``given``
    (the policy of a BC twin) the action match and returns are the twin's, whose policy this
    learner's is.
    """
    started = time.perf_counter()
    figures = {}  # seed -> (common fields, learner or None if diverged, action match)
    for index, seed in enumerate(result.seeds):
        episodes = data.train_episodes[seed]
        common = {
            "seed": seed,
            "train_episodes": episodes,
            "n_pairs": int(result.n_pairs[index]),
            "final_loss": _tail_mean(result.loss[index]),
            "final_cross_entropy": _tail_mean(result.cross_entropy[index]),
            "final_rho": _tail_mean(result.rho[index]),
        }
        if seed in result.diverged:
            figures[seed] = (common, None, None)
            continue
        learner = result.learner(index)
        metadata = {
            "run": str(path),
            "dataset": spec.dataset,
            "root": data.root,
            "data": spec.data,
            "train_episodes": episodes,
            "held_out_episodes": data.held_out,
            "every_nth_step": spec.every_nth_step,
        }
        save_learner(path / f"seed-{seed}", learner, metadata=metadata)
        match = None
        if given is not None:
            twin = given.seeds[seed]
            if twin.status != "done":
                raise RunError(
                    f"Seed {seed} finished but its BC twin in {given.folder} did not; run it "
                    "without policy_from."
                )
            match = twin.action_match
        elif data.held_out_demos is not None:
            from sbil.deep.evaluation import action_match_rate

            match = action_match_rate(learner, data.held_out_demos)
        figures[seed] = (common, learner, match)
    played = [seed for seed, (_, learner, _) in figures.items() if learner is not None]
    returns = {}
    if given is not None:
        returns = {seed: given.seeds[seed].returns for seed in played}
    elif spec.eval_episodes > 0 and played:
        if data.env_id is None:
            raise RunError("--eval-episodes needs a task to play: pass --env.")
        from sbil.deep.evaluation import evaluate_group

        with contextlib.ExitStack() as stack:
            shown = _shown_in_turn(played, eval_progress, stack)
            evaluations = evaluate_group(
                [figures[seed][1] for seed in played],
                data.env_id,
                spec.eval_episodes,
                spec.eval_seed,
                progress=[
                    tee(shown[i], log.progress(f"seed {seed}: evaluating on {data.env_id}"))
                    for i, seed in enumerate(played)
                ],
            )
        returns = {
            seed: [float(r) for r in evaluation.returns]
            for seed, evaluation in zip(played, evaluations, strict=True)
        }
    outcomes = []
    for seed, (common, learner, match) in figures.items():
        if learner is None:
            update, value = result.diverged[seed]
            error = (
                f"diverged: the loss became {value} at update {update}; the learner was not saved"
            )
            log.write(f"seed {seed}: FAILED, {error}")
            outcomes.append(
                SeedOutcome(
                    status="failed",
                    error=error,
                    action_match=None,
                    returns=None,
                    checkpoint=None,
                    **common,
                )
            )
            continue
        outcome = SeedOutcome(
            status="done",
            error=None,
            action_match=match,
            returns=returns.get(seed),
            checkpoint=f"seed-{seed}",
            **common,
        )
        log.write(f"seed {seed}: {_figures_text(outcome)}")
        outcomes.append(outcome)
    return outcomes, time.perf_counter() - started


def _shown_in_turn(seeds, eval_progress, stack):
    """Per-seed callbacks showing lockstep progress through ``eval_progress``, one at a time.

    All seeds progress together, but at most one display may be live (a rich bar), so seed
    ``k``'s display opens once seed ``k - 1``'s episodes are all done, at its count so far.
    The displays close with ``stack``.
    """
    if eval_progress is None:
        return [None] * len(seeds)
    latest: list[tuple[int, int] | None] = [None] * len(seeds)
    turn = {"index": 0, "shown": None, "display": None}

    def advance():
        while turn["index"] < len(seeds):
            if turn["display"] is None:
                turn["display"] = stack.enter_context(contextlib.ExitStack())
                turn["shown"] = turn["display"].enter_context(eval_progress(seeds[turn["index"]]))
                if latest[turn["index"]] is not None and turn["shown"] is not None:
                    turn["shown"](*latest[turn["index"]])
            last = latest[turn["index"]]
            if last is None or last[0] < last[1]:
                return
            turn["display"].close()
            turn.update(index=turn["index"] + 1, shown=None, display=None)

    def callback(index):
        def update(done, total):
            latest[index] = (done, total)
            if index == turn["index"]:
                if turn["shown"] is not None:
                    turn["shown"](done, total)
                if done >= total:
                    advance()

        return update

    advance()
    return [callback(i) for i in range(len(seeds))]


def _figures_text(outcome: SeedOutcome) -> str:
    parts = [f"final loss {outcome.final_loss:.4g}"] if outcome.final_loss is not None else []
    if outcome.action_match is not None:
        parts.append(f"held-out action match {outcome.action_match:.3f}")
    if outcome.returns:
        parts.append(
            f"return {np.mean(outcome.returns):.2f} ± {np.std(outcome.returns):.2f} "
            f"({len(outcome.returns)} episodes)"
        )
    return ", ".join(parts) or "saved"


def training_rows(outcome: RunOutcome, provenance: dict | None = None) -> list[SeedFigures]:
    """The tidy rows of a finished run, one per seed (``training.csv``/``.json``).

    Args:
        outcome: the run.
        provenance: the run's :func:`sbil.files.provenance` (its ``config.json`` holds the one
            it started with); default the running sbil's.
    """
    spec = outcome.spec
    stamp = provenance_fields(provenance)
    rows = []
    for s in outcome.seeds:
        returns = s.returns or []
        rows.append(
            SeedFigures(
                env_id=outcome.env_id,
                algo=spec.learner.algo,
                k=len(s.train_episodes),
                seed=s.seed,
                status=s.status,
                error=s.error,
                n_updates=spec.learner.n_updates,
                n_pairs=s.n_pairs,
                final_loss=s.final_loss,
                final_cross_entropy=s.final_cross_entropy,
                final_rho=s.final_rho,
                action_match=s.action_match,
                action_match_states=outcome.held_out_states if s.action_match is not None else None,
                n_episodes=len(returns),
                eval_seed=spec.eval_seed if returns else None,
                mean_return=float(np.mean(returns)) if returns else None,
                std_return=float(np.std(returns)) if returns else None,
                policy=s.checkpoint or f"seed-{s.seed}",
                **stamp,
            )
        )
    return rows


def _outcome(path: Path, spec: RunSpec, results: dict, resumed: bool) -> RunOutcome:
    return RunOutcome(
        folder=path,
        spec=spec,
        env_id=results["env_id"],
        held_out_episodes=results["held_out_episodes"],
        held_out_states=results["held_out_states"],
        seeds=[SeedOutcome(**s) for s in results["learners"]],
        train_seconds=results["train_seconds"],
        eval_seconds=results["eval_seconds"],
        resumed=resumed,
    )


def load_outcome(folder: str | os.PathLike) -> RunOutcome:
    """The outcome of a finished run, read from its folder."""
    path = Path(folder)
    try:
        results = json.loads((path / RESULTS_FILE).read_text())
    except FileNotFoundError:
        raise RunError(f"The run in {path} is not finished (no {RESULTS_FILE}).") from None
    except (OSError, json.JSONDecodeError) as error:
        raise RunError(f"Cannot read {path / RESULTS_FILE} ({error}).") from None
    return _outcome(path, load_spec(path), results, resumed=True)

"""A run's description (:class:`RunSpec`), its errors and the names of a run folder's files.

Part of :mod:`sbil.experiments.runs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sbil.experiments.run_log import LOG_FILE
from sbil.seeds import check_seed_range

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

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

Modules, in the order they depend on each other: :mod:`.spec` (:class:`RunSpec` and the
folder's file names), :mod:`.data` (which episodes each seed trains on, npz demonstrations),
:mod:`.folder` (claiming and reading a run folder), :mod:`.outcome` (outcomes, curves and the
tidy rows), :mod:`.evaluate` (each seed's evaluation and figures) and :mod:`.train` (a run:
alone, or several trained together). Import from here.
"""

from __future__ import annotations

from sbil.experiments.runs.data import (
    NPZ_ARRAYS,
    RunData,
    every_nth_step,
    load_npz_demonstrations,
    load_run_data,
    npz_arrays,
    resolve_n_actions,
    same_transitions,
    save_npz_demonstrations,
    training_episodes,
)
from sbil.experiments.runs.folder import (
    claim_run_folder,
    is_complete,
    is_run_folder,
    load_spec,
)
from sbil.experiments.runs.outcome import (
    EvalProgress,
    RunOutcome,
    SeedOutcome,
    load_curves,
    load_outcome,
    save_curves,
    training_rows,
)
from sbil.experiments.runs.spec import (
    CONFIG_FILE,
    CURVES_FIGURE,
    DEMONSTRATIONS_FILE,
    EVALUATION_FIGURES,
    LOSSES_FILE,
    RESULTS_FILE,
    STATE_DIR,
    TRAINING_FIGURES,
    WINDOWS,
    RunError,
    RunSpec,
)
from sbil.experiments.runs.train import (
    policy_twin,
    run_training,
    run_training_together,
)

__all__ = [
    "CONFIG_FILE",
    "CURVES_FIGURE",
    "DEMONSTRATIONS_FILE",
    "EVALUATION_FIGURES",
    "LOSSES_FILE",
    "NPZ_ARRAYS",
    "RESULTS_FILE",
    "STATE_DIR",
    "TRAINING_FIGURES",
    "WINDOWS",
    "EvalProgress",
    "RunData",
    "RunError",
    "RunOutcome",
    "RunSpec",
    "SeedOutcome",
    "claim_run_folder",
    "every_nth_step",
    "is_complete",
    "is_run_folder",
    "load_curves",
    "load_npz_demonstrations",
    "load_outcome",
    "load_run_data",
    "load_spec",
    "npz_arrays",
    "policy_twin",
    "resolve_n_actions",
    "run_training",
    "run_training_together",
    "same_transitions",
    "save_curves",
    "save_npz_demonstrations",
    "training_episodes",
    "training_rows",
]

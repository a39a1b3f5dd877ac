"""A run: trained (alone, or several runs of one config trained together), evaluated and
written, resumed where it stopped; decoupled EDM takes its policy from its BC twin.

Part of :mod:`sbil.experiments.runs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbil.experiments.run_log import LOG_FILE, RunLog, tee
from sbil.experiments.seed_figures import (
    write_seed_figures,
)
from sbil.files import write_json_atomic
from sbil.progress import ProgressCallback

if TYPE_CHECKING:
    from sbil.deep.training import TermsCallback
from sbil.experiments.runs.data import (
    RunData,
    load_npz_demonstrations,
    load_run_data,
    same_transitions,
    save_npz_demonstrations,
)
from sbil.experiments.runs.evaluate import _evaluate_seeds
from sbil.experiments.runs.folder import _remove_run, claim_run_folder, is_complete, load_spec
from sbil.experiments.runs.outcome import (
    EvalProgress,
    RunOutcome,
    SeedOutcome,
    _outcome,
    load_curves,
    load_outcome,
    save_curves,
    training_rows,
)
from sbil.experiments.runs.spec import (
    CONFIG_FILE,
    DEMONSTRATIONS_FILE,
    LOSSES_FILE,
    RESULTS_FILE,
    STATE_DIR,
    TRAINING_FIGURES,
    RunError,
    RunSpec,
)


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
    policy_from: Sequence[str | os.PathLike | None] | None = None,
) -> list[RunOutcome]:
    """Train the runs ``specs`` (one learner config, on one task; each into its folder of
    ``outs``, resumed where it holds the same run) in one set of stacks
    (:func:`sbil.deep.training.train_together`), then evaluate each: every folder ends as
    :func:`run_training` alone writes it, with the same numbers bit for bit; only each
    ``results.json``'s ``train_seconds`` is its share of the shared training (by learners)
    and ``trained_together`` records the whole (its runs, learners and seconds).

    ``state_dir`` holds the shared training's state while it runs (an interrupted training
    of the same runs continues from it). Finished runs are returned as they are.
    ``policy_from``: for decoupled EDM, each run's BC twin folder (:func:`run_training`'s
    ``policy_from``); when every run still to train has its twin's finished run, only their
    state models train (stacked), else every run trains in full (the same results).

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
    twins = [None] * len(specs) if policy_from is None else list(policy_from)
    if len(twins) != len(specs):
        raise RunError("Give one policy_from folder (or None) per spec.")
    if any(t is not None for t in twins) and policy_twin(specs[0]) is None:
        raise RunError(f"policy_from is for decoupled EDM runs, not {specs[0].learner.algo}.")
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
            given = [
                None
                if twins[number] is None
                else _given_policy(run.spec, Path(twins[number]), run.log)
                for number, run in pending
            ]
            if any(g is None for g in given) and any(g is not None for g in given):
                for run in begun:
                    run.log.write(
                        "train: the policy is trained here too: a run of this stack has no "
                        "usable BC twin, and the stack trains its runs one way"
                    )
                given = [None] * len(begun)
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
                    trained_policies=None if given[0] is None else [g.trained for g in given],
                )
            seconds = time.perf_counter() - started
            together = {
                "runs": [run.path.name for run in begun],
                "learners": total,
                "train_seconds": seconds,
            }
            for (number, run), result, twin in zip(pending, results, given, strict=True):
                share = seconds * len(run.spec.seeds) / total
                outcomes[number] = _finish(run, result, share, None, twin, together)
            shutil.rmtree(state_dir, ignore_errors=True)
    return [outcomes[number] for number in range(len(specs))]

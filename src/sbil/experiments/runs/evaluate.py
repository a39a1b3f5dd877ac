"""Each seed's evaluation of a run, its progress display, and the run's figures.

Part of :mod:`sbil.experiments.runs`.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from sbil.experiments.run_log import tee
from sbil.experiments.runs.outcome import SeedOutcome, _tail_mean
from sbil.experiments.runs.spec import RunError


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

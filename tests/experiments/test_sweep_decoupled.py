"""Decoupled EDM in a sweep: after its BC twin it trains its state model alone and takes the
policy's results from the twin; its rows, checkpoints and curves are a full training's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sbil.experiments.sweep import Group, SweepSpec, groups, run_sweep, with_policy_twins
from sbil.experiments.sweeps.groups import _schedule
from sbil.experiments.sweeps.run import _keep_busy

SPEC = {
    "envs": ["CartPole-v1"],
    "ks": [1],
    "algos": ["bc", "edm-decoupled"],
    "seeds": [0, 1],
    "windows": "sliding",
    "holdout": 1,
    "every_nth_step": 5,
    "eval_episodes": 3,
    "options": {"n_updates": 30, "sgld_buffer_size": 100},
    # 1e8 makes decoupled EDM diverge where BC does not (a failed row beside a done one).
    "grid": {"learning_rate": [1e-3, 1e8]},
    "checkpoint_every": 10,
}

# Every field of a row that is a result (timings and provenance aside).
_RESULT = (
    "cell_id",
    "config_hash",
    "env_id",
    "algo",
    "k",
    "seed",
    "options",
    "train_episodes",
    "n_pairs",
    "status",
    "error",
    "returns",
    "return_mean",
    "eval_episodes",
    "eval_seed",
    "action_match",
    "action_match_episodes",
    "run_dir",
)


def _rows(folder: Path, algo: str) -> dict[str, dict]:
    rows = [json.loads(p.read_text()) for p in (folder / "rows").glob("*.json")]
    return {r["cell_id"]: {k: r[k] for k in _RESULT} for r in rows if r["algo"] == algo}


def _files(folder: Path, row: dict) -> dict:
    """A decoupled row's run: its curves, its checkpoint's weights and its seed's results."""
    run = folder / row["run_dir"]
    with np.load(run / "losses.npz") as saved:
        out = {f"curve {name}": saved[name] for name in saved.files}
    checkpoint = run / f"seed-{row['seed']}" / "weights.pt"
    if checkpoint.is_file():
        out.update(torch.load(checkpoint, weights_only=True))
    results = json.loads((run / "results.json").read_text())
    out["results"] = [s for s in results["learners"] if s["seed"] == row["seed"]]
    return out


def _assert_same(a, b) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            nan = a[name].dtype.kind == "f"
            assert np.array_equal(a[name], b[name], equal_nan=nan), name
        elif isinstance(a[name], torch.Tensor):
            assert torch.equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    """Decoupled EDM alone: no BC twin in the sweep, so every group trains in full (the code
    path of earlier sbil)."""
    folder = tmp_path_factory.mktemp("decoupled") / "alone"
    run_sweep(SweepSpec.from_dict({**SPEC, "algos": ["edm-decoupled"]}), folder)
    return folder


def _check_borrowed(folder: Path, full: Path) -> None:
    decoupled, bc = _rows(folder, "edm-decoupled"), _rows(folder, "bc")
    assert decoupled == _rows(full, "edm-decoupled")  # ids, hashes and every result
    assert {r["status"] for r in decoupled.values()} == {"done", "failed"}
    for cell, row in decoupled.items():
        _assert_same(_files(folder, row), _files(full, row))
        results = json.loads((folder / row["run_dir"] / "results.json").read_text())
        twin_row = next(
            r
            for r in bc.values()
            if (r["options"], r["seed"], r["k"]) == (row["options"], row["seed"], row["k"])
        )
        assert results["policy_from"] == f"../{Path(twin_row['run_dir']).name}", cell
        if row["status"] == "done":
            assert (row["returns"], row["action_match"]) == (
                twin_row["returns"],
                twin_row["action_match"],
            )
    for row in _rows(full, "edm-decoupled").values():
        assert "policy_from" not in json.loads((full / row["run_dir"] / "results.json").read_text())


def test_decoupled_edm_after_its_bc_twin_gives_a_full_training_s_rows(full, tmp_path):
    spec = SweepSpec.from_dict(SPEC)
    order = [g.algo for g in groups(spec, tmp_path)]
    assert order.index("edm-decoupled") < order.index("bc")  # it must wait for its twin
    run_sweep(spec, tmp_path / "both")
    _check_borrowed(tmp_path / "both", full)


def test_decoupled_edm_added_to_a_finished_bc_sweep_takes_its_policy(full, tmp_path):
    folder = tmp_path / "extended"
    run_sweep(SweepSpec.from_dict({**SPEC, "algos": ["bc"]}), folder)
    summary = run_sweep(SweepSpec.from_dict(SPEC), folder)
    assert (summary.skipped, summary.ran_groups) == (4, 2)
    _check_borrowed(folder, full)


def test_decoupled_groups_of_several_k_stack_their_state_models_to_the_same_rows(tmp_path):
    """With k = 1 and 2, the decoupled groups of one option-set form one unit (stack_k): given
    their twins' policies, their state models train as one stack; every row, curve and
    checkpoint equals a full training's, and each run records its twin and the stack."""
    spec = {**SPEC, "ks": [1, 2]}
    full = tmp_path / "full"
    run_sweep(SweepSpec.from_dict({**spec, "algos": ["edm-decoupled"]}), full, stack_k=False)
    lines: list[str] = []
    folder = tmp_path / "stacked"
    run_sweep(SweepSpec.from_dict(spec), folder, log=lines.append)
    _check_borrowed(folder, full)
    for row in _rows(folder, "edm-decoupled").values():
        results = json.loads((folder / row["run_dir"] / "results.json").read_text())
        together = results["trained_together"]
        assert len(together["runs"]) == 2 and together["learners"] == 4, row["cell_id"]
        log = (folder / row["run_dir"] / "log.txt").read_text()
        assert "only the state model trains" in log


@pytest.mark.slow
def test_the_process_pool_and_ray_order_the_twins_and_give_the_same_rows(full, tmp_path):
    run_sweep(SweepSpec.from_dict(SPEC), tmp_path / "pool", workers=2)
    _check_borrowed(tmp_path / "pool", full)
    pytest.importorskip("ray", reason="the Ray backend needs the 'ray' extra")
    run_sweep(SweepSpec.from_dict(SPEC), tmp_path / "ray", workers=2, backend="ray")
    _check_borrowed(tmp_path / "ray", full)


def test_a_bc_twin_that_is_not_a_finished_run_leaves_the_group_to_train_in_full(full, tmp_path):
    folder = tmp_path / "twin-gone"
    run_sweep(SweepSpec.from_dict(SPEC), folder)
    for row in _rows(folder, "edm-decoupled").values():  # the group runs again, twin unfinished
        (folder / row["run_dir"] / "results.json").unlink(missing_ok=True)
    for row in _rows(folder, "bc").values():
        (folder / row["run_dir"] / "results.json").unlink(missing_ok=True)
    from sbil.experiments.sweep import run_group

    spec = SweepSpec.from_dict(SPEC)
    twins = with_policy_twins(groups(spec, folder), groups(spec, folder))
    decoupled = [g for g in twins if g.algo == "edm-decoupled"]
    assert all(g.policy_from is not None for g in decoupled)
    for group in decoupled:
        ran = [r.to_dict() for r in run_group(str(folder), group)]
        rows = {r["cell_id"]: {k: r[k] for k in _RESULT} for r in ran}
        assert rows == {c: r for c, r in _rows(full, "edm-decoupled").items() if c in rows}
        log = (folder / "runs" / group.group_id / "log.txt").read_text()
        assert "is not a finished run" in log


def _group(group_id: str, algo: str, twin: str | None = None) -> Group:
    return Group(group_id, "CartPole-v1", algo, 1, {}, {"seeds": [0]}, policy_from=twin)


def test_a_group_waits_for_its_twin_and_a_single_worker_meets_the_twin_first():
    todo = [_group("d1", "edm-decoupled", "b1"), _group("e1", "edm"), _group("b1", "bc")]
    assert [g.group_id for g in _schedule(todo)] == ["b1", "d1", "e1"]
    events: list[str] = []
    running: list[str] = []

    def submit(unit):
        (group,) = unit
        events.append(f"start {group.group_id}")
        running.append(group.group_id)
        return group.group_id

    def wait_one(handles):
        first = running.pop(0)
        events.append(f"end {first}")
        return [(first, [])]

    # Two workers, the queue in groups()'s order: d1 waits for b1, e1 goes meanwhile.
    _keep_busy([(g,) for g in todo], 2, submit, wait_one, lambda unit, rows, seconds: None)
    assert events == ["start e1", "start b1", "end e1", "end b1", "start d1", "end d1"]


def test_the_groups_ids_and_hashes_are_those_of_earlier_sbil(tmp_path):
    spec = SweepSpec.from_dict(SPEC)
    every = groups(spec, Path("/somewhere"))
    twinned = with_policy_twins(every, every)
    # As computed by sbil before decoupled EDM took BC's policy (commit ccc1510).
    for listed in (every, twinned):
        assert {g.group_id: g.config_hash(0)[:16] for g in listed} == {
            "CartPole-v1__edm-decoupled__k1__c32c6d2b": "68fa7fc783abe816",
            "CartPole-v1__edm-decoupled__k1__33f86ab7": "4875f3961c95363b",
            "CartPole-v1__bc__k1__3d0eab20": "4a8a3089ee37c4bd",
            "CartPole-v1__bc__k1__39919d7a": "f33ef802dfcfdb52",
        }
    twins = {g.group_id: g.policy_from for g in twinned}
    for group in twinned:
        if group.algo == "bc":
            assert group.policy_from is None
        else:  # the BC group of the same learning rate
            (bc,) = (g for g in every if g.algo == "bc" and g.options == group.options)
            assert twins[group.group_id] == bc.group_id

"""A sweep folder as a hostile user treats it: moved or copied, its files damaged or deleted,
extended and re-run in another order, a stray row dropped in, a disk that fills up, a run folder
held by a worker that has not died yet. Finished rows are never lost; nothing is written for a
rejected spec; a failure that came from outside is retried by a plain re-run. Tiny budgets."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sbil.experiments import sweep as sw
from sbil.experiments.sweep import SweepError, SweepSpec, run_sweep

SMALL = {
    "envs": ["CartPole-v1"],
    "ks": [1],
    "algos": ["bc"],
    "seeds": [0, 1],
    "windows": "sliding",
    "holdout": 1,
    "every_nth_step": 5,
    "eval_episodes": 2,
    "options": {"n_updates": 20},
    "checkpoint_every": 10,
}
MEASURED = ("config_hash", "train_episodes", "n_pairs", "status", "returns", "action_match")


def _rows(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (folder / "rows").glob("*.json")}


def _measured(folder: Path) -> dict[str, tuple]:
    return {c: tuple(json.dumps(r[k]) for k in MEASURED) for c, r in _rows(folder).items()}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (folder / "rows").glob("*.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished SMALL sweep (one group of two seeds); copy it before changing it."""
    folder = tmp_path_factory.mktemp("finished") / "sweep"
    summary = run_sweep(SweepSpec.from_dict(SMALL), folder)
    assert (summary.done, summary.failed) == (2, 0)
    return folder


def _copy(finished: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(finished, tmp_path / name, symlinks=True))


def _group_folder(folder: Path) -> Path:
    (run,) = (folder / "runs").iterdir()
    return run


# --- moved and copied folders -----------------------------------------------------------------


def test_a_moved_sweep_keeps_its_rows_and_resumes_an_interrupted_group(finished, tmp_path):
    original = _copy(finished, tmp_path, "original")
    run = _group_folder(original)
    (run / "results.json").unlink()  # the group as a kill before its end leaves it
    (original / "rows" / f"{run.name}__s1.json").unlink()
    kept = (original / "rows" / f"{run.name}__s0.json").stat().st_mtime_ns
    moved = tmp_path / "moved"
    original.rename(moved)
    summary = run_sweep(SweepSpec.from_dict(SMALL), moved)
    assert (summary.done, summary.failed, summary.skipped) == (1, 0, 1), summary.errors
    assert _measured(moved) == _measured(finished)  # the same numbers, the done row kept
    assert (moved / "rows" / f"{run.name}__s0.json").stat().st_mtime_ns == kept
    config = json.loads((moved / "runs" / run.name / "config.json").read_text())
    assert config["spec"]["root"] == str((moved / "datasets").absolute())


def test_a_copied_sweep_reads_its_own_datasets_not_the_original_ones(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    run = _group_folder(copy)
    for row in (copy / "rows").iterdir():
        row.unlink()
    summary = run_sweep(SweepSpec.from_dict(SMALL), copy)
    assert (summary.done, summary.failed) == (2, 0), summary.errors
    assert _measured(copy) == _measured(finished)
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["root"] == str((copy / "datasets").absolute())


# --- nothing written before the spec is valid ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"envs": ["CartPol-v1"]}, "CartPol-v1"),
        ({"expert": "sb3-nope"}, "Unknown expert 'sb3-nope'"),
        ({"expert": "sb3-ppo"}, "No trained expert 'sb3-ppo'"),
    ],
)
def test_an_unknown_task_or_expert_is_refused_before_the_folder_is_made(
    tmp_path, monkeypatch, change, message
):
    monkeypatch.setenv("SBIL_EXPERTS_DIR", str(tmp_path / "no-experts"))
    folder = tmp_path / "s"
    with pytest.raises(ValueError, match=message):
        run_sweep(SweepSpec.from_dict({**SMALL, **change}), folder)
    assert not folder.exists() and not (tmp_path / ".s.sbil-lock").exists()


def test_the_ray_backend_without_ray_is_refused_before_the_folder_is_made(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    with pytest.raises(SweepError, match=r"pip install 'sbil\[ray\]'"):
        run_sweep(SweepSpec.from_dict(SMALL), tmp_path / "s", backend="ray")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_left_by_an_earlier_rejected_spec_is_not_refused(finished, tmp_path):
    folder = tmp_path / "s"
    (folder / "rows").mkdir(parents=True)  # what a rejected spec used to leave behind
    summary = run_sweep(SweepSpec.from_dict(SMALL), folder)
    assert summary.done == 2


# --- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["[]", '{"status": "done"}', "{not json", ""])
def test_a_damaged_row_is_redone(finished, tmp_path, content):
    copy = _copy(finished, tmp_path)
    damaged = next(iter(sorted((copy / "rows").iterdir())))
    damaged.write_text(content)
    summary = run_sweep(SweepSpec.from_dict(SMALL), copy)
    assert (summary.done, summary.skipped, summary.failed) == (1, 1, 0)
    assert _measured(copy) == _measured(finished)


@pytest.mark.parametrize("name", ["sweep.json", "references.json"])
@pytest.mark.parametrize("content", ["[]", "{not json", '{"spec": []}', '{"CartPole-v1": 3}'])
def test_a_damaged_sweep_description_or_references_file_is_named(finished, tmp_path, name, content):
    copy = _copy(finished, tmp_path)
    (copy / name).write_text(content)
    before = _mtimes(copy)
    with pytest.raises(SweepError, match=f"{copy / name}") as caught:
        run_sweep(SweepSpec.from_dict(SMALL), copy)
    assert "\n" not in str(caught.value)
    assert _mtimes(copy) == before


# --- failures: counted, and retried when they came from outside ----------------------------------


def test_cells_failed_by_a_full_disk_are_counted_and_retried_by_a_plain_re_run(
    finished, tmp_path, monkeypatch
):
    from sbil.experiments import runs

    copy = _copy(finished, tmp_path)
    shutil.rmtree(copy / "runs")
    for row in (copy / "rows").iterdir():
        row.unlink()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(copy / "runs"))

    monkeypatch.setattr(runs, "run_training", disk_full)
    summary = run_sweep(SweepSpec.from_dict(SMALL), copy)
    assert (summary.done, summary.failed) == (0, 2)
    assert all("No space left on device" in e for e in summary.errors.values())
    assert all(sw.is_environmental(e) for e in summary.errors.values())
    monkeypatch.undo()
    lines: list[str] = []
    again = run_sweep(SweepSpec.from_dict(SMALL), copy, log=lines.append)
    assert (again.done, again.failed, again.errors) == (2, 0, {})
    assert any("retrying 2 cells that failed for reasons outside them" in line for line in lines)
    assert _measured(copy) == _measured(finished)


def test_a_diverged_learner_is_a_kept_failure_that_the_summary_still_counts(tmp_path):
    spec = SweepSpec.from_dict({**SMALL, "algos": ["edm"], "options": {"learning_rate": 1e8}})
    first = run_sweep(spec, tmp_path / "s")
    assert first.failed == 2 and not any(sw.is_environmental(e) for e in first.errors.values())
    again = run_sweep(spec, tmp_path / "s")
    assert (again.ran_groups, again.failed, again.failed_before) == (0, 0, 2)
    assert len(again.errors) == 2  # still failed cells of the sweep: the command says so


def test_a_failed_group_does_not_overwrite_a_finished_row(finished, tmp_path, monkeypatch):
    from sbil.experiments import runs

    copy = _copy(finished, tmp_path)
    run = _group_folder(copy)
    (copy / "rows" / f"{run.name}__s1.json").unlink()
    done = (copy / "rows" / f"{run.name}__s0.json").read_text()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "run_training", disk_full)
    summary = run_sweep(SweepSpec.from_dict(SMALL), copy)
    assert summary.failed == 1 and list(summary.errors) == [f"{run.name}__s1"]
    assert (copy / "rows" / f"{run.name}__s0.json").read_text() == done


# --- extending, subsets, stray rows, missing artifacts -------------------------------------------


def test_extend_reorder_and_re_run_the_original_subset(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    before = _mtimes(copy)
    extended = SweepSpec.from_dict({**SMALL, "algos": ["rcal", "bc"]})
    lines: list[str] = []
    summary = run_sweep(extended, copy, log=lines.append)
    assert (summary.done, summary.skipped) == (2, 2)
    assert any("extending the sweep with algos rcal" in line for line in lines)
    reordered = SweepSpec.from_dict({**SMALL, "algos": ["bc", "rcal"]})
    assert run_sweep(reordered, copy).ran_groups == 0  # the same grid: not a different sweep
    lines.clear()
    original = run_sweep(SweepSpec.from_dict(SMALL), copy, log=lines.append)
    assert (original.n_cells, original.skipped, original.ran_groups) == (2, 2, 0)
    assert any("running 2 of the 4 cells of the sweep in" in line for line in lines)
    stored = json.loads((copy / "sweep.json").read_text())["spec"]
    assert stored["algos"] == ["rcal", "bc"]  # the folder still describes the whole sweep
    assert all(_mtimes(copy)[name] == mtime for name, mtime in before.items())
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(SweepSpec.from_dict({**SMALL, "seeds": [0]}), copy)


def test_a_stray_row_is_left_alone_and_not_counted(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    row = next(iter((copy / "rows").iterdir()))
    stray = {**json.loads(row.read_text()), "cell_id": "Elsewhere-v0__bc__k1__0__s0"}
    (copy / "rows" / "Elsewhere-v0__bc__k1__0__s0.json").write_text(json.dumps(stray))
    lines: list[str] = []
    summary = run_sweep(SweepSpec.from_dict(SMALL), copy, log=lines.append)
    assert (summary.n_cells, summary.skipped, summary.done) == (2, 2, 0)
    assert any("1 row in rows/ is not a cell of this sweep" in line for line in lines)
    assert sw.stray_rows(copy) == ["Elsewhere-v0__bc__k1__0__s0"]


@pytest.mark.parametrize("with_row", [True, False])
def test_a_cell_whose_weights_were_deleted_is_trained_again(finished, tmp_path, with_row):
    copy = _copy(finished, tmp_path)
    run = _group_folder(copy)
    (run / "seed-1" / "weights.pt").unlink()
    if with_row:
        (copy / "rows" / f"{run.name}__s1.json").unlink()
    summary = run_sweep(SweepSpec.from_dict(SMALL), copy)
    assert summary.ran_groups == 1 and summary.failed == 0, summary.errors
    assert (run / "seed-1" / "weights.pt").is_file()
    assert _measured(copy) == _measured(finished)


# --- a run folder still held by a live process --------------------------------------------------


def test_a_group_held_by_a_live_process_is_waited_for_not_failed(finished, tmp_path):
    copy = _copy(finished, tmp_path)
    run = _group_folder(copy)
    (copy / "rows" / f"{run.name}__s1.json").unlink()
    code = (
        "import sys, time; from sbil import files; "
        f"l = files.lock({str(run)!r}); l.__enter__(); print('held', flush=True); "
        "time.sleep(2); l.__exit__(None, None, None)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        summary = run_sweep(SweepSpec.from_dict(SMALL), copy)
    finally:
        holder.kill()
        holder.wait()
    assert (summary.done, summary.failed) == (1, 0), summary.errors

"""sbil sweep: the grid, tidy rows, resume after a kill without redoing finished cells, failed
cells recorded, the process pool and Ray giving the same rows, spec files and presets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sbil.experiments.sweep import (
    PRESETS,
    SweepError,
    SweepSpec,
    groups,
    load_spec_file,
    preset,
    run_sweep,
)

TINY = {
    "envs": ["CartPole-v1"],
    "ks": [1, 2],
    "algos": ["bc", "edm"],
    "seeds": [0, 1],
    "windows": "sliding",
    "holdout": 1,
    "every_nth_step": 5,
    "eval_episodes": 3,
    "options": {"n_updates": 30, "sgld_buffer_size": 100},
    "checkpoint_every": 10,
}

# The numbers a row must reproduce whatever the backend, the workers or interruptions.
_MEASURED = (
    "cell_id",
    "config_hash",
    "train_episodes",
    "n_pairs",
    "status",
    "returns",
    "action_match",
    "action_match_episodes",
)


def _rows(folder: Path) -> dict[str, dict]:
    rows = [json.loads(p.read_text()) for p in (folder / "rows").glob("*.json")]
    return {r["cell_id"]: r for r in rows}


def _measured(folder: Path) -> dict[str, tuple]:
    return {cell: tuple(json.dumps(r[k]) for k in _MEASURED) for cell, r in _rows(folder).items()}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep") / "tiny"
    summary = run_sweep(SweepSpec.from_dict(TINY), folder)
    assert (summary.n_cells, summary.done, summary.failed, summary.skipped) == (8, 8, 0, 0)
    return folder


def test_a_sweep_writes_one_tidy_row_per_cell(tiny_sweep):
    rows = _rows(tiny_sweep)
    assert len(rows) == 8
    row = rows[next(c for c in rows if "__edm__k2__" in c and c.endswith("__s1"))]
    assert (row["env_id"], row["algo"], row["k"], row["seed"]) == ("CartPole-v1", "edm", 2, 1)
    assert row["train_episodes"] == [1, 2]  # sliding: seed r uses r..r+k-1
    assert row["status"] == "done" and len(row["returns"]) == 3
    assert row["return_mean"] == pytest.approx(sum(row["returns"]) / 3)
    assert row["action_match_episodes"] == 1 and 0 <= row["action_match"] <= 1
    assert row["options"] == {"n_updates": 30, "sgld_buffer_size": 100, "every_nth_step": 5}
    assert row["wall_seconds"] > 0 and len(row["config_hash"]) == 64
    assert (tiny_sweep / row["run_dir"] / "seed-1" / "learner.json").is_file()
    references = json.loads((tiny_sweep / "references.json").read_text())
    assert references["CartPole-v1"]["expert"]["mean"] == 500.0
    assert len(references["CartPole-v1"]["random"]["returns"]) == 3
    spec = json.loads((tiny_sweep / "sweep.json").read_text())["spec"]
    assert spec == SweepSpec.from_dict(TINY).to_dict()


def test_re_running_skips_every_finished_cell(tiny_sweep):
    before = {p.name: p.stat().st_mtime_ns for p in (tiny_sweep / "rows").iterdir()}
    summary = run_sweep(SweepSpec.from_dict(TINY), tiny_sweep)
    assert (summary.ran_groups, summary.skipped, summary.done) == (0, 8, 0)
    assert before == {p.name: p.stat().st_mtime_ns for p in (tiny_sweep / "rows").iterdir()}


def test_a_different_sweep_in_the_same_folder_is_refused(tiny_sweep):
    # (ks = [1] alone is a part of this sweep, which runs: tests/experiments/test_sweep_folder.py)
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(SweepSpec.from_dict({**TINY, "eval_episodes": 4}), tiny_sweep)


def test_a_sweep_killed_halfway_resumes_without_redoing_finished_cells(tiny_sweep, tmp_path):
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(_toml({**TINY, "options": {"n_updates": 400, "sgld_buffer_size": 100}}))
    folder = tmp_path / "killed"
    command = [
        sys.executable,
        "-c",
        "from sbil.cli import main; main()",
        "sweep",
        "--spec",
        str(spec_file),
        "--out",
        str(folder),
    ]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(folder.glob("rows/*.json")):
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    first = {p.name: p.stat().st_mtime_ns for p in (folder / "rows").glob("*.json")}
    assert 0 < len(first) < 8  # killed part-way: some cells finished, not all

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{len(first)} already finished" in result.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (folder / "rows").glob("*.json")}
    assert len(after) == 8
    assert all(after[name] == mtime for name, mtime in first.items())  # not redone

    clean = tmp_path / "clean"
    run_sweep(load_spec_file(spec_file), clean)
    assert _measured(folder) == _measured(clean)


def test_a_failing_cell_is_recorded_and_does_not_stop_the_others(tmp_path):
    spec = SweepSpec.from_dict({**TINY, "ks": [1], "grid": {"learning_rate": [1e-3, 1e8]}})
    summary = run_sweep(spec, tmp_path / "s")
    rows = _rows(tmp_path / "s")
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert summary.failed == len(failed) > 0
    assert all(r["algo"] == "edm" and r["options"]["learning_rate"] == 1e8 for r in failed)
    assert all("diverged" in r["error"] and r["returns"] == [] for r in failed)
    assert sum(r["status"] == "done" for r in rows.values()) == summary.done >= 4
    assert run_sweep(spec, tmp_path / "s").ran_groups == 0  # failures are recorded results
    again = run_sweep(spec, tmp_path / "s", retry_failed=True)
    assert again.ran_groups >= 1 and again.failed == len(failed)


@pytest.mark.slow
def test_the_process_pool_gives_the_same_rows(tiny_sweep, tmp_path):
    run_sweep(SweepSpec.from_dict(TINY), tmp_path / "pool", workers=2)
    assert _measured(tmp_path / "pool") == _measured(tiny_sweep)


def test_groups_stacked_across_k_give_each_group_s_rows_and_files_bit_for_bit(tiny_sweep, tmp_path):
    """tiny_sweep trains k = 1 and 2 of each learner as one stack (stack_k, the default)."""
    import numpy as np
    import torch

    lines = []
    alone = tmp_path / "alone"
    run_sweep(SweepSpec.from_dict(TINY), alone, stack_k=False, log=lines.append)
    assert _measured(alone) == _measured(tiny_sweep)
    assert not any("stacked units" in line for line in lines)
    assert not (tiny_sweep / "stacks").exists() or not any((tiny_sweep / "stacks").iterdir())
    for run in sorted((tiny_sweep / "runs").iterdir()):
        results = json.loads((run / "results.json").read_text())
        together = results["trained_together"]
        assert together["learners"] == 4 and run.name in together["runs"]
        twin = alone / "runs" / run.name
        assert "trained_together" not in json.loads((twin / "results.json").read_text())
        ours, theirs = np.load(run / "losses.npz"), np.load(twin / "losses.npz")
        assert ours.files == theirs.files
        for name in ours.files:
            float_ = ours[name].dtype.kind == "f"
            assert np.array_equal(ours[name], theirs[name], equal_nan=float_), name
        for seed in (0, 1):
            a = torch.load(run / f"seed-{seed}" / "weights.pt", weights_only=True)
            b = torch.load(twin / f"seed-{seed}" / "weights.pt", weights_only=True)
            flat_a, flat_b = _tensors(a), _tensors(b)
            assert flat_a.keys() == flat_b.keys()
            assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), run.name


def _tensors(tree, prefix="") -> dict:
    if hasattr(tree, "shape"):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {
            k: v for key, item in tree.items() for k, v in _tensors(item, f"{prefix}/{key}").items()
        }
    return {}


@pytest.mark.slow
def test_ray_gives_the_same_rows_as_the_local_backend(tiny_sweep, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend needs the 'ray' extra")
    summary = run_sweep(SweepSpec.from_dict(TINY), tmp_path / "ray", workers=2, backend="ray")
    assert summary.done == 8
    assert _measured(tmp_path / "ray") == _measured(tiny_sweep)


def test_one_process_per_sweep_folder(tiny_sweep):
    from sbil.files import LockHeldError, lock

    with lock(tiny_sweep), pytest.raises(LockHeldError, match="in use by process"):
        run_sweep(SweepSpec.from_dict(TINY), tiny_sweep)


def _toml(spec: dict) -> str:
    lines, tables = [], []
    for key, value in spec.items():
        if isinstance(value, dict):
            tables.append(
                f"[{key}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in value.items())
            )
        else:
            lines.append(f"{key} = {json.dumps(value)}\n")
    return "".join(lines) + "".join(tables)


def test_spec_files_presets_and_their_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(_toml(TINY))
    assert load_spec_file(path) == SweepSpec.from_dict(TINY)
    path.write_text('preset = "quick"\nseeds = [0]\n')
    assert load_spec_file(path) == preset("quick", seeds=[0])
    paper = preset("edm-paper")
    assert (paper.ks, paper.seeds, paper.every_nth_step, paper.eval_episodes) == (
        (1, 3, 7, 10, 15),
        tuple(range(10)),
        20,
        300,
    )
    assert paper.options["n_updates"] == 10_000 and paper.windows == "sliding"
    assert len(groups(paper, tmp_path)) == 4 * 8 * 5  # envs x learners x ks
    assert set(paper.algos) == {
        "bc",
        "edm",
        "edm-decoupled",
        "valuedice",
        "rcal",
        "iqlearn",
        "avril",
        "dsfn",
    }
    assert set(PRESETS["quick"]["envs"]) == set(paper.envs)
    # edm-paper samples the shipped PPO experts, as the reference does; the other two conditions
    # differ from it in the expert alone
    assert (paper.expert, paper.expert_noise) == ("ppo-zoo", "sample")
    for name, expert, noise in [
        ("edm-paper-scripted", "scripted", "none"),
        ("edm-paper-epsilon", "scripted", "epsilon:0.2"),
    ]:
        other = preset(name)
        assert (other.expert, other.expert_noise) == (expert, noise)
        assert other.canonical() == {
            **paper.canonical(),
            "expert": expert,
            "expert_noise": noise,
        }
    for text, message in [
        ("envs = [", "not valid TOML"),
        ('envs = ["CartPole-v1"]\nks = [1]\nseeds = [0]\nbogus = 1\n', "Unknown sweep keys"),
        ('envs = ["CartPole-v1"]\nks = [0]\nseeds = [0]\n', "positive integers"),
        ('envs = ["CartPole-v1"]\nks = [1]\nseeds = [0]\n[options]\nlr = 1\n', "Unknown learner"),
        ('envs = ["CartPole-v1"]\nks = [1]\nseeds = [0]\nalgos = ["gail"]\n', "algos must be"),
        ('preset = "nope"\n', "Unknown preset"),
    ]:
        path.write_text(text)
        with pytest.raises(SweepError, match=message):
            load_spec_file(path)
    with pytest.raises(SweepError, match="does not exist"):
        load_spec_file(tmp_path / "missing.toml")


def test_sweep_command_smoke_and_report(tiny_sweep, tmp_path):
    from typer.testing import CliRunner

    from sbil.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["sweep", "report", str(tiny_sweep)])
    assert result.exit_code == 0, result.output
    assert (tiny_sweep / "report" / "REPORT.md").is_file()
    bad = CliRunner().invoke(app, ["sweep", "--preset", "quick", "--ks", "x"])
    assert bad.exit_code == 2 and "--ks" in bad.output
    both = CliRunner().invoke(app, ["sweep", "--out", str(tmp_path / "z")])
    assert both.exit_code == 2 and "exactly one of --preset" in both.output
    assert os.listdir(tmp_path) == []  # nothing written for a usage error


def test_a_stochastic_expert_records_its_own_dataset(tmp_path):
    spec = SweepSpec.from_dict({**TINY, "ks": [1], "algos": ["bc"], "expert_noise": "epsilon:0.2"})
    (group,) = groups(spec, tmp_path)
    assert group.run["dataset"] == "sbil/cartpole/scripted-eps0_2-v0"
    run_sweep(spec, tmp_path / "s")
    references = json.loads((tmp_path / "s" / "references.json").read_text())
    assert references["CartPole-v1"]["expert"]["noise"] == "epsilon:0.2"
    meta = json.loads(next((tmp_path / "s" / "datasets").rglob("metadata.json")).read_text())
    assert meta["expert_noise"] == "epsilon:0.2"


# --- the device -----------------------------------------------------------------------------------


def test_the_device_is_no_part_of_a_cell_s_id_or_hash(tmp_path):
    import dataclasses

    (cpu,) = groups(SweepSpec.from_dict({**TINY, "ks": [1], "algos": ["edm"]}), tmp_path)
    cuda = dataclasses.replace(cpu, device="cuda")
    # The values every sweep before --device wrote: finished rows stay finished.
    for group in (cpu, cuda):
        assert group.cell_id(0) == "CartPole-v1__edm__k1__305c07e2__s0"
        assert group.config_hash(0) == (
            "b8a12474b2206542e0c9ffc4b138c97d95e0ea0ddfe8c748f9bef672a0d3b89a"
        )
    assert cpu.run["device"] == "cpu" and cpu.device == "cpu"


def test_rows_record_the_device_and_the_report_reads_them(tiny_sweep):
    from sbil.experiments.sweep_report import load_rows

    assert {row["device"] for row in _rows(tiny_sweep).values()} == {"cpu"}
    assert set(load_rows(tiny_sweep)["device"]) == {"cpu"}


def test_rows_record_the_cpu_and_its_kernels_and_the_report_names_them(tiny_sweep, tmp_path):
    # Float32 results are bit-identical only on the same SIMD kernels (AVX2 vs AVX-512), so
    # the row says where it was made; the report lists it beside the commits.
    import torch

    from sbil.experiments.sweep_report import write_sweep_report
    from sbil.machine import cpu_description

    cpus = {row["cpu"] for row in _rows(tiny_sweep).values()}
    assert cpus == {cpu_description()}
    assert cpu_description().endswith(f"torch kernels {torch.backends.cpu.get_cpu_capability()}")
    text = (write_sweep_report(tiny_sweep, tmp_path / "report", n_resamples=50)).read_text()
    assert f"| CPU(s) that wrote the rows | `{cpu_description()}` |" in text


def test_the_device_reaches_each_group_s_run(tmp_path, monkeypatch):
    from sbil.experiments import runs
    from sbil.experiments.sweeps import run as sweep_run

    seen = []

    def fake_training(spec, folder, **kwargs):
        seen.append(spec.device)
        raise RuntimeError("no GPU in this test")

    monkeypatch.setattr(sweep_run, "check_device", lambda *args: None)  # as if CUDA were there
    monkeypatch.setattr(runs, "run_training", fake_training)
    spec = SweepSpec.from_dict({**TINY, "ks": [1], "algos": ["bc"]})
    summary = run_sweep(spec, tmp_path / "s", device="cuda")
    assert seen == ["cuda"] and summary.failed == 2
    rows = _rows(tmp_path / "s")
    assert {row["device"] for row in rows.values()} == {"cuda"}
    (group,) = groups(spec, tmp_path / "s")
    assert {row["config_hash"] for row in rows.values()} == {group.config_hash(0),
                                                             group.config_hash(1)}  # fmt: skip


def test_an_unavailable_device_is_refused_before_anything_is_written(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device, message in (("cuda", "CUDA is not available"), ("tpu", "cpu, cuda or cuda:N")):
        with pytest.raises(SweepError, match=message):
            run_sweep(SweepSpec.from_dict(TINY), tmp_path / "s", device=device)
    assert not (tmp_path / "s").exists()


def test_a_run_folder_started_on_another_device_is_the_same_run(tiny_sweep, tmp_path):
    import shutil

    folder = tmp_path / "moved"
    shutil.copytree(tiny_sweep, folder)
    (run_dir,) = [p for p in (folder / "runs").iterdir() if "__bc__k1__" in p.name]
    config = json.loads((run_dir / "config.json").read_text())
    config["spec"]["device"] = "cuda"  # as a CUDA run of the same cells would have written
    (run_dir / "config.json").write_text(json.dumps(config))
    for row in folder.glob(f"rows/{run_dir.name}__s*.json"):
        row.unlink()
    summary = run_sweep(SweepSpec.from_dict(TINY), folder)
    assert (summary.ran_groups, summary.done, summary.failed) == (1, 2, 0)
    assert json.loads((run_dir / "config.json").read_text())["spec"]["device"] == "cpu"
    assert _measured(folder) == _measured(tiny_sweep)

"""`sbil sweep` as a user types it: exit codes as the README states them (2 for a bad command
line, 1 for a failure, including cells that failed), one line and never a traceback, nothing
written for a command that is refused, Ray addresses that answer or fail within seconds, and
SIGTERM reported as itself. Tiny budgets."""

from __future__ import annotations

import errno
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbil.cli import _register, app

runner = CliRunner()
SMALL = {
    "envs": ["CartPole-v1"],
    "ks": [1],
    "algos": ["bc"],
    "seeds": [0, 1],
    "holdout": 1,
    "every_nth_step": 5,
    "eval_episodes": 2,
    "checkpoint_every": 10,
}


def _toml(spec: dict, options: dict | None = None) -> str:
    text = "".join(f"{key} = {json.dumps(value)}\n" for key, value in spec.items())
    options = {"n_updates": 20} if options is None else options
    return text + "[options]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())


@pytest.fixture(scope="module", autouse=True)
def registered():
    _register()


@pytest.fixture
def small_toml(tmp_path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(_toml(SMALL))
    return path


def _sweep(*args: str):
    return runner.invoke(app, ["sweep", *args])


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be a positive integer, got 0"),
        (["--workers", "-3"], "--workers must be a positive integer, got -3"),
        (["--backend", "dask"], "--backend must be one of local, ray, got 'dask'"),
        (["--address", "127.0.0.1:1"], "--address is for --backend ray"),
        (["--backend", "ray", "--address", "nowhere"], "--address must be auto, HOST:PORT"),
        (["--eval-episodes", "4294967297"], "(eval_episodes), more than the 100,000 allowed"),
        (["--seeds", "0-99999"], "--seeds '0-99999' names 100000 seeds"),
    ],
)
def test_a_bad_option_is_a_usage_error_and_writes_nothing(tmp_path, small_toml, args, message):
    result = _sweep("--spec", str(small_toml), "--out", str(tmp_path / "s"), *args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert message in line and "at most -1" not in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": [-1]}, "seeds must be integers in 0..4294967295, got -1"),
        ({"seeds": [0, 0]}, "seeds repeats 0"),
        ({"ks": [0]}, "ks must be positive integers"),
        ({"expert_noise": "bogus"}, "Unknown expert noise 'bogus'"),
        ({"envs": [1]}, "envs must be task ids like 'CartPole-v1', got 1"),
        ({"envs": ["CartPole-v1", "CartPole-v1"]}, "envs repeats 'CartPole-v1'"),
        ({"eval_seed": 4294967295}, "eval_seed 4294967295 with 2 evaluation episodes"),
        ({"seeds": list(range(20_000))}, "20,000 seeds, more than the 10,000 allowed"),
    ],
)
def test_a_bad_spec_file_is_a_usage_error_and_writes_nothing(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(_toml({**SMALL, **change}))
    result = _sweep("--spec", str(path), "--out", str(tmp_path / "s"))
    assert result.exit_code == 2, result.output
    assert message in _one_error_line(result.output)
    assert not (tmp_path / "s").exists()


def test_a_preset_with_a_bad_override_is_a_usage_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('preset = "quick"\ndataset_episodes = "x"\n')
    result = _sweep("--spec", str(path), "--out", str(tmp_path / "s"))
    assert result.exit_code == 2, result.output
    assert "dataset_episodes must be an integer" in _one_error_line(result.output)


def test_an_unknown_task_writes_nothing_and_the_corrected_command_runs(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(_toml({**SMALL, "envs": ["CartPol-v1"]}))
    folder = tmp_path / "s"
    result = _sweep("--spec", str(path), "--out", str(folder))
    assert result.exit_code == 1, result.output
    assert "CartPol-v1" in _one_error_line(result.output)
    assert not folder.exists()
    path.write_text(_toml(SMALL))
    fixed = _sweep("--spec", str(path), "--out", str(folder))
    assert fixed.exit_code == 0, fixed.output
    assert "2 done and 0 failed now" in fixed.output


def test_failed_cells_exit_1_saying_how_many_and_a_re_run_retries_them(
    tmp_path, small_toml, monkeypatch
):
    from sbil.experiments import runs

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "run_training", disk_full)
    folder = tmp_path / "s"
    result = _sweep("--spec", str(small_toml), "--out", str(folder))
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.output)
    assert "2 of 2 cells failed" in line and "No space left on device" in line
    assert "re-running the same command retries the 2" in line
    monkeypatch.undo()
    again = _sweep("--spec", str(small_toml), "--out", str(folder))
    assert again.exit_code == 0, again.output
    assert "2 done and 0 failed now" in again.output


def test_kept_failures_of_the_cells_themselves_still_exit_1(tmp_path):
    path = tmp_path / "diverge.toml"
    path.write_text(_toml({**SMALL, "algos": ["edm"]}, {"n_updates": 20, "learning_rate": 1e8}))
    folder = tmp_path / "s"
    assert _sweep("--spec", str(path), "--out", str(folder)).exit_code == 1
    again = _sweep("--spec", str(path), "--out", str(folder))
    assert again.exit_code == 1, again.output
    line = _one_error_line(again.output)
    assert "2 of 2 cells failed" in line and "--retry-failed" in line


# --- Ray addresses -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_where_nothing_answers_fails_in_seconds_before_any_data(tmp_path, small_toml):
    pytest.importorskip("ray")
    folder = tmp_path / "s"
    started = time.monotonic()
    address = f"127.0.0.1:{_closed_port()}"
    result = _sweep("--spec", str(small_toml), "--out", str(folder), "--backend", "ray",
                    "--address", address)  # fmt: skip
    assert time.monotonic() - started < 20
    assert result.exit_code == 1, result.output
    assert f"Cannot reach a Ray cluster at {address}" in _one_error_line(result.output)
    assert not folder.exists()  # no datasets, no references recorded first


def test_a_ray_client_address_without_ray_client_names_what_to_install(
    tmp_path, small_toml, monkeypatch
):
    pytest.importorskip("ray")
    from sbil.experiments.sweeps import backends

    monkeypatch.setattr(backends, "_ray_client_installed", lambda: False)
    folder = tmp_path / "s"
    result = _sweep("--spec", str(small_toml), "--out", str(folder), "--backend", "ray",
                    "--address", "ray://127.0.0.1:10001")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "pip install 'ray[client]'" in _one_error_line(result.output)
    assert not folder.exists()


# --- the device ------------------------------------------------------------------------------


def test_an_unavailable_device_is_a_usage_error_and_writes_nothing(tmp_path, small_toml):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    folder = tmp_path / "s"
    result = _sweep("--spec", str(small_toml), "--out", str(folder), "--device", "cuda")
    assert result.exit_code == 2, result.output
    assert "--device cuda: " in _one_error_line(result.output)
    assert "CUDA is not available" in result.output
    assert not folder.exists()


def test_the_device_is_written_in_each_row(tmp_path, small_toml):
    folder = tmp_path / "s"
    result = _sweep("--spec", str(small_toml), "--out", str(folder), "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = [json.loads(p.read_text()) for p in (folder / "rows").glob("*.json")]
    assert len(rows) == 2 and {row["device"] for row in rows} == {"cpu"}


# --- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_during_training_in_the_driver_is_reported_as_sigterm(tmp_path):
    path = tmp_path / "long.toml"
    path.write_text(_toml(SMALL, {"n_updates": 100_000}))
    folder = tmp_path / "s"
    command = [sys.executable, "-c", "from sbil.cli import main; main()", "sweep", "--spec",
               str(path), "--out", str(folder)]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((folder / "runs").glob("*/config.json")):  # training has started
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.1)
    time.sleep(1)
    child.send_signal(signal.SIGTERM)
    stderr = child.communicate(timeout=60)[1]
    assert child.returncode == 128 + signal.SIGTERM, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Terminated (SIGTERM); finished cells and training checkpoints")
    assert "Ctrl-C" not in stderr and "Traceback" not in stderr


def test_the_algos_option_lists_every_registered_learner():
    from sbil.deep.learners.registry import ALGOS

    result = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    listed = text[text.index("--algos") : text.index("--ks")]
    assert all(f" {algo}," in listed or f" {algo} " in listed for algo in ALGOS), listed

"""sbil sweep's process pool under kills: the driver killed (SIGKILL, SIGTERM) at random points
leaves no process behind and a re-run finishes with the rows of an uninterrupted sweep, without
--retry-failed; a killed worker fails its own group only, in one line. Linux (reads /proc)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sbil.experiments.sweep import SweepSpec, run_sweep

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")

SPEC = {
    "envs": ["CartPole-v1"],
    "ks": [1, 2],
    "algos": ["bc", "edm"],
    "seeds": [0, 1],
    "windows": "sliding",
    "holdout": 1,
    "every_nth_step": 5,
    "eval_episodes": 3,
    "options": {"n_updates": 400, "sgld_buffer_size": 100},
    "checkpoint_every": 20,
}
MEASURED = ("config_hash", "train_episodes", "n_pairs", "status", "returns", "action_match")


def _measured(folder: Path) -> dict[str, tuple]:
    rows = {p.stem: json.loads(p.read_text()) for p in (folder / "rows").glob("*.json")}
    return {c: tuple(json.dumps(r[k]) for k in MEASURED) for c, r in rows.items()}


def _toml(spec: dict) -> str:
    text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in spec.items() if k != "options")
    options = "".join(f"{k} = {json.dumps(v)}\n" for k, v in spec["options"].items())
    return f"{text}[options]\n{options}"


def _processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, process group) of every process."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid, group = stat.rsplit(")", 1)[1].split()[:3]
            out.append((int(entry.name), state, int(ppid), int(group)))
    return out


def _alive_in_group(group: int) -> list[int]:
    return [pid for pid, state, _, g in _processes() if g == group and state != "Z"]


def _gone(group: int, timeout: float = 60) -> list[int]:
    """Wait until no live process is left in ``group``; return those still there."""
    deadline = time.monotonic() + timeout
    while (alive := _alive_in_group(group)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def _workers(driver: int) -> list[int]:
    found = []
    for pid, state, ppid, _ in _processes():
        if ppid == driver and state != "Z":
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                found.append(pid)
    return found


def _kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """SPEC run without interruption, in one process."""
    folder = tmp_path_factory.mktemp("clean") / "sweep"
    assert run_sweep(SweepSpec.from_dict(SPEC), folder).done == 8
    return folder


def _command(spec_file: Path, folder: Path, *more: str) -> list[str]:
    return [sys.executable, "-c", "from sbil.cli import main; main()", "sweep", "--spec",
            str(spec_file), "--out", str(folder), "--workers", "2", *more]  # fmt: skip


@pytest.mark.slow
def test_a_pool_sweep_killed_three_times_leaves_nothing_behind_and_ends_as_one_run(clean, tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(_toml(SPEC))
    folder = tmp_path / "killed"
    rng = random.Random(3)
    groups: list[int] = []
    try:
        for attempt, signum in enumerate((signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)):
            log = tmp_path / f"stderr-{attempt}.txt"
            with log.open("w") as stderr:
                child = subprocess.Popen(
                    _command(spec_file, folder),
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,  # its own process group: what it leaves is seen
                )
            groups.append(child.pid)
            deadline = time.monotonic() + 300
            while not _workers(child.pid):  # the pool is up
                assert child.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            if attempt == 2:  # the last kill comes after some groups finished
                while not list(folder.glob("rows/*.json")):
                    assert child.poll() is None, log.read_text()
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            time.sleep(rng.uniform(0.5, 4.0))  # a random point: starting, training, evaluating
            child.send_signal(signum)
            child.wait(timeout=120)
            if signum == signal.SIGTERM:
                assert child.returncode == 128 + signal.SIGTERM, log.read_text()
                lines = log.read_text().strip().splitlines()
                assert lines[-1].startswith("Terminated (SIGTERM); finished cells"), lines
            else:
                assert child.returncode == -signal.SIGKILL
            # The next run starts at once, while the old workers may still be saving.
        final = subprocess.run(
            _command(spec_file, folder), capture_output=True, text=True, timeout=600
        )
        for group in groups:
            assert _gone(group) == [], f"processes left by driver {group}"
    finally:
        for group in groups:
            _kill_group(group)
    assert final.returncode == 0, final.stderr
    assert "0 failed now" in final.stdout and "Traceback" not in final.stderr
    assert _measured(folder) == _measured(clean)


def _kill_a_worker_when(tmp_path, ready, *flags):
    """Run the 4000-update SPEC with ``flags`` in a child driver, SIGKILL one of its workers
    once ``ready(folder)`` holds, and return ``(returncode, stdout, stderr, spec_file,
    folder)`` after the driver ends (checked to leave no process behind)."""
    spec = {**SPEC, "options": {**SPEC["options"], "n_updates": 4000}, "checkpoint_every": 200}
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(_toml(spec))
    folder = tmp_path / "s"
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        child = subprocess.Popen(
            _command(spec_file, folder, *flags),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not ready(folder):
            assert child.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (victim, *_) = _workers(child.pid)
        os.kill(victim, signal.SIGKILL)
        stdout = child.communicate(timeout=600)[0]
        assert _gone(child.pid) == []
    finally:
        _kill_group(child.pid)
    stderr = log.read_text()
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr
    return child.returncode, stdout, stderr, spec_file, folder


@pytest.mark.slow
def test_a_killed_worker_fails_its_group_only_in_one_line(clean, tmp_path):
    returncode, stdout, stderr, spec_file, folder = _kill_a_worker_when(
        tmp_path,  # one group per worker: the lost worker's group fails alone
        lambda folder: len(list((folder / "runs").glob("*/.state"))) >= 2,  # both training
        "--no-stack-k",
    )
    assert returncode == 1, stderr
    lost = [line for line in stderr.splitlines() if "WorkerLost" in line]
    assert len(lost) == 2, stderr  # the group's line, and the summary's one error line
    assert "killed by SIGKILL" in lost[0] and "2 failed" in lost[0]
    assert lost[1].startswith("Error: 2 of 8 cells failed") and "6 done" in stdout
    again = subprocess.run(
        _command(spec_file, folder, "--no-stack-k"), capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "retrying 2 cells that failed for reasons outside them" in again.stderr


@pytest.mark.slow
def test_a_killed_worker_of_a_stacked_unit_fails_its_groups_and_a_rerun_resumes_them(tmp_path):
    """With --stack-k (the default) a worker trains the groups of one (task, learner) that differ
    only in k as one stack: a lost worker fails all of them, each in its own line, the stack's
    checkpoint outlives it, and the next run resumes the unit to the rows of a clean sweep."""
    returncode, stdout, stderr, spec_file, folder = _kill_a_worker_when(
        tmp_path,  # two units (bc, edm) of two groups (k = 1, 2) each; both stacks saved
        lambda folder: sum(any(d.iterdir()) for d in (folder / "stacks").glob("*")) >= 2,
    )
    assert returncode == 1, stderr
    lost = [line for line in stderr.splitlines() if "WorkerLost" in line]
    assert len(lost) == 3, stderr  # one line per group of the lost unit, and the summary's
    assert all("killed by SIGKILL" in line and "2 failed" in line for line in lost[:2])
    assert {re.search(r"\bk=\d+", line)[0] for line in lost[:2]} == {"k=1", "k=2"}, lost
    assert lost[2].startswith("Error: 4 of 8 cells failed") and "4 done" in stdout
    kept = list((folder / "stacks").iterdir())
    assert len(kept) == 1, kept  # the lost unit's stack state stays for the next run
    again = subprocess.run(_command(spec_file, folder), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "retrying 4 cells that failed for reasons outside them" in again.stderr
    assert not list((folder / "stacks").iterdir())  # resumed and finished: removed
    results = [json.loads(p.read_text()) for p in (folder / "runs").glob("*/results.json")]
    assert len(results) == 4 and all(r.get("trained_together") for r in results)
    assert {r[3] for r in _measured(folder).values()} == {json.dumps("done")}


def test_a_worker_whose_driver_dies_ends_even_without_the_kernel_s_help(tmp_path):
    """The portable backstop of PR_SET_PDEATHSIG: a thread that sees the parent change."""
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os, signal, sys, time

            def worker(driver, ready):
                from sbil.experiments.sweeps.pool import _end_with_driver
                _end_with_driver(driver, kernel=False)
                open(ready, "w").close()
                time.sleep(120)

            if __name__ == "__main__":
                ready = sys.argv[1]
                context = multiprocessing.get_context("spawn")
                process = context.Process(target=worker, args=(os.getpid(), ready))
                process.start()
                print(process.pid, flush=True)
                deadline = time.monotonic() + 60
                while not os.path.exists(ready) and time.monotonic() < deadline:
                    time.sleep(0.05)  # the worker is up and watching
                os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    ready = tmp_path / "ready"
    driver = subprocess.Popen(
        [sys.executable, str(script), str(ready)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        worker = int(driver.stdout.readline())
        driver.wait(timeout=90)
        assert ready.exists(), "the worker never started watching"
        assert _gone(driver.pid, timeout=20) == [], f"worker {worker} outlived its driver"
    finally:
        _kill_group(driver.pid)

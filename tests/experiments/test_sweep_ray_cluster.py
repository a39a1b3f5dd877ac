"""`sbil sweep --backend ray --address` against a real Ray cluster: a head node started here with
`ray start --head`, bound to loopback, with token authentication (Ray's default for such
clusters). The sweep gives the local backend's rows; a missing or wrong token fails in one line
within seconds, before anything is written; Ray's per-group overhead is measured and printed.

Only the processes this module starts are stopped, by their process group (never `ray stop`,
which ends every Ray process of the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray backend needs the 'ray' extra")

from sbil.experiments.sweep import SweepSpec, run_sweep

RAY = Path(sys.executable).with_name("ray")
SPEC = {
    "envs": ["CartPole-v1"],
    "ks": [1, 2],
    "algos": ["bc"],
    "seeds": [0, 1],
    "holdout": 1,
    "every_nth_step": 5,
    "eval_episodes": 3,
    "options": {"n_updates": 30},
    "checkpoint_every": 10,
}
# What a row must reproduce on any backend (the rest is time, paths and provenance).
_SAME = ("cell_id", "config_hash", "status", "returns", "action_match", "train_episodes")
_PORTS = (
    "ray-client-server-port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
)
_AUTH = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(home: Path, **auth: str) -> dict[str, str]:
    """This process's environment with a home of its own (no ~/.ray/auth_token of the machine's
    user), no Ray settings but ``auth``, and Ray kept on loopback: Ray replaces 127.0.0.1 by
    the machine's address unless it is told it runs no multi-machine cluster."""
    env = {k: v for k, v in os.environ.items() if k not in _AUTH}
    return {**env, "HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **auth}


def _stop(head: subprocess.Popen) -> None:
    """End the head node and every process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):  # what did not end on SIGTERM
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster():
    """(address, token, home) of a head node on 127.0.0.1 that requires ``token``."""
    if not RAY.is_file():
        pytest.skip(f"`ray start` is not available ({RAY} is missing)")
    # Short: Ray's unix sockets live under it (at most 107 characters).
    root = Path(tempfile.mkdtemp(prefix="sbil-ray-"))
    token = secrets.token_hex(16)
    home = root / "home"
    home.mkdir()
    port = _free_port()
    command = [str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
               "--include-dashboard", "false", "--disable-usage-stats",
               "--temp-dir", str(root / "ray")]  # fmt: skip
    for name in _PORTS:
        command += [f"--{name}", str(_free_port())]
    log = root / "head.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            command,
            env=_environment(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    try:
        deadline = time.monotonic() + 60
        while b"Ray runtime started" not in log.read_bytes():
            assert head.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "ray start --head took over 60 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", token, home
    finally:
        _stop(head)
        shutil.rmtree(root, ignore_errors=True)


_DRIVER = """
import json, sys, time
from sbil.experiments.sweep import SweepSpec, run_sweep
spec, folder, backend, address = json.loads(sys.argv[1])
summary = run_sweep(SweepSpec.from_dict(spec), folder, backend=backend, address=address)
print(json.dumps({"seconds": summary.seconds, "done": summary.done, "groups": summary.ran_groups}))
"""


def _drive(folder: Path, env: dict, backend: str, address: str | None) -> dict:
    """run_sweep in a fresh process (Ray reads its token settings once per process)."""
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps([SPEC, str(folder), backend, address])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(folder: Path) -> dict[str, dict]:
    rows = (json.loads(p.read_text()) for p in (folder / "rows").glob("*.json"))
    return {row["cell_id"]: row for row in rows}


def _same(folder: Path) -> dict[str, tuple]:
    return {cell: tuple(json.dumps(row[k]) for k in _SAME) for cell, row in _rows(folder).items()}


def _prepared_copy(source: Path, folder: Path) -> Path:
    """``source`` without its results: its datasets and references, so only groups run."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("rows", "runs", "*.lock"))
    return folder


def test_a_sweep_on_a_ray_cluster_gives_the_local_rows(cluster, tmp_path):
    address, token, home = cluster
    reference = tmp_path / "reference"
    run_sweep(SweepSpec.from_dict(SPEC), reference)
    secured = _environment(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)

    on_cluster = _drive(_prepared_copy(reference, tmp_path / "ray"), secured, "ray", address)
    assert (on_cluster["done"], on_cluster["groups"]) == (4, 2)
    assert _same(tmp_path / "ray") == _same(reference)

    # Ray's overhead per group: the driver's time beyond the groups' own work, against the
    # local backend's on the same prepared folder.
    local = _drive(_prepared_copy(reference, tmp_path / "local"), secured, "local", None)
    extra = []
    for run, folder in ((on_cluster, tmp_path / "ray"), (local, tmp_path / "local")):
        work = sum(row["wall_seconds"] for row in _rows(folder).values())
        extra.append(run["seconds"] - work)
    per_group = (extra[0] - extra[1]) / on_cluster["groups"]
    print(
        f"\nRay cluster at {address}: sweep {on_cluster['seconds']:.2f} s against "
        f"{local['seconds']:.2f} s locally; overhead {per_group:.2f} s per group "
        f"({on_cluster['groups']} groups, connection included)"
    )


def test_a_missing_token_fails_in_one_line_before_anything_is_written(cluster, tmp_path):
    address, _, home = cluster
    spec = tmp_path / "s.toml"
    spec.write_text(
        "".join(f"{k} = {json.dumps(v)}\n" for k, v in SPEC.items() if k != "options")
        + "[options]\nn_updates = 30\n"
    )
    folder = tmp_path / "s"
    command = [sys.executable, "-c", "from sbil.cli import main; main()", "sweep",
               "--spec", str(spec), "--out", str(folder),
               "--backend", "ray", "--address", address]  # fmt: skip
    done = subprocess.run(
        command, env=_environment(home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines  # no Ray warnings, no traceback
    assert "requires token authentication" in lines[0]
    assert "RAY_AUTH_MODE=token" in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
    assert not folder.exists()


_CHECK = """
import json, os, sys
from sbil.experiments.sweep import SweepError, check_ray
for auth in json.loads(sys.argv[2]):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(name, None)
    os.environ.update(auth)
    try:
        check_ray(sys.argv[1])
        print("accepted")
    except SweepError as error:
        print(error)
"""


def test_a_wrong_token_is_named_as_refused_and_the_right_one_accepted(cluster, tmp_path):
    address, token, home = cluster
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    cases = [
        (
            {"RAY_AUTH_TOKEN": "not-the-token"},
            "refused the authentication token from RAY_AUTH_TOKEN",
        ),
        ({}, "RAY_AUTH_MODE=token but no Ray authentication token is set"),
        ({"RAY_AUTH_TOKEN_PATH": str(empty)}, f"RAY_AUTH_TOKEN_PATH={empty} is empty"),
        ({"RAY_AUTH_TOKEN": token}, "accepted"),
    ]
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, address, json.dumps([auth for auth, _ in cases])],
        env=_environment(home, RAY_AUTH_MODE="token"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == len(cases), done.stdout + done.stderr
    for line, (_, message) in zip(lines, cases, strict=True):
        assert message in line, line

"""Ray's per-group overhead in ``sbil sweep``: the same small groups on the local backend, on a
local Ray (``ray.init``) and on a real Ray cluster (a head node started here with
``ray start --head`` on loopback, with token authentication), side by side in one run.

Each backend runs in a fresh process on a copy of one prepared sweep folder (datasets and
references recorded once), so only the groups run. For every group the driver's time from
submitting it to having its rows back is compared with the group's own time inside
:func:`sbil.experiments.sweep.run_group` (its rows' ``wall_seconds``): the difference is what
the backend adds (scheduling, a worker process and its imports, passing the group and rows).
The first group of a run pays for starting a worker; later ones reuse it. Connecting is timed
apart: ``check_ray`` (the reachability and token probe) and ``ray.init``.

Only the processes started here are stopped, by their process group (never ``ray stop``).

Run: ``python benchmarks/sweep_ray_overhead.py`` (``--groups``, ``--updates``, ``--repeats``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def _spec(groups: int, updates: int) -> dict:
    return {
        "envs": ["CartPole-v1"],
        "ks": list(range(1, groups + 1)),
        "algos": ["bc"],
        "seeds": [0, 1],
        "holdout": 1,
        "every_nth_step": 5,
        "eval_episodes": 3,
        "options": {"n_updates": updates},
        "checkpoint_every": max(updates // 3, 1),
    }


def _child(spec: dict, folder: str, backend: str, address: str | None) -> None:
    """One sweep in this (fresh) process; prints per-group timings as JSON."""
    from sbil.experiments import sweep
    from sbil.experiments.sweeps import run as sweep_run

    timings: list[dict] = []
    connect: dict[str, float] = {}
    if address is not None:
        started = time.perf_counter()
        sweep.check_ray(address)
        connect["check_ray"] = time.perf_counter() - started
    if backend == "ray":
        import ray

        started = time.perf_counter()
        if address is None:
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, object_store_memory=256 * 1024**2)  # fmt: skip
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        connect["ray_init"] = time.perf_counter() - started  # the sweep reuses this session

    def timed(run):
        def wrapped(todo, folder, workers, record, **kwargs):
            def record_timed(group, result, seconds):
                own = sum(row["wall_seconds"] or 0.0 for row in result)
                timings.append({"observed": seconds, "own": own})
                record(group, result, seconds)

            run(todo, folder, workers, record_timed, **kwargs)

        return wrapped

    sweep_run._run_ray = timed(sweep_run._run_ray)  # where run_sweep looks them up
    sweep_run._run_local = timed(sweep_run._run_local)
    summary = sweep.run_sweep(sweep.SweepSpec.from_dict(spec), folder, backend=backend,
                              address=address)  # fmt: skip
    assert summary.done == 2 * len(spec["ks"]), summary
    print(json.dumps({"groups": timings, "connect": connect, "seconds": summary.seconds}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(home: Path, **auth: str) -> dict[str, str]:
    drop = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # Ray replaces 127.0.0.1 by the machine's address unless told it runs no cluster of machines.
    return {**env, "HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **auth}


@contextlib.contextmanager
def _head_node(root: Path, token: str):
    """A Ray head node on 127.0.0.1 (2 CPUs, token authentication); yields its address."""
    home = root / "home"
    home.mkdir()
    port = _free_port()
    ray = Path(sys.executable).with_name("ray")
    command = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
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
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log.read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", home
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)


def _run(spec: dict, folder: Path, env: dict, backend: str, address: str | None) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([spec, str(folder), backend, address])],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=6, help="groups per sweep (bc, k = 1..G)")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*json.loads(args.child))
        return
    import ray
    import torch

    from sbil.experiments.sweep import SweepSpec, run_sweep

    spec = _spec(args.groups, args.updates)
    root = Path(tempfile.mkdtemp(prefix="sbil-bench-"))
    token = secrets.token_hex(16)
    results: dict[str, list[dict]] = {"local": [], "ray-local": [], "ray-cluster": []}
    try:
        prepared = root / "prepared"
        run_sweep(SweepSpec.from_dict(spec), prepared)  # records the data; a warm-up too
        shutil.rmtree(prepared / "rows")
        shutil.rmtree(prepared / "runs")
        with _head_node(root, token) as (address, home):
            secured = _environment(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
            for repeat in range(args.repeats):  # interleaved, so that all see the same load
                for name, backend, where in (
                    ("local", "local", None),
                    ("ray-local", "ray", None),
                    ("ray-cluster", "ray", address),
                ):
                    folder = root / f"{name}-{repeat}"
                    shutil.copytree(prepared, folder)
                    results[name].append(_run(spec, folder, secured, backend, where))
                    shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    print(f"{when}, {machine}, torch {torch.__version__}, ray {ray.__version__}")
    print(
        f"{args.groups} groups of 2 seeds (CartPole-v1, bc, {args.updates} updates, 3 episodes), "
        f"1 worker, {args.repeats} repeats (medians)\n"
    )
    print(
        "| backend | connect (s) | first group (s) | later groups (s) | of which outside "
        "run_group (s) | per group vs local (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    local_later = None
    for name, runs in results.items():
        first = np.median([r["groups"][0]["observed"] for r in runs])
        later = np.median([g["observed"] for r in runs for g in r["groups"][1:]])
        outside = np.median([g["observed"] - g["own"] for r in runs for g in r["groups"][1:]])
        local_later = later if local_later is None else local_later
        connect = " + ".join(
            f"{key} {np.median([r['connect'][key] for r in runs]):.2f}"
            for key in runs[0]["connect"]
        )
        print(
            f"| {name} | {connect or '-'} | {first:.2f} | {later:.3f} | {outside:.3f} | "
            f"{later - local_later:+.3f} |"
        )


if __name__ == "__main__":
    main()

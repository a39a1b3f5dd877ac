"""The local process pool: workers that end with their driver, and a lost worker reported as
its groups' failure (WorkerLost), never as a broken pool.

Part of the sweep runner (:mod:`sbil.experiments.sweep` is its entry point and module doc).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbil.experiments.sweeps.groups import Group, run_unit

#: prctl(2) option: the signal the kernel sends this process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
#: Seconds between a worker's checks that its driver still runs (where prctl is missing).
_WATCH_S = 0.5
#: Seconds a worker whose driver died has to save its checkpoint before it is ended.
_GRACE_S = 30.0


@dataclass(eq=False)
class _Worker:
    process: Any
    connection: Any


class _WorkerPool:
    """Worker processes (``spawn``: no torch state forked) that run one group at a time.

    Each worker ends with its driver however the driver ends (see :func:`_end_with_driver`),
    and the driver knows which group each one runs: a worker that dies fails its group only
    (``WorkerLost``, retried by the next run); the others go on.
    """

    def __init__(self, sweep: Path) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._sweep = str(sweep)
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(interrupted=kind is not None)

    def submit(self, unit: tuple[Group, ...]) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            try:
                worker.connection.send(unit)
                return worker
            except OSError:  # it died while idle
                self._discard(worker)
        worker = self._start()
        worker.connection.send(unit)
        return worker

    def wait_one(self, busy: list[_Worker]) -> list[tuple[_Worker, list[dict] | str]]:
        from multiprocessing.connection import wait

        ready = set(wait([w.connection for w in busy] + [w.process.sentinel for w in busy]))
        out = []
        for worker in busy:
            if worker.connection not in ready and worker.process.sentinel not in ready:
                continue
            try:
                if worker.connection.poll():
                    out.append((worker, worker.connection.recv()))
                    self._idle.append(worker)
                    continue
            except (EOFError, OSError):
                pass
            out.append((worker, _lost(worker.process)))
            self._discard(worker)
        return out

    def close(self, *, interrupted: bool) -> None:
        """Stop every worker: asked to (the sweep is over), or with SIGTERM when the driver
        was interrupted, which training answers by saving its checkpoint; waited for."""
        for worker in self._workers:
            if interrupted:
                if worker.process.is_alive():
                    worker.process.terminate()
            else:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
        for worker in list(self._workers):
            self._discard(worker)

    def _start(self) -> _Worker:
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(there, self._sweep, os.getpid()),
            name="sbil-sweep-worker",
            daemon=True,
        )
        process.start()
        there.close()  # so that the worker's death reads as the end of the pipe here
        worker = _Worker(process, here)
        self._workers.append(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.process.join(timeout=_GRACE_S)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
        self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)


def _lost(process) -> str:
    process.join(timeout=_GRACE_S)
    code = process.exitcode
    if code is None:
        how = "it stopped answering"
    elif code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    else:
        how = f"exit status {code}"
    return (
        f"WorkerLost: the worker process running this group ended ({how}) before returning "
        "its rows; re-run the sweep to resume the group from its last checkpoint."
    )


def _worker_main(connection, sweep_dir: str, driver: int) -> None:
    """A pool worker: run the groups the driver sends until it sends None or is gone."""
    _end_with_driver(driver)
    try:
        while (unit := connection.recv()) is not None:
            connection.send(run_unit(sweep_dir, unit))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # interrupted (training saved its checkpoint), or the driver is gone


def _end_with_driver(driver: int, *, kernel: bool = True) -> None:
    """Make this worker end when its driver does, even by SIGKILL.

    On Linux the kernel sends it SIGTERM then (prctl PR_SET_PDEATHSIG), which training turns
    into a saved checkpoint and a clean exit. Elsewhere, and as a backstop, a thread polls the
    parent's id (it changes when the parent dies) and does the same, then ends the process
    after a grace period. ``kernel=False`` leaves the thread alone (to test it).
    """
    if kernel and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != driver:  # the driver died before prctl took effect
        os._exit(1)
    threading.Thread(
        target=_watch_driver, args=(driver,), name="sbil-watch-driver", daemon=True
    ).start()


def _watch_driver(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(_WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_GRACE_S)
    os._exit(1)

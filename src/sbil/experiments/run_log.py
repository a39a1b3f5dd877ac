"""A run folder's log: timestamped lines of what happened, written as it happens.

``sbil train`` (every :func:`sbil.experiments.runs.run_training`, sweep cells included) writes
``OUT/log.txt``: when the run started or resumed, its training progress (every 10% of the work
or every 60 s, whichever comes first), each seed's evaluation progress and figures, and how it
ended; ``sbil evaluate`` appends its own lines to the log of the run it evaluates. Each line
is one ``write`` in append mode, so a killed process leaves every line it wrote whole::

    2026-01-02 10:00:00Z  train: started edm x2 (seeds 0, 1), 10000 updates
    2026-01-02 10:00:31Z  training edm x2: 1000/10000 (10%), 31 s elapsed, ETA 4:39

Example:
    >>> log = RunLog(tmp_path / "log.txt")  # doctest: +SKIP
    >>> log.write("started")  # doctest: +SKIP
    >>> progress = log.progress("training")  # doctest: +SKIP
    >>> progress(5, 10)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

from sbil.progress import ProgressCallback

#: The file name of a run folder's log.
LOG_FILE = "log.txt"


class RunLog:
    """Append timestamped lines to a log file (created when missing).

    Each :meth:`write` opens the file, appends one line and closes it, so a log needs no
    closing and two processes appending to one log never tear each other's lines.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def write(self, message: str) -> None:
        """Append ``message`` (on one line) with the UTC time."""
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(f"{stamp}  {' '.join(message.split())}\n")

    def progress(self, description: str) -> ProgressCallback:
        """A ``progress(done, total)`` callback writing ``description: done/total (p%), ...``
        every 10% of the work or every 60 s, whichever comes first, and once at the end."""
        return progress_lines(description, self.write)


def progress_lines(description: str, write, *, every: float = 0.1, seconds: float = 60.0):
    """A ``progress(done, total)`` callback calling ``write(line)`` now and then.

    A line is written the first time the work reaches each multiple of ``every`` (10%, 20%,
    ...; counted in integers, so 30/100 is 30%, never 31%), when ``seconds`` passed since the
    last line, and once when the work is complete (never twice for it). The percentage shown
    is rounded down, so only the complete work reads 100%.
    """
    started = time.monotonic()
    steps = max(1, round(1 / every))  # 10 for every 10%
    last = {"time": started, "step": 0, "finished": False}

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        step = steps if finished else steps * done // total
        if finished:
            if last["finished"]:
                return
            last["finished"] = True
        elif step <= last["step"] and now - last["time"] < seconds:
            return
        last.update(time=now, step=max(step, last["step"]))
        elapsed = now - started
        percent = 100 if finished else 100 * done // total
        line = f"{description}: {done}/{total} ({percent}%), {elapsed:.0f} s elapsed"
        if 0 < done < total:
            left = elapsed * (total - done) / done
            line += f", ETA {int(left // 60)}:{int(left % 60):02d}"
        write(line)

    return update


def tee(*callbacks: ProgressCallback | None) -> ProgressCallback | None:
    """One ``progress(done, total)`` calling every callback given (None for none)."""
    present = [c for c in callbacks if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def update(done: int, total: int) -> None:
        for callback in present:
            callback(done, total)

    return update

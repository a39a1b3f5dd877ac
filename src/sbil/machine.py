"""Facts about the machine this process runs on, for the limits of commands and sweeps."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def max_workers() -> int:
    """The most worker processes a command starts on this machine unless told otherwise
    (``SBIL_MAX_WORKERS``): 4 per CPU and at least 8, so that a typo (100000) does not fork
    that many processes of a few hundred MB each, while a small machine can still run a
    few workers to check that results do not depend on them."""
    return max(8, 4 * available_cpus())

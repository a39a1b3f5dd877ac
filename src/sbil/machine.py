"""Facts about the machine this process runs on, for the limits of commands and sweeps."""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable


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


def env_limit(variable: str, default: int | Callable[[], int]) -> int:
    """A size limit raised on purpose by the environment variable ``variable`` (a positive
    integer; ``100_000`` and ``100,000`` read as 100000), else ``default`` (or its value).

    Raises:
        ValueError: naming the variable, for a value that is not a positive integer.
    """
    text = os.environ.get(variable)
    if text is None:
        return default() if callable(default) else default
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable} must be a positive integer, got {text!r}.")
    return value


def cpu_description() -> str:
    """The CPU's model and, where torch is already loaded, the SIMD kernels torch's CPU
    arithmetic uses, e.g. ``"AMD EPYC; torch kernels AVX2"``.

    Float32 results (a trained network's weights, and so a learner's returns) are bit-identical
    only on machines with the same kernels: AVX2 and AVX-512 sum in different orders, and the
    rounding differences grow over thousands of updates. A sweep row records this string so
    that two rows which differ can be told apart by where they ran. torch is not imported
    here (a row is written after training has loaded it).
    """
    model = _cpu_model() or platform.processor() or platform.machine() or "unknown CPU"
    torch = sys.modules.get("torch")
    if torch is None:
        return model
    try:
        kernels = torch.backends.cpu.get_cpu_capability()
    except Exception:  # an old or partial torch: the model alone
        return model
    return f"{model}; torch kernels {kernels}"


@functools.cache
def _cpu_model() -> str | None:
    """The first ``model name`` in /proc/cpuinfo (Linux), or None (read once per process)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return " ".join(value.split())
    except OSError:
        return None
    return None

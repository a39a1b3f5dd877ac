"""Tests for sbil.machine's description of the CPU a row was made on."""

from __future__ import annotations

import os
import subprocess
import sys


def test_cpu_description_names_torch_s_kernels_only_once_torch_is_loaded():
    code = (
        "import sys; from sbil.machine import cpu_description; before = cpu_description(); "
        "assert 'torch' not in sys.modules, 'cpu_description imported torch'; "
        "import torch; after = cpu_description(); "
        "assert 'torch kernels' not in before, before; "
        "assert after == before + '; torch kernels ' + torch.backends.cpu.get_cpu_capability(); "
        "print(after)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_cpu_description_follows_the_kernels_torch_is_told_to_use():
    # ATEN_CPU_CAPABILITY=default: the plain kernels, which round differently from AVX2/AVX-512.
    code = "import torch; from sbil.machine import cpu_description; print(cpu_description())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("; torch kernels DEFAULT")

"""How many threads OpenBLAS may use under `sdzero` on a Linux CPU, chosen by measurement.

OpenBLAS starts one thread per core and its idle threads spin (sched_yield) waiting for work, while
MLX runs its own CPU stream thread beside them: on 2 cores a tiny model's many small matmuls spent
more time in the kernel than in user code (`sdzero demo --quick`: sys 12.8 s of a 18.8 s run).
With one BLAS thread the spinning stops; `benchmarks/bench_threads.py` measures the demo and a real
model (SmolLM2-135M distill steps) both ways in one run, and its figures are in docs/performance.md.

Choice, in order:
    OPENBLAS_NUM_THREADS set   the user's value stands (read by OpenBLAS itself)
    SDZERO_BLAS_THREADS=N      N threads (0 = OpenBLAS's own default: one per core)
    otherwise                  DEFAULT_THREADS
Applied at run time through `openblas_set_num_threads` on the OpenBLAS that serves MLX; nothing
changes on macOS (Accelerate: an OpenBLAS a Mac's process holds, numpy's for one, is not MLX's), with
another BLAS, or with none. Which system this is comes from `facts()` (facts.py).
"""

from __future__ import annotations

import ctypes
import os

from .facts import facts

ENV_VAR = "SDZERO_BLAS_THREADS"
DEFAULT_THREADS = 1  # measured best on 2 cores for the tiny demo and SmolLM2-135M (bench_threads.py)


def chosen_threads(environ=None) -> int | None:
    """The thread count sdzero will set, or None to leave OpenBLAS alone."""
    environ = os.environ if environ is None else environ
    if environ.get("OPENBLAS_NUM_THREADS"):
        return None
    value = environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT_THREADS
    if not value.isdigit():
        raise ValueError(f"{ENV_VAR}={value!r} is not a whole number; set a thread count, or 0 for OpenBLAS's default.")
    return int(value) or None


def _openblas():
    """The global OpenBLAS entry points of a Linux process, or None (no OpenBLAS loaded globally, or not Linux)."""
    if not facts().linux:
        return None
    process = ctypes.CDLL(None)
    try:
        return process.openblas_set_num_threads, process.openblas_get_num_threads
    except AttributeError:
        return None


def apply_blas_threads(environ=None) -> None:
    """Set OpenBLAS's thread count as chosen above (call before the first matmul)."""
    threads, api = chosen_threads(environ), _openblas()
    if threads is not None and api is not None:
        api[0](threads)


def blas_threads() -> str:
    """What `sdzero info` shows, e.g. '1 (sdzero default; SDZERO_BLAS_THREADS=N to change)'."""
    if facts().macos:
        return "n/a (macOS: MLX uses Accelerate)"
    api = _openblas()
    if api is None:
        return "n/a (no OpenBLAS loaded)"
    current = api[1]()
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return f"{current} (OPENBLAS_NUM_THREADS)"
    if os.environ.get(ENV_VAR, "").strip():
        return f"{current} ({ENV_VAR})"
    return f"{current} (sdzero default, measured fastest on 2 cores; {ENV_VAR}=N to change)"

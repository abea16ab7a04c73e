"""What the benchmarks' CPU seconds mean on the device in use.

On a CPU, this process's CPU time (all its threads) is the work itself, and a shared machine stretches
it far less than wall time, so rates are per CPU second. On a GPU (Metal on a Mac, CUDA) the work runs
on the GPU, outside this process's CPU time, which then counts only the host's share (building graphs,
launching kernels): a rate per CPU second means nothing there, so the benchmarks use wall seconds.
Import after `reexec_with_fast_blas`: this imports mlx.
"""

from __future__ import annotations

import mlx.core as mx


def on_gpu() -> bool:
    return mx.default_device() == mx.gpu


def rate_clock() -> str:
    """'CPU' or 'wall': the seconds rates are per here."""
    return "wall" if on_gpu() else "CPU"


def gpu_note() -> str:
    """A line for benchmarks that print both clocks: on a GPU, which one to read (empty on a CPU)."""
    return ("on the GPU, CPU seconds count only this process's host work (graphs, kernel launches), not the GPU's: "
            "compare the wall figures") if on_gpu() else ""

"""Which device MLX computes on: `run.device` (auto | cpu | gpu), an honest account of the GPU, the
stream sampling runs on, and the memory a run may use there.

auto keeps MLX's default (the GPU when its backend works: Metal on a Mac, CUDA with the `cuda`
extra on Linux). gpu refuses to start without one, naming why; cpu forces the CPU. Detection never
hides an error: a CUDA wheel installed next to a broken driver is reported, not taken for "no GPU".

Sampling gets its stream here (`sampling_stream`), on the device chosen: mlx-lm's own
`generation_stream` is made on the default device when `mlx_lm.generate` is imported, before
`run.device` is read, so with it a Mac told `run.device: cpu` would sample on Metal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from typing import Optional

import mlx.core as mx

from .facts import facts

CUDA_WHEELS = ("mlx-cuda-12", "mlx-cuda-13", "mlx-cuda")


@dataclass(frozen=True)
class GpuStatus:
    available: bool
    backend: str  # "cuda", "metal" or "none"
    detail: str  # why not, or what was found


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def gpu_status() -> GpuStatus:
    """Whether MLX can compute on a GPU here; runs one tiny operation there to make sure."""
    cuda_wheels = [w for w in CUDA_WHEELS if _installed(w)]
    try:
        available = mx.is_available(mx.gpu)
    except Exception as err:  # reported, not swallowed: a broken install must be visible
        return GpuStatus(False, "none", f"mx.is_available(mx.gpu) raised {type(err).__name__}: {err}")
    if not available:
        if cuda_wheels:
            return GpuStatus(False, "none", f"{', '.join(cuda_wheels)} is installed but MLX sees no GPU: "
                                            "check the NVIDIA driver (nvidia-smi) and the CUDA version of the wheel")
        if facts().macos:
            return GpuStatus(False, "none", "MLX sees no Metal GPU: Metal needs an Apple silicon Mac and MLX's "
                                            "mlx-metal wheel (`sdzero info` lists the mlx wheels installed)")
        return GpuStatus(False, "none", "this MLX build has no GPU backend (mlx-cpu; install the cuda extra "
                                        "on an NVIDIA machine, or use a Mac)")
    backend = "metal" if mx.metal.is_available() else "cuda" if getattr(mx, "cuda", None) and mx.cuda.is_available() else "gpu"
    try:
        mx.eval(mx.add(mx.ones((2,), stream=mx.gpu), 1, stream=mx.gpu))
    except Exception as err:
        return GpuStatus(False, backend, f"MLX reports a {backend} GPU but an operation on it failed: {type(err).__name__}: {err}")
    return GpuStatus(True, backend, f"{backend} GPU works")


def use_device(choice: str) -> None:
    """Make `choice` (auto | cpu | gpu) MLX's default device; gpu without a working GPU raises."""
    if choice == "cpu":
        mx.set_default_device(mx.cpu)
    elif choice == "gpu":
        status = gpu_status()
        if not status.available:
            raise RuntimeError(f"run.device is gpu but there is no usable GPU: {status.detail}. "
                               "Set run.device=auto or run.device=cpu to run on the CPU.")
        mx.set_default_device(mx.gpu)
    elif choice != "auto":
        raise ValueError(f"run.device must be auto, cpu or gpu, got {choice!r}.")


def backend() -> str:
    """Where MLX computes now: 'cpu', 'metal' or 'cuda' (the default device, as `use_device` left it)."""
    if mx.default_device() != mx.gpu:
        return "cpu"
    return "metal" if mx.metal.is_available() else "cuda"


def device_name() -> str:
    """Where MLX computes now: 'cpu', 'gpu (cuda)' or 'gpu (metal)'."""
    name = backend()
    return name if name == "cpu" else f"gpu ({name})"


_streams: dict[str, mx.ThreadLocalStream] = {}


def sampling_stream() -> mx.ThreadLocalStream:
    """The stream mlx-lm's generator samples on: on MLX's default device now, the one `run.device` chose.

    One per device for the process (MLX keeps every stream it makes, with a CPU thread each), thread-local
    as mlx-lm's own `generation_stream` is.
    """
    device = mx.default_device()
    key = str(device)
    if key not in _streams:
        _streams[key] = mx.new_thread_local_stream(device)
    return _streams[key]


# -- memory ----------------------------------------------------------------------------------------

RAM_SHARE = 0.8  # of the RAM a CPU run may plan to use: the OS, the page cache and other programs need the rest


@dataclass(frozen=True)
class MemoryLimit:
    gb: float  # what a run's peak should stay under
    source: str  # what the figure is, for messages: "80% of this machine's 16.0 GB of RAM"


def ram_gb() -> Optional[float]:
    """This machine's RAM (unified memory on Apple silicon), or None when the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit_for(backend_name: str, device_info: dict, ram_gb: Optional[float]) -> Optional[MemoryLimit]:
    """The memory limit on `backend_name` ('cpu', 'metal', 'cuda') from mx.device_info() and the RAM.

    Metal: the GPU's recommended working set (`max_recommended_working_set_size`, which macOS sets below
    the unified memory; mlx-lm warns that generating "can be slow" near it, and past it Metal pages or
    fails to allocate). Elsewhere: RAM_SHARE of the RAM (CUDA's own memory is not read yet).
    Example: memory_limit_for("cpu", {}, 16.0) == MemoryLimit(12.8, "80% of this machine's 16.0 GB of RAM")
    """
    if backend_name == "metal":
        where = f"on this {ram_gb:.1f} GB Mac" if ram_gb else "on this Mac"
        return MemoryLimit(device_info["max_recommended_working_set_size"] / 1e9, f"Metal's recommended working set {where}")
    if ram_gb is None:
        return None
    return MemoryLimit(RAM_SHARE * ram_gb, f"{int(100 * RAM_SHARE)}% of this machine's {ram_gb:.1f} GB of RAM")


def memory_limit() -> Optional[MemoryLimit]:
    """The memory limit where MLX computes now (`memory_limit_for` on this machine)."""
    name = backend()
    return memory_limit_for(name, mx.device_info(mx.gpu) if name == "metal" else {}, ram_gb())

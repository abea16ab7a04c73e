"""Which device MLX computes on: `run.device` (auto | cpu | gpu), an honest account of the GPU, and the
stream sampling runs on.

auto keeps MLX's default (the GPU when its backend works: Metal on a Mac, CUDA with the `cuda`
extra on Linux). gpu refuses to start without one, naming why; cpu forces the CPU. Detection never
hides an error: a CUDA wheel installed next to a broken driver is reported, not taken for "no GPU".

Sampling gets its stream here (`sampling_stream`), on the device chosen: mlx-lm's own
`generation_stream` is made on the default device when `mlx_lm.generate` is imported, before
`run.device` is read, so with it a Mac told `run.device: cpu` would sample on Metal.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

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

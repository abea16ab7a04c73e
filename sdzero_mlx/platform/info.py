"""What `sdzero info` prints: versions, the MLX device and backends, the BLAS, memory and cores.

Enough to answer the first questions on a bug report ("which mlx wheel?", "is it on the GPU?",
"is the reference BLAS making it slow?") from one paste. Linux-only sources (/proc, CPU affinity) are
read where `facts()` says Linux.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from sdzero_mlx.platform.blas import blas_in_use
from sdzero_mlx.platform.device import device_name, gpu_status, memory_limit
from sdzero_mlx.platform.distributed import describe
from sdzero_mlx.platform.facts import facts
from sdzero_mlx.platform.threads import blas_threads

_GIB = 1024**3


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mlx_wheels() -> str:
    """The installed MLX backend wheels (mlx-cpu, mlx-metal, mlx-cuda-12...), which decide the device."""
    names = ("mlx-cpu", "mlx-metal", "mlx-cuda-12", "mlx-cuda-13", "mlx-cuda")
    found = [f"{name} {_version(name)}" for name in names if _version(name) != "not installed"]
    return ", ".join(found) or "none (mlx built from source?)"


def _memory() -> str:
    """Total (and on Linux, available) RAM."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "unknown"
    text = f"{total / _GIB:.1f} GiB"
    if not facts().linux:
        return text
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        available_kib = int(fields["MemAvailable"].split()[0])
        text += f" ({available_kib * 1024 / _GIB:.1f} GiB available)"
    except (OSError, KeyError, ValueError):
        pass
    return text


def _memory_limit() -> str:
    """What `sdzero doctor` holds a run's peak memory against here."""
    limit = memory_limit()
    return "unknown" if limit is None else f"{limit.gb:.1f} GB ({limit.source}; sdzero doctor warns past it)"


def _cores() -> str:
    """CPU cores this process may use, and the machine's count when a cgroup/affinity limits it."""
    total = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if facts().linux else total  # macOS has no CPU affinity
    return str(usable) if usable == total else f"{usable} (of {total} on the machine)"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def collect_info() -> dict[str, str]:
    """Facts about this installation, as label -> value, in display order."""
    import mlx.core as mx

    cuda = getattr(mx, "cuda", None)
    return {
        "sdzero-mlx": _version("sdzero-mlx"),
        "mlx": mx.__version__,
        "mlx backend wheels": _mlx_wheels(),
        "mlx-lm": _version("mlx-lm"),
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "default device": "gpu" if mx.default_device() == mx.gpu else "cpu",
        "metal available": _yes_no(mx.metal.is_available()),
        "cuda available": _yes_no(cuda is not None and cuda.is_available()),
        "gpu": gpu_status().detail,
        "run.device auto": device_name(),
        "processes": describe(),
        "blas": blas_in_use(),
        "blas threads": blas_threads(),
        "memory": _memory(),
        "memory limit": _memory_limit(),
        "cpu cores": _cores(),
    }


def format_info(info: dict[str, str]) -> str:
    """Two aligned columns, one fact per line.

    Example: format_info({"mlx": "0.32.4", "cpu cores": "2"}) == "mlx        0.32.4\\ncpu cores  2"
    """
    width = max((len(label) for label in info), default=0)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in info.items())

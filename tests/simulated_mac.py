"""A code worker that answers as a Mac would, for tests on Linux (this project's CI has no Mac).

Started by the code pool as `python -m simulated_mac` (tests/ on PYTHONPATH; tests/test_sandbox_macos.py).
What is simulated, each as macOS documents it:
- the platform facts: macOS on arm64, a normal user (uid 501);
- `resource.setrlimit` refuses RLIMIT_AS with ValueError: macOS refuses an address-space limit below
  the process's mapping (every Apple-silicon process maps far more), and Python reports its EINVAL so;
- RLIMIT_NPROC counts every process of the user, and a logged-in user runs hundreds: a limit below
  BUSY_USER_PROCESSES leaves no fork (a seccomp filter answers EAGAIN; threads still start);
- /usr/bin/sandbox-exec, xcode-select and xcrun are the shims in tests/shims (sandbox-exec runs the
  command unconfined: the profiles it would enforce are tested as text in tests/test_macos_profile.py);
- the resident size of a run is read from /proc (macOS: proc_pid_rusage).
Knobs, in the environment: SDZERO_SIM_NO_SANDBOX_EXEC=1 (a Mac without sandbox-exec), SDZERO_SIM_NO_CLT=1
(without the Command Line Tools; read by the xcode-select shim), SDZERO_SIM_REFUSE=RLIMIT_FSIZE
(setrlimit refuses that one too: a sandbox that cannot start).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import seccomp

from sdzero_mlx.platform.facts import simulated

BUSY_USER_PROCESSES = 400
SHIMS = Path(__file__).resolve().parent / "shims"
_real_setrlimit = resource.setrlimit


def macos_setrlimit(res: int, limits: tuple[int, int]) -> None:
    """resource.setrlimit as macOS answers it (see the module docstring)."""
    refused = {resource.RLIMIT_AS} | {getattr(resource, n) for n in os.environ.get("SDZERO_SIM_REFUSE", "").split(",") if n}
    if res in refused:
        raise ValueError("current limit exceeds maximum limit")
    if res == resource.RLIMIT_NPROC and limits[0] < BUSY_USER_PROCESSES:
        seccomp.install(seccomp.NO_FORK)  # the user's own processes already use up the limit
    _real_setrlimit(res, limits)


def resident_bytes(pid: int) -> int | None:
    """The resident size of a process, from /proc (what proc_pid_rusage gives on macOS)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return None


def main() -> None:
    resource.setrlimit = macos_setrlimit
    try:
        from sdzero_mlx.platform import macos_sandbox
    except ImportError:
        macos_sandbox = None  # a commit before the macOS sandbox existed: only the facts and setrlimit apply
    if macos_sandbox is not None:
        missing = os.environ.get("SDZERO_SIM_NO_SANDBOX_EXEC") == "1"
        macos_sandbox.SANDBOX_EXEC = str(SHIMS / ("no-sandbox-exec" if missing else "sandbox-exec"))
        macos_sandbox.XCODE_SELECT = str(SHIMS / "xcode-select")
        macos_sandbox.XCRUN = str(SHIMS / "xcrun")
        macos_sandbox.resident_bytes = resident_bytes
    from sdzero_mlx.verifier import code_worker

    with simulated(system="darwin", machine="arm64", euid=501):
        code_worker.main()


if __name__ == "__main__":
    main()

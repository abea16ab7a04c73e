"""A code worker on a Linux that forbids namespaces, for tests: `python -m no_namespaces` (tests/ on
PYTHONPATH) installs a seccomp filter answering unshare() with EPERM, as a container's default seccomp
profile does, then runs the real code worker. With SDZERO_SIM_USERNS_ONLY=1 only new user namespaces
are refused (a root whose runs cannot have their own). Used by tests/test_sandbox_refusal.py."""

from __future__ import annotations

import errno
import os

import seccomp

if __name__ == "__main__":
    only = seccomp.CLONE_NEWUSER if os.environ.get("SDZERO_SIM_USERNS_ONLY") == "1" else 0
    seccomp.install({"unshare": (errno.EPERM, 0, only)})
    from sdzero_mlx.verifier import code_worker

    code_worker.main()

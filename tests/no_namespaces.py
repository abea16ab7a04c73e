"""A code worker on a Linux that forbids namespaces, for tests: `python -m no_namespaces` (tests/ on
PYTHONPATH) installs a seccomp filter answering unshare() with EPERM, as a container's default seccomp
profile does, then runs the real code worker. Used by tests/test_sandbox_refusal.py."""

from __future__ import annotations

import errno

import seccomp

if __name__ == "__main__":
    seccomp.install({"unshare": errno.EPERM})
    from sdzero_mlx.verifier import code_worker

    code_worker.main()

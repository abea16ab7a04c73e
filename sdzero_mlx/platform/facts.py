"""The facts about the machine that change what sdzero does, asked in one place a test can set.

Code that behaves differently on macOS and Linux, as root or as a normal user, asks `facts()`
instead of reading `sys.platform`, `os.geteuid()` or `platform.machine()` itself. Tests simulate a
platform this project's CI does not have (a Mac, an unprivileged user) with `simulated(...)`:

    with simulated(system="darwin", machine="arm64", euid=501):
        ...  # every `facts()` inside answers as a Mac would

Only the answers change: a simulation does not make Linux refuse what macOS refuses; tests that need
that patch the call itself (e.g. `resource.setrlimit`) next to the simulation.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
from dataclasses import dataclass, replace
from typing import Iterator, Optional


@dataclass(frozen=True)
class PlatformFacts:
    system: str  # "linux", "darwin" (macOS), or sys.platform as it is elsewhere
    machine: str  # "x86_64", "arm64", "aarch64", ... (platform.machine())
    euid: int  # the effective user id; 0 is root
    python: tuple[int, int]  # (major, minor) of the running interpreter
    kernel: tuple[int, int] = (0, 0)  # Linux's (major, minor) release; (0, 0) on other systems

    @property
    def macos(self) -> bool:
        return self.system == "darwin"

    @property
    def linux(self) -> bool:
        return self.system == "linux"

    @property
    def root(self) -> bool:
        return self.euid == 0

    @property
    def nproc_per_user_namespace(self) -> bool:
        """RLIMIT_NPROC counts a process per (user namespace, user) since Linux 5.14, so a limit set in
        a fresh user namespace counts only what runs there; before, it counted all of the user's."""
        return self.linux and self.kernel >= (5, 14)


def _system() -> str:
    return "linux" if sys.platform.startswith("linux") else sys.platform


def _kernel(system: str) -> tuple[int, int]:
    if system != "linux":
        return (0, 0)
    parts = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(parts[1]), int(parts[2])) if parts else (0, 0)


def _real() -> PlatformFacts:
    system = _system()
    return PlatformFacts(system=system, machine=platform.machine(), euid=os.geteuid() if hasattr(os, "geteuid") else -1,
                         python=tuple(sys.version_info[:2]), kernel=_kernel(system))


_override: Optional[PlatformFacts] = None


def facts() -> PlatformFacts:
    """This machine's facts, or the simulated ones inside `simulated(...)`."""
    return _override if _override is not None else _real()


@contextlib.contextmanager
def simulated(**changes) -> Iterator[PlatformFacts]:
    """Answer `facts()` with these fields changed while the block runs (tests)."""
    global _override
    before = _override
    _override = replace(facts(), **changes)
    try:
        yield _override
    finally:
        _override = before

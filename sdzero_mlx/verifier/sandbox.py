"""Run one untrusted program under limits: the code reward's sandbox (used inside a code worker only).

It guards against accidents and runaway code (infinite loops, fork bombs, huge allocations, stray
writes, floods of output, reading the user's secrets, reaching the network), not against a
determined attacker: for untrusted data use a VM or a container sandbox (gVisor, firejail, nsjail)
around the whole trainer. See docs/code.md.

The isolation is chosen once per worker by `enter_worker_sandbox()` (`Isolation.kind`):

* "root namespaces" (Linux as root) and "user namespaces" (Linux as a normal user, where the kernel
  allows unprivileged user namespaces): platform/linux_sandbox.py. The filesystem is read-only but
  for the job folder, every home is masked, there is no network; each run is PID 1 of its own PID
  namespace with its own /proc, as uid 65534, and whatever it leaves behind dies with it.
* "sandbox-exec" (macOS): platform/macos_sandbox.py. Each run under a deny-default profile generated
  from the real paths: reads only Python, the system libraries and its job folder, writes only its
  working folder, no network, no fork. macOS refuses RLIMIT_AS: memory is bounded by polling.
* "none": neither exists (user namespaces forbidden, a container without CAP_SYS_ADMIN, a Mac without
  sandbox-exec): rlimits only, and the uid drop as root. Code rewards refuse it unless the recipe
  sets verifier.allow_unisolated_code (the code worker checks).

In all, every run has: a new session and process group (killed with SIGKILL on timeout), a cleared
environment, rlimits on CPU time, file size, open files and core dumps, on the address space where
the OS allows it (elsewhere the resident size is polled), and on processes where RLIMIT_NPROC counts
the run alone (its own user namespace) or uid 65534, a wall-clock limit, and stdout/stderr read
through a cap. The worker is single-threaded, which is what makes `preexec_fn` (Python code between
fork and exec) safe here.
"""

from __future__ import annotations

import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from ..platform import linux_sandbox, macos_sandbox
from ..platform.facts import facts

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
NAMESPACES = ("root namespaces", "user namespaces")
_RLIMIT_NAMES = {getattr(resource, n): n for n in ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_AS", "RLIMIT_NPROC")}
MEMORY_POLL_S = 0.01  # how often the resident size is read where RLIMIT_AS cannot be set


@dataclass(frozen=True)
class Limits:
    """What one run may use; exceeding any of them ends the run with reward 0."""

    wall_s: float = 2.0
    cpu_s: float = 2.0
    memory_mb: int = 1024  # address space (RLIMIT_AS); on macOS the resident size, polled
    file_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    open_files: int = 64
    processes: int = 64  # RLIMIT_NPROC, where it counts the run's processes alone (Isolation.limit_processes)
    output_bytes: int = 1 << 20  # stdout beyond this ends the run; stderr beyond it is dropped


@dataclass(frozen=True)
class Compiler:
    """The C++ compiler command and what a sandbox-exec profile must let it reach."""

    argv: tuple[str, ...]  # e.g. ("g++",), or Apple's clang++ with -isysroot SDK
    toolchain: macos_sandbox.Toolchain | None = None  # macOS: the developer folder the compile profile opens
    bits_header: bool = False  # the job brings its own <bits/stdc++.h> (Apple's libc++ has none)


@dataclass(frozen=True)
class Isolation:
    """What this worker enforces beyond rlimits, decided once at its start."""

    kind: str  # "root namespaces", "user namespaces", "sandbox-exec" or "none"
    run_uid: int | None = None  # root: the uid runs drop to (65534)
    run_user_namespace: bool = False  # Linux: each run in its own user namespace, where RLIMIT_NPROC counts it alone
    limit_address_space: bool = True  # RLIMIT_AS (macOS refuses it: the resident size is polled instead)
    limit_processes: bool = True  # RLIMIT_NPROC, set only where it does not count the user's own processes
    python: macos_sandbox.PythonPaths | None = None  # sandbox-exec: the interpreter its profiles open
    note: str = ""  # "none": why there is no isolation

    def describe(self) -> str:
        """One line: which isolation, and what it means for a program."""
        per_run = self.run_user_namespace and facts().nproc_per_user_namespace
        processes = ("processes counted per run" if self.limit_processes and per_run else
                     f"processes counted over uid {self.run_uid}" if self.limit_processes else
                     "processes not limited (RLIMIT_NPROC would count the user's own; Linux < 5.14)")
        if self.kind == "root namespaces":
            return (f"Linux namespaces as root: read-only filesystem but the job folder, homes masked, no network, "
                    f"each run PID 1 of its own PID namespace as uid {self.run_uid}, {processes}, rlimits")
        if self.kind == "user namespaces":
            return ("Linux user namespaces: read-only filesystem but the job folder, homes masked, no network, "
                    f"each run PID 1 of its own PID namespace as uid 65534 there, {processes}, rlimits")
        if self.kind == "sandbox-exec":
            return ("macOS sandbox-exec profile (deny default): reads only Python, the system libraries and the job "
                    "folder, writes only the job folder, no network, no fork; memory by resident size; rlimits")
        drop = f", uid {self.run_uid}" if self.run_uid is not None else ", as root" if facts().root else ""
        return (f"NONE, rlimits only{drop} (verifier.allow_unisolated_code): programs can read what you can, write "
                f"where you can and reach the network; {self.note}")


@dataclass(frozen=True)
class RunResult:
    returncode: int | None  # exit status, or None when killed by a signal
    signal: int | None  # the signal that ended it, if any
    stdout: bytes
    stderr: bytes  # the first Limits.output_bytes of it
    timed_out: bool
    output_capped: bool
    memory_exceeded: bool = False  # killed for its resident size (where RLIMIT_AS cannot be set)


# -- worker set-up ---------------------------------------------------------------------------

# Resolved at import, before the worker masks /tmp: a virtual environment under /tmp (a CI checkout)
# links to the base install, and once /tmp is a fresh tmpfs that link can no longer be followed.
_BASE_PYTHON = os.path.realpath(sys.executable)


def sandbox_python() -> str:
    """The interpreter that runs Python answers: the base install behind this one, started with -I -S
    (isolated, no site-packages: the standard library only, and a third of the start-up time)."""
    return _BASE_PYTHON


def _scratch() -> str:
    return os.path.realpath(tempfile.mkdtemp(prefix="sdzero-code-"))  # macOS: /private/var/folders/...


def enter_worker_sandbox(scratch_mb: int) -> tuple[Isolation, str]:
    """Isolate this (worker) process as far as the OS allows; returns it and the scratch root.

    Raises OSError when a step fails after the isolation was found available: a worker half set up
    must not run anything (the pool then reports the error).
    """
    f = facts()
    if f.macos:
        if not os.path.exists(macos_sandbox.SANDBOX_EXEC):
            return Isolation("none", limit_address_space=False, limit_processes=False,
                             note=f"{macos_sandbox.SANDBOX_EXEC} is missing"), _scratch()
        python = macos_sandbox.python_paths(sandbox_python())
        return Isolation("sandbox-exec", limit_address_space=False, limit_processes=False, python=python), _scratch()
    if not f.linux:
        return Isolation("none", run_uid=linux_sandbox.RUN_UID if f.root else None, limit_processes=f.root,
                         note=f"no sandbox for {f.system}"), _scratch()
    why = linux_sandbox.worker_namespaces_unavailable(as_root=f.root)
    if why is not None and f.root:  # e.g. a default Docker container: no CAP_SYS_ADMIN
        closed = linux_sandbox.hidden_ancestor(sandbox_python())
        if closed is None:
            return Isolation("none", run_uid=linux_sandbox.RUN_UID, note=why), _scratch()
        # uid 65534 could not even start Python (pyenv in /root): the programs keep root's uid
        return Isolation("none", limit_processes=False, note=f"{why}; unisolated programs would keep root's uid, since "
                         f"uid 65534 cannot enter {closed} to reach Python"), _scratch()
    if why is not None:
        return Isolation("none", limit_processes=False, note=why), _scratch()
    if f.root:
        run_userns = linux_sandbox.run_user_namespaces_unavailable() is None
        linux_sandbox.enter_worker(scratch_mb, as_root=True)
        return Isolation("root namespaces", run_uid=linux_sandbox.RUN_UID, run_user_namespace=run_userns), "/tmp"
    linux_sandbox.enter_worker(scratch_mb, as_root=False)
    return Isolation("user namespaces", run_user_namespace=True, limit_processes=f.nproc_per_user_namespace), "/tmp"


def make_job_dir(root: str, isolation: Isolation, n: int) -> tuple[str, str]:
    """(job, work): `job` holds the read-only sources, `work` is the run's writable current folder."""
    job = os.path.join(root, f"job{n}")
    os.mkdir(job, 0o755)
    work = os.path.join(job, "w")
    os.mkdir(work, 0o700)
    if isolation.run_uid is not None:
        os.chown(work, isolation.run_uid, linux_sandbox.RUN_GID)
    return job, work


# -- one run ---------------------------------------------------------------------------------

def _child(limits: Limits, isolation: Isolation) -> None:
    """Between fork and exec, in the new session: namespaces, rlimits, uid drop."""
    namespaces = isolation.kind in NAMESPACES
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if namespaces:  # returns in PID 1 of the run's PID namespace
        drop_first = isolation.run_uid is not None and isolation.run_user_namespace
        linux_sandbox.enter_run(isolation.run_user_namespace, drop_first=drop_first)
    cpu = max(1, int(limits.cpu_s + 0.999))
    mb = 1024 * 1024
    rlimits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_FSIZE, (limits.file_mb * mb,) * 2),
               (resource.RLIMIT_NOFILE, (limits.open_files,) * 2)]
    if isolation.limit_address_space:
        rlimits.append((resource.RLIMIT_AS, (limits.memory_mb * mb,) * 2))
    if isolation.limit_processes:
        rlimits.append((resource.RLIMIT_NPROC, (limits.processes,) * 2))
    for res, value in rlimits:
        try:
            resource.setrlimit(res, value)
        except (ValueError, OSError) as e:  # name the limit the OS refused
            raise type(e)(f"setrlimit({_RLIMIT_NAMES.get(res, res)}, {value[0]}) refused: {e}") from None
    if isolation.run_uid is not None and not (namespaces and isolation.run_user_namespace):
        linux_sandbox.drop_to_run_uid()
    if namespaces:
        linux_sandbox.die_with_parent()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _start(argv: list[str], cwd: str, env: dict, limits: Limits, isolation: Isolation) -> subprocess.Popen:
    """Popen with _child between fork and exec; SubprocessError naming what failed there (Popen alone says
    only "Exception occurred in preexec_fn")."""
    said_r, said_w = os.pipe()  # close-on-exec: the program never holds it

    def preexec() -> None:
        try:
            _child(limits, isolation)
        except BaseException as e:
            os.write(said_w, f"{type(e).__name__}: {e}".encode("utf-8", "replace")[:2000])
            raise

    try:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                env=env, start_new_session=True, close_fds=True, preexec_fn=preexec)
    except subprocess.SubprocessError as err:
        os.close(said_w)
        said_w = -1
        said = os.read(said_r, 4096).decode("utf-8", "replace")
        raise subprocess.SubprocessError(f"{err} {said}".strip()) from None
    finally:
        for fd in (said_r, said_w):
            if fd >= 0:
                os.close(fd)


def _profiled(argv: list[str], cwd: str, isolation: Isolation, compiler: Compiler | None) -> list[str]:
    """argv under the sandbox-exec profile of what it is: the compiler, Python, or a compiled program."""
    job = os.path.dirname(cwd)
    if compiler is not None:
        allowed = macos_sandbox.compile_run(compiler.toolchain, job, cwd)
    elif argv[0] == sandbox_python():
        allowed = macos_sandbox.python_run(isolation.python, job, cwd)
    else:
        allowed = macos_sandbox.program_run(argv[0], job, cwd)
    return macos_sandbox.sandboxed(argv, allowed)


def run(argv: list[str], stdin: bytes, cwd: str, limits: Limits, isolation: Isolation,
        compiler: Compiler | None = None) -> RunResult:
    """Run argv under the limits, feeding stdin; never returns later than wall_s plus a moment.
    `compiler` marks a compile (macOS opens the toolchain to it, and lets it fork)."""
    start = time.monotonic()
    env = dict(ENV, HOME=cwd, TMPDIR=cwd)
    if isolation.kind == "sandbox-exec":
        argv = _profiled(argv, cwd, isolation, compiler if compiler is not None and compiler.toolchain else None)
    poll_memory = not isolation.limit_address_space
    proc = _start(argv, cwd, env, limits, isolation)
    deadline = start + limits.wall_s
    out, err = bytearray(), bytearray()
    timed_out = capped = memory_exceeded = False
    sel = selectors.DefaultSelector()
    pidfd = None
    if hasattr(os, "pidfd_open"):
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    for pipe in (proc.stdout, proc.stderr):
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ, "out")

    def read_output(key) -> bool:
        """Read what one output pipe holds into its buffer, up to the cap; True when stdout passed the cap."""
        chunk = os.read(key.fd, 1 << 16)
        if not chunk:
            sel.unregister(key.fileobj)
            return False
        buf = out if key.fileobj is proc.stdout else err
        room = limits.output_bytes - len(buf)
        buf += chunk[:max(room, 0)]
        return key.fileobj is proc.stdout and len(chunk) > room

    pending = memoryview(stdin)
    if pending:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
    else:
        proc.stdin.close()
    try:
        exited = False
        while not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            # without a pidfd (macOS) the exit is noticed by polling, and so is the resident size
            events = sel.select(remaining if pidfd is not None and not poll_memory else min(remaining, MEMORY_POLL_S))
            for key, _ in events:
                if key.data == "exit":
                    exited = True
                elif key.data == "in":
                    try:
                        pending = pending[os.write(key.fd, pending[: 1 << 16]):]
                    except (BrokenPipeError, OSError):
                        pending = pending[:0]  # it stopped reading: fine, it gets EOF
                    if not pending:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                elif read_output(key):
                    capped = True
            if capped:
                break
            if poll_memory and (macos_sandbox.resident_bytes(proc.pid) or 0) > limits.memory_mb << 20:
                memory_exceeded = True
                break
            if pidfd is None and proc.poll() is not None:
                exited = True
    finally:
        # whatever happened, nothing of the run survives it
        _kill_group(proc.pid)
        proc.wait()
        # read what the (now dead) group left in the pipes, bounded in size and time
        drain_until = time.monotonic() + 0.5
        while not capped and sel.get_map() and time.monotonic() < drain_until:
            keys = [k for k in sel.get_map().values() if k.data == "out"]
            if not keys:
                break
            for key, _ in sel.select(max(drain_until - time.monotonic(), 0)):
                if key.data == "out" and read_output(key):
                    capped = True
        sel.close()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if not f.closed:
                f.close()
        if pidfd is not None:
            os.close(pidfd)
    code = proc.returncode
    return RunResult(code if code >= 0 else None, -code if code < 0 else None, bytes(out), bytes(err), timed_out, capped,
                     memory_exceeded)

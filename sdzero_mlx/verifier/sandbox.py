"""Run one untrusted program under limits: the code reward's sandbox (used inside a code worker only).

It guards against accidents and runaway code (infinite loops, fork bombs, huge allocations, stray
writes, floods of output), not against a determined attacker: for untrusted data use a VM or a
container sandbox (gVisor, firejail, nsjail) around the whole trainer. See docs/code.md.

Two levels, chosen once per worker by `enter_worker_sandbox()`:

* Linux as root (CI, most containers, this project's machines): the worker moves into its own
  mount, network, IPC and UTS namespaces. Every mount it sees is remounted read-only and nosuid,
  except a small tmpfs on /tmp that holds the job folders; a directory that hides the Python
  install from other users (pyenv under /root) is masked by an empty tmpfs with only the install
  bound back in. The network namespace has no interface up, not even loopback. Each run then gets
  a new PID namespace (it is PID 1 there; when it ends the kernel kills whatever it left behind)
  and drops to an unprivileged uid (nobody, 65534) so that RLIMIT_NPROC binds and root-only files
  stay unreadable.
* Elsewhere (macOS, Linux as a user, a container without CAP_SYS_ADMIN): rlimits, a new session,
  a private temporary folder, a cleared environment and the uid drop when root. Files the user
  can read stay readable, the network is reachable and a child that calls setsid() escapes the
  group kill: `Isolation.describe()` says so.

In both, every run has: a new session and process group (killed with SIGKILL on timeout), a cleared
environment, rlimits on CPU time, address space, file size, open files, processes and core
dumps, a wall-clock limit, and stdout/stderr read through a cap. The worker is single-threaded,
which is what makes `preexec_fn` (Python code between fork and exec) safe here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import selectors
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

SANDBOX_UID = SANDBOX_GID = 65534  # nobody / nogroup
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}

# <sched.h> / <sys/mount.h> / <sys/prctl.h>
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """What one run may use; exceeding any of them ends the run with reward 0."""

    wall_s: float = 2.0
    cpu_s: float = 2.0
    memory_mb: int = 1024  # address space (RLIMIT_AS)
    file_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    open_files: int = 64
    processes: int = 64  # per uid (RLIMIT_NPROC); binds only when not root, hence the uid drop
    output_bytes: int = 1 << 20  # stdout beyond this ends the run; stderr beyond it is dropped


@dataclass(frozen=True)
class Isolation:
    """What this worker enforces beyond rlimits, decided once at its start."""

    namespaces: bool  # mount (read-only view), network and per-run PID namespaces
    uid: int | None  # the uid runs drop to (None: they keep the worker's)

    def describe(self) -> str:
        if self.namespaces:
            return (f"namespaces (read-only filesystem but the job folder, no network, own PID namespace), uid {self.uid}, "
                    "rlimits")
        drop = f"uid {self.uid}" if self.uid is not None else "the caller's uid (files it can read are readable)"
        return f"rlimits and {drop} only: network reachable, no read-only filesystem, setsid() escapes the group kill"


@dataclass(frozen=True)
class RunResult:
    returncode: int | None  # exit status, or None when killed by a signal
    signal: int | None  # the signal that ended it, if any
    stdout: bytes
    stderr: bytes  # the first Limits.output_bytes of it
    timed_out: bool
    output_capped: bool


# -- worker set-up ---------------------------------------------------------------------------

_libc = None


def _c(name: str, *args) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _c("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, parents before children."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")  # \040 is a space
            out.append((point, set(parts[5].split(","))))
    return out


def _hidden_ancestor(path: str) -> str | None:
    """The highest directory above `path` that other users cannot enter (e.g. /root), if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return d
    return None


# Resolved at import, before the worker masks /tmp: a virtual environment under /tmp (a CI checkout)
# links to the base install, and once /tmp is a fresh tmpfs that link can no longer be followed.
_BASE_PYTHON = os.path.realpath(sys.executable)


def sandbox_python() -> str:
    """The interpreter that runs Python answers: the base install behind this one, started with -I -S
    (isolated, no site-packages: the standard library only, and a third of the start-up time)."""
    return _BASE_PYTHON


def enter_worker_sandbox(scratch_mb: int) -> tuple[Isolation, str]:
    """Isolate this (worker) process as far as the OS allows; returns it and the scratch root.

    Raises OSError when a step after the namespaces were entered fails: a worker half set up
    must not run anything (the pool then reports the error).
    """
    uid = SANDBOX_UID if os.geteuid() == 0 else None
    if sys.platform != "linux" or uid is None:
        import tempfile

        return Isolation(False, uid), tempfile.mkdtemp(prefix="sdzero-code-")
    try:
        _c("unshare", CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EINVAL, errno.ENOSYS):
            raise
        import tempfile  # no CAP_SYS_ADMIN (a default Docker container): rlimits and the uid drop only

        return Isolation(False, uid), tempfile.mkdtemp(prefix="sdzero-code-")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    _mount("sdzero", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,mode=755")
    prefix = os.path.realpath(sys.base_prefix)
    hidden = _hidden_ancestor(prefix)
    if hidden is not None:
        # uid nobody cannot reach the interpreter (pyenv in /root): mask the folder, bind the install back
        stage = "/tmp/.python"
        os.mkdir(stage)
        _mount(prefix, stage, None, MS_BIND | MS_REC)
        _mount("sdzero", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        os.makedirs(prefix)
        _mount(stage, prefix, None, MS_MOVE)
        os.rmdir(stage)
    for point, opts in _mounts():
        if point == "/tmp" or "ro" in opts:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        flags |= (MS_NODEV if "nodev" in opts else 0) | (MS_NOEXEC if "noexec" in opts else 0)
        _mount(None, point, None, flags)
    return Isolation(True, uid), "/tmp"


def make_job_dir(root: str, isolation: Isolation, n: int) -> tuple[str, str]:
    """(job, work): `job` holds the read-only sources, `work` is the run's writable current folder."""
    job = os.path.join(root, f"job{n}")
    os.mkdir(job, 0o755)
    work = os.path.join(job, "w")
    os.mkdir(work, 0o700)
    if isolation.uid is not None:
        os.chown(work, isolation.uid, SANDBOX_GID)
    return job, work


# -- one run ---------------------------------------------------------------------------------

def _child(limits: Limits, isolation: Isolation) -> None:
    """Between fork and exec, in the new session: PID namespace, rlimits, uid drop."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if isolation.namespaces:
        _c("unshare", CLONE_NEWPID)
        pid = os.fork()
        if pid:
            # the waiting middle: holds no pipe, mirrors the program's end so the worker sees it
            os.closerange(0, 1 << 16)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
    cpu = max(1, int(limits.cpu_s + 0.999))
    mb = 1024 * 1024
    for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (limits.memory_mb * mb,) * 2),
                       (resource.RLIMIT_FSIZE, (limits.file_mb * mb,) * 2),
                       (resource.RLIMIT_NOFILE, (limits.open_files,) * 2), (resource.RLIMIT_NPROC, (limits.processes,) * 2)):
        resource.setrlimit(res, value)
    if isolation.uid is not None:
        os.setgroups([])
        os.setgid(SANDBOX_GID)
        os.setuid(isolation.uid)
    if isolation.namespaces:
        _c("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the middle killed -> PID 1 killed -> all killed


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(argv: list[str], stdin: bytes, cwd: str, limits: Limits, isolation: Isolation) -> RunResult:
    """Run argv under the limits, feeding stdin; never returns later than wall_s plus a moment."""
    start = time.monotonic()
    env = dict(ENV, HOME=cwd, TMPDIR=cwd)
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
        start_new_session=True, close_fds=True, preexec_fn=lambda: _child(limits, isolation),
    )
    deadline = start + limits.wall_s
    out, err = bytearray(), bytearray()
    timed_out = capped = False
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
            # without a pidfd (macOS) the exit is noticed by polling
            events = sel.select(remaining if pidfd is not None else min(remaining, 0.01))
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
    return RunResult(code if code >= 0 else None, -code if code < 0 else None, bytes(out), bytes(err), timed_out, capped)

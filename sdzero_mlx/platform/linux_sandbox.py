"""Linux namespaces for the code sandbox, as root and as a normal user (verifier/sandbox.py chooses).

The worker, once at its start (`enter_worker`):
  as root    it unshares the mount, network, IPC and UTS namespaces;
  as a user  the same inside a new user namespace that maps the user to root there: no privilege
             outside it (files stay the user's, with the user's permissions), but it may mount;
  then       / becomes private, /tmp a small tmpfs for the job folders, every home (/home, /root and
             $HOME wherever it is), /run/user, /var/tmp and /dev/shm an empty tmpfs, with the Python
             install bound back where it lies under one of them, and every other mount is remounted
             read-only and nosuid. The network namespace has no interface up, not even loopback.
Each run, between fork and exec (`enter_run`):
  a new mount and PID namespace and, where the kernel lets an unprivileged uid create one, a new user
  namespace entered as the run's uid (65534 for root, the user otherwise) and mapped to uid 65534
  inside, so the program holds no capability after exec and cannot undo a mask (the masks came from
  a more privileged namespace: the kernel locks them). A middle process waits outside while the run
  is PID 1 inside, with its own /proc (nothing else is visible); when PID 1 ends the kernel kills the
  rest. RLIMIT_NPROC set in that fresh user namespace counts the run's processes only (Linux >= 5.14).
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import signal
import stat
import sys

from .facts import facts

# <sched.h> / <sys/mount.h> / <sys/prctl.h>
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x04000000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME, MS_NODIRATIME = 1, 2, 4, 8, 1024, 2048
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 32, 4096, 16384, 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
RUN_UID = RUN_GID = 65534  # nobody / nogroup: root's runs drop to it; every run is it inside its namespace
# never masked, whatever $HOME says (a service account's home may be /, /var or /nonexistent)
SYSTEM_DIRS = frozenset({"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev", "/tmp", "/var",
                         "/opt", "/run", "/srv", "/mnt", "/media"})

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


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _map_self(inside: int) -> None:
    """Map this process's uid and gid (as its parent namespace sees them) to `inside` in its new user
    namespace: the one mapping an unprivileged process may write, after giving up setgroups."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside} {_outer[0]} 1")
    _write("/proc/self/gid_map", f"{inside} {_outer[1]} 1")


_outer = (0, 0)  # (euid, egid) before the last unshare(CLONE_NEWUSER): getuid() answers 65534 after it


def _unshare(flags: int) -> None:
    global _outer
    if flags & CLONE_NEWUSER:
        _outer = (os.geteuid(), os.getegid())
    _c("unshare", flags)


def drop_to_run_uid() -> None:
    """Root only: become uid/gid 65534 with no groups (and stay dumpable, so /proc/self stays ours)."""
    os.setgroups([])
    os.setgid(RUN_GID)
    os.setuid(RUN_UID)
    _c("prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)


# -- is it allowed here? -------------------------------------------------------------------------

def _sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as f:
            return f.read().strip()
    except OSError:
        return None


def _why(said: str, err: int, as_root: bool) -> str:
    """A failed step in words, with the setting that forbids it where one is set."""
    said = f"{said} ({errno.errorcode.get(err, err)})"
    if as_root:
        if err in (errno.EPERM, errno.EACCES):
            return f"{said}: no CAP_SYS_ADMIN, or a container's seccomp or AppArmor profile forbids it"
        return said
    if _sysctl("kernel.unprivileged_userns_clone") == "0":
        return f"{said}: kernel.unprivileged_userns_clone is 0 (sudo sysctl -w kernel.unprivileged_userns_clone=1 allows them)"
    if _sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return (f"{said}: AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, "
                "Ubuntu 23.10+); an AppArmor profile with `userns,` for this Python, or that sysctl set to 0, allows them")
    if _sysctl("user.max_user_namespaces") == "0":
        return f"{said}: user.max_user_namespaces is 0 (sudo sysctl -w user.max_user_namespaces=10000 allows them)"
    if err in (errno.EINVAL, errno.ENOSYS):
        return f"{said}: this kernel has no user namespaces (CONFIG_USER_NS, Linux >= 3.8)"
    if err in (errno.EPERM, errno.EACCES):
        return f"{said}: a seccomp filter (a container's default profile) or a security module forbids it"
    return said


def _probe(steps, as_root: bool) -> str | None:
    """Run `steps` in a throw-away child (its namespaces die with it): None if they worked, else why not."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # callers: the single-threaded code worker, and tests (a child that makes a few calls and exits)
        os.close(read)
        code = 0
        try:
            steps()
        except OSError as e:
            os.write(write, f"{e.errno}\t{e.strerror or e}".encode("utf-8", "replace")[:2000])
            code = 1
        except BaseException:  # noqa: BLE001 - the probe child must never return into the caller's code
            code = 2
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    if not said:
        return f"the namespace probe died (wait status {status})"
    err, text = said.split("\t", 1)
    return _why(text, int(err), as_root)


def worker_namespaces_unavailable(as_root: bool) -> str | None:
    """Why a code worker cannot isolate itself here (None: it can): its whole set-up, tried in a child.
    As a user this includes a run's own user namespace inside the worker's."""
    if not facts().linux:
        return "not Linux"

    def steps() -> None:
        enter_worker(1, as_root)
        if not as_root:
            _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)
            _map_self(RUN_UID)

    return _probe(steps, as_root)


def run_user_namespaces_unavailable() -> str | None:
    """Root: why uid 65534 cannot create each run's user namespace (None: it can)."""
    def steps() -> None:
        drop_to_run_uid()
        _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)
        _map_self(RUN_UID)

    return _probe(steps, as_root=False)


# -- the worker --------------------------------------------------------------------------------------

def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, parents before children."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")  # \040 is a space
            out.append((point, set(parts[5].split(","))))
    return out


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def masked_folders() -> list[str]:
    """The folders a run sees empty: every home (this user's wherever it is), the user's runtime folder
    (its agent sockets), and the shared scratch folders. Real paths, existing, outermost only."""
    homes = ["/home", "/root", os.environ.get("HOME") or "", pwd.getpwuid(os.getuid()).pw_dir]
    found: list[str] = []
    for p in homes + ["/run/user", "/var/tmp", "/dev/shm"]:
        real = os.path.realpath(p) if os.path.isabs(p) else ""
        if real and real not in SYSTEM_DIRS and os.path.isdir(real) and real not in found:
            found.append(real)
    return [p for p in found if not any(q != p and _under(p, q) for q in found)]


def hidden_ancestor(path: str) -> str | None:
    """The highest folder above `path` that other users cannot enter (e.g. /root), if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        folder = "/" + "/".join(parts[:i])
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def kept_paths() -> list[str]:
    """What runs need from under a masked folder: the Python install (pyenv in /root, uv or conda in ~)."""
    exe = os.path.realpath(sys.executable)
    keep = [os.path.realpath(sys.base_prefix)]
    if not _under(exe, keep[0]):
        keep.append(os.path.dirname(exe))
    return keep


def _remount_readonly(point: str, opts: set[str]) -> None:
    # inside a user namespace the kernel keeps a mount's nodev / noexec / atime flags locked: repeat them
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
    flags |= (MS_NODEV if "nodev" in opts else 0) | (MS_NOEXEC if "noexec" in opts else 0)
    flags |= MS_NODIRATIME if "nodiratime" in opts else 0
    flags |= MS_NOATIME if "noatime" in opts else MS_RELATIME if "relatime" in opts else MS_STRICTATIME
    _mount(None, point, None, flags)


def enter_worker(scratch_mb: int, as_root: bool) -> None:
    """Isolate this (worker) process; /tmp is then its scratch tmpfs. Raises OSError on any failure (ask
    worker_namespaces_unavailable first): a worker half set up must not run anything."""
    masks, keep = masked_folders(), kept_paths()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | (0 if as_root else CLONE_NEWUSER)
    try:
        _unshare(flags)
    except OSError as e:
        raise OSError(e.errno, "unshare(CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS" + ("" if as_root else "|CLONE_NEWUSER")
                      + f") failed: {os.strerror(e.errno)}") from None
    if not as_root:
        _map_self(0)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    # opened now, in the new mount namespace and before the masks hide them: bound back from these below
    hidden = [p for p in keep if any(_under(p, m) for m in masks + ["/tmp"])]
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in hidden]
    try:
        _mount("sdzero", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,mode=755")
        for folder in masks:
            _mount("sdzero-masked", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        for path, fd in zip(hidden, fds):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    finally:
        for fd in fds:
            os.close(fd)
    for point, opts in _mounts():
        # /tmp holds the job folders; /proc stays writable for each run's uid map (its files check permissions)
        if point in ("/tmp", "/proc") or "ro" in opts:
            continue
        try:
            _remount_readonly(point, opts)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.ENOENT):
                raise
            # a mount this process cannot reach (under a folder the user may not enter, or now masked): nor can a run


# -- each run ----------------------------------------------------------------------------------------

def enter_run(own_user_namespace: bool, drop_first: bool) -> None:
    """Between fork and exec: the run's namespaces (see the module docstring). Returns in PID 1 of the
    new PID namespace; the process that called it stays outside, waits, and ends as the run does."""
    if drop_first:
        drop_to_run_uid()
    if own_user_namespace:
        _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)
        _map_self(RUN_UID)
    else:
        _unshare(CLONE_NEWNS | CLONE_NEWPID)
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
    try:  # its own /proc: the PIDs of this namespace only
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:  # a /proc partly covered (some containers) may not be mounted again: hide it instead
        _mount("sdzero-proc", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555")


def die_with_parent() -> None:
    """The middle killed -> PID 1 killed -> the kernel kills all of the run. Set after any uid change."""
    _c("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

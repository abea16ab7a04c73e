"""A seccomp filter for tests: the kernel answers chosen system calls with an error, as another
platform or a container would (no fork left under a process limit, unshare forbidden).

    install({"unshare": errno.EPERM})                       # a container's default seccomp profile
    install({"unshare": (errno.EPERM, 0, CLONE_NEWUSER)})   # ... or only user namespaces refused
    install(NO_FORK)                                        # RLIMIT_NPROC already spent: threads only

Inherited by children and kept across exec; it cannot be removed. Linux on x86-64 and aarch64 only
(`supported()`); the filter lets every call of another architecture through.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

CLONE_THREAD, CLONE_NEWUSER = 0x00010000, 0x10000000
# (audit arch, syscall numbers) from <asm/unistd.h>; aarch64 has no fork or vfork (libc uses clone)
_ARCH = {
    "x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "unshare": 272}),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435, "unshare": 97}),
}
# what a process gets when RLIMIT_NPROC is below its user's process count: EAGAIN from every fork, while
# threads (clone with CLONE_THREAD) still start; clone3 answers ENOSYS so that libc falls back to clone
NO_FORK = {"fork": errno.EAGAIN, "vfork": errno.EAGAIN, "clone": (errno.EAGAIN, CLONE_THREAD), "clone3": errno.ENOSYS}

_LD_W_ABS, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def supported() -> bool:
    return platform.system() == "Linux" and platform.machine() in _ARCH


def _program(rules: dict) -> list[tuple[int, int, int, int]]:
    arch, numbers = _ARCH[platform.machine()]
    prog = [(_LD_W_ABS, 0, 0, 4), (_JEQ_K, 1, 0, arch), (_RET_K, 0, 0, _ALLOW), (_LD_W_ABS, 0, 0, 0)]
    for name, rule in rules.items():
        if name not in numbers:
            continue  # no such call on this architecture
        err, unless, only = (*rule, 0, 0)[:3] if isinstance(rule, tuple) else (rule, 0, 0)
        # flags: the low 32 bits of the first argument (clone's and unshare's flags)
        if unless:  # a flag that lets the call through
            body = [(_LD_W_ABS, 0, 0, 16), (_JSET_K, 1, 0, unless), (_RET_K, 0, 0, _ERRNO | err), (_RET_K, 0, 0, _ALLOW)]
        elif only:  # refused only with one of these flags
            body = [(_LD_W_ABS, 0, 0, 16), (_JSET_K, 0, 1, only), (_RET_K, 0, 0, _ERRNO | err), (_RET_K, 0, 0, _ALLOW)]
        else:
            body = [(_RET_K, 0, 0, _ERRNO | err)]
        prog += [(_JEQ_K, 0, len(body), numbers[name])] + body
    return prog + [(_RET_K, 0, 0, _ALLOW)]


def install(rules: dict) -> None:
    """Make each named call fail with its errno; (errno, unless, only): unless its first argument has one of the
    `unless` flags, or only when it has one of the `only` flags."""
    if not supported():
        raise OSError(errno.ENOSYS, f"tests/seccomp.py supports Linux on {sorted(_ARCH)}, not {platform.machine()}")
    prog = _program(rules)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    for args in ((PR_SET_NO_NEW_PRIVS, 1, None, 0, 0), (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0)):
        if libc.prctl(*args) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl{args[:2]}: {errno.errorcode.get(err, err)}")

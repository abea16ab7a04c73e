"""Use an optimised BLAS on Linux CPUs without the user doing anything.

The `mlx-cpu` wheel bundles the reference (netlib) BLAS: a float32 1024^3 matmul takes ~350 ms
on a laptop-class x86 core pair, ~11 ms with OpenBLAS, with the same results. MLX calls BLAS
through `cblas_*` symbols, and the dynamic linker resolves those from the global scope before
the wheel's private copy, so preloading OpenBLAS (`LD_PRELOAD`) is enough. The variable only
takes effect at process start, so the CLI re-executes itself once with it set. A process that cannot
restart (a notebook kernel) loads the same library into the global scope itself before importing mlx
(`load_fast_blas_here`), to the same effect.

User control, through `SDZERO_BLAS`:
    unset                      find OpenBLAS in the usual Debian/Ubuntu/Fedora/Arch places
    SDZERO_BLAS=/path/lib.so   preload that library instead (OpenBLAS, MKL's libmkl_rt, BLIS...)
    SDZERO_BLAS=none           keep mlx's bundled reference BLAS

Nothing here changes macOS (MLX uses Accelerate there) or a CUDA build (cuBLAS). Which system this is
comes from `facts()` (facts.py), so tests can ask these functions as a Mac would.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .facts import facts

ENV_VAR = "SDZERO_BLAS"
REEXEC_MARKER = "SDZERO_BLAS_REEXEC"  # set in the re-executed process: never re-exec twice
REFERENCE = "reference BLAS (bundled with mlx-cpu)"
_OPT_OUT = {"none", "off", "0", "false", "reference"}

# 32-bit-integer OpenBLAS builds only: ILP64 builds (libopenblas64*) use another ABI, and
# numpy's libscipy_openblas prefixes its symbols, so neither can serve MLX.
_OPENBLAS_NAME = re.compile(r"^libopenblas[po]?\.so(\.\d+)*$")
_BLAS_NAMES = (("openblas", "OpenBLAS"), ("mkl", "Intel MKL"), ("blis", "BLIS"), ("flexiblas", "FlexiBLAS"))


def _candidates() -> list[Path]:
    """Usual OpenBLAS locations, threaded builds first (the serial ones use one core)."""
    triplet = f"/usr/lib/{facts().machine}-linux-gnu"
    return [Path(p) for p in (
        f"{triplet}/openblas-pthread/libopenblas.so.0",  # Debian / Ubuntu libopenblas0-pthread
        f"{triplet}/openblas-openmp/libopenblas.so.0",
        f"{triplet}/libopenblas.so.0",  # Debian alternatives symlink
        "/usr/lib64/libopenblasp.so.0",  # Fedora / RHEL: p = pthreads, o = OpenMP
        "/usr/lib64/libopenblaso.so.0",
        "/usr/lib64/libopenblas.so.0",
        "/usr/lib/libopenblas.so.0",  # Arch
        "/usr/local/lib/libopenblas.so.0",  # built from source
        f"{triplet}/openblas-serial/libopenblas.so.0",
    )]


def _from_ldconfig() -> Path | None:
    """An OpenBLAS for this machine's architecture from the linker cache (`ldconfig -p`)."""
    machine = facts().machine
    arch_tag = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(machine, machine)
    for ldconfig in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in listing.splitlines():
            # e.g. "	libopenblas.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libopenblas.so.0"
            name, _, rest = line.strip().partition(" ")
            tags, _, path = rest.partition(" => ")
            if _OPENBLAS_NAME.match(name) and arch_tag in tags and Path(path).is_file():
                return Path(path)
        return None
    return None


def find_openblas() -> Path | None:
    """The BLAS library to preload: `$SDZERO_BLAS`, else an installed OpenBLAS, else None (also off Linux)."""
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice.lower() in _OPT_OUT:
        return None
    if choice:
        path = Path(choice).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{ENV_VAR}={choice} is not a file. Point it at a BLAS shared library such as "
                f"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0, or set {ENV_VAR}=none "
                "to keep mlx's bundled reference BLAS."
            )
        return path
    if not facts().linux:
        return None
    found = next((p for p in _candidates() if p.is_file()), None)
    return found or _from_ldconfig()


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _global_cblas_library() -> str | None:
    """Path of the library that provides `cblas_sgemm` in the global symbol scope, if any.

    That is the one MLX's matmuls bind to: the wheel's own copy is loaded privately
    (RTLD_LOCAL), so a global definition, from LD_PRELOAD for example, wins over it.
    """
    process = ctypes.CDLL(None)
    try:
        symbol = process.cblas_sgemm
    except AttributeError:
        return None
    info = _DlInfo()
    if not process.dladdr(ctypes.cast(symbol, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def _cuda_backend_installed() -> bool:
    """Whether an MLX CUDA backend wheel is installed; reads package metadata, does not import mlx."""
    for name in ("mlx-cuda-12", "mlx-cuda-13", "mlx-cuda"):
        try:
            metadata.version(name)
            return True
        except metadata.PackageNotFoundError:
            continue
    return False


def _describe(path: str) -> str:
    name = Path(path).name.lower()
    label = next((label for key, label in _BLAS_NAMES if key in name), "BLAS")
    return f"{label} ({path})"


def blas_in_use() -> str:
    """The BLAS serving MLX's CPU matmuls in this process, e.g. 'OpenBLAS (/usr/lib/.../libopenblas.so.0)'."""
    if facts().macos:
        return "Accelerate"
    if not facts().linux:
        return "unknown (only Linux and macOS are checked)"
    library = _global_cblas_library()
    cpu = _describe(library) if library else REFERENCE
    if _cuda_backend_installed():
        import mlx.core as mx

        if mx.cuda.is_available() and mx.default_device() == mx.gpu:
            return f"cuBLAS on the GPU; {cpu} for CPU operations"
    return cpu


def _restart_command(argv: list[str]) -> list[str] | None:
    """The interpreter command line that re-runs this program with `argv[1:]`, or None if unknown.

    `sys.orig_argv` keeps how Python was started (`python -m sdzero_mlx.cli`, a console script,
    `python -c ...`); re-running `python argv[0]` instead would break `-m` and `-c`.
    """
    original, args = list(sys.orig_argv), list(argv[1:])
    if not original or (args and original[-len(args):] != args):
        return None  # the program rewrote sys.argv: we cannot tell how to restart it
    return [sys.executable, *original[1:len(original) - len(args)], *args]


def reexec_with_fast_blas(argv: list[str] | None = None) -> None:
    """Re-execute this process with OpenBLAS preloaded when that would speed up MLX on a Linux CPU.

    Returns (and changes nothing) when: not Linux, already re-executed, a BLAS is already in the
    global scope, a CUDA backend is installed, `SDZERO_BLAS=none`, or no OpenBLAS is found.
    Otherwise it does not return. Call it first in `main()`, before importing mlx.
    """
    argv = sys.argv if argv is None else argv
    if not facts().linux or os.environ.get(REEXEC_MARKER):
        return
    if _global_cblas_library() is not None or _cuda_backend_installed():
        return
    library = find_openblas()
    if library is None or any(c in str(library) for c in " :"):  # LD_PRELOAD splits on both
        return
    command = _restart_command(argv)
    if command is None:
        return
    env = dict(os.environ, **{REEXEC_MARKER: "1"})
    env["LD_PRELOAD"] = ":".join(p for p in (str(library), os.environ.get("LD_PRELOAD", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def load_fast_blas_here() -> str:
    """Give MLX OpenBLAS in this running process (a notebook kernel, which LD_PRELOAD comes too late for).

    The library `reexec_with_fast_blas` would preload ($SDZERO_BLAS, else an installed OpenBLAS) is
    loaded into the global symbol scope (RTLD_GLOBAL), where MLX's `cblas_*` calls resolve, then given
    sdzero's thread count (threads.py). Call it before importing mlx; afterwards, or where nothing
    applies (not Linux, a BLAS already global, a CUDA backend, none found), it changes nothing.
    Returns `blas_in_use()`.
    """
    if (facts().linux and "mlx.core" not in sys.modules and _global_cblas_library() is None
            and not _cuda_backend_installed()):
        library = find_openblas()
        if library is not None:
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
            from .threads import apply_blas_threads

            apply_blas_threads()
    return blas_in_use()

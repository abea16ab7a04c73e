"""macOS for the code sandbox: deny-default `sandbox-exec` profiles generated from the real paths, the
Command Line Tools' clang++, and the resident size that stands in for RLIMIT_AS (which macOS refuses).

Never run on a Mac here: written from Apple's documented behaviour and tested as text on Linux
(tests/test_macos_profile.py) and through a simulated Mac (tests/simulated_mac.py).

A run's profile (`profile(python_run(...))` or `profile(program_run(...))`) denies everything it does
not name: no network rule at all; reads of the interpreter's prefix (for a framework build also the
Python.app binary it re-executes), the system libraries, dyld's shared cache and the job folder, by
its real path (/var/folders is /private/var/folders); writes to the run's working folder and
/dev/null only; exec of the interpreter (or the compiled program) only, and no fork. The compile
profile (`compile_run`) adds the developer folder (toolchain and SDK, from `xcode-select -p` and
`xcrun`) and fork, since clang++ starts the linker.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import sysconfig
from dataclasses import dataclass

SANDBOX_EXEC = "/usr/bin/sandbox-exec"
XCODE_SELECT = "/usr/bin/xcode-select"  # a real program, unlike /usr/bin/g++ and /usr/bin/xcrun: no install dialog
XCRUN = "/usr/bin/xcrun"

# the system libraries and dyld's shared cache (macOS 11-12: /System/Library/dyld; 13+: the OS cryptex;
# 10.15: /private/var/db/dyld); not /System as a whole: /System/Volumes/Data holds the users' homes
SYSTEM_READS = ("/usr/lib", "/System/Library", "/System/Volumes/Preboot/Cryptexes/OS", "/System/Cryptexes/OS",
                "/private/var/db/dyld", "/Library/Apple/usr/lib", "/Library/Apple/System/Library",
                "/usr/share/locale")  # the last for setlocale() under LANG=C.UTF-8
SYSTEM_CODE = ("/usr/lib", "/System/Library/Frameworks", "/System/Library/PrivateFrameworks",
               "/System/Volumes/Preboot/Cryptexes/OS", "/System/Cryptexes/OS", "/Library/Apple/usr/lib")
DEVICES_READ = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
SYMLINKED_ROOTS = ("/var", "/tmp", "/etc")  # -> /private/...: realpath() stats them
# hardware and OS facts libc and Python ask for; no kern.proc* or kern.procargs* (other processes' arguments)
SYSCTLS = ("hw.activecpu", "hw.byteorder", "hw.cachelinesize", "hw.cpufamily", "hw.cputype", "hw.l1dcachesize",
           "hw.l2cachesize", "hw.logicalcpu", "hw.logicalcpu_max", "hw.machine", "hw.memsize", "hw.model", "hw.ncpu",
           "hw.nperflevels", "hw.pagesize", "hw.physicalcpu", "hw.physicalcpu_max", "kern.argmax", "kern.osproductversion",
           "kern.osrelease", "kern.ostype", "kern.osvariant_status", "kern.osversion", "kern.secure_kernel",
           "kern.usrstack64", "kern.version", "sysctl.proc_cputype", "sysctl.proc_translated")
SYSCTL_PREFIXES = ("hw.optional.", "hw.perflevel")


@dataclass(frozen=True)
class Allowed:
    """What one profile allows beyond the system libraries (all real paths)."""

    executables: tuple[str, ...]  # each may be exec'd
    exec_folders: tuple[str, ...]  # anything under these may be exec'd (the compile's toolchain)
    reads: tuple[str, ...]  # folders readable with all below them
    code: tuple[str, ...]  # folders whose libraries may be mapped executable
    writes: tuple[str, ...]  # folders writable with all below them (besides /dev/null)
    fork: bool

    def __post_init__(self):
        if not self.executables:  # `(allow process-exec)` without a filter would allow every program
            raise ValueError("a sandbox profile needs the program it runs in Allowed.executables")


@dataclass(frozen=True)
class PythonPaths:
    prefix: str  # the interpreter's install (sys.base_prefix), real path
    executables: tuple[str, ...]  # the interpreter; for a framework build also the Python.app binary it re-executes


@dataclass(frozen=True)
class Toolchain:
    clang: str  # clang++ from `xcrun --find clang++`
    sdk: str  # `xcrun --show-sdk-path`
    developer_folder: str  # `xcode-select -p`: /Library/Developer/CommandLineTools or Xcode's Contents/Developer


def python_paths(executable: str | None = None, prefix: str | None = None, framework: str | None = None) -> PythonPaths:
    """The interpreter a Python answer runs on, as a profile must name it (defaults: this one)."""
    exe = os.path.realpath(executable or sys.executable)
    prefix = os.path.realpath(prefix or sys.base_prefix)
    framework = sysconfig.get_config_var("PYTHONFRAMEWORK") if framework is None else framework
    executables = [exe]
    if framework:  # python.org and Homebrew: bin/python3.x execs Resources/Python.app/Contents/MacOS/Python
        executables.append(os.path.join(prefix, "Resources", "Python.app", "Contents", "MacOS", framework))
    return PythonPaths(prefix, tuple(executables))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def python_run(python: PythonPaths, job: str, work: str) -> Allowed:
    """A Python answer: the interpreter, the job folder, no fork."""
    job, work = os.path.realpath(job), os.path.realpath(work)
    elsewhere = [os.path.dirname(e) for e in python.executables if not _inside(e, python.prefix)]
    reads = tuple(dict.fromkeys([python.prefix, *elsewhere, job]))
    return Allowed(python.executables, (), reads, (python.prefix,), (work,), fork=False)


def program_run(program: str, job: str, work: str) -> Allowed:
    """A compiled answer: the binary itself, the job folder, no fork."""
    job, work = os.path.realpath(job), os.path.realpath(work)
    return Allowed((os.path.realpath(program),), (), (job,), (), (work,), fork=False)


def compile_run(toolchain: Toolchain, job: str, work: str) -> Allowed:
    """clang++ on the answer: the developer folder (toolchain and SDK) to read and execute, fork for the linker."""
    job, work = os.path.realpath(job), os.path.realpath(work)
    dev, clang, sdk = (os.path.realpath(p) for p in (toolchain.developer_folder, toolchain.clang, toolchain.sdk))
    tools = (dev,) if _inside(clang, dev) else (dev, os.path.dirname(clang))
    reads = tuple(dict.fromkeys([*tools, *([] if _inside(sdk, dev) else [sdk]), job]))
    return Allowed((clang,), tools, reads, tools, (work,), fork=True)


def _q(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def profile(allowed: Allowed) -> str:
    """The SBPL text of one run's profile: deny by default, then exactly what `allowed` names."""
    sub = lambda paths: [f"(subpath {_q(p)})" for p in dict.fromkeys(paths)]  # noqa: E731
    lit = lambda paths: [f"(literal {_q(p)})" for p in dict.fromkeys(paths)]  # noqa: E731
    rule = lambda op, filters: f"(allow {op} {' '.join(filters)})"  # noqa: E731
    reads = [*allowed.reads, *SYSTEM_READS]
    walked = [a for p in (*reads, *allowed.writes, *allowed.executables) for a in _ancestors(p)]
    sysctls = [f"(sysctl-name {_q(n)})" for n in SYSCTLS] + [f"(sysctl-name-prefix {_q(n)})" for n in SYSCTL_PREFIXES]
    rules = [
        "(version 1)",
        "(deny default)",
        rule("file-read*", sub(reads) + lit(allowed.executables) + lit(DEVICES_READ)),
        rule("file-read-metadata", lit([*walked, *SYMLINKED_ROOTS, "/private"])),  # path walks and realpath()
        rule("file-map-executable", sub([*allowed.code, *SYSTEM_CODE])),
        rule("file-write*", sub(allowed.writes) + lit(["/dev/null"])),
        rule("process-exec", lit(allowed.executables) + sub(allowed.exec_folders)),
        *(["(allow process-fork)"] if allowed.fork else []),
        "(allow signal (target self))",
        "(allow process-info* (target self))",
        rule("sysctl-read", sysctls),
    ]
    return "\n".join(rules) + "\n"


def sandboxed(argv: list[str], allowed: Allowed) -> list[str]:
    """argv run under its profile."""
    return [SANDBOX_EXEC, "-p", profile(allowed), *argv]


# -- the C++ compiler --------------------------------------------------------------------------------

def _ask(argv: list[str]) -> tuple[int, str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return -1, str(err)
    return out.returncode, (out.stdout if out.returncode == 0 else out.stderr).strip()


def find_toolchain() -> Toolchain | str:
    """The Command Line Tools' (or Xcode's) clang++ and SDK, or why there are none. Only xcode-select runs
    until a developer folder is known to exist: /usr/bin/g++, clang++ and xcrun are stubs that open
    an install dialog without one."""
    code, dev = _ask([XCODE_SELECT, "-p"])
    if code != 0 or not os.path.isfile(os.path.join(dev, "usr", "lib", "libxcrun.dylib")):
        said = f"xcode-select -p: {dev.splitlines()[0] if dev else 'no answer'}" if code != 0 else f"{dev} is not a developer folder"
        return f"C++ answers need Apple's Command Line Tools, which are not installed: run `xcode-select --install` ({said})"
    found = [_ask([XCRUN, *args]) for args in (["--find", "clang++"], ["--show-sdk-path"])]
    bad = [said for code, said in found if code != 0 or not said]
    if bad:
        return f"xcrun found no clang++ or macOS SDK in {dev}: {bad[0]}; reinstall them with `xcode-select --install`"
    return Toolchain(found[0][1], found[1][1], dev)


# Apple's libc++ has no <bits/stdc++.h> (libstdc++'s, which contest programs include): a job's include folder gets this
BITS_STDCXX = """// <bits/stdc++.h> for Apple's libc++, which has none: the C++17 standard headers (sdzero's code sandbox)
#include <cassert>
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <cinttypes>
#include <climits>
#include <clocale>
#include <cmath>
#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cwchar>
#include <cwctype>
#include <algorithm>
#include <any>
#include <array>
#include <atomic>
#include <bitset>
#include <chrono>
#include <complex>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <fstream>
#include <future>
#include <initializer_list>
#include <iomanip>
#include <ios>
#include <iosfwd>
#include <iostream>
#include <istream>
#include <iterator>
#include <limits>
#include <list>
#include <locale>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <optional>
#include <ostream>
#include <queue>
#include <random>
#include <ratio>
#include <regex>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <stack>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <valarray>
#include <variant>
#include <vector>
"""


# -- memory ------------------------------------------------------------------------------------------

_libproc = None
RUSAGE_INFO_V0 = 0


def resident_bytes(pid: int) -> int | None:
    """A process's memory as macOS counts it (the larger of resident size and physical footprint, which
    includes compressed pages), from proc_pid_rusage; None once it is gone."""
    global _libproc
    if _libproc is None:
        _libproc = ctypes.CDLL("/usr/lib/libproc.dylib", use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct rusage_info_v0 is 96 bytes
    if _libproc.proc_pid_rusage(ctypes.c_int(pid), ctypes.c_int(RUSAGE_INFO_V0), buf) != 0:
        return None
    # 16 bytes of uuid, then uint64s: user and system time, idle and interrupt wakeups, pageins, wired,
    # resident (offset 64), physical footprint (72)
    resident, footprint = struct.unpack_from("<QQ", buf, 64)
    return max(resident, footprint)

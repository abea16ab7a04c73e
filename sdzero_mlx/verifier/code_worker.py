"""The code reward's worker process: run one answer against its tests per request, in the sandbox.

Started by `verifier.code` as `python -m sdzero_mlx.verifier.code_worker SCRATCH_MB [--allow-unisolated]`
(a fresh, single-threaded interpreter, so the sandbox's fork-time code is safe). It isolates itself
once (`sandbox.enter_worker_sandbox`) and runs one trivial program through the sandbox; then it
prints "ready <isolation>", or "error <why>" and exits when the sandbox cannot start or there is
no isolation and --allow-unisolated was not given. It answers one JSON job per line on stdin with
one JSON reply per line on stdout:
    {"language": "python"|"cpp", "program": str, "tests": {...}, "limits": {...}}
 -> {"ok": bool, "reason": str, "sandbox": str}, or {"ok": false, "fatal": str} when the sandbox
    itself failed (never the program's doing: the parent stops rather than score it 0).
The parent kills and replaces this process if a job overruns its whole budget (a backstop: the
runs inside are bounded by their own wall-clock limits).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys

from ..platform import macos_sandbox
from ..platform.facts import facts
from .sandbox import Compiler, Isolation, Limits, RunResult, enter_worker_sandbox, make_job_dir, run, sandbox_python

ALLOW_UNISOLATED = "--allow-unisolated"

# Runs after the program, in the same interpreter, so it undoes what a program most easily breaks:
# it catches exit() before the tests, restores the builtins, runs the tests in their own namespace
# and rejects return values that are not plain data (an object whose __eq__ is always True).
# It reports through a copy of stdout it took before the program ran, with a nonce from stdin.
HARNESS = r'''
import builtins, os, sys, traceback
_write, _dup, _exit = os.write, os.dup, os._exit
PLAIN = (int, float, complex, str, bytes, bool, type(None))
BOXES = (list, tuple, set, frozenset)

def plain(v, depth=0):
    t = type(v)
    if t in PLAIN:
        return True
    if depth > 30:
        return False
    if t in BOXES:
        return all(plain(x, depth + 1) for x in v)
    if t is dict:
        return all(plain(k, depth + 1) and plain(x, depth + 1) for k, x in v.items())
    return False

def main():
    nonce = sys.stdin.readline().strip()
    out = _dup(1)
    report = lambda word, why="": _write(out, ("\n%s %s %s\n" % (nonce, word, why.replace("\n", " ")[:300])).encode())
    solution_path, test_path, entry = sys.argv[1:4]
    with open(solution_path, encoding="utf-8") as f:
        solution_src = f.read()
    with open(test_path, encoding="utf-8") as f:
        test_src = f.read()
    pristine = dict(vars(builtins))
    solution = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(compile(solution_src, "solution.py", "exec"), solution)
    except SystemExit:
        return report("FAIL", "the program called exit() before the tests ran")
    except BaseException as e:
        return report("FAIL", "the program raised %s: %s" % (type(e).__name__, e))
    names = vars(builtins)
    for name in [n for n in names if n not in pristine]:
        del names[name]
    names.update(pristine)
    candidate = solution.get(entry)
    if not callable(candidate):
        return report("FAIL", "the program defines no function %r" % entry)

    def guarded(*args, **kwargs):
        result = candidate(*args, **kwargs)
        if not plain(result):
            raise AssertionError("%s returned a %s, not plain data" % (entry, type(result).__name__))
        return result

    # HumanEval's tests call the prompt's helpers (poly, encode_cyclic) by name: they see a copy of
    # the program's names, with their own check() defined over any the program left
    tests = dict(solution, __name__="tests", __builtins__=builtins)
    try:
        exec(compile(test_src, test_path, "exec"), tests)
        tests["check"](guarded)
    except SystemExit:
        return report("FAIL", "exit() was called during the tests")
    except AssertionError as e:
        frames = [fr for fr in traceback.extract_tb(e.__traceback__) if fr.filename == test_path]
        where = "test line %d: %s" % (frames[-1].lineno, frames[-1].line) if frames else "an assertion"
        return report("FAIL", "test failed at %s%s" % (where, " (%s)" % e if str(e) else ""))
    except BaseException as e:
        return report("FAIL", "the tests raised %s: %s" % (type(e).__name__, e))
    report("PASS")

main()
'''

_SIGNAL_REASONS = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGKILL": "killed", "SIGSEGV": "crashed (SIGSEGV)"}


def limits_of(job: dict) -> Limits:
    return Limits(**job.get("limits", {}))


def describe_failure(r: RunResult, limits: Limits) -> str | None:
    """Why a run failed for reasons other than its output (timeout, limit, crash), or None."""
    if r.timed_out:
        return f"timed out after {limits.wall_s:g} s (wall clock)"
    if r.output_capped:
        return f"output limit ({limits.output_bytes} bytes of stdout)"
    if r.memory_exceeded:
        return f"memory limit ({limits.memory_mb} MB resident)"
    if r.signal is not None:
        try:
            name = signal.Signals(r.signal).name
        except ValueError:  # a real-time signal between SIGRTMIN and SIGRTMAX has no name
            return f"killed by signal {r.signal}"
        return f"{_SIGNAL_REASONS.get(name, 'killed by ' + name)}"
    tail = r.stderr.decode("utf-8", "replace").strip().splitlines()
    last = tail[-1][:200] if tail else ""
    if "MemoryError" in last:
        return f"memory limit ({limits.memory_mb} MB): {last}"
    if r.returncode != 0:
        return f"crashed (exit {r.returncode})" + (f": {last}" if last else "")
    return None


def _same_output(got: str, want: str) -> bool:
    """Equal up to trailing spaces on each line and trailing blank lines (the usual judge rule)."""
    norm = lambda s: "\n".join(line.rstrip() for line in s.strip("\n").split("\n")).rstrip()  # noqa: E731
    return norm(got.replace("\r\n", "\n")) == norm(want.replace("\r\n", "\n"))


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o644)


_compiler: Compiler | str | None = None


def cxx_compiler() -> Compiler | str:
    """This machine's C++ compiler, or why there is none (looked up once). On macOS Apple's clang++ through
    xcrun, never the /usr/bin/g++ stub (which opens an install dialog when the Command Line Tools are missing)."""
    global _compiler
    if _compiler is None:
        if facts().macos:
            tc = macos_sandbox.find_toolchain()
            _compiler = tc if isinstance(tc, str) else Compiler((tc.clang, "-isysroot", tc.sdk), tc, bits_header=True)
        else:
            _compiler = Compiler(("g++",)) if shutil.which("g++") else "the answer is C++ but no g++ is installed here"
    return _compiler


def _compile(job: dict, jobdir: str, work: str, limits: Limits, isolation: Isolation) -> tuple[str | None, str]:
    """(binary, "") or (None, why it did not compile)."""
    compiler = cxx_compiler()
    if isinstance(compiler, str):
        return None, compiler
    source, binary = os.path.join(jobdir, "prog.cpp"), os.path.join(work, "prog")
    _write(source, job["program"])
    include = []
    if compiler.bits_header:
        os.makedirs(os.path.join(jobdir, "include", "bits"))
        _write(os.path.join(jobdir, "include", "bits", "stdc++.h"), macos_sandbox.BITS_STDCXX)
        include = ["-I", os.path.join(jobdir, "include")]
    compile_limits = Limits(wall_s=30.0, cpu_s=30.0, memory_mb=2048, file_mb=64, open_files=64,
                            processes=limits.processes, output_bytes=limits.output_bytes)
    r = run([*compiler.argv, "-O2", "-std=c++17", *include, "-o", binary, source], b"", work, compile_limits, isolation,
            compiler=compiler)
    failure = describe_failure(r, compile_limits)
    if failure is not None or not os.path.isfile(binary):
        first = next((ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if "error" in ln), "")
        return None, f"compile error: {failure or ''} {first[:200]}".strip()
    return binary, ""


def grade(job: dict, root: str, isolation: Isolation, n: int) -> dict:
    """One answer against its tests -> {"ok", "reason"}."""
    limits = limits_of(job)
    tests, language = job["tests"], job["language"]
    jobdir, work = make_job_dir(root, isolation, n)
    try:
        if language == "cpp":
            binary, why = _compile(job, jobdir, work, limits, isolation)
            if binary is None:
                return {"ok": False, "reason": why}
            argv = [binary]
        else:
            _write(os.path.join(jobdir, "solution.py"), job["program"])
            argv = [sandbox_python(), "-I", "-S", "-B", os.path.join(jobdir, "solution.py")]
        if "test" in tests:
            return _assertion_tests(job, jobdir, work, limits, isolation)
        return _io_tests(argv, tests, work, limits, isolation)
    finally:
        shutil.rmtree(jobdir, ignore_errors=True)


def _io_tests(argv, tests: dict, work: str, limits: Limits, isolation: Isolation) -> dict:
    n = len(tests["inputs"])
    for i, (stdin, want) in enumerate(zip(tests["inputs"], tests["outputs"]), 1):
        r = run(argv, stdin.encode(), work, limits, isolation)
        failure = describe_failure(r, limits)
        if failure is not None:
            return {"ok": False, "reason": f"test {i} of {n}: {failure}"}
        got = r.stdout.decode("utf-8", "replace")
        if not _same_output(got, want):
            return {"ok": False, "reason": f"test {i} of {n}: wrong answer (expected {want.strip()[:60]!r}, got {got.strip()[:60]!r})"}
    return {"ok": True, "reason": f"passed all {n} tests"}


def _assertion_tests(job: dict, jobdir: str, work: str, limits: Limits, isolation: Isolation) -> dict:
    tests = job["tests"]
    _write(os.path.join(jobdir, "test.py"), tests["test"])
    _write(os.path.join(jobdir, "harness.py"), HARNESS)
    nonce = secrets.token_hex(16)
    argv = [sandbox_python(), "-I", "-S", "-B", os.path.join(jobdir, "harness.py"), os.path.join(jobdir, "solution.py"),
            os.path.join(jobdir, "test.py"), tests["entry_point"]]
    r = run(argv, (nonce + "\n").encode(), work, limits, isolation)
    failure = describe_failure(r, limits)
    marks = [ln for ln in r.stdout.decode("utf-8", "replace").splitlines() if ln.startswith(nonce + " ")]
    if marks and marks[-1].startswith(f"{nonce} FAIL"):
        return {"ok": False, "reason": marks[-1][len(nonce) + 6:].strip()}
    if failure is not None:
        return {"ok": False, "reason": failure}
    if marks and marks[-1].strip() == f"{nonce} PASS":
        return {"ok": True, "reason": "passed the tests"}
    return {"ok": False, "reason": "the tests did not report (the program ended the process or closed stdout)"}


REFUSAL = ("no isolation for model-written code here: {note}. Code rewards run programs a model wrote; without "
           "isolation they can read your files (~/.ssh, tokens), write where you can and reach the network. Make the "
           "sandbox available (docs/code.md), run the trainer in a VM or container sandbox, or set "
           "verifier.allow_unisolated_code: true in the recipe (sdzero verify: --allow-unisolated) to run them with "
           "rlimits only.")


def _self_test(root: str, isolation: Isolation) -> None:
    """One trivial program through the sandbox, so a sandbox that cannot start a run says so now."""
    jobdir, work = make_job_dir(root, isolation, -1)
    try:
        r = run([sandbox_python(), "-I", "-S", "-c", "print('ok')"], b"", work, Limits(wall_s=30.0, cpu_s=30.0), isolation)
    finally:
        shutil.rmtree(jobdir, ignore_errors=True)
    if r.stdout.strip() != b"ok":
        raise RuntimeError(f"a trivial program failed in the sandbox ({describe_failure(r, Limits()) or 'no output'}): "
                           f"{r.stderr.decode('utf-8', 'replace').strip()[-300:]}")


def main() -> None:
    scratch_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    out = sys.stdout
    try:
        isolation, root = enter_worker_sandbox(scratch_mb)
        if isolation.kind == "none" and ALLOW_UNISOLATED not in sys.argv[2:]:
            raise RuntimeError(REFUSAL.format(note=isolation.note))
        _self_test(root, isolation)
    except (OSError, subprocess.SubprocessError, ValueError, RuntimeError) as err:
        # preexec_fn's own exceptions reach here as SubprocessError; its message names the step
        said = str(err) if isinstance(err, RuntimeError) else f"the sandbox failed: {type(err).__name__}: {err}"
        out.write("error " + said.replace("\n", " ") + "\n")
        out.flush()
        sys.exit(1)
    out.write(f"ready {isolation.describe()}\n")
    out.flush()
    for n, line in enumerate(sys.stdin):
        job = json.loads(line)
        try:
            reply = grade(job, root, isolation, n) | {"sandbox": isolation.describe()}
        except subprocess.SubprocessError as err:  # preexec_fn failed (a refused rlimit...): never the program's doing
            reply = {"ok": False, "fatal": f"the code sandbox failed to start a run: {err}"}
        except OSError as err:  # e.g. the scratch tmpfs is full: this answer scores 0, the worker lives on
            reply = {"ok": False, "reason": f"sandbox error: {err}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

"""The code reward on a simulated Mac (tests/simulated_mac.py says what is simulated and how): answers
score as they would on macOS, C++ compiles with the Command Line Tools' clang++, memory is bounded by
polling, and a sandbox that cannot start stops the run with its reason instead of handing out zeros.
None of this has run on a real Mac (docs/testing.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import seccomp
from sdzero_mlx.verifier import VerifierConfig, check, code
from sdzero_mlx.verifier.pool import SharedPool

TESTS = Path(__file__).resolve().parent
CFG = VerifierConfig(kind="code", timeout_s=10.0, cache_size=0, workers=1)
IO = json.dumps({"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7"]})
HUMANEVAL = json.dumps({"test": "def check(candidate):\n    assert candidate(3) == 9\n", "entry_point": "square"})
ADD_CPP = "#include <bits/stdc++.h>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }"

pytestmark = pytest.mark.skipif(not seccomp.supported(),
                                reason="the simulated Mac's process limit is a seccomp filter: Linux x86-64/aarch64 only")


def block(source: str, tag: str = "python") -> str:
    return f"My answer:\n```{tag}\n{source}\n```\n"


@pytest.fixture
def mac(monkeypatch):
    """Code workers that answer as a Mac would; set SDZERO_SIM_* knobs before the first grade."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    pool = SharedPool("simulated_mac")
    monkeypatch.setattr(code, "_code_pool", pool)
    yield monkeypatch
    pool.shutdown()


def test_the_simulation_refuses_what_macos_refuses():
    """The simulated setrlimit: RLIMIT_AS raises ValueError; RLIMIT_NPROC below the busy user's count leaves
    no fork, while threads still start (checked in a child, since the filter cannot be removed)."""
    script = (
        "import os, resource, threading, simulated_mac as m\n"
        "try:\n    m.macos_setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); print('AS set')\n"
        "except ValueError as e:\n    print('AS refused:', e)\n"
        "m.macos_setrlimit(resource.RLIMIT_NPROC, (64, 64))\n"
        "t = threading.Thread(target=print, args=('thread ran',)); t.start(); t.join()\n"
        "try:\n    os.fork(); print('forked')\n"
        "except OSError as e:\n    print('fork refused:', e.strerror)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])})
    assert out.stdout.splitlines() == ["AS refused: current limit exceeds maximum limit", "thread ran",
                                       "fork refused: Resource temporarily unavailable"], out.stderr


def test_python_answers_score_1_when_right_and_0_when_wrong(mac):
    assert check(block("a, b = map(int, input().split())\nprint(a + b)"), IO, CFG).score == 1.0
    wrong = check(block("a, b = map(int, input().split())\nprint(a * b)"), IO, CFG)
    assert (wrong.score, wrong.reason) == (0.0, "test 1 of 2: wrong answer (expected '3', got '2')")
    assert check(block("def square(x):\n    return x * x\n"), HUMANEVAL, CFG).score == 1.0
    wrong = check(block("def square(x):\n    return x + x\n"), HUMANEVAL, CFG)
    assert wrong.score == 0.0 and wrong.reason.startswith("test failed at test line 2"), wrong.reason
    assert code.sandbox_description(CFG).startswith("macOS sandbox-exec profile")


@pytest.mark.skipif(shutil.which("g++") is None, reason="the simulated clang++ is g++ underneath; no g++ here")
def test_cpp_answers_compile_with_the_command_line_tools_clang_and_bits_stdcpp(mac):
    """clang++ from xcrun (never /usr/bin/g++), the job's own <bits/stdc++.h> (Apple's libc++ has none),
    and a compiler driver that can spawn its stages although the user runs hundreds of processes."""
    assert check(block(ADD_CPP, "cpp"), IO, CFG).score == 1.0
    wrong = check(block(ADD_CPP.replace("a + b", "a - b"), "cpp"), IO, CFG)
    assert (wrong.score, wrong.reason) == (0.0, "test 1 of 2: wrong answer (expected '3', got '-1')")
    broken = check(block("int main() { return }", "cpp"), IO, CFG)
    assert broken.score == 0.0 and broken.reason.startswith("compile error"), broken.reason


def test_without_the_command_line_tools_cpp_answers_say_how_to_install_them(mac):
    mac.setenv("SDZERO_SIM_NO_CLT", "1")
    verdict = check(block(ADD_CPP, "cpp"), IO, CFG)
    assert verdict.score == 0.0 and "xcode-select --install" in verdict.reason, verdict.reason
    assert check(block("print(sum(map(int, input().split())))"), IO, CFG).score == 1.0  # Python is unaffected


def test_memory_is_bounded_by_polling_the_resident_size(mac):
    cfg = VerifierConfig(kind="code", timeout_s=10.0, cache_size=0, workers=1, code_memory_mb=128)
    verdict = check(block("import time\nx = b'x' * (512 << 20)\ntime.sleep(5)\nprint(3)"), IO, cfg)
    assert verdict.score == 0.0 and verdict.reason.startswith("test 1 of 2: memory limit (128 MB resident)"), verdict.reason
    assert check(block("x = b'x' * (32 << 20)\nprint(sum(map(int, input().split())))"), IO, cfg).score == 1.0


def test_a_mac_without_sandbox_exec_refuses_unless_the_recipe_accepts_unisolated_code(mac):
    mac.setenv("SDZERO_SIM_NO_SANDBOX_EXEC", "1")
    with pytest.raises(RuntimeError, match="verifier.allow_unisolated_code: true"):
        check(block("print(3)"), IO, CFG)
    unisolated = VerifierConfig(kind="code", timeout_s=10.0, cache_size=0, workers=1, allow_unisolated_code=True)
    assert check(block("print(sum(map(int, input().split())))"), IO, unisolated).score == 1.0
    assert code.sandbox_description(unisolated).startswith("NONE")


def test_a_worker_that_cannot_start_stops_the_run_with_the_reason(mac):
    """setrlimit refusing a limit the sandbox needs: every grade raises, naming why, rather than scoring 0."""
    mac.setenv("SDZERO_SIM_REFUSE", "RLIMIT_FSIZE")
    for _ in range(2):  # and again: a replacement worker must not hand out zeros either
        with pytest.raises(RuntimeError, match="did not start.*current limit exceeds maximum limit"):
            check(block("print(3)"), IO, CFG)

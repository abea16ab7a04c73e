"""The set-up path on a Mac, tested on Linux: the interpreter check before pip (scripts/check_python.py, on
simulated platform facts), `make bench` without OpenBLAS, and scripts/gpu_check.sh without GNU timeout."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdzero_mlx.platform.facts import simulated

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def check_python():
    """scripts/check_python.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("check_python", ROOT / "scripts" / "check_python.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

MAC = dict(system="darwin", machine="arm64", euid=501)


# -- scripts/check_python.py: the Python version and, on a Mac, its architecture ---------------------


def test_the_minimum_is_pyprojects_requires_python(check_python):
    text = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={check_python.MINIMUM[0]}.{check_python.MINIMUM[1]}"' in text


def test_apples_python_39_is_refused_with_the_fix(check_python):
    with simulated(**MAC, python=(3, 9)):
        text = check_python.problem("demo", "/usr/bin/python3")
    assert text.startswith("error: sdzero-mlx needs Python >= 3.10") and "\n" not in text
    assert "/usr/bin/python3 is Python 3.9 (Apple's, from the Command Line Tools)" in text
    assert "make demo PYTHON=python3.12" in text and "python.org" in text and "Homebrew" in text


def test_an_x86_64_python_on_a_mac_is_refused_with_the_fix(check_python):
    with simulated(**{**MAC, "machine": "x86_64"}, python=(3, 12)):
        text = check_python.problem("test", "/usr/local/bin/python3.12")
    assert "x86-64" in text and "Rosetta" in text and "arm64" in text and "\n" not in text
    assert "make test PYTHON=/opt/homebrew/bin/python3.12" in text


def test_a_good_python_passes_and_linux_has_no_architecture_rule(check_python):
    with simulated(**MAC, python=(3, 12)):
        assert check_python.problem("demo", "/opt/homebrew/bin/python3.12") is None
    with simulated(system="linux", machine="aarch64", python=(3, 10)):
        assert check_python.problem("demo", "/usr/bin/python3") is None
    with simulated(system="linux", machine="x86_64", python=(3, 9)):
        assert "make demo PYTHON=python3.12" in check_python.problem("demo", "/usr/bin/python3")


def test_the_script_runs_silently_here_and_fails_in_one_line_there():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_python.py"), "demo"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == done.stderr == ""
    # the same script under a simulated Apple Python 3.9 (its main, as the Makefile runs it)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import check_python\n"
            "from sdzero_mlx.platform.facts import simulated\n"
            "with simulated(system='darwin', machine='arm64', python=(3, 9)):\n"
            "    sys.argv = ['check_python.py', 'test']; check_python.main()\n")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "scripts")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "make test PYTHON=python3.12" in done.stderr


def make_env() -> dict:
    """The environment of a top-level make: under `make test` (CI) the outer make's MAKEFLAGS and MAKELEVEL
    would make the inner one print "Entering directory" lines and inherit the outer one's flags."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_checks_the_interpreter_before_anything_else(tmp_path):
    lines = subprocess.run(["make", "--no-print-directory", "-n", "demo", f"VENV={tmp_path / 'venv'}",
                            "PYTHON=python3"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env=make_env()).stdout.splitlines()
    assert "scripts/check_python.py demo" in lines[0], lines  # before apt-get, the venv and pip


# -- make bench without OpenBLAS (a Mac: MLX uses Accelerate) --------------------------------------------

OPENBLAS_BENCHES = ("bench_blas.py", "bench_distill_step.py", "bench_threads.py")


def make_bench(fast_blas: str, tmp_path: Path) -> str:
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    (venv / ".installed").touch()  # `setup` done
    os.utime(venv / ".installed", (time.time() + 60,) * 2)
    return subprocess.run(["make", "--no-print-directory", "-n", "bench", f"VENV={venv}", f"FAST_BLAS={fast_blas}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=make_env()).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_skips_the_openblas_benchmarks_without_openblas(tmp_path):
    without = make_bench("", tmp_path)
    ran = set(re.findall(r"benchmarks/(bench_\w+\.py)", without))
    assert not ran & set(OPENBLAS_BENCHES) and {"bench_real.py", "bench_roofline.py"} <= ran, without
    assert re.search(r"skipped bench_blas\.py, bench_distill_step\.py, bench_threads\.py: no OpenBLAS", without), without
    with_it = make_bench("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0", tmp_path)
    assert set(OPENBLAS_BENCHES) <= set(re.findall(r"benchmarks/(bench_\w+\.py)", with_it)) and "skipped" not in with_it


# -- scripts/gpu_check.sh without GNU timeout (macOS has none; Homebrew's coreutils has gtimeout) -------


def test_gpu_check_limits_steps_without_gnu_timeout(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the tools step() uses, and no timeout / gtimeout
    bin_dir.mkdir()
    for tool in ("bash", "date", "tail", "sleep", "cat", "dirname", "mkdir"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    out = tmp_path / "report"
    script = (f"source {ROOT / 'scripts' / 'gpu_check.sh'} && OUT={out} && mkdir -p $OUT && : > $OUT/steps.md && "
              f"echo limit: ${{LIMIT[*]}} && step sleeper 1 bash -c 'sleep 30 & echo $! > {tmp_path}/child; wait' && "
              "step quick 5 bash -c 'echo done' && cat $OUT/steps.md")
    tic = time.monotonic()
    done = subprocess.run([str(bin_dir / "bash"), "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir), "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert time.monotonic() - tic < 15, "the 30 s sleeps were not stopped after 1 s"
    assert done.returncode == 0, done.stderr
    assert f"limit: {sys.executable} {ROOT / 'scripts' / 'timeout.py'}" in done.stdout, done.stdout
    assert re.search(r"^\| sleeper \| 124 \| [12] \|$", done.stdout, re.M), done.stdout  # 124, as GNU timeout
    assert re.search(r"^\| quick \| 0 \| [01] \|$", done.stdout, re.M), done.stdout
    child = int((tmp_path / "child").read_text())  # the step's own child, killed with it (its process group)
    assert gone(child)


def gone(pid: int, wait_s: float = 5.0) -> bool:
    """Whether the process has ended (a zombie waiting for init to reap it counts as ended)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.is_file() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False

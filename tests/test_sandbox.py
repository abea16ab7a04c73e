"""Hostile programs against the code reward's sandbox on Linux: each must score 0, for the stated
reason, and leave this (test) process, the machine, the user's files and the worker pool unharmed.

Run as root (the "root namespaces" sandbox) and as a normal user (the "user namespaces" one; CI runs
this file again as a user it creates, .ci/as-user). As a user the module skips only where the kernel
forbids unprivileged user namespaces, and says which knob does (code rewards then refuse to start:
tests/test_sandbox_refusal.py). Every program is bounded before it runs: the `enforced` fixture first
has the sandbox report its own limits (address space, file size, processes, uid) and fails the
module if they are not the ones the hostile programs rely on (50 GB stopped by RLIMIT_AS, 10 GB by
RLIMIT_FSIZE, the fork bomb by RLIMIT_NPROC counted in the run's own user namespace). The network
tests listen on 127.0.0.1 only; the outside address is TEST-NET-1 (192.0.2.1), which routes nowhere.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time
from pathlib import Path

import pytest

from sdzero_mlx.platform import linux_sandbox
from sdzero_mlx.platform.facts import facts
from sdzero_mlx.verifier import VerifierConfig, check
from sdzero_mlx.verifier.code import sandbox_description
from sdzero_mlx.verifier.sandbox import Limits

CFG = VerifierConfig(kind="code", timeout_s=1.0, cache_size=0)
ROOT = facts().root
PROCESS_LIMIT = ROOT or facts().nproc_per_user_namespace
NO_PROCESS_LIMIT = "as a user before Linux 5.14 RLIMIT_NPROC counts the user's own processes, so runs get none"

if not facts().linux:
    pytest.skip("the hostile suite relies on Linux's namespaces; macOS's sandbox is tested as a profile "
                "(test_macos_profile.py) and on a simulated Mac (test_sandbox_macos.py)", allow_module_level=True)
if not ROOT and (_why := linux_sandbox.worker_namespaces_unavailable(as_root=False)) is not None:
    pytest.skip(f"this kernel forbids the sandbox to a normal user: {_why}", allow_module_level=True)


def io_tests(output: str = "ok") -> str:
    return json.dumps({"inputs": [""], "outputs": [output]})


def answer(program: str) -> str:
    return f"Here is my solution:\n```python\n{program}\n```\n"


def grade(program: str, tests: str | None = None):
    return check(answer(program), tests or io_tests(), CFG)


def sandbox_processes() -> list[int]:
    """Pids of the runs' processes (there must be none between runs): as root those of uid 65534; as a
    user, the user's own that live in another PID namespace (every run has its own)."""
    mine = os.readlink("/proc/self/ns/pid")
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
                if uid == 65534 if ROOT else (uid == os.getuid() and os.readlink(f"/proc/{name}/ns/pid") != mine):
                    pids.append(int(name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return pids


@pytest.fixture(scope="module")
def enforced():
    """The limits the hostile programs rely on, as the sandbox itself reports them."""
    probe = ("import os, resource as r\n"
             "print(r.getrlimit(r.RLIMIT_AS)[0] >> 20, r.getrlimit(r.RLIMIT_FSIZE)[0] >> 20, r.getrlimit(r.RLIMIT_NPROC)[0],"
             " r.getrlimit(r.RLIMIT_CPU)[0], os.getuid())")
    limits = Limits()
    # uid 65534 in the run's namespace; as a user before Linux 5.14 no process limit (it would count the user's own)
    nproc = limits.processes if PROCESS_LIMIT else resource.getrlimit(resource.RLIMIT_NPROC)[0]
    want = f"{CFG.code_memory_mb} {limits.file_mb} {nproc} 1 65534"
    verdict = grade(probe, io_tests(want))
    if verdict.score != 1.0:
        pytest.fail(f"the sandbox does not enforce the limits the hostile tests rely on: {verdict.reason}")
    kind = "Linux namespaces as root" if ROOT else "Linux user namespaces"
    assert sandbox_description(CFG).startswith(kind + ":"), sandbox_description(CFG)
    return verdict


def test_a_correct_program_passes(enforced):
    verdict = grade("print(sum(map(int, input().split())))", json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3", "10\n"]}))
    assert verdict.score == 1.0, verdict.reason


def test_infinite_loop(enforced):
    tic = time.monotonic()
    verdict = grade("while True:\n    pass")
    assert verdict.score == 0.0
    assert "timed out" in verdict.reason or "CPU time limit" in verdict.reason
    assert time.monotonic() - tic < 6


def test_sleeping_past_the_limit(enforced):
    tic = time.monotonic()
    verdict = grade("import time\ntime.sleep(60)\nprint('ok')")
    assert verdict.score == 0.0 and "timed out after 1 s" in verdict.reason
    assert time.monotonic() - tic < 6


@pytest.mark.skipif(not PROCESS_LIMIT, reason=NO_PROCESS_LIMIT)
def test_fork_bomb_is_contained_and_leaves_no_process(enforced):
    tic = time.monotonic()
    verdict = grade("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert verdict.score == 0.0 and "timed out" in verdict.reason
    assert time.monotonic() - tic < 10
    deadline = time.monotonic() + 2  # SIGKILLed processes may take a moment to be reaped
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []


def test_a_child_that_leaves_its_session_does_not_outlive_the_run(enforced):
    """setsid() escapes the group kill; the PID namespace still ends it with the run."""
    program = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\n    os._exit(0)\nprint('ok')")
    assert grade(program).score == 1.0
    deadline = time.monotonic() + 2
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []


@pytest.mark.skipif(not facts().nproc_per_user_namespace, reason="Linux < 5.14 counts RLIMIT_NPROC per user, not per run")
def test_a_busy_user_can_still_fork_inside_a_run(enforced):
    """RLIMIT_NPROC counts the run's own processes only: 80 processes of the runs' uid elsewhere (root: uid
    65534, a user: the user's own) leave a run its 64."""
    sleepers = [subprocess.Popen(["sleep", "60"], **({"user": 65534, "group": 65534} if ROOT else {})) for _ in range(80)]
    try:
        program = ("import os, time\nkids = []\nfor _ in range(8):\n    pid = os.fork()\n    if pid == 0:\n"
                   "        time.sleep(0.2)\n        os._exit(0)\n    kids.append(pid)\n"
                   "[os.waitpid(k, 0) for k in kids]\nprint('ok')")
        verdict = grade(program)
        assert verdict.score == 1.0, verdict.reason
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def test_allocating_50_gb(enforced):
    verdict = grade("x = bytearray(50 * 2**30)\nprint('ok')")
    assert verdict.score == 0.0 and "memory limit" in verdict.reason


def test_writing_a_10_gb_file(enforced):
    verdict = grade("block = b'x' * (1 << 20)\nwith open('big', 'wb') as f:\n    for _ in range(10 * 1024):\n"
                    "        f.write(block)\nprint('ok')")
    assert verdict.score == 0.0 and ("File too large" in verdict.reason or "file size limit" in verdict.reason)


def test_printing_1_gb(enforced):
    tic = time.monotonic()
    verdict = grade("import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)")
    assert verdict.score == 0.0 and "output limit" in verdict.reason
    assert time.monotonic() - tic < 6


def test_writing_outside_its_folder(enforced, tmp_path):
    name = f"sdzero-sandbox-escape-{os.getpid()}"  # fresh per run: a file left by an older sandbox must not count
    targets = [tmp_path / name, f"/dev/shm/{name}", f"/var/tmp/{name}", Path.home() / f".{name}"]
    program = ("wrote = []\n"
               f"for path in {[str(t) for t in targets]!r}:\n"
               "    try:\n        open(path, 'w').write('x')\n        wrote.append(path)\n"
               "    except OSError:\n        pass\n"
               "print('escaped' if wrote else 'contained')")
    verdict = grade(program, io_tests("escaped"))
    assert verdict.score == 0.0 and "got 'contained'" in verdict.reason
    for t in targets:
        assert not os.path.exists(t)


def test_reading_a_secret_outside_its_folder(enforced, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    verdict = grade(f"try:\n    print(open({str(secret)!r}).read())\nexcept OSError as e:\n    print('denied')", io_tests("s3cret"))
    assert verdict.score == 0.0 and "got 'denied'" in verdict.reason


def masked_view(folder: str) -> str:
    """What a run lists in `folder` when it is masked or inside a masked folder: only the way to the Python
    install where that lives there, else nothing (or no folder at all)."""
    kept = [Path(k) for k in linux_sandbox.kept_paths()]
    names = sorted({k.relative_to(folder).parts[0] for k in kept if k.is_relative_to(folder) and k != Path(folder)})
    if names or folder in linux_sandbox.masked_folders():
        return repr(names)
    return "absent"


def test_the_home_folder_is_unreadable(enforced):
    """~ (wherever $HOME is) and every home under /home look empty to a run, and a secret there is unreadable."""
    secret = Path.home() / f".sdzero-sandbox-secret-{os.getpid()}"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    try:
        home = os.path.realpath(Path.home())
        program = (f"import os\ntry:\n    print(open({str(secret)!r}).read())\nexcept OSError:\n    print('denied')\n"
                   "def view(d):\n    try:\n        return repr(sorted(os.listdir(d)))\n    except FileNotFoundError:\n"
                   f"        return 'absent'\nprint(view('/home'), view({home!r}))")
        verdict = grade(program, io_tests(f"denied\n{masked_view('/home')} {masked_view(home)}"))
        assert verdict.score == 1.0, verdict.reason
    finally:
        secret.unlink()


def test_opening_a_network_connection(enforced):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))  # loopback only
        server.listen(1)
        server.setblocking(False)
        port = server.getsockname()[1]
        program = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
                   "s.sendall(b'leak')\nprint('ok')")
        verdict = grade(program)
        assert verdict.score == 0.0 and "Network is unreachable" in verdict.reason
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    outside = grade("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=0.5)\nprint('ok')")
    assert outside.score == 0.0 and "Network is unreachable" in outside.reason, outside.reason


def test_killing_its_parent(enforced):
    verdict = grade("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('killed it')", io_tests("survived"))
    assert verdict.score == 0.0
    # the pool still grades: the worker survived, or was replaced
    assert grade("print('ok')").score == 1.0


def test_closing_stdout(enforced):
    tic = time.monotonic()
    verdict = grade("import os\nos.close(1)\nos.close(2)\nprint('ok')")
    assert verdict.score == 0.0 and "crashed" in verdict.reason
    assert time.monotonic() - tic < 6


# -- tampering with the assertion harness ------------------------------------------------------

HUMANEVAL = json.dumps({"test": "def check(candidate):\n    assert abs(candidate(2) - 4) < 1e-6\n    assert candidate(3) == 9\n",
                        "entry_point": "square"})
WRONG = "def square(x):\n    return 0\n"


@pytest.mark.parametrize("name, program, reason", [
    ("redefines check", WRONG + "def check(candidate):\n    pass\n", "test failed at test line 2"),
    ("exits before the asserts", "import sys\n" + WRONG + "sys.exit(0)\n", "called exit() before the tests"),
    ("ends the process before the asserts", "import os\n" + WRONG + "os._exit(0)\n", "did not report"),
    ("patches builtins", "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG, "test failed at test line 2"),
    ("returns an always-equal object", "class Any:\n    def __eq__(self, other):\n        return True\n    def __sub__(self, o):\n"
     "        return 0\ndef square(x):\n    return Any()\n", "not plain data"),
    ("exits inside the function", "def square(x):\n    raise SystemExit(0)\n", "exit() was called during the tests"),
])
def test_tampering_with_the_harness_scores_zero(enforced, name, program, reason):
    assert grade("def square(x):\n    return x * x\n", HUMANEVAL).score == 1.0  # the honest answer passes
    verdict = grade(program, HUMANEVAL)
    assert verdict.score == 0.0 and reason in verdict.reason, (name, verdict.reason)


def test_an_interpreter_linked_from_under_tmp_still_runs_answers(tmp_path):
    """A virtual environment under /tmp (a CI checkout there) links to the base install; the worker masks
    /tmp with a fresh tmpfs, so the interpreter for answers must be resolved before that, not after."""
    import sys

    cfg = Path(sys.prefix) / "pyvenv.cfg"
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    if cfg.is_file():  # the linked interpreter then opens this venv's packages, as the real one does
        (tmp_path / "venv" / "pyvenv.cfg").write_text(cfg.read_text())
    linked = tmp_path / "venv" / "bin" / "python"
    linked.symlink_to(sys.executable)
    script = (
        "import json\n"
        "from sdzero_mlx.verifier.config import VerifierConfig\n"
        "from sdzero_mlx.verifier.grade import check\n"
        "tests = json.dumps({'inputs': ['1 2\\n'], 'outputs': ['3\\n']})\n"
        "v = check('```python\\na, b = map(int, input().split())\\nprint(a + b)\\n```', tests, VerifierConfig(kind='code'))\n"
        "print(v.score, v.reason)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([str(linked), "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "1.0 passed all 1 tests", out.stdout + out.stderr

"""Where there is no sandbox (here: unshare() forbidden by a seccomp filter, as in a default Docker
container; tests/no_namespaces.py), code rewards refuse to start and name the recipe field that
accepts running model code unisolated; with it they run with rlimits only and say so, and
`sdzero verify --kind code` prints which isolation it used, in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import seccomp
from sdzero_mlx.cli import app
from sdzero_mlx.platform.facts import facts
from sdzero_mlx.verifier import VerifierConfig, check, code
from sdzero_mlx.verifier.pool import SharedPool

TESTS = Path(__file__).resolve().parent
IO = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})
ADD = "```python\nprint(sum(map(int, input().split())))\n```"
REFUSED = VerifierConfig(kind="code", timeout_s=10.0, cache_size=0, workers=1)
ALLOWED = VerifierConfig(kind="code", timeout_s=10.0, cache_size=0, workers=1, allow_unisolated_code=True)

pytestmark = pytest.mark.skipif(not seccomp.supported(),
                                reason="forbids unshare() with a seccomp filter: Linux x86-64/aarch64 only")


@pytest.fixture
def no_namespaces(monkeypatch):
    """Code workers on a machine whose kernel refuses them every namespace."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    pool = SharedPool("no_namespaces")
    monkeypatch.setattr(code, "_code_pool", pool)
    yield
    pool.shutdown()


def test_code_rewards_refuse_to_start_and_name_the_field(no_namespaces):
    with pytest.raises(RuntimeError) as refused:
        check(ADD, IO, REFUSED)
    said = str(refused.value)
    assert "no isolation for model-written code here" in said and "verifier.allow_unisolated_code: true" in said
    assert "EPERM" in said  # why: the unshare() the filter refused


def test_the_field_runs_them_unisolated_and_says_so(no_namespaces):
    assert check(ADD, IO, ALLOWED).score == 1.0
    assert check(ADD.replace("sum", "max"), IO, ALLOWED).score == 0.0
    assert code.sandbox_description(ALLOWED).startswith("NONE, rlimits only")


def test_a_run_killed_by_a_nameless_signal_scores_0_with_its_number(no_namespaces):
    """Unisolated, a run is not PID 1 of a namespace (which ignores its own signals), so it can end by a
    real-time signal, which has no name in Python: a 0 naming its number, and the worker lives on."""
    verdict = check("```python\nimport os\nos.kill(os.getpid(), 40)\n```", IO, ALLOWED)
    assert (verdict.score, verdict.reason) == (0.0, "test 1 of 1: killed by signal 40")
    assert check(ADD, IO, ALLOWED).score == 1.0


def test_verify_prints_the_isolation_in_one_line_or_the_refusal(no_namespaces, tmp_path):
    response, tests = tmp_path / "r.txt", tmp_path / "t.json"
    response.write_text(ADD)
    tests.write_text(IO)
    args = ["verify", "--kind", "code", "--response-file", str(response), "--tests-file", str(tests)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2 and "verifier.allow_unisolated_code: true" in out.output and "--allow-unisolated" in out.output
    out = CliRunner().invoke(app, args + ["--allow-unisolated"])
    lines = out.output.splitlines()
    assert out.exit_code == 0 and lines[-1] == "1", out.output
    assert [ln for ln in lines if ln.startswith("sandbox: ")] == [lines[0]] and lines[0].startswith("sandbox: NONE, rlimits only")


def test_verify_names_the_sandbox_it_used(tmp_path):
    """With namespaces allowed (this machine), the line names them."""
    response, tests = tmp_path / "r.txt", tmp_path / "t.json"
    response.write_text(ADD)
    tests.write_text(IO)
    out = CliRunner().invoke(app, ["verify", "--kind", "code", "--response-file", str(response), "--tests-file", str(tests)])
    first = out.output.splitlines()[0]
    kinds = ("sandbox: Linux namespaces as root:", "sandbox: Linux user namespaces:")
    assert out.exit_code == 0 and first.startswith(kinds), out.output


@pytest.mark.skipif(not facts().root, reason="root's fallback: a user without user namespaces has no sandbox at all")
def test_root_whose_runs_cannot_have_a_user_namespace_counts_processes_over_uid_65534(no_namespaces, monkeypatch):
    """Namespaces allowed but not user namespaces: runs drop to uid 65534 outside, RLIMIT_NPROC counts that
    uid, and the rest (masked homes, no network, own PID namespace) holds."""
    monkeypatch.setenv("SDZERO_SIM_USERNS_ONLY", "1")
    assert code.sandbox_description(REFUSED).startswith("Linux namespaces as root:")
    assert "processes counted over uid 65534" in code.sandbox_description(REFUSED)
    probe = ("```python\nimport os, resource as r, socket\nprint(os.getuid(), r.getrlimit(r.RLIMIT_NPROC)[0], os.listdir('/home'))\n"
             "socket.create_connection(('127.0.0.1', 9), timeout=0.5)\n```")
    verdict = check(probe, json.dumps({"inputs": [""], "outputs": ["65534 64 []"]}), REFUSED)
    assert verdict.score == 0.0 and "Network is unreachable" in verdict.reason, verdict.reason
    assert check(probe.replace("socket.create", "# socket.create"), json.dumps({"inputs": [""], "outputs": ["65534 64 []"]}),
                 REFUSED).score == 1.0

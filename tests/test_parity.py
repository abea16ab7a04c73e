"""`sdzero parity`: CPU vs a float64 numpy reference everywhere; GPU vs CPU where MLX has a working GPU.

The GPU test is skipped where there is none, and its skip reason is the detection result itself (an
exception or a CUDA wheel without a driver is reported there, not swallowed). `make test-gpu` runs it.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.platform.device import gpu_status
from sdzero_mlx.parity import (
    TOLERANCE, backend_run, compare_runs, greedy_comparison, reference, run_in_child, run_parity,
)

GPU = gpu_status()


@pytest.fixture(scope="module")
def cpu_runs(tiny_model_dir):
    return {dtype: backend_run(tiny_model_dir, "cpu", dtype) for dtype in ("float32", "bfloat16")}


def by_check(comparisons):
    return {c.check: c for c in comparisons}


def test_error_is_max_abs_difference_over_the_largest_reference_value():
    c = compare_runs(
        *[{"teacher.logits": np.array(x), "student.logits": np.array(x), "distill.kl": np.array(x), "distill.loss": np.array(1.0),
           "srt.loss": np.array(1.0), "adamw.grad_norm": np.array(1.0), "teacher.topk_idx": np.zeros((1, 1, 2), int),
           "teacher.topk_logp": np.zeros((1, 1, 2)), "greedy.tokens": np.array([5]), "greedy.logits": np.zeros((1, 8)),
           "distill.grad/w": np.array(x), "srt.grad/w": np.array(x), "adamw.updated/w": np.array(x)}
          for x in ([1.0, 2.05], [1.0, 2.0])], "float32", "a", "b")
    assert by_check(c)["teacher.logits"].error == pytest.approx(0.05 / 2.0)
    assert not by_check(c)["teacher.logits"].ok and by_check(c)["distill.loss"].error == 0.0
    assert by_check(c)["distill.grad"].error == pytest.approx(0.025) and by_check(c)["greedy.tokens"].ok


def test_cpu_matches_the_float64_reference_in_float32_and_bfloat16(tiny_model_dir, cpu_runs):
    for dtype, run in cpu_runs.items():
        checks = by_check(reference(tiny_model_dir, run, dtype, "cpu"))
        assert set(checks) == {"teacher.logits", "teacher.topk_set", "teacher.topk_logp", "student.logits", "distill.kl",
                               "distill.loss", "distill.grad", "srt.loss", "srt.grad", "adamw.grad_norm", "adamw.updated",
                               "greedy.tokens"}
        assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
        assert checks["greedy.tokens"].note == "16 tokens identical"
    f32 = by_check(reference(tiny_model_dir, cpu_runs["float32"], "float32", "cpu"))
    # float32 is far inside its tolerance (measured <= 3.5e-6); bfloat16 is coarser than float32 everywhere
    assert max(c.error for c in f32.values()) < 1e-5
    bf16 = by_check(reference(tiny_model_dir, cpu_runs["bfloat16"], "bfloat16", "cpu"))
    assert bf16["student.logits"].error > 10 * f32["student.logits"].error


def test_the_reference_catches_a_wrong_backend(tiny_model_dir, cpu_runs):
    run = dict(cpu_runs["float32"])
    name = next(k for k in run if k.startswith("distill.grad/") and k.endswith("lora_a"))
    run[name] = -run[name]  # one gradient with the wrong sign
    srt = next(k for k in run if k.startswith("srt.grad/"))
    run[srt] = run[srt] * 1.01  # one gradient 1% off
    updated = next(k for k in run if k.startswith("adamw.updated/"))
    run[updated] = run[updated] + 1e-3  # an update without exact weight decay would look like this
    run["teacher.topk_logp"] = run["teacher.topk_logp"] + 1e-3  # not renormalised
    tokens = run["greedy.tokens"].copy()
    tokens[4] = (tokens[4] + 1) % 100
    run["greedy.tokens"] = tokens
    checks = by_check(reference(tiny_model_dir, run, "float32", "cpu"))
    for check in ("distill.grad", "srt.grad", "adamw.updated", "teacher.topk_logp", "greedy.tokens"):
        assert not checks[check].ok, check
    assert checks["greedy.tokens"].note.startswith("first divergence at token 4: cpu chose")
    assert checks["student.logits"].ok and checks["distill.loss"].ok  # untouched parts still agree


def test_greedy_divergence_reports_both_backends_logits():
    a_logits, b_logits = np.zeros((2, 4)), np.zeros((2, 4))
    a_logits[1, 2], b_logits[1, 3] = 1.5, 2.5
    c = greedy_comparison(np.array([1, 2]), np.array([1, 3]), a_logits, b_logits, "bfloat16", "gpu", "cpu")
    assert (c.error, c.ok) == (1.0, False)
    assert c.note == ("first divergence at token 1: gpu chose 2, cpu chose 3; gpu logits 1.500000 / 0.000000, "
                      "cpu logits 0.000000 / 2.500000")


def test_a_child_process_with_tf32_off_gives_the_same_cpu_run(tiny_model_dir, cpu_runs):
    child = run_in_child(tiny_model_dir, "cpu", "float32", {"MLX_ENABLE_TF32": "0"})
    assert all(c.error == 0.0 for c in compare_runs(child, cpu_runs["float32"], "float32", "child", "cpu"))


def test_parity_command_writes_the_table_and_json(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(app, ["parity", "--model", str(tiny_model_dir), "--dtype", "float32", "--no-gpu",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| distill.grad | float32 | cpu | numpy |" in result.output and "parity: ok" in result.output
    data = json.loads((tmp_path / "parity.json").read_text())
    assert data["ok"] and data["tolerance"] == TOLERANCE and len(data["comparisons"]) == 12


@pytest.mark.gpu
@pytest.mark.skipif(not GPU.available, reason=f"no GPU for MLX here: {GPU.detail}")
def test_gpu_matches_cpu_and_the_reference(tiny_model_dir):
    report = run_parity(tiny_model_dir, gpu=True)
    assert report.ok, [c for c in report.failed()]
    backends = {c.a for c in report.comparisons}
    assert {"cpu", "gpu"} <= backends or {"cpu", "gpu-tf32", "gpu-tf32-off"} <= backends
    assert any(c.a.startswith("gpu") and c.b == "cpu" and c.check == "distill.grad" for c in report.comparisons)

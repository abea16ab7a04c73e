"""The typer shell, driven as a user would: CliRunner in-process and a real subprocess."""

import json
import subprocess
import sys

import mlx.core as mx
import mlx_lm
import numpy as np
from typer.testing import CliRunner

from sdzero_mlx.cli import app

runner = CliRunner()


def test_distill_writes_adapters_that_mlx_lm_loads(tiny_recipe, tiny_model_dir, tmp_path):
    run = tmp_path / "cli-run"
    result = runner.invoke(app, ["distill", str(tiny_recipe), "--set", f"run.output_dir={run}"])
    assert result.exit_code == 0, result.output
    assert "step 2/2" in result.output
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert {"reward", "loss", "response_tokens", "trained_tokens_per_s", "peak_memory_gb"} <= set(metrics[0])
    assert (run / "recipe.yaml").is_file()

    # mlx-lm's own loader accepts the adapters and they change the model's output
    tuned, _ = mlx_lm.load(str(tiny_model_dir), adapter_path=str(run / "adapters"))
    base, _ = mlx_lm.load(str(tiny_model_dir))
    ids = mx.array([[2, 10, 11, 20]])
    assert not np.allclose(np.array(tuned(ids)), np.array(base(ids).astype(mx.float32)))

    # and so does the mlx_lm.generate command line
    gen = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "generate", "--model", str(tiny_model_dir), "--adapter-path",
         str(run / "adapters"), "--prompt", "What is 2 + 3?", "--max-tokens", "4"],
        capture_output=True, text=True, timeout=120,
    )
    assert gen.returncode == 0, gen.stderr


def test_distill_reports_bad_recipe_clearly(tiny_recipe):
    result = runner.invoke(app, ["distill", str(tiny_recipe), "--set", "distill.kl=sideways"])
    assert result.exit_code == 2
    assert "distill.kl" in result.output and "reverse" in result.output


def test_resume_continues_a_run(tiny_recipe, tmp_path):
    run = tmp_path / "r"
    first = runner.invoke(app, ["distill", str(tiny_recipe), "--set", f"run.output_dir={run}", "--set", "distill.steps=1"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["distill", str(tiny_recipe), "--set", f"run.output_dir={run}"])
    assert again.exit_code == 2 and "--resume" in again.output
    more = runner.invoke(app, ["distill", str(tiny_recipe), "--resume", str(run), "--set", "distill.steps=2"])
    assert more.exit_code == 0, more.output
    assert "step 2/2" in more.output and "step 1/2" not in more.output


def test_verify_command():
    result = runner.invoke(app, ["verify", "so the answer is \\boxed{\\frac{1}{2}}", "0.5"])
    assert result.exit_code == 0, result.output
    assert "correct" in result.output and "wrong" not in result.output
    wrong = runner.invoke(app, ["verify", "\\boxed{2}", "1/2"])
    assert "wrong" in wrong.output

"""`--data` of eval and explain: a file path (~ expanded) or a generated source's URI kept whole."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sdzero_mlx import cli
from sdzero_mlx.cli import app
from sdzero_mlx.config import FieldMap
from sdzero_mlx.data import load_examples

runner = CliRunner()
QUICK = ["--k", "1", "--max-tokens", "2", "--no-greedy"]


def ids_in(samples) -> list[str]:
    return [json.loads(line)["id"] for line in samples.read_text().splitlines()]


def test_eval_data_is_a_generated_source_or_a_path(tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "demo://inverse", "--limit", "3",
                                 "--data-seed", "1", *QUICK, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 problems" in result.output
    drawn = load_examples("demo://inverse", FieldMap(), seed=1, n=3)
    assert ids_in(out / "model" / "samples.jsonl") == [ex.id for ex in drawn] == ["inverse-1-0", "inverse-1-1", "inverse-1-2"]

    (tmp_path / "arith.jsonl").write_bytes(tiny_data.read_bytes())
    monkeypatch.setenv("HOME", str(tmp_path))  # CliRunner passes ~ through unexpanded, as `--data=~/x` does
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "~/arith.jsonl", "--limit", "2", *QUICK])
    assert result.exit_code == 0, result.output
    assert "2 problems" in result.output


def test_eval_of_a_generated_source_defaults_to_a_fixed_count(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(cli, "EVAL_GENERATED", 2)  # the default, made small for the test
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "rg://chain_sum?min_terms=2", *QUICK])
    assert result.exit_code == 0, result.output
    assert "2 problems" in result.output


def test_limit_below_one_is_a_one_line_error(tiny_model_dir):
    for command in ("eval", "explain"):
        for limit in ("0", "-2"):
            result = runner.invoke(app, [command, str(tiny_model_dir), "--data", "demo://inverse", "--limit", limit])
            assert result.exit_code == 2, result.output
            errors = [line for line in result.output.splitlines() if line.startswith("error:")]
            assert errors == [f"error: --limit must be at least 1 (got {limit})."], result.output
            assert "Traceback" not in result.output and "problems," not in result.output


def test_explain_data_takes_a_generated_source(tiny_model_dir, tmp_path):
    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", str(tiny_model_dir), "--teacher", str(tiny_model_dir), "--data",
                                 "demo://inverse", "--limit", "2", "--max-tokens", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    problems = [json.loads(line)["problem"] for line in (out / "reports.jsonl").read_text().splitlines()]
    assert problems == [ex.problem for ex in load_examples("demo://inverse", FieldMap(), seed=0, n=2)]

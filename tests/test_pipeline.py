"""`sdzero run` end to end on a tiny recipe, its resume-by-skipping, and the phase-1 CLI commands."""

import json

import mlx.core as mx
import mlx_lm
import pytest
import yaml
from typer.testing import CliRunner

from sdzero_mlx.cli import app

from scripted import scripted_model_dir, write_data

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run_recipe(tmp_path_factory):
    model = scripted_model_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("pipeline")
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(write_data(root / "data.jsonl")), "fields": {"id": "id"},
                 "phase1_size": 8, "phase2_size": 8, "eval_size": 6},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.7, "max_tokens": 12, "batch_size": 16},
        "collect": {"questions_per_batch": 4},
        "srt": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4, "optim": {"learning_rate": 1e-3}},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 4, "top_k": 16, "max_teacher_tokens": 128},
        "eval": {"k": 2, "max_tokens": 12, "greedy": True, "revise": True},
        "run": {"output_dir": str(root / "run"), "seed": 0},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, root / "run"


def test_run_finishes_writes_the_final_table_and_skips_finished_stages(tiny_run_recipe):
    recipe, run = tiny_run_recipe
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code == 0, result.output
    for stage in ("collect", "srt", "distill"):
        assert (run / stage / "done").is_file(), stage
    data = json.loads((run / "results.json").read_text())
    assert set(data["models"]) == {"base", "SRT", "SD-Zero"}
    collect = data["collect"]
    assert collect["questions_seen"] == 8 and collect["kept"] >= 1
    assert data["stages"]["collect"]["generations"] == 8 + collect["revisions_tried"]
    assert data["stages"]["distill"]["generations"] == 2 * 4 and data["stages"]["distill"]["steps"] == 2
    assert data["stages"]["srt"]["generations"] == 0 and data["stages"]["srt"]["trained_tokens"] > 0
    assert all(stage["seconds"] > 0 for stage in data["stages"].values())  # time per stage
    # each model: k = 2 samples + 1 greedy per problem, plus 1 revision (its first attempt is the first sample)
    for name in ("base", "srt", "distill"):
        assert data["stages"][f"eval {name}"]["generations"] == 6 * (2 + 1) + 6
    table = (run / "results.md").read_text()
    assert "| SD-Zero |" in table and "avg@2" in table and "| distill | 8 |" in table
    assert "kept:" in table and table in result.output

    # the SD-Zero model is the fused SRT folder plus phase-2 adapters, as mlx-lm sees it
    tuned, _ = mlx_lm.load(str(run / "srt" / "model"), adapter_path=str(run / "distill" / "adapters"))
    assert tuned(mx.array([[2, 10, 11]])).shape[-1] > 0

    # rerun: everything is skipped; a missing eval file is the only thing redone
    (run / "eval" / "distill.json").unlink()
    again = runner.invoke(app, ["run", str(recipe)])
    assert again.exit_code == 0, again.output
    for stage in ("collect", "srt", "distill", "eval base", "eval srt"):
        assert f"{stage}: done, skipped" in again.output
    assert "eval distill: done, skipped" not in again.output and "srt: step" not in again.output
    assert json.loads((run / "results.json").read_text())["models"]["SD-Zero"] == data["models"]["SD-Zero"]
    # a finished evaluation is never read under other eval settings: the stages are reused (eval is not in
    # their record), every model is evaluated again with k = 3, and the log names the field
    other_k = runner.invoke(app, ["run", str(recipe), "--set", "eval.k=3"])
    assert other_k.exit_code == 0, other_k.output
    assert "srt: done, skipped" in other_k.output and "distill: done, skipped" in other_k.output
    assert other_k.output.count("eval.k: 2 -> 3") == 3 and "eval base: done, skipped" not in other_k.output
    for name in ("base", "srt", "distill"):
        assert data["stages"][f"eval {name}"]["generations"] == 6 * (2 + 1) + 6
        assert json.loads((run / "results.json").read_text())["stages"][f"eval {name}"]["generations"] == 6 * (3 + 1) + 6


def test_collect_and_srt_commands(tiny_run_recipe, tmp_path):
    recipe, _ = tiny_run_recipe
    out = ["--set", f"run.output_dir={tmp_path / 'r'}", "--set", "collect.target_tuples=2"]
    result = runner.invoke(app, ["collect", str(recipe), *out])
    assert result.exit_code == 0, result.output
    assert "batch 1/2" in result.output and "2 kept" in result.output
    assert len((tmp_path / "r" / "collect" / "tuples.jsonl").read_text().splitlines()) == 2
    trained = runner.invoke(app, ["srt", str(recipe), *out])
    assert trained.exit_code == 0, trained.output
    assert "step 1/1" in trained.output and (tmp_path / "r" / "srt" / "model" / "config.json").is_file()
    missing = runner.invoke(app, ["srt", str(recipe), "--set", f"run.output_dir={tmp_path / 'none'}"])
    assert missing.exit_code == 2 and "sdzero collect" in missing.output
    changed = runner.invoke(app, ["collect", str(recipe), *out, "--set", "collect.revisions=1"])
    assert changed.exit_code == 2 and "collect.revisions" in changed.output

"""recipes/smollm2-135m-chain-sum.yaml end to end through `sdzero compare`, at a tiny budget, so the
real-model recipe cannot rot: its data source, prompt, verifier choice, lengths and every method's
section run on the real model (SmolLM2-135M-Instruct) as they would in the full comparison.

Only sizes and step counts are overridden (and model.path, to the converted test model; and
eval.revise and the probe, which the recipe turns off for time, are turned on); the
matched budget is counted by hand: collect 4 questions x (1 answer + 2 revisions) = 12 generations,
distill 2 steps x 2 questions = 4, so SD-Zero spent 16 and RFT and GRPO (2 questions x 2 samples per
step) get 16 // 4 = 4 steps each.
"""

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smollm import smollm_dir  # noqa: F401  (fixture)
from sdzero_mlx.cli import app
from sdzero_mlx.recipe import load_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None, reason="reasoning-gym (tasks extra) not installed"),
]

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "smollm2-135m-chain-sum.yaml"
TINY = [
    "data.phase1_size=4", "data.phase2_size=4", "data.validation_size=2", "data.eval_size=2",
    "collect.revisions=2", "collect.questions_per_batch=4",
    "srt.batch_size=4", "srt.micro_batch_size=4",
    "distill.steps=2", "distill.questions_per_step=2", "distill.micro_batch_size=2",
    "rft.questions_per_step=2", "rft.samples_per_question=2", "rft.micro_batch_size=4",
    "grpo.questions_per_step=2", "grpo.group_size=2", "grpo.micro_batch_size=4",
    # the shipped recipe turns revise and the probe off to save time; on here, so both run on the real model
    "eval.k=1", "eval.revise=true", "run.probe_every=1", "run.probe_size=2", "run.save_every=1",
]


def test_the_recipe_names_the_converted_model_and_a_reasoning_gym_task():
    recipe = load_recipe(RECIPE)
    assert Path(recipe.model.path).name.startswith("smollm2-135m-instruct-")
    assert recipe.data.source.startswith("rg://chain_sum?") and recipe.verifier.last_number_fallback
    assert recipe.data.validation_size > 0 and recipe.model.dtype == "float32" and recipe.lora.fine_tune_type == "lora"
    assert set(recipe.compare.methods) == {"base", "srt", "distill", "rft", "grpo"}


def test_smollm2_recipe_through_compare_at_a_tiny_budget(smollm_dir, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    sets = [f"model.path={smollm_dir}", f"run.output_dir={run}", *TINY]
    result = CliRunner().invoke(app, ["compare", str(RECIPE), *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output

    data = json.loads((run / "compare.json").read_text())
    assert data["methods"] == ["base", "srt", "distill", "rft", "grpo"]
    assert data["budget_generations"] == 16  # collect 4 x (1 + 2) + distill 2 x 2
    assert data["budgets"]["SD-Zero"]["generations"] == 16 and data["budgets"]["SRT"]["generations"] == 12
    for label in ("RFT", "GRPO"):
        assert data["budgets"][label]["generations"] == 16, label  # 4 steps x 2 questions x 2 samples
    for label, results in data["models"].items():
        sample = next(r for r in results if r["kind"] == "sample")
        assert sample["n_problems"] == 2 and sample["k"] == 1 and 0 <= sample["avg_at_k"] <= 1, label
        assert 0 < sample["mean_tokens"] <= 64, label  # the recipe's answer cap
        assert any(r["kind"] == "revise" for r in results), label  # eval.revise: the correction rate
    assert json.loads((run / "splits.json").read_text())["sizes"] == {"phase1": 4, "phase2": 4, "validation": 2, "test": 2}
    # every training stage probed the validation split at each step
    for stage, steps in (("distill", 2), ("rft", 4), ("grpo", 4)):
        records = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == list(range(1, steps + 1)), stage
        assert all(r["probe_accuracy"] is not None for r in records), stage
    assert (run / "compare.png").is_file() and "| SD-Zero |" in (run / "compare.md").read_text()

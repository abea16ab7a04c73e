"""`sdzero compare` on the scripted model: every method trained and evaluated, budgets that add up."""

import json

import yaml
from matplotlib import image as mpimg
from typer.testing import CliRunner

from sdzero_mlx.cli import app

from scripted import scripted_model_dir, write_data


def test_compare_matches_the_generation_budget_and_writes_one_table(tmp_path_factory):
    model = scripted_model_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("compare")
    write_data(root / "d.jsonl", 40, solutions=True)
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id", "solution": "solution"},
                 "phase1_size": 8, "phase2_size": 8, "eval_size": 4, "validation_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.7, "max_tokens": 10, "batch_size": 16},
        "collect": {"questions_per_batch": 8, "revisions": 1},
        "srt": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 4, "top_k": 8, "max_teacher_tokens": 128},
        "rft": {"questions_per_step": 2, "samples_per_question": 2},
        "grpo": {"questions_per_step": 2, "group_size": 2},
        "sft": {"batch_size": 8},
        "sdft": {"questions_per_step": 4, "context": "rephrase"},
        "eval": {"k": 2, "max_tokens": 10, "greedy": True, "revise": False},
        "optim": {"learning_rate": 1e-3},
        "run": {"output_dir": str(root / "run"), "seed": 0, "probe_every": 1, "probe_size": 4},
    }
    (root / "r.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["compare", str(root / "r.yaml")])
    assert result.exit_code == 0, result.output
    data = json.loads((root / "run" / "compare.json").read_text())
    collect = json.loads((root / "run" / "collect" / "summary.json").read_text())
    # SD-Zero's budget: 8 initial answers + their revisions (1 each) + 2 distill steps x 4 questions
    assert collect["generations"] == 8 + 8
    budget = data["budget_generations"]
    assert budget == collect["generations"] + 2 * 4 == 24
    b = data["budgets"]
    assert b["SD-Zero"]["generations"] == budget and b["SRT"]["generations"] == collect["generations"]
    assert b["base"]["generations"] == 0 and b["SFT"]["generations"] == 0 and b["SFT"]["trained_tokens"] > 0
    # each sampling baseline: budget // generations per step steps (RFT, GRPO: 2 x 2 = 4 -> 6 steps; SDFT: 4 -> 6)
    for name, per_step in (("RFT", 4), ("GRPO", 4), ("SDFT", 4)):
        assert b[name]["generations"] == (budget // per_step) * per_step == 24, name
    assert set(data["models"]) == {"base", "SRT", "SD-Zero", "RFT", "GRPO", "SFT", "SDFT"}
    table = (root / "run" / "compare.md").read_text()
    assert "| RFT |" in table and "train gens" in table and table.count("\n| ") >= 8
    assert mpimg.imread(root / "run" / "compare.png").ndim == 3
    # rerun: nothing is trained again
    again = CliRunner().invoke(app, ["compare", str(root / "r.yaml"), "--methods", "base,rft,sft"])
    assert again.exit_code == 0, again.output
    assert "rft: done; reusing it" in again.output and "step 1/" not in again.output

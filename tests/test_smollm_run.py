"""`sdzero run` end to end on a real instruct model (SmolLM2-135M-Instruct: ChatML template, <|im_end|>
as the stop id, a 49k vocabulary), with a tiny budget, checking every artefact a user gets.

The tiny and scripted models check the method's maths and bookkeeping; this keeps the real-model
path (chat template, stop ids, a real vocabulary, the fused SRT folder) from rotting. SmolLM2 cannot
do arithmetic beyond one-digit sums, so the questions are those and the verifier's last-number
fallback is on: collection must keep at least one revision for SRT to train.
"""

import json

import mlx.core as mx
import pytest
import yaml
from typer.testing import CliRunner

from smollm import smollm_dir  # noqa: F401  (fixture)
from sdzero_mlx.cli import app

pytestmark = pytest.mark.slow


def one_digit_sums(n: int) -> list[dict]:
    return [{"id": f"s{i}", "problem": f"What is {1 + i % 4} + {1 + (3 * i) % 5}?", "answer": str(2 + i % 4 + (3 * i) % 5)}
            for i in range(n)]


def test_sdzero_run_on_smollm2(smollm_dir, tmp_path):  # noqa: F811
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in one_digit_sums(16)))
    run = tmp_path / "run"
    recipe = tmp_path / "smol.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"path": str(smollm_dir)},
        "data": {"source": str(data), "fields": {"id": "id"}, "phase1_size": 4, "phase2_size": 4, "eval_size": 2},
        "prompts": {"template": "{problem} Answer with the number only."},
        "lora": {"rank": 4, "num_layers": 2},
        "sampling": {"max_tokens": 16, "batch_size": 16},
        "collect": {"revisions": 2, "questions_per_batch": 4},
        "srt": {"batch_size": 8, "micro_batch_size": 4},
        "distill": {"steps": 2, "questions_per_step": 2, "micro_batch_size": 2, "max_teacher_tokens": 160},
        "eval": {"k": 1, "max_tokens": 16, "greedy": False, "revise": False},
        "verifier": {"last_number_fallback": True},
        "run": {"output_dir": str(run)},
    }))
    result = CliRunner().invoke(app, ["run", str(recipe)])
    assert result.exit_code == 0, result.output

    summary = json.loads((run / "collect" / "summary.json").read_text())
    assert summary["kept"] >= 1, summary
    tuples = [json.loads(line) for line in (run / "collect" / "tuples.jsonl").read_text().splitlines()]
    assert tuples and all(t["y_rev"] and t["prompt_ids"] for t in tuples)
    for stage in ("collect", "srt", "distill"):
        assert (run / stage / "done").is_file(), stage
    # SRT: adapters and the fused model, an ordinary mlx-lm folder with the tokenizer and template
    from mlx_lm import load

    srt_model, tok = load(str(run / "srt" / "model"))
    assert tok.chat_template and 2 in tok.eos_token_ids  # <|im_end|>
    assert (run / "srt" / "adapters" / "adapters.safetensors").is_file()
    # distill: one record per step, finite numbers, a 49k-vocabulary model's peak memory reported
    records = [json.loads(line) for line in (run / "distill" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["loss"] >= 0 and r["peak_memory_gb"] > 0 and 0 <= r["reward"] <= 1 for r in records)
    tuned, _ = load(str(run / "srt" / "model"), adapter_path=str(run / "distill" / "adapters"))
    assert tuned(mx.array([[1, 2, 3]])).shape[-1] == 49152
    # evaluation and the final table
    final = json.loads((run / "results.json").read_text())
    assert set(final["models"]) == {"base", "SRT", "SD-Zero"}
    assert final["stages"]["distill"]["generations"] == 4 and final["stages"]["distill"]["steps"] == 2
    for name in ("base", "srt", "distill"):
        assert (run / "eval" / f"{name}.json").is_file()
    assert "| SD-Zero |" in (run / "results.md").read_text()

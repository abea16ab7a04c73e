"""Rollouts and one distill step on a real instruct model (SmolLM2-135M-Instruct, offline).

The tiny test model checks the maths; this checks what only a real tokenizer and chat template
show: exact sampled ids round-trip to the text, sep(r) sits cleanly after y, and a distill step
on a 30-layer model trains LoRA and leaves the teacher where it was.
"""

import json

import mlx.core as mx
import numpy as np
import pytest
import yaml

from smollm import smollm_dir  # noqa: F401  (fixture)
from sdzero_mlx.config import ModelConfig, PromptConfig, SamplingConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.modeling import load_model
from sdzero_mlx.prompts import separators
from sdzero_mlx.rollout import sample_rollouts
from sdzero_mlx.types import Example

pytestmark = pytest.mark.slow


def test_rollouts_keep_exact_ids(smollm_dir):  # noqa: F811
    model, tok = load_model(ModelConfig(path=str(smollm_dir)))
    examples = [Example("a", "What is 2 + 2?", "4"), Example("b", "Name a colour.", "red")]
    rollouts = sample_rollouts(model, tok, examples, PromptConfig(), SamplingConfig(max_tokens=24, batch_size=2), 0)
    for r in rollouts:
        assert r.finish_reason in ("stop", "length")
        assert tok.decode(list(r.completion_ids)) == r.text
        assert len(r.completion_ids) <= 24
        if r.finish_reason == "stop":
            assert r.stop_id in tok.eos_token_ids and r.stop_id not in r.completion_ids
        assert tok.decode(list(r.prompt_ids)).endswith("<|im_start|>assistant\n")
    again = sample_rollouts(model, tok, examples, PromptConfig(), SamplingConfig(max_tokens=24, batch_size=2), 0)
    assert [r.completion_ids for r in again] == [r.completion_ids for r in rollouts]  # seeded
    seps = separators(tok, PromptConfig())
    assert tok.decode(list(seps.wrong)) == "\n\nWait, this response is not correct, let me start over.\n\n"


def test_one_distill_step_on_a_real_model(smollm_dir, tiny_data, tmp_path):  # noqa: F811
    recipe_path = tmp_path / "smol.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "model": {"path": str(smollm_dir)},
        "data": {"source": str(tiny_data), "phase2_size": 4, "eval_size": 0},
        "lora": {"rank": 4, "num_layers": 4},
        "sampling": {"max_tokens": 32, "batch_size": 4},
        "distill": {"steps": 1, "questions_per_step": 2, "micro_batch_size": 1, "max_teacher_tokens": 160},
        "run": {"output_dir": str(tmp_path / "run")},
    }))
    state = run_distill(load_recipe(recipe_path), tmp_path / "run")
    assert state.step == 1 and state.generations == 2
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert metrics["loss"] > 0 and np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    adapters = mx.load(str(tmp_path / "run" / "adapters" / "adapters.safetensors"))
    # LoRA on the last 4 of 30 blocks only; every B factor moved away from zero
    assert all(".layers.2" in k for k in adapters)  # layers 26-29
    assert all(mx.abs(v).max().item() > 0 for k, v in adapters.items() if k.endswith("lora_b"))
    from mlx_lm import load
    load(str(smollm_dir), adapter_path=str(tmp_path / "run" / "adapters"))

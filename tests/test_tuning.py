"""lora.fine_tune_type: LoRA, DoRA and full fine-tuning through every stage's shared setup; the monitors."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
from mlx.utils import tree_flatten

from sdzero_mlx.config import LoraConfig, ModelConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.modeling import load_model, make_trainable, trainable


@pytest.mark.parametrize("kind, suffixes", [("lora", ("lora_a", "lora_b")), ("dora", ("lora_a", "lora_b", ".m")),
                                            ("full", ("weight",))])
def test_what_each_fine_tune_type_trains(tiny_model_dir, kind, suffixes):
    model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    make_trainable(model, LoraConfig(fine_tune_type=kind, rank=4, num_layers=1), seed=0)
    names = list(trainable(model))
    assert names and all(n.startswith("model.layers.1.") for n in names)  # the last num_layers block only
    assert all(n.endswith(suffixes) for n in names)
    if kind == "full":  # every weight of that block, nothing of the embedding
        block = [n for n, _ in tree_flatten(model.parameters()) if n.startswith("model.layers.1.")]
        assert sorted(names) == sorted(block)


@pytest.mark.parametrize("kind", ["dora", "full"])
def test_distill_with_dora_and_full_writes_adapters_mlx_lm_loads(tiny_recipe, tmp_path, kind):
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={tmp_path / kind}", f"lora.fine_tune_type={kind}",
                                       "distill.steps=2", "run.probe_every=1", "run.probe_size=4",
                                       "data.validation_size=4"])
    run_distill(recipe, tmp_path / kind)
    config = json.loads((tmp_path / kind / "adapters" / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == kind
    tuned, _ = mlx_lm.load(recipe.model.path, adapter_path=str(tmp_path / kind / "adapters"))
    base, _ = mlx_lm.load(recipe.model.path)
    ids = mx.array([[2, 10, 11, 20, 21]])
    assert not np.allclose(np.array(tuned(ids)), np.array(base(ids)))  # the adapters moved the model
    teacher = mx.load(str(tmp_path / kind / "checkpoint" / "teacher.safetensors"))
    student = mx.load(str(tmp_path / kind / "adapters" / "adapters.safetensors"))
    assert teacher.keys() == student.keys()
    initial, _ = load_model(recipe.model)
    make_trainable(initial, recipe.lora, recipe.run.seed)
    for k, v in trainable(initial).items():  # sync none: the teacher kept the initial values exactly
        assert np.array_equal(np.array(teacher[k]), np.array(v)), k
    rows = [json.loads(l) for l in (tmp_path / kind / "metrics.jsonl").read_text().splitlines()]
    for r in rows:  # the monitors are there and sane
        assert r["weight_change"] > 0 and r["entropy"] >= 0 and 0 <= r["probe_accuracy"] <= 1
        assert 0 <= r["truncated"] <= 1 and r["response_tokens"] > 0


def test_weight_change_and_entropy_monitors_by_hand(tiny_model_dir):
    """weight_change = ||theta_after - theta_before|| / ||theta_before||; entropy = mean over trained tokens."""
    import mlx.optimizers as optim

    from sdzero_mlx.loss import log_softmax
    from sdzero_mlx.loss import nll_batches, weighted_nll
    from sdzero_mlx.forward import logits_at
    from sdzero_mlx.update import optimizer_step

    model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    make_trainable(model, LoraConfig(rank=4), seed=0)
    before = {k: np.array(v) for k, v in trainable(model).items()}
    [mb] = nll_batches([(2, 10, 11, 12), (2, 13, 14)], [(1, 4), (1, 3)], 4, 0)
    logp = np.array(log_softmax(logits_at(model, mb.batch)))
    mask = np.array(mb.batch.mask)
    entropy = (-(np.exp(logp) * logp).sum(-1) * mask).sum() / mask.sum()
    result = optimizer_step(model, optim.SGD(learning_rate=0.5), weighted_nll, [mb], grad_clip=0.0)
    after = {k: np.array(v) for k, v in trainable(model).items()}
    moved = np.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before))
    size = np.sqrt(sum((v**2).sum() for v in before.values()))
    assert result.weight_change == pytest.approx(moved / size, rel=1e-4) and moved > 0
    assert result.entropy == pytest.approx(entropy, rel=1e-4)

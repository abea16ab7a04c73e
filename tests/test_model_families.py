"""Model families other than llama through the project's own code paths, on tiny random models.

A user's first real model is often a Qwen2.5, Qwen3, Phi-3 or Gemma: mlx-lm builds each from its own
module, with its own layer names (Phi-3 fuses q, k, v into one projection), its own head (tied or
not) and sometimes work after the head (Gemma 2's final soft-cap, Granite's logit scaling). Each is
built here from mlx-lm's class with this project's tokenizer, saved as an mlx-lm folder and put
through: blocked scoring (forward.logit_chunks) against the model's own logits, two `sdzero distill`
steps (with lora.grad_checkpoint) whose adapters `mlx_lm.load(..., adapter_path=...)` accepts and reproduces, and the fused model
that SRT writes.
"""

import json

import mlx.core as mx
import numpy as np
import pytest
import yaml
from mlx.utils import tree_flatten
from mlx_lm.utils import _get_classes
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.config import LoraConfig, ModelConfig
from sdzero_mlx.modeling import load_model, make_trainable, trainable
from sdzero_mlx.forward import body_and_head, logit_chunks, logits_at, scored_batch
from sdzero_mlx.stages.srt import save_fused_model
from sdzero_mlx.demo.tinymodel import model_config, write_tokenizer

from conftest import tiny_recipe_dict

# model_type -> config fields beyond the tiny llama's; True where model(ids) == head(body(ids))
FAMILIES = {
    "qwen2": ({"tie_word_embeddings": False}, True),  # biases on q, k, v; an untied lm_head
    "qwen3": ({"head_dim": 16}, True),  # q/k RMS norms, tied embeddings
    "phi3": ({"tie_word_embeddings": False}, True),  # one fused qkv_proj, gate_up_proj
    "gemma2": ({"head_dim": 16, "query_pre_attn_scalar": 16}, False),  # final logit soft-cap at 30
    "granite": ({"logits_scaling": 4.0, "attention_multiplier": 0.25, "embedding_multiplier": 2.0,
                 "residual_multiplier": 0.5, "attention_bias": False, "mlp_bias": False}, False),  # logits / 4
}


def family_model_dir(root, model_type: str):
    config = {**model_config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
              "model_type": model_type, **FAMILIES[model_type][0]}
    model_class, args_class = _get_classes(config)
    mx.random.seed(0)
    model = model_class(args_class.from_dict(config))
    out = root / model_type
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    write_tokenizer(out)
    return out


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    return request.param, family_model_dir(tmp_path_factory.mktemp("families"), request.param)


def lora_model(path):
    model, tok = load_model(ModelConfig(path=str(path)))
    make_trainable(model, LoraConfig(rank=4, scale=10.0), 0)
    rng = np.random.default_rng(0)  # non-zero B, so that the adapters change the logits
    model.load_weights([(k, mx.array(rng.normal(0, 0.05, v.shape).astype(np.float32))) for k, v in trainable(model).items()],
                       strict=False)
    return model, tok


def test_blocked_logits_equal_the_models_own(family):
    name, path = family
    model, _ = lora_model(path)
    assert type(model).__module__ == f"mlx_lm.models.{name}"
    batch = scored_batch([(5, 6, 7, 8, 9, 10), (11, 12, 13)], [(2, 6), (1, 3)], 0)
    full = np.array(logits_at(model, batch))
    blocks = mx.concatenate([lg for _, _, lg in logit_chunks(model, batch, max_elements=1)], axis=1)
    np.testing.assert_allclose(np.array(blocks), full, rtol=1e-5, atol=1e-5)
    # the head splits off exactly where the model does nothing after it; otherwise the full forward
    assert (body_and_head(model) is not None) == FAMILIES[name][1]


def test_distill_adapters_load_in_mlx_lm_and_srt_fuses(family, tiny_data, tmp_path):
    import mlx_lm

    name, path = family
    recipe = tmp_path / "r.yaml"
    raw = tiny_recipe_dict(path, tiny_data, tmp_path / "run")
    # transformers gives a "qwen2" folder its Qwen2Tokenizer, which drops this tokenizer's spaces:
    # prompts grow to ~85 tokens, so the teacher needs more room than the shared tiny recipe's 128
    raw["distill"]["max_teacher_tokens"] = 256
    raw["lora"]["grad_checkpoint"] = True  # each family's block signature through mx.checkpoint
    recipe.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["distill", str(recipe)])
    assert result.exit_code == 0, result.output
    adapters = tmp_path / "run" / "adapters"  # a stage command writes into run.output_dir
    ids = mx.array([[5, 6, 7, 8]])
    base, _ = mlx_lm.load(str(path))
    tuned, _ = mlx_lm.load(str(path), adapter_path=str(adapters))
    # lr 1e-2 for 2 steps moved the LoRA weights: the adapted logits differ from the base's
    assert float(mx.abs(tuned(ids) - base(ids)).max()) > 1e-4

    # SRT's fused folder: an ordinary mlx-lm model whose logits are the LoRA model's
    model, tok = lora_model(path)
    want = np.array(model(ids))
    save_fused_model(model, tok, str(path), tmp_path / "fused")
    fused, _ = mlx_lm.load(str(tmp_path / "fused"))
    np.testing.assert_allclose(np.array(fused(ids)), want, rtol=1e-4, atol=1e-4)


def test_model_path_under_home_is_expanded(tiny_model_dir, tmp_path, monkeypatch):
    # a recipe may say model.path: ~/models/x (recipes/smollm2-135m-chain-sum.yaml does); mlx-lm's load
    # does not expand "~" itself, and took "~/m" for a Hub repo id
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "m").symlink_to(tiny_model_dir)
    monkeypatch.setenv("HOME", str(home))
    model, tok = load_model(ModelConfig(path="~/models/m"))
    reference, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    ids = mx.array([[1, 2, 3]])
    assert mx.array_equal(model(ids), reference(ids))


def test_fused_model_from_a_path_under_home(tiny_model_dir, tmp_path, monkeypatch):
    # SRT fuses and copies the base's config from model.path: "~/models/m" was taken for a Hub id there
    import mlx_lm

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "m").symlink_to(tiny_model_dir)
    monkeypatch.setenv("HOME", str(home))
    model, tok = lora_model(tiny_model_dir)
    ids = mx.array([[1, 2, 3]])
    want = np.array(model(ids))
    save_fused_model(model, tok, "~/models/m", tmp_path / "fused")
    fused, _ = mlx_lm.load(str(tmp_path / "fused"))
    np.testing.assert_allclose(np.array(fused(ids)), want, rtol=1e-4, atol=1e-4)

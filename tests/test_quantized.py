"""QLoRA-style: LoRA on a 4- or 8-bit base quantized by mlx-lm's own convert, trained by a distill
step, then fused as mlx-lm's fuse does (dequantize, add the delta, re-quantize at the same bits)."""

import json

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import numpy as np
import pytest
from mlx.utils import tree_flatten

from sdzero_mlx.config import LoraConfig, ModelConfig, OptimConfig
from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx.kd import distill_step
from sdzero_mlx.modeling import is_quantized, load_model, make_trainable, trainable
from sdzero_mlx.stages.srt import save_fused_model
from sdzero_mlx.update import make_optimizer

from test_distill import items_for_test


@pytest.fixture(scope="module", params=[4, 8])
def quantized_dir(request, tiny_model_dir, tmp_path_factory):
    from mlx_lm.convert import convert

    out = tmp_path_factory.mktemp(f"q{request.param}") / "model"
    convert(str(tiny_model_dir), str(out), quantize=True, q_group_size=32, q_bits=request.param)
    return out, request.param


def test_lora_on_a_quantized_base_trains_and_fuses_requantized(quantized_dir, tmp_path):
    path, bits = quantized_dir
    model, tok = load_model(ModelConfig(path=str(path)))
    assert is_quantized(model)
    make_trainable(model, LoraConfig(rank=4, scale=10.0), 0)
    frozen = {k: np.array(v) for k, v in tree_flatten(model.parameters()) if "lora" not in k}
    assert any(k.endswith(".scales") for k in frozen)  # the base really is quantized
    opt = make_optimizer(OptimConfig(learning_rate=1e-2), 1)
    for _ in range(2):
        result = distill_step(model, opt, trainable(model), items_for_test(), DistillConfig(top_k=8).kl_settings, 8, 0,
                               1.0)
    assert np.isfinite(result.loss) and result.grad_norm > 0
    after = dict(tree_flatten(model.parameters()))
    for k, v in frozen.items():  # packed weights, scales and biases untouched
        assert np.array_equal(v, np.array(after[k])), k
    assert all(np.abs(np.array(v)).max() > 0 for k, v in trainable(model).items() if k.endswith("lora_b"))

    ids = mx.array([items_for_test()[1].teacher.ids])
    model.eval()
    with_adapters = np.array(model(ids))
    save_fused_model(model, tok, str(path), tmp_path / "fused")
    fused, _ = mlx_lm.load(str(tmp_path / "fused"))
    layers = [m for _, m in fused.named_modules() if isinstance(m, nn.QuantizedLinear)]
    assert layers and all(m.bits == bits and m.group_size == 32 for m in layers)
    assert json.loads((tmp_path / "fused" / "config.json").read_text())["quantization"]["bits"] == bits
    # re-quantizing base + delta moves the logits by about one quantization step, no more
    # (measured on this random tiny model: 10% of the largest logit at 4 bits, 1.1% at 8)
    got = np.array(fused(ids))
    scale = np.abs(with_adapters).max()
    assert np.abs(got - with_adapters).max() < (0.2 if bits == 4 else 0.03) * scale

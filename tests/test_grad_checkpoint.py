"""lora.grad_checkpoint: the same distill step (weights after it equal) for less peak memory, and only
for the model that asked for it."""

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest

from sdzero_mlx.config import LoraConfig, ModelConfig
from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx.kd import distill_step
from sdzero_mlx.modeling import load_model, make_trainable, trainable
from sdzero_mlx.prompts import teacher_sequence
from sdzero_mlx.rollout import generate_completions
from sdzero_mlx.config import SamplingConfig
from sdzero_mlx.demo.tinymodel import make_model_dir
from sdzero_mlx.types import DistillItem


@pytest.fixture(scope="module")
def deep_model_dir(tmp_path_factory):
    # 8 blocks and 2 x ~330-token sequences: block activations dominate the step's memory
    return make_model_dir(tmp_path_factory.mktemp("deep") / "m", hidden_size=128, num_hidden_layers=8,
                          num_attention_heads=4, intermediate_size=512, seed=0)


def long_items(n_answer: int = 150) -> list[DistillItem]:
    rng = np.random.default_rng(0)
    items = []
    for reward in (0.0, 1.0):
        prompt, y, sep = (tuple(int(t) for t in rng.integers(10, 200, n)) for n in (16, n_answer, 8))
        items.append(DistillItem(prompt + y, (16, 16 + n_answer), teacher_sequence(prompt, y[:-1], sep, y), reward))
    return items


def step(model_dir, checkpointed: bool, fine_tune_type: str = "lora"):
    model, _ = load_model(ModelConfig(path=str(model_dir)))
    make_trainable(model, LoraConfig(rank=8, grad_checkpoint=checkpointed, fine_tune_type=fine_tune_type), 0)
    rng = np.random.default_rng(1)  # non-zero B: every LoRA factor gets a gradient
    model.load_weights([(k, mx.array(rng.normal(0, 0.02, v.shape).astype(np.float32))) for k, v in trainable(model).items()],
                       strict=False)
    teacher = {k: v * 0.5 for k, v in trainable(model).items()}
    mx.eval(model.parameters())
    mx.synchronize()
    start = mx.get_active_memory()
    mx.reset_peak_memory()
    result = distill_step(model, optim.SGD(learning_rate=1.0), teacher, long_items(), DistillConfig(top_k=16).kl_settings,
                          2, 0, 0.0)
    peak = mx.get_peak_memory() - start
    return model, result, trainable(model), peak


@pytest.mark.parametrize("fine_tune_type", ["lora", "dora", "full"])
def test_same_update_for_less_memory(deep_model_dir, fine_tune_type):
    _, with_ckpt, after_ckpt, peak_ckpt = step(deep_model_dir, True, fine_tune_type)
    # built after the checkpointed one: the block class is wrapped, but this model did not ask
    _, plain, after_plain, peak_plain = step(deep_model_dir, False, fine_tune_type)
    assert with_ckpt.loss == pytest.approx(plain.loss, rel=1e-6)
    assert with_ckpt.grad_norm == pytest.approx(plain.grad_norm, rel=1e-5)
    for name, value in after_plain.items():
        np.testing.assert_allclose(np.array(after_ckpt[name]), np.array(value), rtol=1e-5, atol=1e-7)
    assert peak_ckpt < 0.6 * peak_plain, (peak_ckpt, peak_plain)


def test_sampling_with_a_checkpointed_model_is_unchanged(deep_model_dir):
    sampling = SamplingConfig(temperature=0.0, max_tokens=8, batch_size=2)
    prompts = [(2, 10, 11, 12), (2, 13)]
    outs = []
    for checkpointed in (False, True):
        model, tok = load_model(ModelConfig(path=str(deep_model_dir)))
        make_trainable(model, LoraConfig(rank=8, grad_checkpoint=checkpointed), 0)
        outs.append([c.ids for c in generate_completions(model, tok, prompts, sampling, 0)])
    assert outs[0] == outs[1] and all(len(ids) > 0 for ids in outs[0])

"""CPU vs GPU parity (MLX's CUDA backend on Linux, Metal on a Mac) for the distill maths.

Skipped where MLX has no GPU backend (the mlx-cpu build used in CI). With `pip install
'sdzero-mlx[cuda]'` on an NVIDIA machine, or on any Apple-silicon Mac, it checks that the
teacher targets, the per-token KL and the LoRA gradients of one micro-batch agree between devices.
"""

import mlx.core as mx
import numpy as np
import pytest

from sdzero_mlx.config import LoraConfig, ModelConfig
from sdzero_mlx.kd import DistillMicroBatch, compute_teacher_targets, distill_loss, student_batch
from sdzero_mlx.modeling import make_trainable, load_model, trainable

try:
    HAS_GPU = mx.is_available(mx.gpu)
except (AttributeError, RuntimeError, ValueError):
    HAS_GPU = False

pytestmark = pytest.mark.skipif(not HAS_GPU, reason="MLX has no GPU backend here (CUDA or Metal)")


def loss_and_grads(model_dir, items, device):
    import mlx.nn as nn

    with mx.stream(device):
        model, _ = load_model(ModelConfig(path=str(model_dir), dtype="float32"))
        make_trainable(model, LoraConfig(rank=4), seed=0)
        rng = np.random.default_rng(0)
        model.load_weights([(k, mx.array(rng.normal(0, 0.05, v.shape).astype(np.float32)))
                            for k, v in trainable(model).items()], strict=False)
        teacher = {k: mx.zeros_like(v) if k.endswith("lora_b") else v for k, v in trainable(model).items()}
        mb = DistillMicroBatch(student_batch(items, 0), compute_teacher_targets(model, teacher, items, 0, 8))
        (loss, _), grads = nn.value_and_grad(model, distill_loss)(model, mb, "reverse", 0.5, 10)
        mx.eval(loss, grads)
        return loss.item(), grads


def test_cpu_and_gpu_agree(tiny_model_dir):
    from mlx.utils import tree_flatten

    from test_distill import items_for_test

    items = items_for_test()
    cpu_loss, cpu_grads = loss_and_grads(tiny_model_dir, items, mx.cpu)
    gpu_loss, gpu_grads = loss_and_grads(tiny_model_dir, items, mx.gpu)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-3)
    cpu_flat, gpu_flat = dict(tree_flatten(cpu_grads)), dict(tree_flatten(gpu_grads))
    for k in cpu_flat:
        np.testing.assert_allclose(np.array(gpu_flat[k]), np.array(cpu_flat[k]), rtol=2e-2, atol=1e-5)

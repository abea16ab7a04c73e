"""Logits a block of positions at a time (forward.logit_chunks): the same numbers as the full forward,
and a teacher / student pass at a 152k vocabulary that never holds a (B, L, V) float32 array."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from sdzero_mlx.config import KlSettings
from sdzero_mlx.kd import compute_teacher_targets, student_batch, teacher_batch
from sdzero_mlx.loss import DistillMicroBatch, distill_loss
from sdzero_mlx.loss import teacher_targets
from sdzero_mlx.modeling import trainable
from sdzero_mlx.forward import body_and_head, logit_chunks, logits_at
from sdzero_mlx.teacher import lora_values

from test_distill import fresh_student, items_for_test

WHOLE = 1 << 40  # one block
ONE = 1  # one position per block


def concat_chunks(model, batch, max_elements):
    return mx.concatenate([lg for _, _, lg in logit_chunks(model, batch, max_elements)], axis=1)


def test_blocks_equal_the_full_forward_and_the_fallback(tiny_model_dir, monkeypatch):
    model, _ = fresh_student(tiny_model_dir)
    batch = student_batch(items_for_test(), 0)
    full = np.array(logits_at(model, batch))
    assert body_and_head(model) is not None  # a llama: the head is applied to gathered hidden states
    for max_elements in (ONE, 3 * 1000, WHOLE):
        np.testing.assert_allclose(np.array(concat_chunks(model, batch, max_elements)), full, rtol=1e-5, atol=1e-5)
    # a family that scales its logits after the head (as Granite does) fails the probe: full forward, then blocks
    scaled, _ = fresh_student(tiny_model_dir)
    plain_call = type(scaled).__call__
    monkeypatch.setattr(type(scaled), "__call__", lambda self, *a, **kw: plain_call(self, *a, **kw) / 4.0)
    assert body_and_head(scaled) is None
    np.testing.assert_allclose(np.array(concat_chunks(scaled, batch, ONE)), full / 4.0, rtol=1e-6, atol=1e-6)


def sorted_targets(t):
    """(indices, logp) with each position's support sorted by token id: top-k's order is arbitrary."""
    if t.indices is None:
        return None, np.array(t.logp)
    order = np.argsort(np.array(t.indices), axis=-1)
    return np.take_along_axis(np.array(t.indices), order, -1), np.take_along_axis(np.array(t.logp), order, -1)


@pytest.mark.parametrize("top_k", [0, 8])
def test_teacher_targets_in_blocks_equal_the_unchunked_ones(tiny_model_dir, top_k):
    model, _ = fresh_student(tiny_model_dir)
    items = items_for_test()
    teacher = {k: v * 0.5 for k, v in trainable(model).items()}  # a teacher that differs from the student
    with lora_values(model, teacher):  # the code before blocks: full forward, then top-k
        legacy = teacher_targets(logits_at(model, teacher_batch(items, 0)), top_k)
    want_i, want_p = sorted_targets(legacy)
    for max_elements in (ONE, WHOLE):
        got_i, got_p = sorted_targets(compute_teacher_targets(model, teacher, items, 0, KlSettings("reverse", 0.5, top_k), max_elements))
        if top_k:
            assert np.array_equal(got_i, want_i)
        np.testing.assert_allclose(got_p, want_p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("top_k,kind", [(8, "reverse"), (0, "reverse"), (8, "mixed"), (8, "forward")])
def test_student_loss_and_gradient_in_blocks_equal_the_unchunked_ones(tiny_model_dir, top_k, kind):
    model, _ = fresh_student(tiny_model_dir)
    items = items_for_test()
    teacher = {k: v * 0.5 for k, v in trainable(model).items()}
    targets = compute_teacher_targets(model, teacher, items, 0, KlSettings(kind, 0.5, top_k))
    mb = DistillMicroBatch(student_batch(items, 0), targets)
    results = []
    for max_elements in (ONE, WHOLE):
        (loss, (ent, n)), grads = nn.value_and_grad(model, distill_loss)(model, mb, KlSettings(kind, 0.5, top_k), 17, max_elements)
        results.append((loss.item(), ent.item(), n.item(), {k: np.array(v) for k, v in tree_flatten(grads)}))
    (l1, e1, n1, g1), (l2, e2, n2, g2) = results
    assert l1 == pytest.approx(l2, rel=1e-5) and e1 == pytest.approx(e2, rel=1e-5) and n1 == n2
    assert g1.keys() == g2.keys() and g1
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-4, atol=1e-7)


def test_a_152k_vocabulary_never_holds_whole_logits():
    """Qwen's vocabulary, 2 sequences, a 240-token answer read twice: the whole-sequence float32 logits
    would be 2 x 500 x 151936 x 4 bytes = 0.61 GB; blocks of 2^24 elements are 64 MB."""
    from mlx_lm.models.llama import Model, ModelArgs
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from sdzero_mlx.types import DistillItem, TeacherSequence

    mx.random.seed(0)
    vocab = 151936
    model = Model(ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=1, intermediate_size=128,
                            num_attention_heads=2, rms_norm_eps=1e-5, vocab_size=vocab, num_key_value_heads=2,
                            tie_word_embeddings=True))
    model.freeze()
    linear_to_lora_layers(model, 1, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    mx.eval(model.parameters())
    rng = np.random.default_rng(0)
    items = []
    for _ in range(2):
        prompt, y, sep = (tuple(int(t) for t in rng.integers(0, vocab, n)) for n in (12, 240, 6))
        items.append(DistillItem(prompt + y, (12, 12 + 240), TeacherSequence(prompt + y + sep + y, (12, 252), (258, 498)), 0.0))
    whole = 2 * 498 * vocab * 4
    mx.synchronize()
    start = mx.get_active_memory()
    mx.reset_peak_memory()
    targets = compute_teacher_targets(model, trainable(model), items, 0, KlSettings("reverse", 0.5, 64))
    teacher_peak = mx.get_peak_memory() - start
    mb = DistillMicroBatch(student_batch(items, 0), targets)
    mx.reset_peak_memory()
    (loss, _), grads = nn.value_and_grad(model, distill_loss)(model, mb, KlSettings("reverse", 0.5, 64), 480)
    mx.eval(loss, grads)
    student_peak = mx.get_peak_memory() - start
    assert np.isfinite(loss.item())
    # measured: teacher 0.20 GB, student forward + backward 0.30 GB (one block: 64 MB; unchunked,
    # with a full-vocabulary entropy monitor and argpartition's views kept alive: 0.88 GB each)
    assert teacher_peak < whole / 2, teacher_peak
    assert student_peak < 0.75 * whole, student_peak


def test_nll_in_blocks_equals_the_unchunked_one(tiny_model_dir):
    from sdzero_mlx.loss import nll_batches, weighted_nll

    model, _ = fresh_student(tiny_model_dir)
    items = items_for_test()
    mb = nll_batches([it.student_ids for it in items], [it.student_span for it in items], 4, 0)[0]
    out = []
    for max_elements in (ONE, WHOLE):
        (loss, (ent, _)), grads = nn.value_and_grad(model, weighted_nll)(model, mb, max_elements)
        out.append((loss.item(), ent.item(), {k: np.array(v) for k, v in tree_flatten(grads)}))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-5) and out[0][1] == pytest.approx(out[1][1], rel=1e-5)
    for k in out[0][2]:
        np.testing.assert_allclose(out[0][2][k], out[1][2][k], rtol=1e-4, atol=1e-7)

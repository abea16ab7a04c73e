"""Phase 2 mechanics on the tiny model: sequences, accumulation, what a step may change, resume."""

from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import mlx_lm
import numpy as np
import pytest
from mlx.utils import tree_flatten

from sdzero_mlx.config import KlSettings, LoraConfig, ModelConfig
from sdzero_mlx.contexts import distill_item
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.stages.distill import DistillConfig, run_distill
from sdzero_mlx.kd import compute_teacher_targets, distill_step, student_batch
from sdzero_mlx.loss import DistillMicroBatch, distill_loss
from sdzero_mlx.modeling import make_trainable, load_model, trainable
from sdzero_mlx.prompts import Separators
from sdzero_mlx.teacher import lora_values, next_teacher
from sdzero_mlx.types import DistillItem, Example, Graded, Rollout, TeacherSequence

EOS = 3


def teacher_logits(model, teacher, ids):
    """The teacher's forward pass exactly as training runs it: the model with the teacher's LoRA values."""
    with lora_values(model, teacher):
        return model(ids)


def rollout(prompt, y, stop=True):
    ex = Example("q", "p", "1")
    return Rollout(ex, tuple(prompt), tuple(y), "text", "stop" if stop else "length", EOS if stop else None)


def items_for_test():
    seps = Separators(right=(40, 41), wrong=(50, 51, 52))
    graded = [
        Graded(rollout((2, 10, 11), (20, 21, 22)), 1.0),
        Graded(rollout((2, 12), (23, 24, 25, 26, 27)), 0.0),
        Graded(rollout((2, 10, 13, 14), (28,)), 0.0),
        Graded(rollout((2, 15), (29, 30), stop=False), 1.0),
    ]
    return [distill_item(g, seps, 64) for g in graded]


def test_distill_item_layout_and_identical_truncation():
    seps = Separators(right=(40,), wrong=(50, 51))
    item = distill_item(Graded(rollout((2, 9), (20, 21, 22)), 0.0), seps, 64)
    assert item.student_ids == (2, 9, 20, 21, 22, EOS)
    assert item.student_span == (2, 6)
    assert item.teacher.ids == (2, 9, 20, 21, 22, 50, 51, 20, 21, 22, EOS)
    assert item.teacher.second == (7, 11)
    # cap 10: budget = 10 - 2 - 2 = 6, so y is cut to 3 tokens in every copy
    cut = distill_item(Graded(rollout((2, 9), (20, 21, 22, 23, 24)), 0.0), seps, 10)
    assert cut.teacher.ids == (2, 9, 20, 21, 22, 50, 51, 20, 21, 22)
    assert cut.student_ids == (2, 9, 20, 21, 22)
    assert len(cut.teacher.ids) <= 10


def fresh_student(tiny_model_dir, seed=0):
    model, tok = load_model(ModelConfig(path=str(tiny_model_dir)))
    make_trainable(model, LoraConfig(rank=4, scale=10.0), seed)
    # give B non-zero values so that A receives gradient too and the student differs from the base
    params = trainable(model)
    rng = np.random.default_rng(seed)
    model.load_weights([(k, mx.array(rng.normal(0, 0.05, v.shape).astype(np.float32))) for k, v in params.items()],
                       strict=False)
    return model, tok


def test_kl_is_zero_when_teacher_context_equals_student_context(tiny_model_dir):
    model, _ = fresh_student(tiny_model_dir)
    prompt, y = (2, 10, 11), (20, 21, 22, EOS)
    same = DistillItem(prompt + y, (3, 7), TeacherSequence(prompt + y, (3, 3), (3, 7)), 1.0)
    teacher = trainable(model)  # teacher values = student values
    for top_k in (0, 8):
        mb = DistillMicroBatch(student_batch([same], 0), compute_teacher_targets(model, teacher, [same], 0, KlSettings("reverse", 0.5, top_k)))
        loss, _ = distill_loss(model, mb, KlSettings("reverse", 0.5, top_k), step_tokens=4)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)


def step_with(model, items, micro, top_k=16):
    teacher = trainable(model)
    config = DistillConfig(micro_batch_size=micro, top_k=top_k)
    opt = optim.SGD(learning_rate=1.0)
    before = trainable(model)
    result = distill_step(model, opt, teacher, items, config.kl_settings, micro, 0, 0.0)
    after = trainable(model)
    return result, {k: before[k] - after[k] for k in before}  # SGD with lr 1: the gradient itself


def test_accumulation_1x4_equals_4x1(tiny_model_dir):
    items = items_for_test()
    r4, g4 = step_with(fresh_student(tiny_model_dir)[0], items, micro=4)
    r1, g1 = step_with(fresh_student(tiny_model_dir)[0], items, micro=1)
    assert r4.loss == pytest.approx(r1.loss, rel=1e-5)
    assert r4.grad_norm == pytest.approx(r1.grad_norm, rel=1e-4)
    for k in g4:
        np.testing.assert_allclose(np.array(g4[k]), np.array(g1[k]), rtol=1e-4, atol=1e-7)


def test_step_changes_every_lora_weight_and_no_base_weight(tiny_model_dir):
    model, _ = fresh_student(tiny_model_dir)
    base_before = {k: np.array(v) for k, v in tree_flatten(model.parameters()) if "lora" not in k}
    lora_before = {k: np.array(v) for k, v in trainable(model).items()}
    assert lora_before and all(k.endswith(("lora_a", "lora_b")) for k in lora_before)
    step_with(model, items_for_test(), micro=2)
    base_after = {k: np.array(v) for k, v in tree_flatten(model.parameters()) if "lora" not in k}
    for k, v in base_before.items():
        assert np.array_equal(v, base_after[k]), k
    for k, v in trainable(model).items():
        assert not np.array_equal(lora_before[k], np.array(v)), k


def test_teacher_logits_unchanged_by_student_step(tiny_model_dir):
    model, _ = fresh_student(tiny_model_dir)
    teacher = {k: mx.array(v) for k, v in trainable(model).items()}
    ids = mx.array([items_for_test()[1].teacher.ids])
    before = np.array(teacher_logits(model, teacher, ids))
    student_before = np.array(model(ids))
    step_with(model, items_for_test(), micro=4)
    assert np.array_equal(before, np.array(teacher_logits(model, teacher, ids)))
    assert not np.allclose(student_before, np.array(model(ids)))  # the student did move


def test_teacher_sync_rules():
    t = {"w": mx.array([0.0, 2.0])}
    s = {"w": mx.array([1.0, 0.0])}
    assert next_teacher(t, s, DistillConfig(), 5) is t
    hard = DistillConfig(teacher_sync="hard", sync_every=2)
    assert next_teacher(t, s, hard, 3) is t
    assert next_teacher(t, s, hard, 4)["w"].tolist() == [1.0, 0.0]
    ema = next_teacher(t, s, DistillConfig(teacher_sync="ema", ema_decay=0.75), 1)
    assert ema["w"].tolist() == pytest.approx([0.25, 1.5])


def test_base_teacher_equals_base_model(tiny_model_dir):
    """With the initial LoRA values (B = 0) the teacher is exactly the base model."""
    base, _ = mlx_lm.load(str(tiny_model_dir))
    model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    make_trainable(model, LoraConfig(rank=4), 0)
    ids = mx.array([[2, 10, 11, 20, 21]])
    np.testing.assert_allclose(np.array(teacher_logits(model, trainable(model), ids)), np.array(base(ids)),
                               rtol=1e-5, atol=1e-5)


def read_adapters(run: Path):
    return {k: np.array(v) for k, v in mx.load(str(run / "adapters" / "adapters.safetensors")).items()}


def test_interrupt_and_resume_matches_uninterrupted(tiny_recipe, tmp_path):
    steps = ["distill.steps=4", "distill.teacher_sync=hard", "distill.sync_every=3"]
    straight = load_recipe(tiny_recipe, steps + [f"run.output_dir={tmp_path / 'a'}"])
    run_distill(straight, tmp_path / "a")
    resumed = load_recipe(tiny_recipe, steps + [f"run.output_dir={tmp_path / 'b'}"])
    run_distill(resumed, tmp_path / "b", stop_after=2)  # "interrupted" after two steps
    assert (tmp_path / "b" / "metrics.jsonl").read_text().count("\n") == 2
    with pytest.raises(FileExistsError):
        run_distill(resumed, tmp_path / "b")
    state = run_distill(resumed, tmp_path / "b", resume=True)
    assert state.step == 4
    a, b = read_adapters(tmp_path / "a"), read_adapters(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)
    lines_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lines_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines_b) == 4
    import json
    for la, lb in zip(lines_a, lines_b):
        ja, jb = json.loads(la), json.loads(lb)
        assert ja["reward"] == jb["reward"] and ja["sampled_tokens"] == jb["sampled_tokens"]
        assert ja["loss"] == pytest.approx(jb["loss"], rel=1e-4)


def test_resume_rejects_a_changed_recipe(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={tmp_path / 'r'}", "distill.steps=1"])
    run_distill(recipe, tmp_path / "r")
    changed = load_recipe(tiny_recipe, [f"run.output_dir={tmp_path / 'r'}", "optim.learning_rate=0.5"])
    with pytest.raises(ValueError, match="optim.learning_rate"):
        run_distill(changed, tmp_path / "r", resume=True)


def test_a_teacher_cap_that_leaves_no_room_for_the_answer_is_an_error(tiny_model_dir):
    # prompts of 2-4 tokens + a 2-3 token separator fill a 6-token cap: every y is cut to 0 tokens
    seps = Separators(right=(40, 41), wrong=(50, 51, 52))
    items = [distill_item(Graded(rollout((2, 10, 11), (20, 21, 22)), 0.0), seps, 6),
             distill_item(Graded(rollout((2, 12), (23, 24)), 1.0), seps, 4)]
    assert [it.student_span[1] - it.student_span[0] for it in items] == [0, 0]
    model, _ = fresh_student(tiny_model_dir)
    with pytest.raises(ValueError, match="leaves no room for the answer"):
        distill_step(model, optim.SGD(learning_rate=1.0), trainable(model), items, DistillConfig().kl_settings, 8, 0,
                     1.0)
    # one answer with room is enough to train
    items.append(distill_item(Graded(rollout((2, 12), (23, 24)), 1.0), seps, 64))
    distill_step(model, optim.SGD(learning_rate=1.0), trainable(model), items, DistillConfig().kl_settings, 8, 0,
                 1.0)

"""Phase 2's loss options end to end: reachable from a recipe and `--set`, refused with the fix named
where they cannot work together, and each one training a step of the tiny model (test_loss_parity.py
checks their formulas)."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.config import KlSettings
from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.kd import compute_teacher_targets, distill_step, student_batch, student_support_ids
from sdzero_mlx.loss import DistillMicroBatch, distill_loss, top_k_ids
from sdzero_mlx.metrics import read_metrics
from sdzero_mlx.modeling import trainable
from sdzero_mlx.forward import logits_at
from sdzero_mlx.teacher import lora_values

from test_distill import fresh_student, items_for_test

# one of each: every divergence, each support, the tail, both estimators
OPTIONS = [
    KlSettings("reverse", 0.5, 16),
    KlSettings("reverse", 0.5, 0),
    KlSettings("jsd", 0.5, 16, beta=0.3),
    KlSettings("jsd", 0.5, 0, beta=0.5),
    KlSettings("forward", 0.5, 16, tail=True),
    KlSettings("reverse", 0.5, 16, top_k_from="student"),
    KlSettings("jsd", 0.5, 8, beta=0.5, top_k_from="student", tail=True),
    KlSettings("k1", 0.5, 64),
    KlSettings("k3", 0.5, 64),
]


def label(kl: KlSettings) -> str:
    return f"{kl.kind}-{kl.top_k}-{kl.top_k_from}{'-tail' if kl.tail else ''}"


def test_defaults_are_the_reference_codes_and_kl_settings_agrees():
    assert DistillConfig().kl_settings == KlSettings("reverse", 0.5, 64, beta=0.5, top_k_from="teacher", tail=False)
    # KlSettings's own defaults for the new fields are the distill section's (written twice, checked here)
    section = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
    for f in dataclasses.fields(KlSettings):
        if f.default is not dataclasses.MISSING:
            assert f.default == section[f.name], f.name


def test_every_option_reaches_the_loss_from_a_recipe_and_set(tiny_recipe, tmp_path):
    got = load_recipe(tiny_recipe, ["distill.kl=jsd", "distill.beta=0.3", "distill.top_k=8",
                                    "distill.top_k_from=student", "distill.tail=true"]).distill.kl_settings
    assert got == KlSettings("jsd", 0.5, 8, beta=0.3, top_k_from="student", tail=True)
    raw = yaml.safe_load(tiny_recipe.read_text())
    raw["distill"].update(kl="k3", top_k=0)
    path = tmp_path / "k3.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_recipe(path).distill.kl_settings == KlSettings("k3", 0.5, 0)


@pytest.mark.parametrize("overrides,names", [
    (["distill.kl=k1", "distill.tail=true"], ["distill.tail: false", "reverse, forward, mixed, jsd"]),
    (["distill.kl=k3", "distill.top_k_from=student"], ["distill.top_k_from: teacher"]),
    (["distill.top_k=0", "distill.tail=true"], ["distill.top_k > 0", "distill.tail: false"]),
    (["distill.top_k=0", "distill.top_k_from=student"], ["distill.top_k > 0", "distill.top_k_from: teacher"]),
    (["distill.beta=1.5"], ["distill.beta must be in [0, 1]", "got 1.5"]),
    (["distill.kl=kl"], ["distill.kl", "jsd", "k3"]),
])
def test_impossible_combinations_are_refused_with_the_fix(tiny_recipe, overrides, names):
    with pytest.raises(ValueError) as err:
        load_recipe(tiny_recipe, overrides)
    for name in names:
        assert name in str(err.value)


@pytest.mark.parametrize("kl", OPTIONS, ids=label)
def test_every_option_trains_a_step_and_is_zero_when_the_teacher_is_the_student(tiny_model_dir, kl):
    items = items_for_test()
    model, _ = fresh_student(tiny_model_dir)
    tokens = sum(it.student_span[1] - it.student_span[0] for it in items)
    # the teacher's values equal to the student's and the Reviser reading y: not zero (other context);
    # the same context for both: zero for every divergence and estimator
    same = [dataclasses.replace(it, teacher=dataclasses.replace(
        it.teacher, ids=it.student_ids, first=(it.student_span[0], it.student_span[0]), second=it.student_span)) for it in items]
    b = student_batch(same, 0)
    mb = DistillMicroBatch(b, compute_teacher_targets(model, trainable(model), same, 0, kl,
                                                      student_ids=student_support_ids(model, b, kl)))
    assert distill_loss(model, mb, kl, tokens)[0].item() == pytest.approx(0.0, abs=1e-6)
    teacher = {k: v * 0.5 for k, v in trainable(model).items()}
    before = {k: np.array(v) for k, v in trainable(model).items()}
    result = distill_step(model, optim.SGD(learning_rate=1.0), teacher, items, kl, 2, 0, 0.0)
    assert np.isfinite(result.loss) and result.grad_norm > 1e-6
    moved = [k for k, v in trainable(model).items() if not np.array_equal(np.array(v), before[k])]
    assert sorted(moved) == sorted(before)  # every LoRA weight


@pytest.mark.parametrize("kl", [KlSettings("jsd", 0.5, 8, beta=0.5, top_k_from="student", tail=True),
                                KlSettings("k1", 0.5, 64)], ids=label)
def test_accumulation_1x4_equals_4x1(tiny_model_dir, kl):
    # the student's support is chosen per micro-batch, from values that do not change within the step
    items = items_for_test()
    grads = []
    for micro in (4, 1):
        model, _ = fresh_student(tiny_model_dir)
        teacher = {k: v * 0.5 for k, v in trainable(model).items()}
        before = trainable(model)
        result = distill_step(model, optim.SGD(learning_rate=1.0), teacher, items, kl, micro, 0, 0.0)
        grads.append((result.loss, {k: np.array(before[k] - v) for k, v in trainable(model).items()}))
    (l4, g4), (l1, g1) = grads
    assert l4 == pytest.approx(l1, rel=1e-5, abs=1e-6)  # k1's mean is near 0 here: float32 sums differ by 2e-7
    for k in g4:
        np.testing.assert_allclose(g4[k], g1[k], rtol=1e-4, atol=1e-6)  # gradients up to 0.2: float32 sums


def test_the_students_support_is_its_own_top_k(tiny_model_dir):
    items = items_for_test()
    model, _ = fresh_student(tiny_model_dir)
    teacher = {k: v * 3.0 for k, v in trainable(model).items()}
    batch = student_batch(items, 0)
    kl = KlSettings("reverse", 0.5, 8, top_k_from="student")
    ids = np.sort(np.array(student_support_ids(model, batch, kl)), axis=-1)
    want = np.sort(np.array(top_k_ids(logits_at(model, batch), 8)), axis=-1)
    assert np.array_equal(ids, want)
    targets = compute_teacher_targets(model, teacher, items, 0, kl, student_ids=mx.array(ids))
    assert np.array_equal(np.array(targets.indices), ids)  # the teacher is read on the student's ids
    with lora_values(model, teacher):  # ... which are not the teacher's own top-8
        own = np.sort(np.array(compute_teacher_targets(model, teacher, items, 0, KlSettings("reverse", 0.5, 8)).indices), -1)
    assert not np.array_equal(own, ids)
    # the sampled-token estimators keep one number per token: the teacher's log p(y_t)
    k1 = compute_teacher_targets(model, teacher, items, 0, KlSettings("k1", 0.5, 64))
    assert k1.logp.shape == (*batch.targets.shape, 1) and np.array_equal(np.array(k1.indices[..., 0]), np.array(batch.targets))


def test_set_reaches_the_stage_and_its_saved_recipe(tiny_recipe, tmp_path):
    losses = {}
    for kind in ("reverse", "k1"):
        out = tmp_path / kind
        result = CliRunner().invoke(app, ["distill", str(tiny_recipe), "--set", f"distill.kl={kind}", "--set",
                                          "distill.steps=1", "--set", f"run.output_dir={out}"])
        assert result.exit_code == 0, result.output
        assert f"kl: {kind}" in (out / "recipe.yaml").read_text()
        losses[kind] = read_metrics(out)[-1].loss
    assert losses["reverse"] > 0 and losses["k1"] != pytest.approx(losses["reverse"], rel=1e-3)

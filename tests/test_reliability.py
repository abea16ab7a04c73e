"""Issue 14 defects that are not CLI messages: the phase-1 prompt bound, a one-step run that trains,
and the distillation loss moving the student toward the teacher in every direction."""

import json
import math
import time
from functools import partial

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
import yaml

from sdzero_mlx.stages.collect import run_collect
from sdzero_mlx.config import KlSettings, OptimConfig
from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.data import make_splits
from sdzero_mlx.stages.distill import run_distill
from sdzero_mlx.kd import compute_teacher_targets, student_batch
from sdzero_mlx.loss import DistillMicroBatch, distill_loss
from sdzero_mlx.loss import distill_token_kl, teacher_targets
from sdzero_mlx.modeling import load_model, trainable
from sdzero_mlx.config import ModelConfig
from sdzero_mlx.prompts import prompt_ids
from sdzero_mlx.update import make_optimizer, optimizer_step

from conftest import arithmetic_rows, tiny_recipe_dict
from test_distill import fresh_student, items_for_test


# -- 1. one huge problem must not stall phase 1 ------------------------------------------------


def test_collect_skips_and_counts_prompts_over_the_bound(tiny_model_dir, tmp_path):
    rows = arithmetic_rows(12)
    rows[2]["problem"] = "Add these: " + "1 + " * 300 + "1"  # ~900 tokens
    rows[5]["problem"] = "x" * 5_000_000  # 5 MB: skipped without being tokenized
    rows[9]["problem"] = "Add these: " + "2 + " * 300 + "2"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = tiny_recipe_dict(tiny_model_dir, data, tmp_path / "run")
    raw["data"].update(phase1_size=8, phase2_size=4, eval_size=0, max_prompt_tokens=200)
    raw["collect"] = {"revisions": 1}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "r.yaml")
    phase1 = make_splits(recipe.data).phase1
    long_ids = {"q2", "q5", "q9"}
    n_long = sum(q.id in long_ids for q in phase1)
    assert n_long >= 1  # the seeded split puts some of them in phase 1 (the test is about those)
    _, tok = load_model(ModelConfig(path=str(tiny_model_dir)))
    assert all(len(prompt_ids(tok, q.problem, recipe.prompts)) <= 200 for q in phase1 if q.id not in long_ids)

    seen = []
    tic = time.perf_counter()
    summary = run_collect(recipe, tmp_path / "c", on_batch=lambda b, n, s: seen.append((b, n, s.skipped_long_prompts)))
    assert time.perf_counter() - tic < 60
    assert summary.skipped_long_prompts == n_long
    assert summary.questions_seen == 8 - n_long and summary.initial_answers == 8 - n_long
    assert seen[0] == (0, 1, n_long)  # a line before the first batch, already with the count
    assert seen[-1][0] == 1


def test_prompt_bound_is_validated(tiny_recipe):
    with pytest.raises(ValueError, match="data.max_prompt_tokens must be >= 1"):
        load_recipe(tiny_recipe, ["data.max_prompt_tokens=0"])


# -- 6. a one-step run trains -------------------------------------------------------------------


def test_warmup_starts_above_zero():
    opt = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=4), total_steps=10)
    params = {"w": mx.zeros((2,))}
    rates = []
    for _ in range(5):
        params = opt.apply_gradients({"w": mx.ones((2,))}, params)
        rates.append(float(opt.learning_rate))
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3], rel=1e-6)


def test_one_step_run_moves_every_b_factor(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, [f"run.output_dir={tmp_path / 'one'}", "distill.steps=1", "optim.warmup_steps=10"])
    run_distill(recipe, tmp_path / "one")
    adapters = mx.load(str(tmp_path / "one" / "adapters" / "adapters.safetensors"))
    b_factors = {k: np.array(v) for k, v in adapters.items() if k.endswith("lora_b")}
    assert b_factors
    assert all(np.abs(v).max() > 0 for v in b_factors.values()), [k for k, v in b_factors.items() if not v.any()]


# -- distillation lowers the KL; forward and mixed by hand ------------------------------------


@pytest.mark.parametrize("kind", ["reverse", "forward", "mixed"])
def test_distillation_lowers_the_kl_on_a_fixed_batch(tiny_model_dir, kind):
    model, _ = fresh_student(tiny_model_dir, seed=0)
    teacher = trainable(fresh_student(tiny_model_dir, seed=1)[0])  # another set of LoRA values
    config = DistillConfig(kl=kind, forward_weight=0.3, top_k=16, micro_batch_size=2)
    items = items_for_test()
    n = sum(it.student_span[1] - it.student_span[0] for it in items)
    groups = [items[:2], items[2:]]  # teacher targets fixed once
    batches = [DistillMicroBatch(student_batch(g, 0), compute_teacher_targets(model, teacher, g, 0, config.kl_settings)) for g in groups]
    loss = partial(distill_loss, kl_settings=config.kl_settings, step_tokens=n)

    def kl() -> float:
        return sum(loss(model, mb)[0].item() for mb in batches)

    before = kl()
    opt = optim.Adam(learning_rate=1e-2)
    curve = [before]
    for _ in range(20):
        optimizer_step(model, opt, loss, batches, grad_clip=0.0)
        curve.append(kl())
    assert before > 0.01
    assert curve[-1] < 0.5 * before, curve  # a negated loss would raise it
    assert curve[1] < before, curve


def test_forward_and_mixed_kl_by_hand_on_a_renormalised_top_k():
    # teacher (0.6, 0.3, 0.1) -> top-2 (2/3, 1/3); student (0.2, 0.2, 0.6) on {0, 1} -> (1/2, 1/2)
    teacher = mx.log(mx.array([[[0.6, 0.3, 0.1]]]))
    student = mx.log(mx.array([[[0.2, 0.2, 0.6]]]))
    targets = teacher_targets(teacher, top_k=2)
    fwd = 2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.5)  # KL(t || s) = 0.05663
    rev = 0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))  # KL(s || t) = 0.05889
    assert fwd == pytest.approx(0.056633, abs=1e-6) and rev == pytest.approx(0.058892, abs=1e-6)
    assert distill_token_kl(student, targets, KlSettings("forward", 0.5, 2)).item() == pytest.approx(fwd, rel=1e-5)
    assert distill_token_kl(student, targets, KlSettings("mixed", 0.3, 2)).item() == pytest.approx(0.3 * fwd + 0.7 * rev, rel=1e-5)
    # the gradient of forward KL on the support is p_s - p_t: (1/2 - 2/3, 1/2 - 1/3), zero off it
    grad = mx.grad(lambda s: distill_token_kl(s, targets, KlSettings("forward", 0.5, 2)).sum())(student)
    assert np.array(grad).reshape(-1).tolist() == pytest.approx([-1 / 6, 1 / 6, 0.0], abs=1e-6)

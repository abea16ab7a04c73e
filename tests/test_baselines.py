"""Baselines: their losses by hand on 2-3 token examples, the no-update cases, the SDFT teacher from ids,
and real runs of every baseline on the scripted model (answers \\boxed{7} to every question)."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten
import pytest
import yaml

from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.loss import PolicyBatch, constant_logprobs, policy_loss
from sdzero_mlx.stages.grpo import kept_groups, run_grpo
from sdzero_mlx.kd import item_with_context
from sdzero_mlx.loss import clipped_policy_loss, group_advantages
from sdzero_mlx.stages.rft import run_rft
from sdzero_mlx.loss import nll_batches
from sdzero_mlx.forward import scored_batch
from sdzero_mlx.stages.sdft import run_sdft
from sdzero_mlx.stages.sft import run_sft

from scripted import scripted_model_dir, write_data


# -- losses by hand --------------------------------------------------------------------------


def test_group_advantages_by_hand():
    r = mx.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    adv = group_advantages(r).tolist()
    np.testing.assert_allclose(adv[0], [1, -1, -1, 1], atol=1e-5)  # mean 0.5, std 0.5
    assert adv[1] == [0.0, 0.0, 0.0, 0.0]  # no spread, no signal
    # mean 0.25, std sqrt(3)/4: (1 - 0.25) / 0.433 = 1.732, (0 - 0.25) / 0.433 = -0.577
    np.testing.assert_allclose(adv[2], [3 / np.sqrt(3), -1 / np.sqrt(3), -1 / np.sqrt(3), -1 / np.sqrt(3)], atol=1e-4)
    dr = group_advantages(r, scale_by_std=False).tolist()  # Dr. GRPO: the mean only
    np.testing.assert_allclose(dr[2], [0.75, -0.25, -0.25, -0.25], atol=1e-6)


def test_clipping_at_both_bounds_by_hand():
    old = mx.zeros((4, 1))
    ratios = mx.array([[1.5], [1.5], [0.5], [0.5]])
    adv = mx.array([1.0, -1.0, 1.0, -1.0])
    logp = mx.log(ratios)
    loss = clipped_policy_loss(logp, old, adv, clip_low=0.2, clip_high=0.28)[:, 0].tolist()
    # A > 0, ratio 1.5: min(1.5, 1.28) = 1.28 (clipped above); A < 0, ratio 1.5: min(-1.5, -1.28) = -1.5
    # A > 0, ratio 0.5: min(0.5, 0.8) = 0.5; A < 0, ratio 0.5: min(-0.5, -0.8) = -0.8 (clipped below)
    np.testing.assert_allclose(loss, [-1.28, 1.5, -0.5, 0.8], atol=1e-6)
    grad = mx.grad(lambda lp: clipped_policy_loss(lp, old, adv, 0.2, 0.28).sum())(logp)[:, 0].tolist()
    # d(-ratio * A)/d logp = -ratio * A where unclipped; 0 where the clipped term is the minimum
    np.testing.assert_allclose(grad, [0.0, 1.5, -0.5, 0.0], atol=1e-6)


def test_nll_batches_weigh_every_token_of_the_step_equally():
    seqs = [(1, 2, 3), (1, 4, 5, 6, 7)]
    spans = [(2, 3), (1, 5)]  # 1 + 4 = 5 scored tokens
    batches = nll_batches(seqs, spans, micro_batch_size=1, pad_id=0)
    assert [b.targets.tolist() for b in batches] == [[[3]], [[4, 5, 6, 7]]]
    np.testing.assert_allclose([w for b in batches for w in b.weights.reshape(-1).tolist()], [0.2] * 5)


def test_grpo_loss_normalises_by_the_tokens_of_the_step(tiny_model_dir):
    """With ratio 1, loss = -(sum over tokens of A) / step tokens: two answers of 1 and 3 tokens."""
    from sdzero_mlx.config import ModelConfig
    from sdzero_mlx.modeling import load_model

    model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    batch = scored_batch([(2, 10, 11), (2, 12, 13, 14)], [(2, 3), (1, 4)], 0)
    old = constant_logprobs(model, batch, 1.0)
    mb = PolicyBatch(batch, mx.array([1.0, -1.0]), old, None)
    loss, (ent, n) = policy_loss(model, mb, 0.2, 0.28, temperature=1.0, step_tokens=4)
    assert loss.item() == pytest.approx(-(1 * 1 + 3 * (-1)) / 4, abs=1e-5)  # = 0.5
    assert n.item() == 4 and ent.item() > 0
    # a block of one position at a time (no (B, L, V) logits at once): the same loss and gradients
    vocab = model.args.vocab_size
    whole = nn.value_and_grad(model, policy_loss)(model, mb, 0.2, 0.28, 0.7, 4, 0.5, 1 << 40)
    blocks = nn.value_and_grad(model, policy_loss)(model, mb, 0.2, 0.28, 0.7, 4, 0.5, 2 * vocab)
    assert blocks[0][0].item() == pytest.approx(whole[0][0].item(), abs=1e-6)
    for (k, g1), (_, g2) in zip(tree_flatten(whole[1]), tree_flatten(blocks[1])):
        np.testing.assert_allclose(np.array(g1), np.array(g2), atol=1e-6, err_msg=k)


def test_kept_groups_dynamic_sampling():
    rewards = [1, 1, 0, 1, 0, 0, 1, 1]
    assert kept_groups(rewards, 2, dynamic_sampling=True) == [1]
    assert kept_groups(rewards, 2, dynamic_sampling=False) == [0, 1, 2, 3]
    assert kept_groups(rewards, 4, dynamic_sampling=True) == [0, 1]


def test_sdft_teacher_sequences_from_ids():
    # rephrase context: prompt + demonstration + sep(right) + y; the student is prompt + y
    item = item_with_context((1, 2), (30, 31, 32), (7, 8, 3), (1, 2), (5,), max_teacher_tokens=64, reward=0.0)
    assert item.teacher.ids == (1, 2, 30, 31, 32, 5, 7, 8, 3) and item.teacher.second == (6, 9)
    assert item.student_ids == (1, 2, 7, 8, 3) and item.student_span == (2, 5)
    # user context: another prompt, nothing read, y scored right after it
    item = item_with_context((1, 2), (), (7, 8, 3), (1, 9, 9, 2), (), max_teacher_tokens=64, reward=1.0)
    assert item.teacher.ids == (1, 9, 9, 2, 7, 8, 3) and item.teacher.second == (4, 7)
    # over the cap (2 + 1 + 6 > 8): a demonstration is shortened first, y kept whole
    item = item_with_context((1, 2), (30, 31, 32), (7, 8, 3), (1, 2), (5,), max_teacher_tokens=8, reward=0.0)
    assert item.teacher.ids == (1, 2, 30, 31, 5, 7, 8, 3)
    # user context over the cap (6 + 6 > 10): nothing read, so y alone is cut, to the 4 tokens that fit
    item = item_with_context((1, 2), (), (7, 8, 9, 10, 11, 3), (1, 9, 9, 9, 9, 2), (), max_teacher_tokens=10, reward=1.0)
    assert item.teacher.ids == (1, 9, 9, 9, 9, 2, 7, 8, 9, 10) and item.teacher.second == (6, 10)
    assert item.student_ids == (1, 2, 7, 8, 9, 10)
    # SD-Zero's case (the teacher reads y itself): the same cut in both copies
    item = item_with_context((1, 2), (7, 8), (7, 8, 3), (1, 2), (5,), max_teacher_tokens=7, reward=0.0)
    assert item.teacher.ids == (1, 2, 7, 8, 5, 7, 8) and item.student_ids == (1, 2, 7, 8)


# -- runs on the scripted model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted_recipe(tmp_path_factory):
    model = scripted_model_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("baselines")
    write_data(root / "d.jsonl", 24, solutions=True)  # a gold solution per row, for SFT / SDFT
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id", "solution": "solution"},
                 "phase1_size": 8, "phase2_size": 8, "eval_size": 4, "validation_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.0, "max_tokens": 10, "batch_size": 16},
        "distill": {"steps": 1, "questions_per_step": 4, "micro_batch_size": 2, "top_k": 8, "max_teacher_tokens": 128},
        "rft": {"steps": 2, "questions_per_step": 4, "samples_per_question": 2, "micro_batch_size": 2},
        "grpo": {"steps": 2, "questions_per_step": 4, "group_size": 2, "micro_batch_size": 4},
        "sft": {"epochs": 1, "batch_size": 8, "micro_batch_size": 4},
        "sdft": {"steps": 2, "questions_per_step": 4},
        "optim": {"learning_rate": 1e-2},
        "run": {"output_dir": str(root / "run"), "seed": 0, "probe_every": 1, "probe_size": 4},
    }
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def adapters(run):
    return {k: np.array(v) for k, v in mx.load(str(run / "adapters" / "adapters.safetensors")).items()}


def records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def initial_lora(recipe):
    from sdzero_mlx.modeling import load_model, make_trainable, trainable

    model, _ = load_model(recipe.model)
    make_trainable(model, recipe.lora, recipe.run.seed)
    return {k: np.array(v) for k, v in trainable(model).items()}


def test_rft_trains_on_verified_answers_only(scripted_recipe, tmp_path):
    recipe = load_recipe(scripted_recipe, [f"run.output_dir={tmp_path / 'rft'}"])
    state = run_rft(recipe, tmp_path / "rft")
    assert state.step == 2 and state.generations == 2 * 4 * 2
    rec = records(tmp_path / "rft")
    for r in rec:
        # greedy: both samples of a question are the same \boxed{7}; only answer-7 questions are kept
        assert r["kept"] == 2 * round(r["reward"] * 8 / 2)
        assert r["generations"] <= 16 and "probe_accuracy" in r
    assert any(r["kept"] > 0 for r in rec)
    after, before = adapters(tmp_path / "rft"), initial_lora(recipe)
    assert any(not np.array_equal(after[k], before[k]) for k in before)


def test_rft_and_grpo_make_no_update_without_signal(scripted_recipe, tmp_path):
    """Every answer wrong (no answer is 7): RFT keeps nothing, GRPO's groups have no spread."""
    rows = [json.loads(l) for l in open(load_recipe(scripted_recipe).data.source)]
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("".join(json.dumps({**r, "answer": "99"}) + "\n" for r in rows))
    for method, run_fn, extra in (("rft", run_rft, []), ("grpo", run_grpo, ["grpo.dynamic_sampling=false"]),
                                  ("grpo-ds", run_grpo, [])):
        recipe = load_recipe(scripted_recipe, [f"data.source={wrong}", f"run.output_dir={tmp_path / method}",
                                               "run.probe_every=0"] + extra)
        run_fn(recipe, tmp_path / method)
        after, before = adapters(tmp_path / method), initial_lora(recipe)
        for k in before:
            assert np.array_equal(after[k], before[k]), (method, k)
        assert all(r["reward"] == 0 for r in records(tmp_path / method))


def test_grpo_updates_with_spread_and_resumes_exactly(scripted_recipe, tmp_path):
    # T = 1: the two samples of a group differ, so some groups carry signal
    over = ["sampling.temperature=1.0", "grpo.updates_per_batch=2", "grpo.steps=3"]
    a = load_recipe(scripted_recipe, over + [f"run.output_dir={tmp_path / 'a'}"])
    run_grpo(a, tmp_path / "a")
    b = load_recipe(scripted_recipe, over + [f"run.output_dir={tmp_path / 'b'}"])
    run_grpo(b, tmp_path / "b", stop_after=1)
    run_grpo(b, tmp_path / "b", resume=True)
    ra, rb = adapters(tmp_path / "a"), adapters(tmp_path / "b")
    for k in ra:
        assert np.array_equal(ra[k], rb[k]), k
    rec = records(tmp_path / "a")
    assert [r["generations"] for r in rec] == [8, 16, 24]
    assert all(r["trained_tokens"] % 2 == 0 for r in rec)  # two updates per batch count the tokens twice


def test_sft_trains_on_gold_solutions_and_needs_them(scripted_recipe, tmp_path):
    recipe = load_recipe(scripted_recipe, [f"run.output_dir={tmp_path / 'sft'}"])
    state = run_sft(recipe, tmp_path / "sft")
    assert state.step == 2 and state.generations == 0  # 16 solutions / batch 8; SFT samples nothing
    assert [r["solutions"] for r in records(tmp_path / "sft")] == [8, 8]
    no_solutions = load_recipe(scripted_recipe, [f"run.output_dir={tmp_path / 'x'}", "data.fields.solution=null"])
    with pytest.raises(ValueError, match="data.fields.solution"):
        run_sft(no_solutions, tmp_path / "x")


def test_sdft_runs_with_both_contexts(scripted_recipe, tmp_path):
    for context in ("rephrase", "user"):
        # the user template is long in this character-level tokenizer: room for it in the teacher cap
        recipe = load_recipe(scripted_recipe, [f"run.output_dir={tmp_path / context}", f"sdft.context={context}",
                                               "distill.max_teacher_tokens=400"])
        state = run_sdft(recipe, tmp_path / context)
        assert state.generations == 8
        rec = records(tmp_path / context)
        assert all(r["no_demonstration"] == 0 for r in rec)  # every row has a gold solution
        assert rec[0]["loss"] > 0 and rec[0]["trained_tokens"] > 0  # the demonstration moves the teacher
        after, before = adapters(tmp_path / context), initial_lora(recipe)
        assert any(not np.array_equal(after[k], before[k]) for k in before)
    # the control: no gold solution and no verified answer (every answer 99), so the teacher reads exactly what
    # the student reads: the first step's KL is exactly 0 (later ones are not: Adam turns the float-noise
    # gradient of a zero KL, ~1e-7, into a full-size step, and the student leaves its teacher)
    rows = [json.loads(l) for l in open(load_recipe(scripted_recipe).data.source)]
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("".join(json.dumps({**r, "answer": "99"}) + "\n" for r in rows))
    recipe = load_recipe(scripted_recipe, [f"data.source={wrong}", "data.fields.solution=null", "sdft.demonstration=own",
                                           f"run.output_dir={tmp_path / 'none'}", "run.probe_every=0"])
    run_sdft(recipe, tmp_path / "none")
    rec = records(tmp_path / "none")
    assert [r["no_demonstration"] for r in rec] == [4, 4] and rec[0]["loss"] == 0

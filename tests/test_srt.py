"""Self-Revision Training: which tokens each loss covers (by id), the loss by hand, and a real run."""

import json

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
import yaml

from sdzero_mlx.types import RevisionTuple
from sdzero_mlx.config import LoraConfig, ModelConfig, PromptConfig
from sdzero_mlx.stages.srt import SrtConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.modeling import make_trainable, load_model, trainable
from sdzero_mlx.prompts import prompt_ids, separators
from sdzero_mlx.stages.srt import (
    GENERATION, REVISION, mean_nll, plan_parts, run_srt, srt_batches, srt_item, srt_loss,
)
from sdzero_mlx.update import optimizer_step

import mlx.optimizers as optim

from conftest import tiny_recipe_dict

EOS = 3


def tup(prompt, y_init, sep, y_rev, stop=EOS, r_init=0.0, qid="q"):
    return RevisionTuple(id=qid, problem="p", answer="7", prompt_ids=tuple(prompt), y_init=tuple(y_init),
                         r_init=r_init, phrase="P", sep_ids=tuple(sep), y_rev=tuple(y_rev), rev_stop=stop)


def test_masks_cover_exactly_the_named_tokens():
    item = srt_item(tup((1, 2), (7, 17), (5,), (8, 9)))
    assert item.ids == (1, 2, 7, 17, 5, 8, 9, EOS)
    [gen] = srt_batches([item], (GENERATION,), 4, pad_id=0)
    [rev] = srt_batches([item], (REVISION,), 4, pad_id=0)
    [both] = srt_batches([item], (REVISION, GENERATION), 4, pad_id=0)
    live = lambda mb: [t for t, w in zip(mb.targets[0].tolist(), mb.weights[0].tolist()) if w > 0]  # noqa: E731
    assert live(gen) == [7, 17, 5, 8, 9, EOS]  # y_init + sep + y_rev + end-of-turn, never the prompt
    assert live(rev) == [8, 9, EOS]  # y_rev + end-of-turn only
    # logits at position p predict token p + 1
    assert gen.batch.positions[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert rev.batch.positions[0].tolist() == [4, 5, 6]
    # summed: each term is a token mean, so a y_rev token weighs 1/6 + 1/3 and the others 1/6
    np.testing.assert_allclose(both.weights[0].tolist(), [1 / 6] * 3 + [1 / 6 + 1 / 3] * 3, rtol=1e-6)
    # a y_init cut by max_tokens is followed directly by sep; a y_rev cut by max_tokens gets no end-of-turn
    cut = srt_item(tup((1, 2), (7,), (5, 6), (8,), stop=None))
    assert cut.ids == (1, 2, 7, 5, 6, 8) and cut.span(REVISION) == (5, 6) and cut.span(GENERATION) == (2, 6)


def test_padding_and_step_normalisation_across_micro_batches():
    items = [srt_item(tup((1, 2), (7,), (5,), (8, 9))), srt_item(tup((1, 2, 4), (7, 7, 7), (5,), (8,), stop=None))]
    batches = srt_batches(items, (REVISION, GENERATION), 1, pad_id=0)
    # generation tokens in the step: 5 + 5 = 10; revision tokens: 3 + 1 = 4; weights sum to 2 (two means)
    total = sum(float(mb.weights.sum()) for mb in batches)
    assert total == pytest.approx(2.0)
    [padded] = srt_batches(items, (REVISION,), 2, pad_id=0)
    assert padded.targets.tolist() == [[8, 9, EOS], [8, 0, 0]]
    assert padded.weights.tolist()[1] == [0.25, 0.0, 0.0]


def test_loss_equals_hand_computed_nll(tiny_model_dir):
    model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
    item = srt_item(tup((2, 10, 11), (20, 21), (40, 41), (22, 23, 24)))
    [mb] = srt_batches([item], (REVISION, GENERATION), 4, 0)
    logits = np.array(model(mx.array([item.ids])).astype(mx.float32))[0]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    nll = lambda start: np.mean([-logp[p - 1, item.ids[p]] for p in range(start, len(item.ids))])  # noqa: E731
    expected = nll(item.rev_start) + nll(item.gen_start)
    assert srt_loss(model, mb)[0].item() == pytest.approx(expected, rel=1e-5)
    assert mean_nll(model, [item], REVISION, 0) == pytest.approx(nll(item.rev_start), rel=1e-5)


def test_accumulation_1x3_equals_3x1(tiny_model_dir):
    items = [srt_item(tup((2, 10), (20, 21, 22), (40,), (23,))), srt_item(tup((2, 11, 12), (25,), (41, 42), (26, 27))),
             srt_item(tup((2,), (28, 29), (40,), (30,), stop=None))]
    grads = []
    for micro in (3, 1):
        model, _ = load_model(ModelConfig(path=str(tiny_model_dir)))
        make_trainable(model, LoraConfig(rank=4), 0)
        before = trainable(model)
        result = optimizer_step(model, optim.SGD(learning_rate=1.0), srt_loss,
                                srt_batches(items, (REVISION, GENERATION), micro, 0), 0.0)
        grads.append((result.loss, {k: np.array(before[k] - v) for k, v in trainable(model).items()}))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for k in grads[0][1]:
        np.testing.assert_allclose(grads[0][1][k], grads[1][1][k], rtol=1e-4, atol=1e-6)


def test_staged_plan_follows_the_reference_split():
    items = [srt_item(tup((1,), (i,), (5,), (8,), r_init=float(i % 3 == 0), qid=f"q{i}")) for i in range(9)]
    gen, rev = plan_parts(items, SrtConfig(mode="staged", stage2_size=4), seed=0)
    assert gen.terms == (GENERATION,) and rev.terms == (REVISION,)
    right = {it.ids for it in items if it.r_init == 1.0}
    assert right <= {it.ids for it in rev.items} and len(rev.items) == 4  # 3 correct-initial first, then 1 wrong
    assert all(it.r_init == 0.0 for it in gen.items) and len(gen.items) == 5
    assert {it.ids for it in gen.items}.isdisjoint({it.ids for it in rev.items})
    [summed] = plan_parts(items, SrtConfig(), 0)
    assert summed.terms == (REVISION, GENERATION) and len(summed.items) == 9
    [only_rev] = plan_parts(items, SrtConfig(mode="revision"), 0)
    assert only_rev.terms == (REVISION,) and len(only_rev.items) == 9


def test_revision_only_weights_cover_exactly_y_rev():
    # prompt (1, 2), y_init (7,), sep (5,), y_rev (8, 9) + stop 3: revision targets are 8, 9, 3
    item = srt_item(tup((1, 2), (7,), (5,), (8, 9)))
    [mb] = srt_batches([item], (REVISION,), 1, 0)
    weights, targets = mb.weights.tolist()[0], mb.targets.tolist()[0]
    assert [t for t, w in zip(targets, weights) if w > 0] == [8, 9, 3]
    assert [w for w in weights if w > 0] == pytest.approx([1 / 3] * 3)


def with_tuples(recipe, tuples):
    """The recipe with srt.tuples set to this file."""
    from dataclasses import replace

    return replace(recipe, srt=replace(recipe.srt, tuples=str(tuples)))


def write_tuples(path, tokenizer, problems):
    prompts = PromptConfig()
    seps = separators(tokenizer, prompts)
    enc = lambda s: tuple(tokenizer.encode(s, add_special_tokens=False))  # noqa: E731  (hand-written answers)
    with path.open("w") as f:
        for i, problem in enumerate(problems):
            r = float(i % 2)
            t = RevisionTuple(id=f"q{i}", problem=problem, answer="7", prompt_ids=prompt_ids(tokenizer, problem, prompts),
                              y_init=enc("3 + 4 = 8, so \\boxed{8}" if r == 0 else "\\boxed{7}"), r_init=r, phrase="P",
                              sep_ids=seps.for_reward(r), y_rev=enc("3 + 4 = 7. The answer is \\boxed{7}"),
                              rev_stop=tokenizer.eos_token_id)
            f.write(json.dumps(t.to_json()) + "\n")
    return path


@pytest.mark.parametrize("mode", ["summed", "staged"])
def test_srt_lowers_the_loss_and_writes_a_fused_mlx_lm_model(tiny_model_dir, tiny_data, tmp_path, mode):
    raw = tiny_recipe_dict(tiny_model_dir, tiny_data, tmp_path / "run")
    raw["srt"] = {"mode": mode, "epochs": 6, "batch_size": 4, "micro_batch_size": 2, "optim": {"learning_rate": 1e-2},
                  "stage2_size": 3}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "r.yaml")
    base, tok = mlx_lm.load(str(tiny_model_dir))
    tuples = write_tuples(tmp_path / "tuples.jsonl", tok, [f"What is {i} + 3?" for i in range(6)])
    from sdzero_mlx.stages.collect import load_tuples
    items = [srt_item(t) for t in load_tuples(tuples)]
    before = {term: mean_nll(base, items, term, 0) for term in (REVISION, GENERATION)}

    state = run_srt(with_tuples(recipe, tuples), tmp_path / "srt")
    steps = 6 * 2 if mode == "summed" else 6 * 1 + 6 * 1  # 6 tuples / 4; staged: 3 wrong, then 3 tuples
    assert state.step == steps
    metrics = [json.loads(l) for l in (tmp_path / "srt" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))

    fused, _ = mlx_lm.load(str(tmp_path / "srt" / "model"))  # an ordinary mlx-lm model folder
    after = {term: mean_nll(fused, items, term, 0) for term in (REVISION, GENERATION)}
    assert after[REVISION] < 0.7 * before[REVISION], (before, after)
    assert after[GENERATION] < 0.85 * before[GENERATION], (before, after)
    # the fused model is the base with the saved adapters
    adapted, _ = mlx_lm.load(str(tiny_model_dir), adapter_path=str(tmp_path / "srt" / "adapters"))
    ids = mx.array([list(items[0].ids)])
    np.testing.assert_allclose(np.array(fused(ids)), np.array(adapted(ids)), rtol=1e-4, atol=1e-4)
    # done: a second call does not train again
    assert run_srt(with_tuples(recipe, tuples), tmp_path / "srt").step == steps
    assert len((tmp_path / "srt" / "metrics.jsonl").read_text().splitlines()) == steps


def test_generation_term_on_wrong_first_answers_only():
    """srt.generation_tuples = wrong: a right first answer trains only its revision (by hand)."""
    wrong = srt_item(tup((1, 2), (7,), (5,), (8, 9), r_init=0.0))  # gen span 4 tokens, rev span 3
    right = srt_item(tup((1, 2), (6,), (4,), (6,), r_init=1.0))  # gen span 4 tokens, rev span 2
    [mb] = srt_batches([wrong, right], (REVISION, GENERATION), 4, 0, generation_wrong_only=True)
    # generation mean over the wrong tuple's 5 tokens only; revision mean over 3 + 2 = 5 tokens
    w = mb.weights.tolist()
    np.testing.assert_allclose(w[0], [1 / 5, 1 / 5, 1 / 5 + 1 / 5, 1 / 5 + 1 / 5, 1 / 5 + 1 / 5], rtol=1e-6)
    np.testing.assert_allclose(w[1][:2], [1 / 5, 1 / 5], rtol=1e-6)  # the right tuple: y_rev + end-of-turn only
    assert sum(w[1]) == pytest.approx(2 / 5)
    [both] = srt_batches([wrong, right], (REVISION, GENERATION), 4, 0)
    assert sum(both.weights.tolist()[1]) == pytest.approx(4 / 9 + 2 / 5)  # paper: the generation term on both

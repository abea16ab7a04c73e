"""Phase 2's teacher contexts (contexts.py): each one's teacher ids by hand, the sibling rule, what a group with no
verified answer does and what it costs, the default unchanged, GRPO's term mixed in, and the recipe's checks."""

from __future__ import annotations

import json
from dataclasses import replace

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
import yaml

from sdzero_mlx.config import KlSettings, PromptConfig
from sdzero_mlx.stages.distill import DistillConfig
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.contexts import Reading, context_of, distill_item, sibling_of, teacher_items
from sdzero_mlx.kd import compute_teacher_targets, distill_step, student_batch
from sdzero_mlx.loss import DistillMicroBatch, distill_loss, log_softmax
from sdzero_mlx.modeling import load_model, trainable
from sdzero_mlx.config import ModelConfig
from sdzero_mlx.prompts import Separators
from sdzero_mlx.stages import stage_spec
from sdzero_mlx.stages.distill import run_distill, with_advantages
from sdzero_mlx.stages.sdft import sdft_reading
from sdzero_mlx.types import Example, Graded, Rollout
from scripted import scripted_model_dir, write_data

EOS = 3
SEPS = Separators(right=(40, 41), wrong=(50, 51, 52))
PROMPT = (2, 10, 11)


def answer(y, reward, solution=None, gold="7", prompt=PROMPT):
    ex = Example("q", "What is 3 + 4?", gold, solution)
    return Graded(Rollout(ex, tuple(prompt), tuple(y), "text of y", "stop", EOS), reward)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_model(ModelConfig(str(tiny_model_dir)))[1]


def reading(context, tok=None, **kw):
    return Reading(context, SEPS, tok, PromptConfig(), **kw)


def teacher_ids(item):
    return item.teacher.ids


# -- the sibling each answer reads -----------------------------------------------------------------


def test_the_sibling_rule_by_hand():
    assert [sibling_of((0, 1, 0, 1), i) for i in range(4)] == [1, 3, 1, 1]  # the first verified one, never itself
    assert [sibling_of((0, 1), i) for i in range(2)] == [1, 1]  # the only verified answer reads itself
    assert [sibling_of((0, 0, 0), i) for i in range(3)] == [None, None, None]


# -- each context's teacher sequence, in ids ---------------------------------------------------------------


def test_cue_is_the_papers_sequence_and_the_default():
    g = answer((20, 21, 22), 0.0)
    (item,) = teacher_items(reading("cue"), [g], 1, 64).items
    # chat(x) + y + sep(0) + y + eos, scored on the last y and its end-of-turn token
    assert teacher_ids(item) == PROMPT + (20, 21, 22) + (50, 51, 52) + (20, 21, 22, EOS)
    assert item.teacher.second == (9, 13) and item.student_ids == PROMPT + (20, 21, 22, EOS)
    assert item.student_span == (3, 7)
    assert item == distill_item(g, SEPS, 64)
    d = DistillConfig()
    assert (d.teacher_context, d.group_size, d.no_sibling, d.advantage_weight) == ("cue", 1, "cue", 0.0)


def test_sibling_reads_a_verified_other_answer_then_sep_right():
    group = [answer((20, 21), 0.0), answer((30, 31, 32), 1.0), answer((33,), 1.0)]
    built = teacher_items(reading("sibling"), group, 3, 64)
    wrong, right1, right2 = built.items
    # the wrong answer reads the first verified sibling (answer 1), then sep(1); its own tokens are scored
    assert teacher_ids(wrong) == PROMPT + (30, 31, 32) + (40, 41) + (20, 21, EOS)
    assert wrong.teacher.first == (3, 6) and wrong.teacher.second == (8, 11)
    assert wrong.student_ids == PROMPT + (20, 21, EOS) and wrong.student_span == (3, 6)
    # a verified answer reads another verified one: answer 1 reads answer 2, answer 2 reads answer 1
    assert teacher_ids(right1) == PROMPT + (33,) + (40, 41) + (30, 31, 32, EOS)
    assert teacher_ids(right2) == PROMPT + (30, 31, 32) + (40, 41) + (33, EOS)
    assert (built.answers, built.without_hint, built.skipped) == ((0, 1, 2), 0, 0)


def test_a_lone_verified_answer_reads_itself_which_is_the_cue_for_a_right_answer():
    group = [answer((20, 21), 0.0), answer((30, 31), 1.0)]
    built = teacher_items(reading("sibling"), group, 2, 64)
    assert teacher_ids(built.items[0]) == PROMPT + (30, 31) + (40, 41) + (20, 21, EOS)
    assert teacher_ids(built.items[1]) == PROMPT + (30, 31) + (40, 41) + (30, 31, EOS)
    assert built.items[1] == distill_item(group[1], SEPS, 64)


def test_sibling_groups_are_the_sampled_groups():
    # two questions of two answers each, example-major: the second question's wrong answer cannot read the first's
    graded = [answer((20,), 1.0), answer((21,), 0.0), answer((22,), 0.0), answer((23,), 0.0)]
    built = teacher_items(reading("sibling"), graded, 2, 64)
    assert teacher_ids(built.items[1]) == PROMPT + (20,) + (40, 41) + (21, EOS)
    assert teacher_ids(built.items[2]) == PROMPT + (22,) + (50, 51, 52) + (22, EOS)  # the fallback: its own cue
    assert built.without_hint == 2


def test_a_group_with_no_verified_answer_under_cue_and_skip():
    group = [answer((20, 21), 0.0), answer((22,), 0.0)]
    as_cue = teacher_items(reading("sibling", no_sibling="cue"), group, 2, 64)
    assert as_cue.items == tuple(distill_item(g, SEPS, 64) for g in group)  # the paper's sequences, exactly
    assert (as_cue.without_hint, as_cue.skipped) == (2, 0)
    skipped = teacher_items(reading("sibling", no_sibling="skip"), group, 2, 64)
    assert (skipped.items, skipped.answers, skipped.without_hint, skipped.skipped) == ((), (), 0, 2)


def test_a_sibling_longer_than_the_cap_is_shortened_before_the_answer():
    group = [answer((20, 21), 0.0), answer((30, 31, 32, 33), 1.0)]
    # cap 9: 9 - 3 (prompt) - 2 (sep) = 4 tokens for sibling + y: y and eos kept whole (3), one sibling token
    item = teacher_items(reading("sibling"), group, 2, 9).items[0]
    assert teacher_ids(item) == PROMPT + (30,) + (40, 41) + (20, 21, EOS)


def test_gold_reads_the_solution_else_a_verified_answer_else_nothing(tok):
    enc = lambda s: tuple(tok.encode(s, add_special_tokens=False))  # noqa: E731  (hand-written text)
    with_solution = answer((20, 21), 0.0, solution="3 + 4 = 7")
    (item,) = teacher_items(reading("gold", tok), [with_solution], 1, 256).items
    assert teacher_ids(item) == PROMPT + enc("3 + 4 = 7") + (40, 41) + (20, 21, EOS)
    right = answer((20, 21), 1.0)  # no solution: this verified answer itself, then sep(1)
    assert teacher_ids(teacher_items(reading("gold", tok), [right], 1, 256).items[0]) == PROMPT + (20, 21, 40, 41, 20, 21, EOS)
    wrong = teacher_items(reading("gold", tok), [answer((20, 21), 0.0)], 1, 256)
    assert teacher_ids(wrong.items[0]) == wrong.items[0].student_ids == PROMPT + (20, 21, EOS)  # reads what the student reads
    assert wrong.without_hint == 1


def test_self_reads_a_verified_answer_and_gives_a_wrong_one_nothing():
    built = teacher_items(reading("self"), [answer((20, 21), 1.0), answer((22,), 0.0)], 1, 64)
    assert teacher_ids(built.items[0]) == PROMPT + (20, 21) + (40, 41) + (20, 21, EOS)
    assert teacher_ids(built.items[1]) == built.items[1].student_ids == PROMPT + (22, EOS)
    assert built.without_hint == 1


def test_answer_states_the_gold_answer_in_the_cue(tok):
    enc = lambda s: tuple(tok.encode(s, add_special_tokens=False))  # noqa: E731
    p = PromptConfig()
    (wrong,) = teacher_items(reading("answer", tok), [answer((20, 21), 0.0, gold="12")], 1, 256).items
    cue = enc("\n\n" + p.phrase_wrong + " The correct final answer is 12.\n\n")
    assert teacher_ids(wrong) == PROMPT + (20, 21) + cue + (20, 21, EOS)
    assert wrong.teacher.second == (5 + len(cue), 8 + len(cue))
    (right,) = teacher_items(reading("answer", tok, answer_phrase="(It is {answer}.)"), [answer((20,), 1.0)], 1, 256).items
    assert teacher_ids(right) == PROMPT + (20,) + enc("\n\n" + p.phrase_right + " (It is 7.)\n\n") + (20, EOS)


def test_sdft_names_gold_and_self(tiny_recipe, tok):
    for demonstration, context in (("gold", "gold"), ("own", "self")):
        r = sdft_reading(load_recipe(tiny_recipe, [f"sdft.demonstration={demonstration}", "sdft.context=rephrase"]), tok)
        assert (r.context, r.demo_template) == (context, None)
    user = sdft_reading(load_recipe(tiny_recipe, ["sdft.demonstration=own", "sdft.context=user"]), tok)
    assert user.demo_template == load_recipe(tiny_recipe).sdft.demo_template
    # user layout: the demonstration in the user turn, nothing read before y
    ctx = context_of(user, [answer((20, 21), 1.0)], 0)
    assert (ctx.read, ctx.sep, ctx.hint) == ((), (), True) and ctx.prompt != PROMPT


# -- the recipe: checks, budget --------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"teacher_context": "sibling"}, "distill.group_size >= 2"),
    ({"advantage_weight": 1.0}, "distill.group_size >= 2"),
    ({"no_sibling": "skip"}, "only with teacher_context: sibling"),
    ({"answer_phrase": "The answer."}, "must contain {answer}"),
    ({"advantage_weight": -1.0, "group_size": 2}, ">= 0"),
])
def test_impossible_settings_are_refused_with_the_fix(fields, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(**fields)


def test_generations_per_step_count_the_whole_group(tiny_recipe):
    per_step = stage_spec("distill").generations_per_step
    assert per_step(load_recipe(tiny_recipe)) == 4
    assert per_step(load_recipe(tiny_recipe, ["distill.teacher_context=sibling", "distill.group_size=3"])) == 12


def test_gold_on_a_split_without_solutions_is_refused(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, ["distill.teacher_context=gold", f"run.output_dir={tmp_path / 'g'}"])
    with pytest.raises(ValueError, match="data.fields.solution"):
        run_distill(recipe, tmp_path / "g")


@pytest.fixture(scope="module")
def scripted_recipe(tmp_path_factory):
    """The scripted model answers \\boxed{7} to everything: a question whose answer is 7 has a whole verified group,
    any other question a group with no verified answer."""
    model = scripted_model_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("contexts")
    write_data(root / "d.jsonl", 24)
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id"}, "phase1_size": 8, "phase2_size": 8,
                 "eval_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.0, "max_tokens": 10, "batch_size": 16},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 4, "top_k": 8, "max_teacher_tokens": 160,
                    "teacher_context": "sibling", "group_size": 2},
        "optim": {"learning_rate": 1e-2},
        "run": {"output_dir": str(root / "run"), "seed": 0},
    }
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_no_sibling_cue_and_skip_on_a_run_and_what_they_cost(scripted_recipe, tmp_path, tok):
    answer_tokens = len(tok.encode("\\boxed{7}", add_special_tokens=False)) + 1  # and its end-of-turn token
    runs = {}
    for fallback in ("cue", "skip"):
        recipe = load_recipe(scripted_recipe, [f"distill.no_sibling={fallback}", f"run.output_dir={tmp_path / fallback}"])
        state = run_distill(recipe, tmp_path / fallback)
        assert state.generations == 2 * 4 * 2  # steps x questions x group: every sampled answer counts
        runs[fallback] = records(tmp_path / fallback)
    first_cue, first_skip = runs["cue"][0], runs["skip"][0]
    assert first_cue["reward"] == first_skip["reward"]  # the same first samples (they differ after the first update)
    wrong = round((1 - first_cue["reward"]) * 8)  # a group is all right (answer 7) or all wrong
    assert 0 < wrong < 8
    assert (first_cue["without_hint"], first_cue["skipped_answers"]) == (wrong, 0)
    assert (first_skip["without_hint"], first_skip["skipped_answers"]) == (0, wrong)
    assert first_cue["trained_tokens"] == 8 * answer_tokens
    assert first_skip["trained_tokens"] == (8 - wrong) * answer_tokens
    assert first_cue["generations"] == first_skip["generations"] == 8


# -- GRPO's term on the same samples --------------------------------------------------------------------


def test_advantages_are_grpos_per_group():
    items = teacher_items(reading("sibling"), [answer((20,), r) for r in (1, 0, 0, 1, 0, 0)], 2, 64)
    adv = [it.advantage for it in with_advantages(items.items, items.answers, [1, 0, 0, 1, 0, 0], 2)]
    assert adv == pytest.approx([1, -1, -1, 1, 0, 0], abs=1e-5)  # groups (1, 0), (0, 1), (0, 0)


def test_the_advantage_term_is_the_policy_gradient_by_hand(tiny_model_dir):
    from test_distill import fresh_student

    model, _ = fresh_student(tiny_model_dir)
    graded = [answer((20, 21, 22), 1.0), answer((23, 24), 0.0)]
    built = teacher_items(reading("sibling"), graded, 2, 64)
    items = with_advantages(built.items, built.answers, [1.0, 0.0], 2)
    assert [it.advantage for it in items] == pytest.approx([1.0, -1.0], abs=1e-5)
    kl, teacher = KlSettings("reverse", 0.5, 16), trainable(model)
    batch = student_batch(items, 0)
    targets = compute_teacher_targets(model, teacher, items, 0, kl)
    adv = mx.array([it.advantage for it in items])
    n = 7  # scored tokens: 4 + 3

    def loss(weight):
        mb = DistillMicroBatch(batch, targets, advantages=adv)
        return lambda m: distill_loss(m, mb, kl, step_tokens=n, advantage_weight=weight)[0]

    def direct(m):  # -sum_i A_i sum_t log p(y_t) / n, from one plain forward per answer
        total = mx.array(0.0)
        for it in items:
            ids = mx.array([list(it.student_ids)])
            logp = log_softmax(m(ids)[:, :-1])[0]
            s, e = it.student_span
            total = total - it.advantage * sum(logp[t - 1, it.student_ids[t]] for t in range(s, e))
        return total / n

    import mlx.nn as nn

    (v0, g0), (v2, g2), (vd, gd) = (nn.value_and_grad(model, f)(model) for f in (loss(0.0), loss(2.0), direct))
    assert v2.item() == pytest.approx(v0.item() + 2 * (-(4 * 1.0) - 3 * (-1.0)) / n, abs=1e-5)  # worth -A per token
    from mlx.utils import tree_flatten

    for (k, a), (_, b), (_, c) in zip(tree_flatten(g2), tree_flatten(g0), tree_flatten(gd)):
        np.testing.assert_allclose(np.array(a - b), 2 * np.array(c), rtol=1e-3, atol=1e-6, err_msg=k)
    # and through the step: the term moves the weights
    step = lambda w: distill_step(fresh_student(tiny_model_dir)[0], optim.SGD(learning_rate=1.0), teacher, items, kl,  # noqa: E731
                                  8, 0, 0.0, advantage_weight=w)
    assert step(1.0).grad_norm != pytest.approx(step(0.0).grad_norm, rel=1e-3)


# -- the doctor's measure under each context -------------------------------------------------------------------

WRONG = "3 + 4 = 7\n7 * 2 = 15\n15 - 1 = 14\n\\boxed{14}"
RIGHT = "3 + 4 = 7\n7 * 2 = 14\n14 - 1 = 13\n\\boxed{13}"


def _plain_logprob(model, ids, start, end) -> float:
    """Sum of log p(ids[j] | ids[:j]) for j in [start, end), from one forward pass over the whole sequence."""
    logits = model(mx.array([list(ids)])).astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return sum(logp[0, j - 1, ids[j]].item() for j in range(start, end))


def test_the_doctors_hindsight_under_each_context_against_a_forward_pass(tiny_model_dir, tiny_recipe):
    import math

    from sdzero_mlx.doctor.signal import answer_hindsight, context_hindsight, first_error_hindsight
    from sdzero_mlx.hindsight import answer_position, step_position
    from sdzero_mlx.modeling import padding_id
    from sdzero_mlx.prompts import prompt_ids, separators

    model, tok = load_model(ModelConfig(str(tiny_model_dir)))
    recipe = load_recipe(tiny_recipe)
    enc = lambda s: tuple(tok.encode(s, add_special_tokens=False))  # noqa: E731  (hand-written text)
    seps, pad = separators(tok, recipe.prompts), padding_id(tok)

    def graded(problem, text, reward, solution=None):
        ex = Example(problem, problem, "13", solution)
        return Graded(Rollout(ex, prompt_ids(tok, problem, recipe.prompts), enc(text), text, "stop", EOS), reward)

    # two problems of k = 2 answers: the first has a right sibling and a solution, the second neither
    one, two = "Compute (3 + 4) * 2 - 1.", "Compute (4 + 3) * 2 - 1."
    answers = [graded(one, WRONG, 0.0, solution=RIGHT), graded(one, RIGHT, 1.0, solution=RIGHT),
               graded(two, WRONG, 0.0), graded(two, WRONG, 0.0)]
    cue = answer_hindsight(model, tok, answers, seps, pad)
    measures = context_hindsight(model, tok, answers, 2, recipe, seps, pad, cue,
                                 first_error_hindsight(model, tok, answers, seps, pad, ()))
    assert {n: (m.wrong_answers, m.covered) for n, m in measures.items()} == {
        "cue": (3, 3), "sibling": (3, 1), "gold": (3, 1), "self": (3, 0), "answer": (3, 3)}
    assert measures["self"].at_answer.answers == 0 and measures["sibling"].coverage == pytest.approx(1 / 3)

    # by hand, the sibling: the Generator reads prompt + y[:t], the Reviser prompt + y_right + sep(1) + y[:t]
    p, y, y_right = answers[0].rollout.prompt_ids, enc(WRONG), enc(RIGHT)
    at = answer_position(tok, y, "13")
    student = p + y[:at.start] + at.gold
    teacher = p + y_right + seps.right + y[:at.start] + at.gold
    own = p + y_right + seps.right + y[:at.start] + at.own
    g = len(at.gold)
    sib = measures["sibling"].at_answer
    assert sib.gold_student == pytest.approx(math.exp(_plain_logprob(model, student, len(student) - g, len(student))), rel=1e-4)
    assert sib.gold_teacher == pytest.approx(math.exp(_plain_logprob(model, teacher, len(teacher) - g, len(teacher))), rel=1e-4)
    assert sib.own_teacher == pytest.approx(math.exp(_plain_logprob(model, own, len(own) - len(at.own), len(own))), rel=1e-4)
    # at the first wrong step ("15" of line 2, right value 14), the same context
    step = step_position(tok, y).position
    at_step = p + y_right + seps.right + y[:step.start] + step.gold
    assert measures["sibling"].at_step.gold_teacher == pytest.approx(
        math.exp(_plain_logprob(model, at_step, len(at_step) - len(step.gold), len(at_step))), rel=1e-4)
    # gold reads the solution the same way; answer reads y and the cue stating 13 (mean over its three answers)
    gold_seq = p + enc(RIGHT) + seps.right + y[:at.start] + at.gold
    assert measures["gold"].at_answer.gold_teacher == pytest.approx(
        math.exp(_plain_logprob(model, gold_seq, len(gold_seq) - g, len(gold_seq))), rel=1e-4)
    stated = []
    for a in (answers[0], answers[2], answers[3]):
        q = a.rollout.prompt_ids
        seq = q + y + enc("\n\n" + recipe.prompts.phrase_wrong + " The correct final answer is 13.\n\n") + y[:at.start] + at.gold
        stated.append(math.exp(_plain_logprob(model, seq, len(seq) - g, len(seq))))
    assert measures["answer"].at_answer.gold_teacher == pytest.approx(sum(stated) / 3, rel=1e-4)


def _summary(gain, answers=10, own=0.5):
    from sdzero_mlx.hindsight import HindsightSummary

    return HindsightSummary(answers, 0, 0.1, 0.1 + gain, own, own, 0.0)


def test_the_recommended_context_by_hand():
    from sdzero_mlx.doctor.signal import ContextMeasure
    from sdzero_mlx.doctor.verdict import recommend_context

    def measures(**gains):
        return {name: ContextMeasure(name, 20, covered, _summary(gain), _summary(step_gain), 10)
                for name, (covered, gain, step_gain) in gains.items()}

    # coverage x the larger gain: sibling 0.5 x 0.3 = 0.15 beats answer 1 x 0.1 and the cue's -0.1
    choice = recommend_context(measures(cue=(20, -0.1, -0.2), sibling=(10, 0.3, 0.0), answer=(20, 0.1, 0.05)))
    assert (choice.context, choice.place) == ("sibling", "the answer")
    assert choice.scores == pytest.approx({"cue": -0.1, "sibling": 0.15, "answer": 0.1})
    # a context that raises the right value where the working goes wrong counts there
    choice = recommend_context(measures(cue=(20, -0.1, 0.0), sibling=(10, 0.3, 0.0), answer=(20, 0.1, 0.5)))
    assert (choice.context, choice.place, choice.scores["answer"]) == ("answer", "the first wrong step", 0.5)
    # the cue within 0.02 of the best (and helping itself) is named: it needs no group and no solution
    choice = recommend_context(measures(cue=(20, 0.14, 0.0), sibling=(10, 0.3, 0.0)))
    assert (choice.context, choice.place) == ("cue", "the answer") and "best (sibling)" in choice.reason
    assert recommend_context(measures(cue=(20, 0.01, 0.0), sibling=(20, 0.025, 0.0))).context == "sibling"
    # nothing adds 0.02 per wrong answer: none is named; too few answers scored: not ranked
    m = measures(cue=(20, -0.1, 0.0), sibling=(10, 0.03, 0.0))
    m["gold"] = ContextMeasure("gold", 20, 3, _summary(0.9, answers=3), None, 0)
    choice = recommend_context(m)
    assert choice.context is None and choice.scores["gold"] is None and "gold" in choice.reason
    assert choice.scores["sibling"] == pytest.approx(0.015)

"""Hindsight where the answer first goes wrong: the first line whose equation does not hold (verifier/steps.py),
its tokens (hindsight.py), the probabilities scored there on the tiny model (checked against a plain forward
pass, and exactly on a model with zero weights), the KL on that line against chance, and the verdict's use of it."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import mlx.core as mx
import pytest
from mlx.utils import tree_map

from sdzero_mlx.sources.demo_tasks import Difficulty, generate, parse_problem, render_solution
from sdzero_mlx.doctor.verdict import Measures, decide
from sdzero_mlx.explain import LocalisationScore, TokenReport, step_localisation
from sdzero_mlx.hindsight import AnswerHindsight, step_position, summarize_first_error
from sdzero_mlx.verifier.steps import first_wrong_step, written_value

EXAMPLE = "3 + 4 = 7\n7 * 2 = 15\n15 - 1 = 14"


# -- the first wrong line, read with the verifier's parser ------------------------------------------------


def test_the_first_wrong_line_of_the_example():
    step = first_wrong_step(EXAMPLE)
    # line 2 is characters 10..20; its wrong value "15" is 18..20; 7 * 2 is 14
    assert step.line == (10, 20) and EXAMPLE[10:20] == "7 * 2 = 15"
    assert step.value == (18, 20) and step.written == "15" and step.left == "7 * 2" and step.right == "14"
    # line 3 (15 - 1 = 14) holds given line 2: only the first wrong line is marked
    assert first_wrong_step("3 + 4 = 7\n7 * 2 = 14\n14 - 1 = 13") is None


def test_lines_without_an_evaluable_equation_are_skipped():
    assert first_wrong_step("Let me think.\nx = 7\n2x + 1 = 16\nSo the answer is 9.") is None
    # a bare number on the left ("half of 8 = 4" would read 8 = 4), an operand of "of", a percent: not read
    assert first_wrong_step("20% of 50 = 10\nhalf of 8 = 4\n1/10 = 10%\nx+3 = 7") is None
    # the same skipped lines, then a real error: found on its own line
    text = "x = 7\n20% of 50 = 10\n2 * 6 = 13"
    step = first_wrong_step(text)
    assert text[step.line[0]:step.line[1]] == "2 * 6 = 13" and step.right == "12"


def test_equations_in_prose_chains_and_rewrites():
    text = "He has 3 + 4 = 7 apples.\nThen 7 * 2 = 15 apples."
    step = first_wrong_step(text)
    assert text[step.line[0]:step.line[1]] == "Then 7 * 2 = 15 apples." and step.right == "14"
    # money, thousands, "x" for times, a full stop after the value
    assert first_wrong_step("She sells 16 - 3 - 4 = 9 eggs at $2 each, so 9 * $2 = $18.") is None
    step = first_wrong_step("It costs 1,000 + 250 = 1,250 dollars. Then 5 x 3 = 16.")
    assert (step.left, step.written, step.right) == ("5 x 3", "16", "15")
    # GSM8K's calculator marks: 48/2 = <<48/2=24>>24 holds
    assert first_wrong_step("Natalia sold 48/2 = <<48/2=24>>24 clips in May.") is None
    # a chain a = b = c: each side against the chain's value
    assert (first_wrong_step("3 + 4 = 7 = 8").written, first_wrong_step("3 + 4 = 7 = 8").right) == ("8", "7")
    # the rewrite form a op b = c + terms: c must be a op b (the demo's chain scratchpad; run-on working)
    assert first_wrong_step("7-1=6-4+5\n6-4=2+5\n2+5=7") is None
    assert first_wrong_step("12 / 4 = 3 - 1 = 2") is None
    step = first_wrong_step("7-1=5-4+5\n5-4=1+5")  # 6 = 6 literally, but 7-1 is not 5
    assert (step.value, step.written, step.right) == ((4, 5), "5", "6")
    # LaTeX operators from the verifier's own replacements
    step = first_wrong_step("\\( \\frac{3}{4} \\times 8 = 6 \\)\n$2 \\cdot 5 = 11$")
    assert (step.left, step.written, step.right) == ("2 \\cdot 5", "11", "10")


def test_rounded_decimals_and_the_right_value_as_written():
    assert first_wrong_step("10 / 3 = 3.33") is None  # within half a unit of the last place
    step = first_wrong_step("10/3 = 3.34")
    assert step.right == "3.33"
    assert first_wrong_step("10 / 3 = 3").right is None  # 3.333... has no form at the written precision
    import sympy as sp

    assert written_value(sp.Rational(7, 2), "3") == "3.5" and written_value(sp.Integer(-5), "3") == "-5"
    assert written_value(sp.Rational(10, 3), "3.34") == "3.33" and written_value(sp.sqrt(2), "1.4") is None


def test_a_right_value_is_written_exactly_or_not_at_all_and_never_raises():
    # exact decimals, not a float's 17 digits: 123456789123456789 / 2 is ...94.5, not ...92.0
    assert first_wrong_step("123456789123456789/2 = 5").right == "61728394561728394.5"
    assert first_wrong_step("(10^40+1)/4 = 5").right == "25" + "0" * 38 + ".25"
    assert first_wrong_step("-10/3 = -3.34").right == "-3.33"
    assert first_wrong_step("(10^400+1)/2 = 3").right == "5" + "0" * 399 + ".5"  # past a float's 1e308
    # model text with a huge value: the step is found, its right value is too long to write (no answer the
    # verifier reads is longer than max_answer_chars), and nothing raises (Python refuses int -> str past 4300
    # digits)
    for text in ("2^100000 = 3", "2^14000 = 3", "10^5000/3 = 1.5"):
        step = first_wrong_step(text)
        assert step is not None and step.written in ("3", "1.5") and step.right is None, text


def test_the_demo_tasks():
    # every gold solution of both demo tasks holds line by line
    for kind in ("chain", "inverse"):
        assert all(first_wrong_step(p.solution) is None for p in generate(0, 200, Difficulty(kind=kind)))
    # a chain answer with one running total changed: found on that line, with the true total as the right value
    rng = random.Random(0)
    for p in generate(1, 100, Difficulty()):
        start, ops = parse_problem(p.problem)
        totals, t = [], start
        for op, b in ops:
            t = t + b if op == "+" else t - b
            totals.append(t)
        i = rng.randrange(len(ops))
        wrong = list(totals)
        wrong[i] = (totals[i] + rng.choice((1, 2, 3))) % 10
        text = render_solution(start, ops, wrong)
        step = first_wrong_step(text)
        assert text[step.line[0]:step.line[1]] == text.split("\n")[i] and step.right == str(totals[i])


# -- its tokens, and the probabilities there on the tiny model --------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from sdzero_mlx.config import ModelConfig
    from sdzero_mlx.modeling import load_model

    return load_model(ModelConfig(str(tiny_model_dir)))


def test_the_step_in_tokens(tiny):
    _, tok = tiny
    y = tuple(tok.encode(EXAMPLE, add_special_tokens=False))
    found = step_position(tok, y)
    # the tiny tokenizer writes digits, spaces and signs one character a token: "15" of line 2 is tokens 18 and 19
    assert len(y) == len(EXAMPLE) and found.position.start == 18
    assert tok.decode(list(y[:18])) == "3 + 4 = 7\n7 * 2 = "
    assert tok.decode(list(found.position.own)) == "15" and tok.decode(list(found.position.gold)) == "14"
    assert step_position(tok, tuple(tok.encode("3 + 4 = 7\n7 * 2 = 14", add_special_tokens=False))) is None


def _plain_logprob(model, ids, start, end) -> float:
    """Sum of log p(ids[j] | ids[:j]) for j in [start, end), from one forward pass over the whole sequence."""
    logits = model(mx.array([list(ids)])).astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return sum(logp[0, j - 1, ids[j]].item() for j in range(start, end))


def test_the_probabilities_at_the_step(tiny):
    from sdzero_mlx.modeling import padding_id
    from sdzero_mlx.config import PromptConfig
    from sdzero_mlx.prompts import prompt_ids, separators
    from sdzero_mlx.hindsight import measure_first_error

    model, tok = tiny
    prompt = prompt_ids(tok, "Compute (3 + 4) * 2 - 1.", PromptConfig())
    y = tuple(tok.encode(EXAMPLE, add_special_tokens=False))
    sep = separators(tok, PromptConfig()).wrong
    enc = lambda s: tuple(tok.encode(s, add_special_tokens=False))  # noqa: E731  (hand-written text)
    values, found, unwritten = measure_first_error(model, tok, [(prompt, y), (prompt, enc("3 + 4 = 7"))], sep,
                                                   padding_id(tok))
    assert (len(values), found, unwritten) == (1, 1, 0)  # the second answer holds: no step
    v = values[0]
    # by hand: the Generator reads prompt + y[:18] and scores "14"; the Reviser reads prompt + y + cue + y[:18]
    student = prompt + y[:18] + enc("14")
    teacher = prompt + y + sep + y[:18] + enc("14")
    assert v.gold_student == pytest.approx(_plain_logprob(model, student, len(student) - 2, len(student)), abs=1e-4)
    assert v.gold_teacher == pytest.approx(_plain_logprob(model, teacher, len(teacher) - 2, len(teacher)), abs=1e-4)
    own = prompt + y + sep + y[:20]
    assert v.own_teacher == pytest.approx(_plain_logprob(model, own, len(own) - 2, len(own)), abs=1e-4)
    # with every weight zero the logits are zero: each token has probability 1 / V, two tokens 1 / V^2
    zero = type(model)(model.args)
    zero.update(tree_map(mx.zeros_like, model.parameters()))
    (z,), _, _ = measure_first_error(zero, tok, [(prompt, y)], sep, padding_id(tok))
    two = -2 * math.log(model.args.vocab_size)
    assert (z.gold_student, z.gold_teacher, z.own_student, z.own_teacher) == pytest.approx((two,) * 4, abs=1e-4)


# -- the KL on the step against chance, coverage ---------------------------------------------------------


def _report(pieces, kl, reward=0.0) -> TokenReport:
    n = len(pieces)
    return TokenReport(tuple(range(n)), tuple(pieces), (0.0,) * n, (0.0,) * n, (0.0,) * n, tuple(kl), reward, None)


def test_kl_on_the_first_wrong_line_against_chance():
    pieces = list(EXAMPLE)  # one character a token: 32 tokens, line 2 is tokens 10..19 (10 of 32)
    kl = [0.0] * 32
    kl[18] = 5.0  # the "1" of the wrong 15 holds the largest KL
    loc = step_localisation([(_report(pieces, kl), first_wrong_step(EXAMPLE).line)], top_frac=0.05)
    # ceil(0.05 * 32) = 2 top tokens: token 18 (on the line) and the first of the ties, token 0 (not): 1 hit of 2
    assert (loc.answers, loc.top_tokens, loc.hit_share) == (1, 2, 0.5)
    assert loc.chance_share == pytest.approx(10 / 32) and loc.ratio == pytest.approx(0.5 / (10 / 32))


def test_coverage_and_summary_by_hand():
    values = [AnswerHindsight(math.log(0.1), math.log(0.6), math.log(0.8), math.log(0.2))]
    loc = LocalisationScore(1, 2, 0.5, 0.25)
    s = summarize_first_error(values, wrong_answers=10, found=4, unwritten=3, localisation=loc)
    assert s.coverage == 0.4 and s.hindsight.answers == 1 and s.hindsight.no_final_answer == 3
    assert s.hindsight.gold_gain == pytest.approx(0.5) and s.hindsight.gold_raised == 1.0
    assert summarize_first_error([], 0, 0, 0, loc).coverage is None


# -- the verdict reads it ------------------------------------------------------------------------------------

NONE = Measures(  # no hindsight at the answer (the demo's chain task, as doctor measured it)
    reward_rate=0.38, truncated_share=0.0, corrections=((1, 1),) * 10 + ((0, 1),) * 69, resample_rate=0.21,
    hindsight_answers=64, gold_student=0.0002, gold_teacher=0.0001, own_student=0.999, own_teacher=0.999,
    gold_raised=0.0, mixed_groups=0.56,
)


def test_the_verdict_reads_the_first_wrong_step():
    # no signal at the answer and none at the step: unlikely, both named
    flat = decide(replace(NONE, step_coverage=0.5, step_answers=30, step_gold_student=0.01, step_gold_teacher=0.012))
    assert flat.label == "unlikely" and "at the first wrong step" in flat.reasons[0]
    assert "This is the base model" in flat.reasons[0]
    # the same bars at the step as at the answer: + 0.2 on the right value, raised on 40% -> helps
    step = decide(replace(NONE, step_coverage=0.5, step_answers=30, step_gold_student=0.1, step_gold_teacher=0.3,
                          step_gold_raised=0.4))
    assert step.label == "helps" and "the Reviser puts 0.300 on the right value" in step.reasons[0]
    # a gain at the step measured on too few answers decides nothing (and is said)
    few = decide(replace(NONE, step_coverage=0.05, step_answers=3, step_gold_student=0.1, step_gold_teacher=0.9,
                         step_gold_raised=1.0))
    assert few.label == "unlikely" and any("fewer than 8 wrong answers" in r for r in few.reasons)
    # some gain at the step (between the bars): unclear, not unlikely
    assert decide(replace(NONE, step_coverage=0.5, step_answers=30, step_gold_student=0.1,
                          step_gold_teacher=0.13)).label == "unclear"
    # read on the teacher after SRT: the advice is about phase 2, not about running SRT
    teacher = decide(replace(NONE, read="teacher"))
    assert "expect no gain from phase 2 over SRT" in teacher.reasons[0] and "run SRT" not in teacher.reasons[0]
    # the KL on the step is a reason, against chance
    kl = decide(replace(NONE, step_coverage=0.5, step_answers=30, step_kl_hits=0.6, step_kl_chance=0.2))
    assert any("60.0% lie on the first wrong line, against 20.0% by chance" in r and "concentrates" in r for r in kl.reasons)

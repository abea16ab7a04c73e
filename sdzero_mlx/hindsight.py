"""Hindsight at the answer: does the Reviser, having read a wrong answer and the "not correct" cue,
put more probability on the gold final answer than the Generator does?

For a wrong answer y to chat(x), let t be the first token of its final answer (where the verifier finds
it: the last \\boxed{...}, "####", "Answer: ...", or the last number under verifier.last_number_fallback;
verifier/extract.py's answer_span) and g the gold answer's tokens as they
would continue y[:t]. On phase 2's own sequences (prompts.teacher_sequence):
  Generator (student): chat(x) + y[:t] + g                      -> log p_s(g)
  Reviser (teacher):   chat(x) + y + sep(0) + y[:t] + g         -> log p_t(g)
and the same two numbers for the answer's own final-answer tokens y[t:u] (log p_s(own), log p_t(own)).
The teacher here is the model itself (phase 2's teacher before any update); SD-Zero trains the
student's distribution at t towards the teacher's, so p_t(g) > p_s(g) is the signal that can teach
the fix, while a teacher that only lowers p(own) spreads mass without pointing anywhere.
Under another teacher context (contexts.py, distill.teacher_context) the Reviser's line reads that
context instead of y + sep(0): chat(x) + y_sibling + sep(1) + y[:t] + g for a sibling, and so on; the
Generator's line is the same for every context.

The gold answer is text (it was never sampled), so it is encoded (prompts.text_answer_ids) together
with the part of token t that precedes the answer ("{" when the box brace and the digit share a token).

Hindsight where the answer first goes wrong. A Reviser whose fix belongs at an earlier step cannot
raise the gold at the final answer (the working it is forced along already commits to a wrong total),
so the paper's own mechanism, finding the mistake mid-chain, can read as no hindsight there. So also:
- the step: verifier/steps.first_wrong_step, the first line with an equation that does not hold (its
  left side, read with the verifier's parser, is not its right side); its wrong value is the right
  side as written, its right value what the left side evaluates to;
- hindsight at the step: with t the token holding the wrong value's first character and g the right
  value's tokens as they would continue y[:t], the same four sequences as above, teacher-forced along
  the wrong answer exactly as at the final answer;
- KL on the step: of each wrong answer's top 5% tokens by the distillation's per-token KL
  (explain.token_report), the share whose text lies on the step's line, against chance, the line's
  share of the answer's tokens (explain.step_localisation);
- coverage: the share of wrong answers in which a first wrong step was found (answers without an
  equation, or whose only mistake is the boxed value, have none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from .contexts import Context
from .explain.tokens import LocalisationScore, TokenReport, token_pieces
from .loss import token_logprobs
from .prompts import teacher_sequence, text_answer_ids
from .forward import chunks, logit_chunks, scored_batch
from .verifier.extract import answer_span
from .verifier.steps import WrongStep, first_wrong_step


@dataclass(frozen=True)
class AnswerPosition:
    """Where a response's final answer starts, in tokens, and the gold answer's tokens from there."""

    start: int  # index in y of the token holding the answer's first character
    own: tuple[int, ...]  # y's tokens from `start` through the answer's last character
    gold: tuple[int, ...]  # the gold answer's tokens, as they would continue y[:start]


def answer_position(tokenizer, completion: Sequence[int], gold: str,
                    last_number_fallback: bool = False) -> Optional[AnswerPosition]:
    """The final answer's position in `completion` (ids without the stop token), found as the verifier
    finds it; None when the verifier finds no final answer."""
    pieces = token_pieces(tokenizer, completion)
    span = answer_span("".join(pieces), last_number_fallback)
    return None if span is None else position_at(tokenizer, completion, pieces, span, gold)


def piece_starts(pieces: Sequence[str]) -> list[int]:
    """The character offset of each token's text in the joined text."""
    starts, pos = [], 0
    for piece in pieces:
        starts.append(pos)
        pos += len(piece)
    return starts


def position_at(tokenizer, completion: Sequence[int], pieces: Sequence[str], span: tuple[int, int],
                value: str) -> Optional[AnswerPosition]:
    """The tokens of `completion` holding the characters `span` of its text ("".join(pieces)), and `value`'s
    tokens as they would continue the text before them; None when `value` encodes to nothing."""
    starts = piece_starts(pieces)
    first = max(i for i, s in enumerate(starts) if s <= span[0])
    last = max(i for i, s in enumerate(starts) if s < span[1])
    lead = "".join(pieces)[starts[first]:span[0]]  # the part of the first token before the value
    ids = text_answer_ids(tokenizer, lead + value)[0]
    if not ids:
        return None
    return AnswerPosition(start=first, own=tuple(completion[first:last + 1]), gold=tuple(ids))


@dataclass(frozen=True)
class AnswerHindsight:
    """Log-probabilities of one wrong answer's final-answer tokens and of the gold's, both roles."""

    gold_student: float  # log p_s(gold)
    gold_teacher: float  # log p_t(gold)
    own_student: float  # log p_s(own final answer)
    own_teacher: float  # log p_t(own final answer)


def span_logprobs(model: nn.Module, sequences: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], pad_id: int,
                  batch_size: int = 8) -> list[float]:
    """Sum of log p(token) over each sequence's span, a micro-batch and a block of positions at a time."""
    out: list[float] = []
    for idx in chunks(list(range(len(sequences))), batch_size):
        batch = scored_batch([sequences[i] for i in idx], [spans[i] for i in idx], pad_id)
        total = mx.zeros((len(idx),))
        for start, end, logits in logit_chunks(model, batch):
            logp = token_logprobs(logits, batch.targets[:, start:end])  # (B, block)
            total = total + mx.where(batch.mask[:, start:end] > 0, logp, 0.0).sum(axis=1)
        mx.eval(total)
        out.extend(total.tolist())
    return out


def cue_reading(prompt: Sequence[int], completion: Sequence[int], sep_wrong: Sequence[int]) -> Context:
    """The paper's teacher context of a wrong answer: the answer itself, then sep(0)."""
    return Context(tuple(prompt), tuple(completion), tuple(sep_wrong), hint=True)


def hindsight_sequences(
    prompt: Sequence[int], completion: Sequence[int], position: AnswerPosition, context: Context,
) -> list[tuple[tuple[int, ...], tuple[int, int]]]:
    """(ids, scored span) of one answer's four sequences: student gold, teacher gold, student own, teacher own.
    The teacher reads `context` (contexts.py; the cue: prompt + y + sep(0)) before y[:start] + target."""
    prompt, y = tuple(prompt), tuple(completion)
    prefix = y[:position.start]
    out = []
    for target in (position.gold, position.own):
        student = prompt + prefix + target
        teacher = teacher_sequence(context.prompt, context.read, context.sep, prefix + target)
        out.append((student, (len(student) - len(target), len(student))))
        out.append((teacher.ids, (teacher.second[1] - len(target), teacher.second[1])))
    return out


def measure_hindsight(
    model: nn.Module, tokenizer, answers: Sequence[tuple[Sequence[int], Sequence[int], str]], sep_wrong: Sequence[int],
    pad_id: int, batch_size: int = 8, last_number_fallback: bool = False,
    contexts: Optional[Sequence[Context]] = None,
) -> tuple[list[AnswerHindsight], int]:
    """AnswerHindsight of each (prompt ids, completion ids, gold answer) with a final answer to find;
    returns them and how many answers had none (the verifier finds no final answer). The teacher reads
    each answer's `contexts` entry (default: the cue, the answer itself and sep(0))."""
    contexts = contexts or [cue_reading(p, c, sep_wrong) for p, c, _ in answers]
    found = [(prompt, completion, answer_position(tokenizer, completion, gold, last_number_fallback), ctx)
             for (prompt, completion, gold), ctx in zip(answers, contexts)]
    kept = [(prompt, completion, pos, ctx) for prompt, completion, pos, ctx in found if pos is not None]
    return score_positions(model, kept, pad_id, batch_size), len(found) - len(kept)


def score_positions(model: nn.Module,
                    answers: Sequence[tuple[Sequence[int], Sequence[int], AnswerPosition, Context]],
                    pad_id: int, batch_size: int = 8) -> list[AnswerHindsight]:
    """AnswerHindsight of each (prompt ids, completion ids, position, the teacher's context): both roles'
    log-probabilities of the position's gold and own tokens, teacher-forced along the completion up to it."""
    sequences, spans = [], []
    for prompt, completion, position, context in answers:
        for ids, span in hindsight_sequences(prompt, completion, position, context):
            sequences.append(ids)
            spans.append(span)
    was_training = model.training
    model.eval()
    try:
        values = span_logprobs(model, sequences, spans, pad_id, batch_size) if sequences else []
    finally:
        model.train(was_training)
    return [AnswerHindsight(*values[4 * i:4 * i + 4]) for i in range(len(answers))]


RAISED = 0.1  # probability the Reviser must add to the gold for an answer to count as raised


@dataclass(frozen=True)
class HindsightSummary:
    """Means over wrong answers: where the Reviser moves the final answer's probability."""

    answers: int  # wrong answers with a final answer to score
    no_final_answer: int  # wrong answers without a final answer the verifier finds (not scored)
    gold_student: float  # mean p_s(gold)
    gold_teacher: float  # mean p_t(gold)
    own_student: float  # mean p_s(own wrong answer)
    own_teacher: float  # mean p_t(own wrong answer)
    gold_raised: float  # share of answers whose p_t(gold) exceeds p_s(gold) by RAISED or more

    @property
    def gold_gain(self) -> float:
        """Probability the Reviser adds to the gold answer: p_t(gold) - p_s(gold), averaged."""
        return self.gold_teacher - self.gold_student

    @property
    def own_drop(self) -> float:
        return self.own_student - self.own_teacher

    @property
    def redirected(self) -> Optional[float]:
        """Share of the mass taken off the wrong answer that lands on the gold (None when under 0.05 is taken off)."""
        return self.gold_gain / self.own_drop if self.own_drop >= 0.05 else None


def summarize_hindsight(values: Sequence[AnswerHindsight], missing: int) -> HindsightSummary:
    """Example: one answer with p_s(gold) 0.1, p_t(gold) 0.9 -> gold_gain 0.8, gold_raised 1.0."""
    n = len(values)
    mean = lambda xs: sum(math.exp(x) for x in xs) / n if n else 0.0  # noqa: E731
    return HindsightSummary(
        answers=n,
        no_final_answer=missing,
        gold_student=mean(v.gold_student for v in values),
        gold_teacher=mean(v.gold_teacher for v in values),
        own_student=mean(v.own_student for v in values),
        own_teacher=mean(v.own_teacher for v in values),
        gold_raised=sum(math.exp(v.gold_teacher) - math.exp(v.gold_student) >= RAISED for v in values) / n if n else 0.0,
    )


# -- at the first wrong step ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepPosition:
    """The first wrong step of a completion, and where its wrong value sits in tokens."""

    step: WrongStep  # character spans in the completion's text ("".join(token_pieces(completion)))
    position: Optional[AnswerPosition]  # the wrong value's tokens and the right value's; None: no written right value


def step_position(tokenizer, completion: Sequence[int]) -> Optional[StepPosition]:
    """The first wrong step of `completion` (ids without the stop token), or None when none is found."""
    pieces = token_pieces(tokenizer, completion)
    step = first_wrong_step("".join(pieces))
    if step is None:
        return None
    position = None if step.right is None else position_at(tokenizer, completion, pieces, step.value, step.right)
    return StepPosition(step, position)


@dataclass(frozen=True)
class FirstErrorSummary:
    """Hindsight and KL at the first wrong step, over wrong answers."""

    wrong_answers: int  # wrong answers looked at
    found: int  # ... with a first wrong step
    hindsight: HindsightSummary  # at the step's value: `answers` scored; `no_final_answer`: steps whose right value has no written form
    localisation: LocalisationScore  # top-KL tokens on the step's line, against chance (over the answers with token reports)

    @property
    def coverage(self) -> Optional[float]:
        """Share of wrong answers with a first wrong step; None without wrong answers."""
        return self.found / self.wrong_answers if self.wrong_answers else None


def measure_first_error(
    model: nn.Module, tokenizer, answers: Sequence[tuple[Sequence[int], Sequence[int]]], sep_wrong: Sequence[int],
    pad_id: int, batch_size: int = 8, contexts: Optional[Sequence[Context]] = None,
) -> tuple[list[AnswerHindsight], int, int]:
    """(AnswerHindsight at the first wrong step of each (prompt ids, completion ids) that has one with a written
    right value, steps found, steps found without a written right value); the teacher reads each answer's
    `contexts` entry (default: the cue)."""
    contexts = contexts or [cue_reading(p, c, sep_wrong) for p, c in answers]
    positions = [(prompt, completion, step_position(tokenizer, completion), ctx)
                 for (prompt, completion), ctx in zip(answers, contexts)]
    found = [(p, c, s, ctx) for p, c, s, ctx in positions if s is not None]
    scored = [(p, c, s.position, ctx) for p, c, s, ctx in found if s.position is not None]
    return score_positions(model, scored, pad_id, batch_size), len(found), len(found) - len(scored)


def step_spans(tokenizer, reports: Sequence[tuple[Sequence[int], TokenReport]]) -> list[tuple[TokenReport, tuple[int, int]]]:
    """(report, the first wrong step's line as a character span of the report's text) for each (completion ids,
    its token report) with a first wrong step; the report's pieces start with the completion's."""
    out = []
    for completion, report in reports:
        found = step_position(tokenizer, completion)
        if found is not None:
            out.append((report, found.step.line))
    return out


def summarize_first_error(values: Sequence[AnswerHindsight], wrong_answers: int, found: int, unwritten: int,
                          localisation: LocalisationScore) -> FirstErrorSummary:
    """Example: 10 wrong answers, 4 with a step (1 without a written right value) -> coverage 0.4, 3 scored."""
    return FirstErrorSummary(wrong_answers, found, summarize_hindsight(values, unwritten), localisation)

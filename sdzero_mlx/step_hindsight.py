"""Hindsight where the answer first goes wrong: does the Reviser, having read a wrong answer and the "not
correct" cue, put more probability than the Generator on the right value at the step where the answer
first went wrong, and does its KL sit on that step?

hindsight.py reads p(gold) at the final answer; a Reviser whose fix belongs at an earlier step cannot
raise the gold there (the working it is forced along already commits to a wrong total), so the
paper's own mechanism, finding the mistake mid-chain, can read as no hindsight at the answer. Here:
- the step: verifier/steps.first_wrong_step, the first line with an equation that does not hold (its
  left side, read with the verifier's parser, is not its right side); its wrong value is the right
  side as written, its right value what the left side evaluates to;
- hindsight at the step: with t the token holding the wrong value's first character and g the right
  value's tokens as they would continue y[:t], the four sequences of hindsight.py (Generator
  chat(x) + y[:t] + g, Reviser chat(x) + y + sep(0) + y[:t] + g, and the same for the wrong value's own
  tokens), teacher-forced along the wrong answer exactly as at the final answer;
- KL on the step: of each wrong answer's top 5% tokens by the distillation's per-token KL
  (explain.token_report), the share whose text lies on the step's line, against chance, the line's
  share of the answer's tokens (explain.step_localisation);
- coverage: the share of wrong answers in which a first wrong step was found (answers without an
  equation, or whose only mistake is the boxed value, have none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import mlx.nn as nn

from .explain import LocalisationScore, TokenReport, step_localisation, token_pieces
from .hindsight import AnswerHindsight, AnswerPosition, HindsightSummary, position_at, score_positions, summarize_hindsight
from .verifier.steps import WrongStep, first_wrong_step


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
    pad_id: int, batch_size: int = 8,
) -> tuple[list[AnswerHindsight], int, int]:
    """(AnswerHindsight at the first wrong step of each (prompt ids, completion ids) that has one with a written
    right value, steps found, steps found without a written right value)."""
    positions = [(prompt, completion, step_position(tokenizer, completion)) for prompt, completion in answers]
    found = [(p, c, s) for p, c, s in positions if s is not None]
    scored = [(p, c, s.position) for p, c, s in found if s.position is not None]
    return score_positions(model, scored, sep_wrong, pad_id, batch_size), len(found), len(found) - len(scored)


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

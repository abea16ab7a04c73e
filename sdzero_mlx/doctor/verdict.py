"""The verdict: `helps`, `unclear` or `unlikely`, from the measured signal, with reasons a user acts on.

What decides it is the Reviser's hindsight at the answer (hindsight.py): how much probability it adds
to the gold final answer after reading a wrong answer and the "not correct" cue. That is the one
measure that separates the demo's two outcomes (docs/doctor.md): on the inverse task, where SD-Zero
gains 15.7 points, the Reviser raises the gold from about 0.001 to 0.3; on the chain task, where
every method loses, it leaves the gold at 0.000 (and keeps the wrong answer at 0.999). The
correction rate does not separate them (base 21% and 18%, about a resample's chance on both), so it
and the other measures give reasons, not the label:
  helps:    gold gain >= GAIN_HELPS and the gold raised by >= 0.1 on >= RAISED_HELPS of wrong answers;
  unlikely: gold gain < GAIN_NONE and the Reviser corrects no more than a fresh sample would (within
            two standard errors, clustered by problem: the k first attempts at one problem are not
            independent, and the correction rate of 128 first attempts is a noisy number);
            or almost every answer is right (nothing left to fix), or most answers are cut at max_tokens;
  unclear:  anything between, or too few wrong answers with a final answer to measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from ..evaluate import pct

GAIN_HELPS = 0.05  # the Reviser adds >= 5 points of probability to the gold answer, on average
RAISED_HELPS = 0.1  # ... and adds >= 0.1 to it on 10% of wrong answers (hindsight.RAISED)
GAIN_NONE = 0.01  # below this the Reviser gives the gold nothing
MIN_ANSWERS = 8  # wrong answers with a final answer needed to judge hindsight
SOLVED = 0.95  # reward rate above which there is little left to learn
CUT = 0.5  # truncated share above which the run measures max_tokens, not the model


@dataclass(frozen=True)
class Measures:
    """The numbers the verdict reads (all shares in [0, 1])."""

    reward_rate: float
    truncated_share: float
    corrections: tuple[tuple[int, int], ...]  # per problem: (wrong first attempts corrected, wrong first attempts)
    resample_rate: Optional[float]  # None: not measurable (k = 1 or no wrong answer)
    hindsight_answers: int  # wrong answers whose final answer was scored
    gold_student: float  # mean p(gold) of the Generator at the answer
    gold_teacher: float  # ... of the Reviser after the wrong answer and the cue
    own_student: float  # mean p(own wrong answer) of the Generator
    own_teacher: float
    gold_raised: float  # share of wrong answers whose gold probability the Reviser raises by >= 0.1
    mixed_groups: float  # problems with both right and wrong samples
    boxed_answers: bool = True  # False for verifier.kind code: no final answer to measure hindsight at
    kl_concentration_wrong: Optional[float] = None  # share of the teacher's KL in the top 5% tokens, wrong answers
    kl_concentration_right: Optional[float] = None  # ... right answers

    @property
    def gold_gain(self) -> float:
        return self.gold_teacher - self.gold_student

    @property
    def first_wrong(self) -> int:
        """Wrong first attempts the correction rate is over."""
        return sum(n for _, n in self.corrections)

    @property
    def correction_rate(self) -> Optional[float]:
        """Corrected / wrong first attempts; None without a wrong first attempt."""
        return sum(c for c, _ in self.corrections) / self.first_wrong if self.first_wrong else None


@dataclass(frozen=True)
class Verdict:
    label: str  # helps / unclear / unlikely
    reasons: tuple[str, ...]


def decide(m: Measures) -> Verdict:
    """The label and its reasons, most important first.

    Example: reward 0.2, gold 0.001 -> 0.30 on 60% of 100 wrong answers -> helps.
    """
    reasons = []
    if m.truncated_share > CUT:
        return Verdict("unlikely", (
            f"{pct(m.truncated_share)}% of answers are cut at sampling.max_tokens: they have no final answer to verify, so "
            "every method trains on noise. Raise sampling.max_tokens (or use shorter problems) and run doctor again.",))
    if m.reward_rate >= SOLVED:
        return Verdict("unlikely", (
            f"the model already answers {pct(m.reward_rate)}% right: there is little left for any method to fix. Use "
            "harder problems.",))
    hindsight = (
        f"reading a wrong answer and the cue, the Reviser puts {m.gold_teacher:.3f} on the gold answer at the answer "
        f"position where the Generator puts {m.gold_student:.3f} (the wrong answer: {m.own_student:.3f} -> "
        f"{m.own_teacher:.3f}; gold raised by 0.1 or more on {pct(m.gold_raised)}% of {m.hindsight_answers} wrong answers)"
    )
    corrects = None if m.correction_rate is None else (
        f"the Reviser fixes {pct(m.correction_rate)}% of wrong answers"
        + ("" if m.resample_rate is None else f" (a fresh sample of the same problem is right {pct(m.resample_rate)}% of the time)"))
    beats_resample = beats(m.resample_rate, m.corrections)
    if not m.boxed_answers:
        label = "unclear"
        reasons.append("the Reviser's hindsight is measured at the final answer, and code answers have none: "
                       "judge by the correction rate against the resample rate, or run a short SD-Zero run")
    elif m.hindsight_answers < MIN_ANSWERS:
        label = "unclear"
        reasons.append(f"only {m.hindsight_answers} wrong answers with a final answer the verifier finds to measure "
                       "hindsight on: raise --n, or check the prompt asks for the answer's format (\\boxed{...}, "
                       "\"Answer: N\", or verifier.last_number_fallback)")
    elif m.gold_gain >= GAIN_HELPS and m.gold_raised >= RAISED_HELPS:
        label = "helps"
        reasons.append(hindsight + ": the dense signal points at the fix, which is what SD-Zero distils")
    elif m.gold_gain < GAIN_NONE and not beats_resample:
        label = "unlikely"
        reasons.append(hindsight + ": the Reviser's hindsight does not point at the right answer, so distilling it "
                       "teaches no fix. A model before SRT: run SRT (sdzero collect + srt) and doctor again with "
                       "--set model.path=RUN/srt/model. A model after SRT (RUN/srt/model): SRT did not teach it to "
                       "fix its answers, so expect no gain from phase 2")
    else:
        label = "unclear"
        reasons.append(hindsight + ": some signal, weaker than on the demo's inverse task, where SD-Zero gained")
    if corrects:
        reasons.append(corrects + (": more than a second try" if beats_resample else ""))
    if m.reward_rate < 0.05:
        reasons.append(f"reward rate {pct(m.reward_rate)}%: RFT and GRPO get almost no signal; SD-Zero still learns "
                       "from wrong answers if the Reviser can fix them")
    elif m.mixed_groups < 0.2:
        reasons.append(f"only {pct(m.mixed_groups)}% of problems have both right and wrong samples: GRPO learns from "
                       "few groups")
    if m.kl_concentration_wrong is not None and m.kl_concentration_right is not None:
        # reported, not decisive: on the demo it separates the tasks on some problem sets and not on others
        reasons.append(f"the top 5% of tokens hold {pct(m.kl_concentration_wrong)}% of the teacher's KL on wrong answers "
                       f"and {pct(m.kl_concentration_right)}% on right ones (a higher share on wrong ones is "
                       "self-localisation: the signal sits on a few tokens)")
    if m.truncated_share > 0.1:
        reasons.append(f"{pct(m.truncated_share)}% of answers are cut at sampling.max_tokens: raise it")
    return Verdict(label, tuple(reasons))


def correction_se(corrections: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """(correction rate, its standard error) over problems, each (corrected, wrong first attempts).

    The k first attempts at one problem share its difficulty, so they are not k independent draws:
    the error is clustered by problem (the ratio estimator's sandwich variance,
    sum_i (c_i - p n_i)^2 / N^2, with no small-sample factor). With one attempt per problem it is the
    binomial p (1 - p) / N; k identical attempts per problem give the same error as one. The variance
    is floored at 0.01 / N, so a rate of 0 or 1 is not certain.
    Example: [(1, 1)] * 40 + [(0, 1)] * 60 -> (0.4, sqrt(0.24 / 100) = 0.049); [(4, 4)] * 40 + [(0, 4)] * 60 -> the same.
    """
    n = sum(w for _, w in corrections)
    if n < 1:
        raise ValueError("correction_se needs at least one wrong first attempt.")
    p = sum(c for c, _ in corrections) / n
    variance = sum((c - p * w) ** 2 for c, w in corrections) / n**2
    return p, math.sqrt(max(variance, 0.01 / n))


def beats(bar: Optional[float], corrections: Sequence[tuple[int, int]]) -> bool:
    """Whether the correction rate is above the resample rate `bar` by two standard errors (clustered by problem).

    Example: 100 problems, 40 corrected, bar 0.2: 0.2 > 2 x 0.049, True; 25 problems with 4 identical attempts
    each, 10 corrected, bar 0.25: 0.15 < 2 x 0.098, False (counted as 100 independent attempts it would pass).
    """
    if bar is None or not sum(w for _, w in corrections):
        return False
    rate, se = correction_se(corrections)
    return rate - bar > 2 * se

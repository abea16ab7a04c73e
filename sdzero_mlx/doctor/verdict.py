"""The verdict: `helps`, `unclear` or `unlikely`, from the measured signal, with reasons a user acts on.

What decides it is the Reviser's hindsight: how much probability it adds, after reading a wrong answer
and the "not correct" cue, to the gold final answer, or to the right value at the step where the
answer first went wrong (hindsight.py, both). At the answer it is the one measure that
separates the demo's two outcomes (docs/doctor.md): on the inverse task, where SD-Zero gains 15.7
points, the Reviser raises the gold from about 0.001 to 0.3; on the chain task, where every method
loses, it leaves the gold at 0.000 (and keeps the wrong answer at 0.999). The principle that adds the
first wrong step: SD-Zero's loss acts at every token of the answer, so a Reviser that points at the fix
where the working first goes wrong gives the same kind of signal as one that points at the final
answer; the two positions are held to the same bars, and the label reads the stronger. The
correction rate does not separate the demo's outcomes (base 21% and 18%, about a resample's chance on
both), so it and the other measures give reasons, not the label:
  helps:    at the answer or at the first wrong step (each over >= MIN_ANSWERS wrong answers), a gain
            >= GAIN_HELPS and the right value raised by >= 0.1 on >= RAISED_HELPS of wrong answers;
  unlikely: gain < GAIN_NONE at the answer and at the first wrong step (where measured on
            MIN_ANSWERS), and the Reviser corrects no more than a fresh sample would (within
            two standard errors, clustered by problem: the k first attempts at one problem are not
            independent, and the correction rate of 128 first attempts is a noisy number);
            or almost every answer is right (nothing left to fix), or most answers are cut at max_tokens;
  unclear:  anything between, or too few wrong answers with a final answer to measure.
A verdict is about phase 2: whether distilling the Reviser's hindsight adds to the model it starts
from (the SRT model), not whether the whole run beats the base (SRT alone may teach a format).
Which teacher context to expect to help (recommend_context) is read the same way, per context: the
probability it adds to the right value per wrong answer, at the stronger of the two places.
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
    # hindsight at the first wrong step (hindsight.py); step_coverage None: not measured (code answers)
    step_coverage: Optional[float] = None  # share of wrong answers with a first wrong step
    step_answers: int = 0  # ... scored there (the right value has a written form)
    step_gold_student: float = 0.0  # mean p(right value) of the Generator at the step's wrong value
    step_gold_teacher: float = 0.0  # ... of the Reviser after the wrong answer and the cue
    step_gold_raised: float = 0.0  # share of those whose right value the Reviser raises by >= 0.1
    step_kl_hits: Optional[float] = None  # share of wrong answers' top-5% KL tokens on the first wrong line
    step_kl_chance: Optional[float] = None  # ... if they were drawn at random (the line's share of tokens)
    read: str = "base"  # the model measured: "base" (the recipe's) or "teacher" (after SRT, phase 2's teacher)

    @property
    def gold_gain(self) -> float:
        return self.gold_teacher - self.gold_student

    @property
    def step_gold_gain(self) -> float:
        return self.step_gold_teacher - self.step_gold_student

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
    step = None if m.step_coverage is None else (
        f"at the first wrong step (a line whose equation does not hold, found in {pct(m.step_coverage)}% of wrong "
        f"answers) the Reviser puts {m.step_gold_teacher:.3f} on the right value where the Generator puts "
        f"{m.step_gold_student:.3f} (raised by 0.1 or more on {pct(m.step_gold_raised)}% of {m.step_answers})")
    corrects = None if m.correction_rate is None else (
        f"the Reviser fixes {pct(m.correction_rate)}% of wrong answers"
        + ("" if m.resample_rate is None else f" (a fresh sample of the same problem is right {pct(m.resample_rate)}% of the time)"))
    beats_resample = beats(m.resample_rate, m.corrections)
    # the loss acts at every token, so hindsight at either position can teach a fix: the same bars at both
    answer_measured = m.boxed_answers and m.hindsight_answers >= MIN_ANSWERS
    step_measured = m.step_answers >= MIN_ANSWERS
    answer_helps = answer_measured and m.gold_gain >= GAIN_HELPS and m.gold_raised >= RAISED_HELPS
    step_helps = step_measured and m.step_gold_gain >= GAIN_HELPS and m.step_gold_raised >= RAISED_HELPS
    if answer_helps or step_helps:
        label = "helps"
        where = [text for text, ok in ((hindsight, answer_helps), (step, step_helps)) if ok]
        reasons.append("; ".join(where) + ": the dense signal points at the fix, which is what SD-Zero distils")
    elif not m.boxed_answers:
        label = "unclear"
        reasons.append("the Reviser's hindsight is measured at the final answer, and code answers have none: "
                       "judge by the correction rate against the resample rate, or run a short SD-Zero run")
    elif m.hindsight_answers < MIN_ANSWERS:
        label = "unclear"
        reasons.append(f"only {m.hindsight_answers} wrong answers with a final answer the verifier finds to measure "
                       "hindsight on: raise --n, or check the prompt asks for the answer's format (\\boxed{...}, "
                       "\"Answer: N\", or verifier.last_number_fallback)")
    elif m.gold_gain < GAIN_NONE and (not step_measured or m.step_gold_gain < GAIN_NONE) and not beats_resample:
        label = "unlikely"
        after = ("SRT did not teach it to fix its answers, so expect no gain from phase 2 over SRT" if m.read == "teacher"
                 else "this is the base model, and SD-Zero's teacher is the model after SRT: run SRT (sdzero collect + "
                 "srt) and doctor again, which then also reads RUN/srt/model (or pass --teacher PATH)")
        reasons.append(hindsight + (f"; {step}" if step and step_measured else "") + ": the Reviser's hindsight does not "
                       "point at the right answer, so distilling it teaches no fix. " + after[0].upper() + after[1:])
    else:
        label = "unclear"
        reasons.append(hindsight + (f"; {step}" if step and step_measured else "")
                       + ": some signal, weaker than on the demo's inverse task, where SD-Zero gained")
    if step and not step_measured:
        reasons.append(step + f": fewer than {MIN_ANSWERS} wrong answers to judge by")
    if m.step_kl_hits is not None and m.step_kl_chance:
        # reported, not decisive, like the KL concentration below
        reasons.append(f"of the wrong answers' top 5% tokens by the teacher's KL, {pct(m.step_kl_hits)}% lie on the first "
                       f"wrong line, against {pct(m.step_kl_chance)}% by chance (the line's share of the tokens): "
                       + ("the KL concentrates on the step" if m.step_kl_hits > 2 * m.step_kl_chance else
                          "no more than twice chance"))
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


# -- which teacher context to expect to help --------------------------------------------------------------

CONTEXT_HELPS = 0.02  # probability per wrong answer a context must add to the gold (or right value) to be named


@dataclass(frozen=True)
class ContextChoice:
    """The teacher context the doctor expects to help, and why."""

    context: Optional[str]  # a distill.teacher_context; None: none adds CONTEXT_HELPS
    place: str  # where the named context's score comes from: "the answer" or "the first wrong step" ("" if none)
    scores: dict[str, Optional[float]]  # coverage x gain per context; None: fewer than MIN_ANSWERS scored anywhere
    reason: str


def context_score(m) -> tuple[Optional[float], str]:
    """(coverage x the larger gain of p(right value) at the answer and at the first wrong step, each counted where
    >= MIN_ANSWERS were scored; that place), or (None, "") when neither was. As the verdict reads the stronger of the
    two places: a context can point at the fix where the working goes wrong, or at the final answer."""
    gains = [(s.gold_gain, place) for s, place in ((m.at_answer, "the answer"), (m.at_step, "the first wrong step"))
             if s is not None and s.answers >= MIN_ANSWERS]
    if not gains or not m.coverage:
        return None, ""
    gain, place = max(gains)
    return m.coverage * gain, place


def recommend_context(measures: dict) -> ContextChoice:
    """Rank the contexts (doctor.signal.ContextMeasure each) by the probability they add to the right value per wrong
    answer, context_score: coverage x gain, so that a context with little to show (a sibling where few groups have a
    verified answer) counts for the answers it reaches. The best is named when it adds >= CONTEXT_HELPS; the paper's
    cue, which needs no group and no solutions, is named instead when it adds >= CONTEXT_HELPS and comes within
    CONTEXT_HELPS of the best (a smaller difference is within what 64 answers tell apart).

    Example: sibling adds 0.3 on 50% of wrong answers (0.15), the cue -0.1 (-0.1): sibling; gold 0.215, cue 0.214: cue.
    """
    scored = {name: context_score(m) for name, m in measures.items()}
    scores = {name: s for name, (s, _) in scored.items()}
    ranked = sorted(((s, n) for n, s in scores.items() if s is not None), reverse=True)
    listed = ", ".join(f"{n} {s:+.3f}" for s, n in ranked) or "none scored"
    unscored = [n for n, s in scores.items() if s is None]
    tail = f"; not ranked, fewer than {MIN_ANSWERS} answers scored: {', '.join(unscored)}" if unscored else ""
    if ranked and ranked[0][0] >= CONTEXT_HELPS:
        best = ranked[0][1]
        cue = scores.get("cue")
        why = "the Reviser reading it adds the most probability to the right value per wrong answer"
        if best != "cue" and cue is not None and cue >= CONTEXT_HELPS and cue >= ranked[0][0] - CONTEXT_HELPS:
            best, why = "cue", (f"the paper's context comes within {CONTEXT_HELPS} of the best ({ranked[0][1]}) in the "
                                "probability it adds to the right value per wrong answer, and needs no group or solution")
        place = scored[best][1]
        return ContextChoice(best, place, scores, f"{best}: {why}, at {place} (coverage x gain: {listed}{tail}).")
    return ContextChoice(None, "", scores, (
        f"no teacher context adds {CONTEXT_HELPS} to the right value's probability per wrong answer, at the answer or "
        f"at the first wrong step (coverage x gain: {listed}{tail}): expect none to teach the fix; GRPO's scalar "
        "reward may do better here."))

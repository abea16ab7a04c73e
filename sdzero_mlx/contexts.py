"""What phase 2's teacher reads before the answer it scores: `distill.teacher_context`, one field.

The student reads chat(x) + y and is scored on y (with its end-of-turn token). The teacher is the
stage's frozen starting model (teacher.py: the SRT model in phase 2, the base for SDFT) and reads, in
token ids, `prompt + read + sep + y` (prompts.teacher_sequence), scored on that last copy of y:

  cue      chat(x) + y   + sep(r) + y          the paper: the answer itself and the verifier's cue
  sibling  chat(x) + y_j + sep(1) + y          y_j: a verified OTHER answer to the same question
  gold     chat(x) + g   + sep(1) + y          g: the dataset's worked solution (SDFT's gold)
  self     chat(x) + y   + sep(1) + y          only when y verifies (SDFT's own)
  answer   chat(x) + y   + sep(r, a) + y       sep(r, a) = "\\n\\n" + P_r + " " + answer_phrase(a) + "\\n\\n"

sep(r) = "\\n\\n" + P_r + "\\n\\n" (prompts.Separators): sep(1) says "Let me rephrase the above solution.".
Every answer enters as the ids that were sampled; only data text (g, the gold answer a in the phrase)
is encoded.

Why a demonstration goes where y goes, before sep(1) in the assistant turn (SDPO puts a successful
rollout, and OPSD the reference solution, in the user turn instead): phase 1 trained the Reviser on
exactly chat(x) + y_init + sep(r) + y_rev, and after sep(1) to rephrase an answer that verified. Read
after a verified answer and sep(1), y is scored as a rephrasing of that answer: the teacher's
probabilities are high where y follows the verified working and low where y departs from it, so
the hint sits on the tokens where y goes wrong. `cue` has only y itself to go on, which a small
Reviser tends to repeat (docs/real-model.md).

Sibling, for answer i of its group (distill.group_size answers to one question, sampled as GRPO
samples them): y_j is the first verified answer of the group other than i (SDPO's choice: the first
successful peer, never itself). A verified answer with no verified sibling reads itself, which is the
cue's own sequence for a right answer (chat(x) + y + sep(1) + y): there "itself" and "the cue" are one
choice. A group in which no answer verifies has nothing to show: `distill.no_sibling` cue teaches its
answers with the cue (chat(x) + y + sep(0) + y), skip leaves them out of the step (their generations
still count in the budget).

Gold and self, as the SDFT baseline has always had them: gold shows the row's solution, else a
verified y itself; with neither (and for self, a wrong y) the teacher reads what the student reads,
chat(x) + y, and that answer gets no signal (its KL is zero). SDFT's `sdft.context: user` shows the
demonstration in the user turn instead, through `sdft.demo_template` (SDFT's own form).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional, Sequence

from .config import PromptConfig
from .kd import item_with_context
from .prompts import Separators, answer_separator, prompt_ids, text_answer_ids
from .types import DistillItem, Graded

CONTEXTS = ("cue", "sibling", "gold", "self", "answer")


@dataclass(frozen=True)
class Context:
    """What the teacher reads before the scored answer: prompt + read + sep, as token ids."""

    prompt: tuple[int, ...]  # the student's chat(x), or SDFT's user turn holding a demonstration
    read: tuple[int, ...]  # the answer read in the assistant turn: y, a sibling, the gold solution; () none
    sep: tuple[int, ...]  # the cue after it; () when nothing is read
    hint: bool  # False: this answer's context had nothing to show (a fallback, or the student's own context)


@dataclass(frozen=True)
class Reading:
    """How a stage's teacher reads its answers, fixed for the run."""

    context: str  # one of CONTEXTS
    seps: Separators
    tokenizer: object  # encodes data text only: the gold solution, the answer phrase
    prompts: PromptConfig
    no_sibling: Literal["cue", "skip"] = "cue"
    answer_phrase: str = "The correct final answer is {answer}."
    demo_template: Optional[str] = None  # SDFT's sdft.context user: the demonstration shown in the user turn

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"teacher context {self.context!r}: use one of {list(CONTEXTS)}.")


def verified(reward: float) -> bool:
    return reward >= 0.5


def sibling_of(rewards: Sequence[float], i: int) -> Optional[int]:
    """The answer that answer i of a group reads under `sibling`: the first verified one other than i; i itself
    when it verifies and no other does; None when none verifies.

    Example: rewards (0, 1, 0, 1): 0 -> 1, 1 -> 3, 2 -> 1, 3 -> 1; (0, 1): 1 -> 1; (0, 0): None.
    """
    others = [j for j, r in enumerate(rewards) if verified(r) and j != i]
    if others:
        return others[0]
    return i if verified(rewards[i]) else None


def cue_context(graded: Graded, seps: Separators) -> Context:
    """The paper's: y, then sep(r)."""
    r = graded.rollout
    return Context(r.prompt_ids, r.completion_ids, seps.for_reward(graded.reward), hint=True)


def plain_context(graded: Graded) -> Context:
    """The student's own context, chat(x) + y: nothing to show, so no signal."""
    return Context(graded.rollout.prompt_ids, (), (), hint=False)


def demonstration_context(reading: Reading, graded: Graded, ids: tuple[int, ...], text: str) -> Context:
    """A verified answer or solution shown before y: after it, sep(1); or (SDFT's user layout) in the user turn."""
    r = graded.rollout
    if reading.demo_template is None:
        return Context(r.prompt_ids, ids, reading.seps.right, hint=True)
    template = reading.demo_template.replace("{demonstration}", text)
    user = PromptConfig(system=reading.prompts.system, template=template.replace("{problem}", reading.prompts.template),
                        enable_thinking=reading.prompts.enable_thinking)
    return Context(prompt_ids(reading.tokenizer, r.example.problem, user), (), (), hint=True)


def context_of(reading: Reading, group: Sequence[Graded], i: int) -> Optional[Context]:
    """What the teacher of answer i of `group` (the answers to one question) reads; None: the answer is skipped."""
    g = group[i]
    r, kind = g.rollout, reading.context
    if kind == "cue":
        return cue_context(g, reading.seps)
    if kind == "answer":
        sep = answer_separator(reading.tokenizer, reading.prompts, g.reward, r.example.answer, reading.answer_phrase)
        return Context(r.prompt_ids, r.completion_ids, sep, hint=True)
    if kind == "sibling":
        j = sibling_of([a.reward for a in group], i)
        if j is None:  # no answer of the group verifies
            return None if reading.no_sibling == "skip" else replace(cue_context(g, reading.seps), hint=False)
        return Context(r.prompt_ids, group[j].rollout.completion_ids, reading.seps.right, hint=True)
    if kind == "gold" and r.example.solution:
        return demonstration_context(reading, g, text_answer_ids(reading.tokenizer, r.example.solution)[0],
                                     r.example.solution)
    if verified(g.reward):  # self, or gold on a row without a solution: this very answer
        return demonstration_context(reading, g, r.completion_ids, r.text)
    return plain_context(g)


def item_in(ctx: Context, graded: Graded, max_teacher_tokens: int) -> DistillItem:
    """The student / teacher pair of one answer with its teacher reading `ctx` (kd.item_with_context: the cap)."""
    r = graded.rollout
    return item_with_context(r.prompt_ids, ctx.read, r.target_ids, ctx.prompt, ctx.sep, max_teacher_tokens, graded.reward)


@dataclass(frozen=True)
class TeacherItems:
    """A step's training items and what their contexts lacked."""

    items: tuple[DistillItem, ...]
    answers: tuple[int, ...]  # the index, in the graded answers, of each item's answer
    without_hint: int  # answers whose context had nothing to show (taught by the fallback, or by nothing)
    skipped: int  # answers left out (sibling with no_sibling: skip)


def distill_item(graded: Graded, seps: Separators, max_teacher_tokens: int) -> DistillItem:
    """The student and teacher sequences of one graded rollout from token ids only, in the paper's cue."""
    return item_in(cue_context(graded, seps), graded, max_teacher_tokens)  # y itself, then sep(r)


def teacher_items(reading: Reading, graded: Sequence[Graded], group_size: int, max_teacher_tokens: int) -> TeacherItems:
    """The student / teacher pair of each graded answer (example-major groups of `group_size`, as sampled)."""
    items, answers, without, skipped = [], [], 0, 0
    for start in range(0, len(graded), group_size):
        group = graded[start:start + group_size]
        for i, g in enumerate(group):
            ctx = context_of(reading, group, i)
            if ctx is None:
                skipped += 1
                continue
            without += not ctx.hint
            items.append(item_in(ctx, g, max_teacher_tokens))
            answers.append(start + i)
    return TeacherItems(tuple(items), tuple(answers), without, skipped)

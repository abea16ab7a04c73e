"""The exact token sequences each role reads, and the checks on them that catch what goes wrong in practice.

Every sequence is assembled the way training assembles it (prompts.py, contexts.distill_item),
from sampled ids; text is only ever decoded from ids, with special tokens left visible.
Checks (each a `Flag` when it fires):
- the cue in context: the text of y + sep(r) + y, encoded afresh, should hold exactly sep(r)'s ids
  at the cue; when it does not, the model reads a tokenisation of the cue it rarely saw;
- the template's end of an assistant turn must be a stop token, or sampled answers carry it and the
  Reviser reads a closed turn before the cue;
- a thinking switch left at the template's default;
- answers, revisions and teacher sequences cut at their caps;
- a system prompt the template drops, or one that does not change the model's probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

from ..config import Recipe
from ..explain.tokens import token_pieces
from ..hindsight import span_logprobs
from ..prompts import Separators, prompt_ids, template_args
from ..contexts import Reading, context_of, item_in
from ..contexts import distill_item
from ..types import DistillItem, Graded, Rollout


@dataclass(frozen=True)
class Part:
    name: str  # prompt, answer, cue, answer (scored)
    ids: tuple[int, ...]
    text: str  # decoded with special tokens visible


@dataclass(frozen=True)
class ShownSequence:
    title: str
    parts: tuple[Part, ...]

    @property
    def tokens(self) -> int:
        return sum(len(p.ids) for p in self.parts)


@dataclass(frozen=True)
class Flag:
    """Something that will go wrong in the run, with the field or fix that avoids it."""

    check: str  # short name of the check
    message: str


def visible(tokenizer, ids: Sequence[int]) -> str:
    """Text of ids with special tokens written out (<|im_end|>), as the model reads them."""
    return tokenizer.decode(list(ids), skip_special_tokens=False)


def phase2_item(recipe: Recipe, tokenizer, seps: Separators, graded: Sequence[Graded],
                k: int) -> Optional[tuple[DistillItem, str]]:
    """(phase 2's item of the first wrong answer, else the first answer, under the recipe's teacher context, its
    title), the doctor's k samples of a problem standing for distill's group; None without answers (or when
    the context skips it)."""
    if not graded:
        return None
    i = next((j for j, g in enumerate(graded) if g.reward < 0.5), 0)
    d = recipe.distill
    reading = Reading(d.teacher_context, seps, tokenizer, recipe.prompts, d.no_sibling, d.answer_phrase)
    ctx = context_of(reading, graded[i - i % k:i - i % k + k], i % k)
    if ctx is None:
        return None
    title = (f"Phase 2 teacher, teacher_context {d.teacher_context} (reward {graded[i].reward:g}): "
             "scores the last copy of the answer")
    return item_in(ctx, graded[i], d.max_teacher_tokens), title


def shown_sequences(tokenizer, right: Optional[Graded], wrong: Optional[Graded], seps: Separators,
                    max_teacher_tokens: int, phase2: Optional[tuple[DistillItem, str]] = None) -> list[ShownSequence]:
    """The Generator's prompt, the Reviser's after a wrong and after a right answer, phase 2's teacher sequence
    (`phase2`: the recipe's teacher context; default: the paper's cue)."""
    part = lambda name, ids: Part(name, tuple(ids), visible(tokenizer, ids))  # noqa: E731
    any_graded = wrong or right
    if any_graded is None:
        return []
    out = [ShownSequence("Generator (phase 1, phase 2 student, evaluation)", (part("prompt", any_graded.rollout.prompt_ids),))]
    for label, g in (("a wrong", wrong), ("a right", right)):
        if g is not None:
            r = g.rollout
            out.append(ShownSequence(
                f"Reviser after {label} answer (phase 1 revisions, generate-then-revise; it writes after the cue)",
                (part("prompt", r.prompt_ids), part("answer", r.completion_ids), part("cue", seps.for_reward(g.reward))),
            ))
    g = wrong or right
    item, title = phase2 or (distill_item(g, seps, max_teacher_tokens),
                             f"Phase 2 teacher (reward {g.reward:g}): scores the second copy of the answer")
    t = item.teacher
    ids = t.ids
    out.append(ShownSequence(
        title,
        (part("prompt", ids[:t.first[0]]), part("answer", ids[t.first[0]:t.first[1]]),
         part("cue", ids[t.first[1]:t.second[0]]), part("answer (scored)", ids[t.second[0]:t.second[1]])),
    ))
    return out


def cue_in_context(tokenizer, before: Sequence[int], sep: Sequence[int], after: Sequence[int]) -> Optional[tuple[int, ...]]:
    """None when decode(before + sep + after), encoded afresh, has token boundaries at the cue's two ends
    and exactly sep's ids between them; otherwise the ids it has over the cue's characters."""
    sent = tuple(before) + tuple(sep) + tuple(after)
    natural = tuple(int(t) for t in tokenizer.encode(tokenizer.decode(list(sent)), add_special_tokens=False))
    cue_start = len(tokenizer.decode(list(before)))
    cue_end = len(tokenizer.decode(list(tuple(before) + tuple(sep))))
    pieces = token_pieces(tokenizer, natural)
    starts, pos = [], 0
    for piece in pieces:
        starts.append(pos)
        pos += len(piece)
    covering = tuple(t for t, s, p in zip(natural, starts, pieces) if s < cue_end and s + len(p) > cue_start)
    bounds = set(starts) | {pos}
    if cue_start in bounds and cue_end in bounds and covering == tuple(sep):
        return None
    return covering


def check_cue(tokenizer, graded: Sequence[Graded], seps: Separators, context: int = 8) -> Optional[Flag]:
    """Does the cue keep its ids in context (the end of y before it, the start of y after it, as in phase 2)?"""
    bad, example = 0, None
    for g in graded:
        y = g.rollout.completion_ids
        sep = seps.for_reward(g.reward)
        got = cue_in_context(tokenizer, y[-context:], sep, y[:context])
        if got is not None:
            bad += 1
            example = example or (sep, got)
    if not bad:
        return None
    sep, got = example
    return Flag("cue tokenisation", (
        f"the cue tokenises differently in context in {bad} of {len(graded)} answers: training sends "
        f"{[visible(tokenizer, [t]) for t in sep]} but the same text here encodes as "
        f"{[visible(tokenizer, [t]) for t in got]}. The model reads a cue split it rarely saw in pretraining; "
        "a phrase whose first and last characters do not merge with their neighbours avoids it "
        "(prompts.phrase_right / prompts.phrase_wrong; the newlines of sep(r) are fixed)."
    ))


MARK = "SDZEROANSWERMARK"


def turn_closer(tokenizer, recipe: Recipe) -> Optional[str]:
    """What the chat template writes after an assistant message (e.g. '<|im_end|>\\n'); None without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": MARK}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False,
                                         **template_args(tokenizer, recipe.prompts))
    at = text.rfind(MARK)
    return None if at < 0 else text[at + len(MARK):]


def check_turn(tokenizer, recipe: Recipe, rollouts: Sequence[Rollout]) -> tuple[str, list[Flag]]:
    """(a description of how the assistant turn ends, flags): the turn's closing token must stop sampling,
    and no sampled answer may hold a special token, or the cue comes after a closed turn."""
    flags = []
    closer = turn_closer(tokenizer, recipe)
    stops = set(tokenizer.eos_token_ids)
    if closer is None:
        described = "no chat template: prompts are the raw text; answers end at the tokenizer's eos"
    elif not closer.strip():
        described = f"the template writes {closer!r} after an assistant message (no end-of-turn token)"
    else:
        ids = tokenizer.encode(closer, add_special_tokens=False)
        first = int(ids[0]) if ids else None
        described = f"the template closes an assistant turn with {closer!r} (first id {first})"
        if first is not None and first not in stops:
            flags.append(Flag("turn closed before the cue", (
                f"the template ends an assistant turn with {visible(tokenizer, [first])!r} (id {first}), which is not a "
                f"stop token (stops: {sorted(stops)}): answers will contain it and the Reviser reads the cue after a "
                "closed turn. Make it an eos token of the model (eos_token_id in config.json / generation_config.json)."
            )))
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    holding = [r for r in rollouts if special.intersection(r.completion_ids)]
    if holding:
        ids = sorted({t for r in holding for t in r.completion_ids if t in special})
        flags.append(Flag("special tokens inside answers", (
            f"{len(holding)} of {len(rollouts)} answers contain special tokens {[visible(tokenizer, [t]) for t in ids]} "
            "before their end: the cue follows them in the Reviser's sequence, as if after a closed turn. Add the "
            "template's end-of-turn token to the model's eos tokens."
        )))
    return described, flags


def check_thinking(tokenizer, recipe: Recipe) -> Optional[Flag]:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and "thinking" in template and recipe.prompts.enable_thinking is None:
        return Flag("thinking switch", (
            "the chat template has a thinking switch and the recipe leaves it at the template's default: a thinking "
            "model may spend sampling.max_tokens inside <think>. Set prompts.enable_thinking: false (the paper uses "
            "non-thinking models)."
        ))
    return None


def caps_flags(recipe: Recipe, rollouts: Sequence[Rollout], revised_tokens: Sequence[int], seps: Separators) -> list[Flag]:
    """Answers cut at sampling.max_tokens, revisions at eval.max_tokens, teacher sequences at distill.max_teacher_tokens."""
    flags = []
    n = max(len(rollouts), 1)
    cut = sum(r.finish_reason == "length" for r in rollouts) / n
    if cut > 0.1:
        flags.append(Flag("answers cut", (
            f"{100 * cut:.0f}% of answers stop at sampling.max_tokens={recipe.sampling.max_tokens}: a cut answer has no "
            "final answer to verify and the Reviser reads half an attempt. Raise sampling.max_tokens (and "
            "eval.max_tokens, distill.max_teacher_tokens with it)."
        )))
    if revised_tokens:
        rev_cut = sum(t >= recipe.eval.max_tokens for t in revised_tokens) / len(revised_tokens)
        if rev_cut > 0.1:
            flags.append(Flag("revisions cut", (
                f"{100 * rev_cut:.0f}% of revisions stop at eval.max_tokens={recipe.eval.max_tokens}; phase 1 keeps "
                "only revisions that verify. Raise sampling.max_tokens and eval.max_tokens."
            )))
    sep_len = max(len(seps.right), len(seps.wrong))
    over = sum(len(r.prompt_ids) + 2 * len(r.target_ids) + sep_len > recipe.distill.max_teacher_tokens for r in rollouts) / n
    if over > 0.1:
        flags.append(Flag("teacher sequences cut", (
            f"{100 * over:.0f}% of teacher sequences (prompt + y + cue + y) exceed distill.max_teacher_tokens="
            f"{recipe.distill.max_teacher_tokens}: their answers are cut to fit. Raise distill.max_teacher_tokens."
        )))
    too_long = sum(len(r.prompt_ids) + 2 * len(r.target_ids) + sep_len > recipe.srt.max_tokens for r in rollouts) / n
    if too_long > 0.1:
        flags.append(Flag("SRT tuples dropped", (
            f"about {100 * too_long:.0f}% of SRT tuples (prompt + answer + cue + revision, revisions as long as answers) "
            f"would exceed srt.max_tokens={recipe.srt.max_tokens} and be dropped. Raise srt.max_tokens."
        )))
    return flags


def check_system(model, tokenizer, recipe: Recipe, rollouts: Sequence[Rollout], pad_id: int, n: int = 16) -> tuple[str, Optional[Flag]]:
    """Does the system prompt reach the model, and does it change its probabilities of its own answers?

    Its effect is the mean |log p(y_t | with system) - log p(y_t | without)| per answer token over n answers.
    """
    system = recipe.prompts.system
    if not system:
        return "no system prompt in the recipe: not checked", None
    sample = list(rollouts[:n])
    if not sample:
        return "no answers to check the system prompt on", None
    if system.strip() not in visible(tokenizer, sample[0].prompt_ids):
        return "the chat template drops the system prompt", Flag("system prompt dropped", (
            "the chat template leaves prompts.system out of the prompt: the model never reads it. Put the "
            "instruction into prompts.template instead."))
    bare = replace(recipe.prompts, system=None)
    with_ids = [r.prompt_ids + r.target_ids for r in sample]
    without_prompts = [prompt_ids(tokenizer, r.example.problem, bare) for r in sample]
    without_ids = [p + r.target_ids for p, r in zip(without_prompts, sample)]
    spans_with = [(len(r.prompt_ids), len(r.prompt_ids) + len(r.target_ids)) for r in sample]
    spans_without = [(len(p), len(p) + len(r.target_ids)) for p, r in zip(without_prompts, sample)]
    was_training = model.training
    model.eval()
    try:
        a = span_logprobs(model, with_ids, spans_with, pad_id)
        b = span_logprobs(model, without_ids, spans_without, pad_id)
    finally:
        model.train(was_training)
    tokens = sum(len(r.target_ids) for r in sample)
    effect = sum(abs(x - y) for x, y in zip(a, b)) / max(tokens, 1)
    described = f"system prompt effect: {effect:.3f} nats per answer token (|log p with - log p without|, {len(sample)} answers)"
    if effect < 0.01:
        return described, Flag("system prompt ignored", (
            f"the system prompt changes the model's log-probabilities of its own answers by {effect:.4f} nats per "
            "token: the model ignores it. Put the instruction into prompts.template instead."))
    return described, None

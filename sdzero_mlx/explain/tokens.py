"""Self-localisation, measured: where in a response the Reviser disagrees with the Generator, token by token.

For a response y to chat(x) with reward r, on exactly the sequences and positions the distillation
loss uses (`contexts.distill_item`, `scored_batch`, `logits_at`):
  student: chat(x) + y                 -> log p_s(y_t) and logits at each token of y (+ end-of-turn)
  teacher: chat(x) + y + sep(r) + y    -> log p_t(y_t) and logits at the second copy
per token t:  delta_t = log p_s(y_t) - log p_t(y_t)   (> 0: the reviser finds the token less likely)
              kl_t    = loss.distill_token_kl(student logits, teacher targets, kl_settings)   (the training signal)
The paper's observation: when r = 0, KL mass concentrates on a few "mistake" tokens; when r = 1 it is
flat. `kl_concentration` measures it as the share of a response's KL mass held by its top 5% tokens;
`localisation_score` whether the largest-KL tokens of wrong answers sit on the first mistaken step.

The teacher is either a separate model on the same tokenizer (e.g. the SRT model folder) or a dict of
LoRA values for the student's own model (the in-training teacher of teacher.py). Each token also
carries both roles' top `ALTERNATIVES` next tokens with their probabilities (full vocabulary, from the
logits already computed): not only where the Reviser doubts a token but what it would write instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence, Union

import mlx.core as mx
import mlx.nn as nn

from ..config import KlSettings
from ..contexts import distill_item
from ..forward import logits_at
from ..kd import student_batch, teacher_batch
from ..loss import distill_targets, distill_token_kl, log_softmax, student_support, token_logprobs
from ..modeling import padding_id
from ..prompts import Separators
from ..teacher import lora_values
from ..types import Example, Graded, Rollout


Teacher = Union[nn.Module, dict]  # a separate model, or LoRA values for the student's model


ALTERNATIVES = 3  # next tokens listed per position for each role


class Alternative(NamedTuple):
    """One candidate next token of a role at a position, with its probability (full vocabulary)."""

    token_id: int
    piece: str  # tokenizer.decode([token_id])
    prob: float


@dataclass(frozen=True)
class TokenReport:
    """Per-token values over the scored tokens of one response (y plus its end-of-turn token)."""

    token_ids: tuple[int, ...]
    pieces: tuple[str, ...]  # text of each token; "".join(pieces) == decode(token_ids)
    student_logp: tuple[float, ...]
    teacher_logp: tuple[float, ...]
    delta: tuple[float, ...]  # student_logp - teacher_logp
    kl: tuple[float, ...]  # distill_token_kl at the same positions
    reward: float
    kl_settings: KlSettings  # the KL's direction, mixing weight and teacher support
    problem: str = ""
    student_top: tuple[tuple[Alternative, ...], ...] = ()  # per token: the Generator's top ALTERNATIVES
    teacher_top: tuple[tuple[Alternative, ...], ...] = ()  # per token: the Reviser's top ALTERNATIVES


def token_pieces(tokenizer, ids: Sequence[int]) -> tuple[str, ...]:
    """Text added by each token: differences of prefix decodes, so multi-byte characters stay whole."""
    pieces, prev = [], ""
    for i in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:i]))
        pieces.append(text[len(prev):] if text.startswith(prev) else text)
        prev = text
    return tuple(pieces)


def top_alternatives(logits: mx.array, tokenizer, n: int = ALTERNATIVES) -> tuple[tuple[Alternative, ...], ...]:
    """The n most likely next tokens at each position of `logits` (1, L, V), most likely first."""
    logp = log_softmax(logits[0])  # (L, V)
    n = min(n, logp.shape[-1])
    ids = mx.argpartition(-logp, kth=n - 1, axis=-1)[:, :n]  # (L, n), unordered
    probs = mx.exp(mx.take_along_axis(logp, ids, axis=-1))
    mx.eval(ids, probs)
    out = []
    for row_ids, row_probs in zip(ids.tolist(), probs.tolist()):
        ranked = sorted(zip(row_ids, row_probs), key=lambda c: -c[1])
        out.append(tuple(Alternative(int(i), tokenizer.decode([int(i)]), float(p)) for i, p in ranked))
    return tuple(out)


def token_report(
    model: nn.Module,
    tokenizer,
    teacher: Teacher,
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    reward: float,
    seps: Separators,
    kl_settings: KlSettings,
    problem: str = "",
) -> TokenReport:
    """Per-token log-prob gap and KL of `response_ids` (a trailing end-of-turn id is its stop token)."""
    response = tuple(int(t) for t in response_ids)
    if not response:
        raise ValueError("The response is empty; give at least one token.")
    stop = response[-1] if response[-1] in set(tokenizer.eos_token_ids) else None
    completion = response[:-1] if stop is not None else response
    rollout = Rollout(
        example=Example("explain", problem, ""),
        prompt_ids=tuple(int(t) for t in prompt_ids),
        completion_ids=completion,
        text="",
        finish_reason="stop" if stop is not None else "length",
        stop_id=stop,
    )
    # no truncation here: the report covers the whole response
    item = distill_item(Graded(rollout, reward), seps, max_teacher_tokens=2 * len(response) + len(prompt_ids) + 64)
    pad = padding_id(tokenizer)
    s_batch, t_batch = student_batch([item], pad), teacher_batch([item], pad)
    was_training = model.training
    model.eval()
    try:
        s_logits = logits_at(model, s_batch)
        if isinstance(teacher, nn.Module):  # checked first: an mlx Module is itself a dict
            t_logits = logits_at(teacher, t_batch)
        else:
            with lora_values(model, teacher):
                t_logits = logits_at(model, t_batch)
    finally:
        model.train(was_training)
    t_logits = mx.stop_gradient(t_logits)
    scored = item.student_ids[item.student_span[0]:item.student_span[1]]
    ids = mx.array([scored])
    targets = distill_targets(t_logits, ids, kl_settings, student_support(s_logits, kl_settings))
    kl = distill_token_kl(s_logits, targets, kl_settings)[0]
    s_lp, t_lp = token_logprobs(s_logits, ids)[0], token_logprobs(t_logits, ids)[0]
    mx.eval(kl, s_lp, t_lp)
    s_list, t_list = s_lp.tolist(), t_lp.tolist()
    return TokenReport(
        token_ids=tuple(scored),
        pieces=token_pieces(tokenizer, scored),
        student_logp=tuple(s_list),
        teacher_logp=tuple(t_list),
        delta=tuple(s - t for s, t in zip(s_list, t_list)),
        kl=tuple(kl.tolist()),
        reward=reward,
        kl_settings=kl_settings,
        problem=problem,
        student_top=top_alternatives(s_logits, tokenizer),
        teacher_top=top_alternatives(t_logits, tokenizer),
    )


def kind_label(kl: KlSettings) -> str:
    """The loss's kind in words, with its weight: 'mixed, forward weight 0.5', 'jsd, beta 0.5', 'reverse'."""
    if kl.kind == "mixed":
        return f"mixed, forward weight {kl.forward_weight:g}"
    return f"jsd, beta {kl.beta:g}" if kl.kind == "jsd" else kl.kind


def support_label(kl: KlSettings) -> str:
    """The loss's support in words: 'full vocabulary', 'teacher top-64', 'student top-20 + tail', 'sampled token'."""
    if kl.estimator:
        return "sampled token"
    if kl.top_k == 0:
        return "full vocabulary"
    return f"{kl.top_k_from} top-{kl.top_k}" + (" + tail" if kl.tail else "")


def top_tokens(report: TokenReport, n: int = 10) -> list[tuple[int, str, float, float]]:
    """(position, piece, kl, delta) of the n tokens with the largest KL, largest first."""
    order = sorted(range(len(report.kl)), key=lambda i: -report.kl[i])[:n]
    return [(i, report.pieces[i], report.kl[i], report.delta[i]) for i in order]


def kl_concentration(per_token_kl: Sequence[float], top_frac: float = 0.05) -> float:
    """Share of the total KL held by the top ceil(top_frac * n) tokens (at least one).

    Flat KL gives about top_frac; KL on a single token gives 1. All-zero KL counts as flat.
    Example: kl_concentration([4, 0, 0, 0], 0.25) == 1.0; kl_concentration([1, 1, 1, 1], 0.25) == 0.25
    """
    if not 0 < top_frac <= 1:
        raise ValueError(f"top_frac must be in (0, 1], got {top_frac}.")
    values = sorted((float(v) for v in per_token_kl), reverse=True)
    if not values:
        raise ValueError("kl_concentration needs at least one token.")
    n_top = max(1, math.ceil(top_frac * len(values)))
    total = sum(values)
    if total <= 0:
        return n_top / len(values)
    return sum(values[:n_top]) / total


@dataclass(frozen=True)
class BucketStats:
    reward: float
    n: int
    concentration: float  # mean over responses of kl_concentration
    mean_kl: float  # mean per-token KL over all tokens of the bucket
    mean_tokens: float


def localisation_summary(reports: Sequence[TokenReport], top_frac: float = 0.05) -> tuple[BucketStats, ...]:
    """One BucketStats per reward value present (r = 0 first)."""
    out = []
    for reward in sorted({r.reward for r in reports}):
        group = [r for r in reports if r.reward == reward]
        tokens = sum(len(r.kl) for r in group)
        out.append(
            BucketStats(
                reward=reward,
                n=len(group),
                concentration=sum(kl_concentration(r.kl, top_frac) for r in group) / len(group),
                mean_kl=sum(sum(r.kl) for r in group) / max(tokens, 1),
                mean_tokens=tokens / len(group),
            )
        )
    return tuple(out)


def first_mistake_span(text: str, gold: str) -> Optional[tuple[int, int]]:
    """Character span [start, end) of the first line of `text` that differs from the gold solution's line
    at the same position (the first mistaken step), or None when every line matches.

    Example: first_mistake_span("x=5\n5+3=8", "x=6\n6+3=9") == (0, 3)
    """
    lines, gold_lines = text.split("\n"), gold.split("\n")
    start = 0
    for i, line in enumerate(lines):
        if i >= len(gold_lines) or line != gold_lines[i]:
            return start, start + len(line)
        start += len(line) + 1
    return None


@dataclass(frozen=True)
class LocalisationScore:
    """Where the top KL tokens of wrong answers fall, against chance."""

    answers: int  # wrong answers with a mistaken step
    top_tokens: int  # their top-`top_frac` KL tokens, pooled
    hit_share: float  # share of those that lie on the first mistaken step
    chance_share: float  # the same share if the top tokens were picked at random in each answer

    @property
    def ratio(self) -> float:
        return self.hit_share / self.chance_share if self.chance_share > 0 else 0.0


def localisation_score(reports: Sequence[TokenReport], gold: dict[str, str], top_frac: float = 0.05) -> LocalisationScore:
    """Self-localisation of wrong answers: do their largest-KL tokens sit on the first mistaken step?

    `gold` maps a report's problem text to its gold solution. For each wrong answer, the top
    ceil(top_frac * n) tokens by KL are counted as hits when their text overlaps the first line that
    differs from the gold solution; chance is that line's share of the answer's tokens.
    """
    steps = []
    for r in reports:
        if r.reward >= 0.5 or r.problem not in gold or not r.kl:
            continue
        span = first_mistake_span("".join(r.pieces), gold[r.problem])
        if span is not None:
            steps.append((r, span))
    return step_localisation(steps, top_frac)


def step_localisation(steps: Sequence[tuple[TokenReport, tuple[int, int]]], top_frac: float = 0.05) -> LocalisationScore:
    """Where the top ceil(top_frac * n) tokens by KL of each report fall, against a character span of its text
    (the step that went wrong): hits are tokens whose text overlaps the span, chance is the span's share of the
    report's tokens. A report whose span covers no token is left out.

    Example: KL [0, 5, 0, 0] over pieces "a", "b", "c", "d", span (1, 2), top_frac 0.25 -> hit share 1, chance 0.25
    """
    hits = top = 0
    chance = 0.0
    answers = 0
    for r, span in steps:
        bounds, pos = [], 0
        for piece in r.pieces:
            bounds.append((pos, pos + len(piece)))
            pos += len(piece)
        on_step = [a < span[1] and b > span[0] for a, b in bounds]
        if not any(on_step):
            continue
        n_top = max(1, math.ceil(top_frac * len(r.kl)))
        order = sorted(range(len(r.kl)), key=lambda i: -r.kl[i])[:n_top]
        hits += sum(on_step[i] for i in order)
        top += n_top
        chance += n_top * sum(on_step) / len(on_step)
        answers += 1
    return LocalisationScore(answers, top, hits / top if top else 0.0, chance / top if top else 0.0)


def summary_table(buckets: Sequence[BucketStats], top_frac: float = 0.05) -> str:
    """Markdown table of the bucketed view."""
    pct = f"{100 * top_frac:g}%"
    lines = [f"| reward | responses | KL share in top {pct} tokens | mean KL / token | mean tokens |", "|---|---|---|---|---|"]
    for b in buckets:
        lines.append(f"| {b.reward:g} | {b.n} | {b.concentration:.3f} | {b.mean_kl:.4f} | {b.mean_tokens:.1f} |")
    return "\n".join(lines) + "\n"

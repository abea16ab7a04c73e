"""The on-policy distillation step on token ids, shared by SD-Zero's phase 2 (distill.py) and SDFT (sdft.py).

Given student sequences (prompt + y) and teacher sequences (teacher_prompt + y_read + sep + y) that
score the same tokens y, one optimizer step is:
  1. teacher targets: the teacher's distribution at every token of y on the loss's support (the
     teacher's or the student's top-k, renormalised or with a tail bucket; the full vocabulary; the
     sampled token for k1 / k3), computed with the teacher's values of the trained parameters and
     kept as constants;
  2. the student's loss to them (reverse / forward / mixed KL, generalized JSD, or a sampled-token
     estimator), summed over tokens and divided by the step's token count, accumulated over
     micro-batches, one update.
The stages differ only in what the teacher reads before y.

Departure from the paper, off by default: `*.optim.kl_to_initial` adds the k3 penalty to the initial
model (loss.k3_kl: at T = 1; its expected gradient is KL(pi_initial || pi)'s) on each sampled token of y (paper: no penalty; the inverse demo uses 3, which keeps the student's
guesses as diverse as its starting model's: README).
"""

from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from .config import KlSettings
from .platform.distributed import all_sum_values
from .loss import (
    DistillMicroBatch, Penalty, TeacherTargets, distill_loss, distill_targets, initial_logprobs, student_support,
)
from .prompts import teacher_sequence
from .forward import LOGITS_CHUNK_ELEMENTS, ScoredBatch, chunks, logit_chunks, scored_batch
from .teacher import lora_values
from .update import optimizer_step
from .types import DistillItem


def item_with_context(
    prompt: tuple[int, ...], y_read: tuple[int, ...], y_scored: tuple[int, ...], teacher_prompt: tuple[int, ...],
    sep: tuple[int, ...], max_teacher_tokens: int, reward: float,
) -> DistillItem:
    """Student = prompt + y; teacher = teacher_prompt + y_read + sep + y (SD-Zero: teacher_prompt = prompt).

    When the teacher sequence would pass `max_teacher_tokens`: if the teacher reads y itself
    (SD-Zero), y is cut to the same length in all three places; if it reads a demonstration (SDFT),
    the demonstration is shortened first, then y if it still does not fit.
    """
    budget = max(max_teacher_tokens - len(teacher_prompt) - len(sep), 0)
    if len(y_read) + len(y_scored) > budget:
        if y_read and tuple(y_scored[: len(y_read)]) == tuple(y_read):  # an empty y_read is no copy of y
            keep = budget // 2
            y_read, y_scored = y_scored[:keep], y_scored[:keep]  # the same cut in both copies
        else:
            y_scored = y_scored[:budget]
            y_read = y_read[: budget - len(y_scored)]
    return DistillItem(
        student_ids=prompt + y_scored,
        student_span=(len(prompt), len(prompt) + len(y_scored)),
        teacher=teacher_sequence(teacher_prompt, y_read, sep, y_scored),
        reward=reward,
    )


def student_batch(items: Sequence[DistillItem], pad_id: int) -> ScoredBatch:
    return scored_batch([it.student_ids for it in items], [it.student_span for it in items], pad_id)


def teacher_batch(items: Sequence[DistillItem], pad_id: int) -> ScoredBatch:
    return scored_batch([it.teacher.ids for it in items], [it.teacher.second for it in items], pad_id)


def student_support_ids(
    model: nn.Module, batch: ScoredBatch, kl_settings: KlSettings, max_elements: int = LOGITS_CHUNK_ELEMENTS,
) -> Optional[mx.array]:
    """The student's top-k ids at its scored positions (B, L, k), when the support is the student's
    (distill.top_k_from: student), else None: one more forward of the student, without gradient, with
    the values the update starts from, so the ids are those the loss's own pass would choose."""
    if kl_settings.estimator or kl_settings.top_k_from != "student":
        return None
    parts = []
    for _, _, logits in logit_chunks(model, batch, max_elements):
        ids = student_support(mx.stop_gradient(logits), kl_settings)
        if ids is None:  # top_k >= the vocabulary: the full vocabulary, as the teacher's side will find
            return None
        mx.eval(ids)
        parts.append(ids)
    return mx.concatenate(parts, axis=1)


def compute_teacher_targets(
    model: nn.Module, teacher: dict[str, mx.array], items: Sequence[DistillItem], pad_id: int, kl_settings: KlSettings,
    max_elements: int = LOGITS_CHUNK_ELEMENTS, student_ids: Optional[mx.array] = None,
) -> TeacherTargets:
    """The Reviser's distributions on the second copy of y, on the support `kl_settings` reads, as constants.

    Computed and evaluated a block of positions at a time (forward.logit_chunks): only the support of
    each block is kept (top-k, with its tail; the sampled token for k1 / k3; all of it for top_k 0),
    so the teacher never holds (B, L, V) logits, nor (B, T, V) for its longer sequence prompt + y +
    sep + y. The support is per position, so the blocks change no value. `student_ids`: the student's
    top-k (student_support_ids) when the support is the student's.
    """
    parts = []
    batch = teacher_batch(items, pad_id)
    with lora_values(model, teacher):
        for start, end, logits in logit_chunks(model, batch, max_elements):
            ids = None if student_ids is None else student_ids[:, start:end]
            part = distill_targets(logits, batch.targets[:, start:end], kl_settings, ids)
            mx.eval(*part.arrays())
            parts.append(part)
    return TeacherTargets.concat(parts)


def distill_step(
    model: nn.Module, optimizer, teacher: dict[str, mx.array], items: Sequence[DistillItem], kl_settings: KlSettings,
    micro_batch_size: int, pad_id: int, grad_clip: float, penalty: Penalty = Penalty(), advantage_weight: float = 0.0,
):
    """One optimizer step of phase 2 on built items: teacher targets first, then the student update.

    `kl_settings` and `micro_batch_size`: the distill section's (SDFT trains with them too); `grad_clip`: the
    stage's optim.grad_clip. `penalty`: optim.kl_to_initial and its reference (loss.Penalty).
    `advantage_weight`: distill.advantage_weight, GRPO's term on each item's `advantage` (loss.distill_loss).
    """
    # counted over all ranks before any work, so that every rank stops here, not one rank alone
    n_items, n_tokens = all_sum_values(len(items), sum(end - start for start, end in (it.student_span for it in items)))
    if n_items and not n_tokens:
        longest = max((len(it.teacher.ids) for it in items), default=0)
        raise ValueError(
            "distill.max_teacher_tokens leaves no room for the answer: the Reviser's "
            f"prompt and separator alone take up to {longest} tokens, so every answer of this step was cut to 0 "
            "tokens and nothing would be trained. Raise distill.max_teacher_tokens (sdft uses it too)."
        )
    groups = chunks(items, micro_batch_size)
    students = [student_batch(g, pad_id) for g in groups]
    # the student's own top-k when it chooses the support; then the frozen Reviser scores the second
    # copy of y, once per micro-batch, before any update
    targets = [compute_teacher_targets(model, teacher, g, pad_id, kl_settings,
                                       student_ids=student_support_ids(model, b, kl_settings))
               for g, b in zip(groups, students)]  # the ids live on in the targets only
    refs = [initial_logprobs(model, penalty.reference, b) if penalty.on else None for b in students]
    advantages = [mx.array([it.advantage for it in g], dtype=mx.float32) if advantage_weight > 0 else None
                  for g in groups]
    batches = [DistillMicroBatch(b, t, r, a) for b, t, r, a in zip(students, targets, refs, advantages)]
    step_tokens = max(int(round(n_tokens)), 1)  # the whole step's on all ranks (update.py), as distributed.step_tokens
    loss = partial(distill_loss, kl_settings=kl_settings, step_tokens=step_tokens,
                   kl_to_initial=penalty.weight if penalty.on else 0.0, advantage_weight=advantage_weight)
    return optimizer_step(model, optimizer, loss, batches, grad_clip)



"""Pure array functions: log-probabilities, the teacher's top-k, KL in three directions, NLL.

Conventions: `student_logp` and `teacher_logp` are log-probabilities over the same support
(the full vocabulary, or the teacher's top-k renormalised), shape (..., K), computed in float32.
The teacher is always a constant: callers pass `mx.stop_gradient` of it, and `distill_token_kl`
does so itself, because MLX differentiates every argument it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx


def log_softmax(logits: mx.array) -> mx.array:
    logits = logits.astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def forward_kl(student_logp: mx.array, teacher_logp: mx.array) -> mx.array:
    """KL(teacher || student) per position: sum_v p_t (log p_t - log p_s). Mass-covering."""
    return (mx.exp(teacher_logp) * (teacher_logp - student_logp)).sum(axis=-1)


def reverse_kl(student_logp: mx.array, teacher_logp: mx.array) -> mx.array:
    """KL(student || teacher) per position: sum_v p_s (log p_s - log p_t). Mode-seeking (paper)."""
    return (mx.exp(student_logp) * (student_logp - teacher_logp)).sum(axis=-1)


def mixed_kl(student_logp: mx.array, teacher_logp: mx.array, forward_weight: float) -> mx.array:
    """forward_weight * KL(t || s) + (1 - forward_weight) * KL(s || t) (reference code's default 0.5)."""
    return forward_weight * forward_kl(student_logp, teacher_logp) + (1.0 - forward_weight) * reverse_kl(
        student_logp, teacher_logp
    )


@dataclass(frozen=True)
class TeacherTargets:
    """What the teacher contributes for a batch of scored positions.

    indices: (B, L, k) token ids of the teacher's top-k, or None for the full vocabulary.
    logp:    (B, L, k or V) teacher log-probabilities, renormalised over the support, constant.
    """

    indices: mx.array | None
    logp: mx.array

    def positions(self, start: int, end: int) -> "TeacherTargets":
        """The targets of scored positions start .. end - 1."""
        indices = None if self.indices is None else self.indices[:, start:end]
        return TeacherTargets(indices=indices, logp=self.logp[:, start:end])

    @staticmethod
    def concat(parts: "list[TeacherTargets]") -> "TeacherTargets":
        """Blocks of consecutive positions joined back along the position axis."""
        indices = None if parts[0].indices is None else mx.concatenate([p.indices for p in parts], axis=1)
        return TeacherTargets(indices=indices, logp=mx.concatenate([p.logp for p in parts], axis=1))


def teacher_targets(teacher_logits: mx.array, top_k: int) -> TeacherTargets:
    """Top-k support of the teacher (renormalised), or the full vocabulary when top_k == 0."""
    teacher_logits = mx.stop_gradient(teacher_logits.astype(mx.float32))
    vocab = teacher_logits.shape[-1]
    if top_k == 0 or top_k >= vocab:
        return TeacherTargets(indices=None, logp=log_softmax(teacher_logits))
    # A slice is a view that keeps its parent alive: without the copy, the (B, L, V) int32 output of
    # argpartition would stay in memory as long as the targets do (a whole optimizer step).
    indices = mx.contiguous(mx.argpartition(-teacher_logits, kth=top_k - 1, axis=-1)[..., :top_k])
    top = mx.take_along_axis(teacher_logits, indices, axis=-1)
    return TeacherTargets(indices=indices, logp=log_softmax(top))


def student_logp_on(student_logits: mx.array, targets: TeacherTargets) -> mx.array:
    """Student log-probabilities on the teacher's support, renormalised over it."""
    if targets.indices is None:
        return log_softmax(student_logits)
    return log_softmax(mx.take_along_axis(student_logits.astype(mx.float32), targets.indices, axis=-1))


def distill_token_kl(
    student_logits: mx.array, targets: TeacherTargets, kind: str, forward_weight: float = 0.5
) -> mx.array:
    """Per-position KL between student and (constant) teacher, shape (B, L)."""
    return kl_on_support(student_logp_on(student_logits, targets), targets.logp, kind, forward_weight)


def kl_on_support(s: mx.array, teacher_logp: mx.array, kind: str, forward_weight: float = 0.5) -> mx.array:
    """Per-position KL from log-probabilities on a shared support (..., K); the teacher is made constant."""
    t = mx.stop_gradient(teacher_logp)
    if kind == "reverse":
        return reverse_kl(s, t)
    if kind == "forward":
        return forward_kl(s, t)
    if kind == "mixed":
        return mixed_kl(s, t, forward_weight)
    raise ValueError(f"Unknown KL kind {kind!r}: use reverse, forward or mixed.")


def token_logprobs(logits: mx.array, token_ids: mx.array) -> mx.array:
    """log p(token) at every position, full vocabulary, float32. (B, L, V), (B, L) -> (B, L)."""
    return mx.take_along_axis(log_softmax(logits), token_ids[..., None], axis=-1)[..., 0]


def masked_sum(values: mx.array, mask: mx.array) -> mx.array:
    """Sum of `values` where mask is 1; padding contributes exactly nothing."""
    return mx.where(mask.astype(mx.bool_), values, 0.0).sum()


def entropy(logp: mx.array) -> mx.array:
    """Entropy per position of a distribution given as log-probabilities (..., K) -> (...)."""
    return -(mx.exp(logp) * logp).sum(axis=-1)


def monitor_entropy(logp: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """(sum of per-token entropies over the mask, token count), without gradient: a trainer monitor."""
    logp = mx.stop_gradient(logp)
    return masked_sum(entropy(logp), mask), mask.sum()


def clipped_policy_loss(
    logp: mx.array, old_logp: mx.array, advantages: mx.array, clip_low: float, clip_high: float
) -> mx.array:
    """Per-token PPO/DAPO surrogate: -min(ratio * A, clip(ratio, 1 - low, 1 + high) * A).

    logp, old_logp: (B, L) log-probabilities of the sampled tokens under the current and the
    behaviour policy; advantages: (B,) one per sequence (GRPO), broadcast over its tokens.
    Example: ratio 1.5, A = 1, bounds (0.2, 0.28): -min(1.5, 1.28) = -1.28 (clipped, no gradient).
    """
    ratio = mx.exp(logp - mx.stop_gradient(old_logp))
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = mx.clip(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    return -mx.minimum(unclipped, clipped)


def group_advantages(rewards: mx.array, scale_by_std: bool = True, eps: float = 1e-6) -> mx.array:
    """GRPO advantages: reward minus its group's mean, divided by the group's std unless Dr. GRPO.

    rewards: (G_groups, G) -> (G_groups, G). A group whose rewards are all equal gets zeros.
    Example: [[1, 0, 0, 1]] -> [[1, -1, -1, 1]] (mean 0.5, population std 0.5).
    """
    centred = rewards - rewards.mean(axis=-1, keepdims=True)
    if not scale_by_std:
        return centred
    std = mx.sqrt((centred**2).mean(axis=-1, keepdims=True))
    return centred / (std + eps)


def k3_kl(logp: mx.array, ref_logp: mx.array) -> mx.array:
    """Per-token k3 estimate of KL(pi || pi_ref) on tokens drawn from pi: exp(d) - d - 1, d = log pi_ref - log pi.

    Non-negative, zero where the two agree; pi_ref is a constant. Example: logp = ref_logp -> 0;
    logp = log 0.5, ref_logp = log 0.25 -> d = -log 2, exp(d) - d - 1 = 0.5 + 0.693 - 1 = 0.193.
    """
    d = mx.stop_gradient(ref_logp) - logp
    return mx.exp(d) - d - 1.0

"""Every loss and every log-prob gather (as mlx-lm's tuner/losses.py): the pure array functions
(log-probabilities, the distill loss's support and targets, KL in three directions, TRL's generalized
JSD, the sampled-token estimators k1 and k3, the PPO surrogate) and the model losses built on them, a
block of scored positions at a time (forward.logit_chunks): weighted_nll (SRT, RFT, SFT), distill_loss
(distill, SDFT). The KL-to-initial penalty has one path: initial_logprobs (the reference pass, a
constant) and kl_to_initial_penalty (the k3 term, loss.k3_kl, which distill.kl = k3 reuses).

Conventions: `student_logp` and `teacher_logp` are log-probabilities over the same support, shape
(..., K), computed in float32: the full vocabulary; top-k ids renormalised over them; top-k ids with
the rest of the mass as one last category (`tail`); or the sampled token alone (k1, k3: K = 1,
not renormalised). The teacher is always a constant: callers pass `mx.stop_gradient` of it, and
`token_divergence` does so itself, because MLX differentiates every argument it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from .config import KlSettings
from .platform.distributed import step_tokens
from .forward import LOGITS_CHUNK_ELEMENTS, ScoredBatch, chunks, logit_chunks, scored_batch
from .teacher import lora_values


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


def generalized_jsd(student_logp: mx.array, teacher_logp: mx.array, beta: float) -> mx.array:
    """TRL's generalized Jensen-Shannon divergence (GKD, eq. 1) per position:
    beta KL(t || m) + (1 - beta) KL(s || m), m = beta p_t + (1 - beta) p_s.

    beta = 0 is forward KL(t || s) and beta = 1 reverse KL(s || t), taken exactly as TRL does: the
    mixture form itself tends to 0 at both ends (m becomes the other distribution).
    Example: s = (0.5, 0.5), t = (0.9, 0.1), beta 0.5: m = (0.7, 0.3), 0.5 x 0.1163 + 0.5 x 0.0872 = 0.1017.
    """
    if beta == 0.0:
        return forward_kl(student_logp, teacher_logp)
    if beta == 1.0:
        return reverse_kl(student_logp, teacher_logp)
    log_m = mx.logaddexp(teacher_logp + math.log(beta), student_logp + math.log1p(-beta))
    kl_teacher = (mx.exp(teacher_logp) * (teacher_logp - log_m)).sum(axis=-1)
    kl_student = (mx.exp(student_logp) * (student_logp - log_m)).sum(axis=-1)
    return beta * kl_teacher + (1.0 - beta) * kl_student


def with_tail(logp: mx.array) -> mx.array:
    """Top-k log-probabilities (full-vocabulary ones, (..., k)) with the rest of the mass appended as one
    category: log(1 - sum exp(logp)), (..., k + 1). As SDPO's reference loss: the captured mass is clamped
    to exp(-1e-7) < 1 in log space so that the tail's log stays finite (log 1e-7 = -16.1 at the clamp,
    where it passes no gradient). Example: (log 0.6, log 0.3) -> (log 0.6, log 0.3, log 0.1)."""
    captured = mx.minimum(mx.logsumexp(logp, axis=-1, keepdims=True), -1e-7)
    return mx.concatenate([logp, mx.log(-mx.expm1(captured))], axis=-1)


# What becomes of the probability mass outside a support's ids:
#   renormalise: log-probabilities renormalised over the ids (the reference code's top-k);
#   tail:        the full-vocabulary log-probabilities of the ids, the rest as one more category (SDPO);
#   drop:        the full-vocabulary log-probabilities of the ids, nothing else (k1 / k3: the sampled token).
Rest = Literal["renormalise", "tail", "drop"]


def logp_on_support(logits: mx.array, indices: mx.array, rest: Rest) -> mx.array:
    """Log-probabilities of a support of ids (B, L, k) from full logits (B, L, V): (B, L, k), or k + 1 with a tail.
    The one gather of a support, for the teacher and the student alike."""
    picked = mx.take_along_axis(logits.astype(mx.float32), indices, axis=-1)
    if rest == "renormalise":
        return log_softmax(picked)
    full = picked - mx.logsumexp(logits.astype(mx.float32), axis=-1, keepdims=True)
    return with_tail(full) if rest == "tail" else full


def top_k_ids(logits: mx.array, top_k: int) -> mx.array:
    """The ids of the k largest logits at each position, (B, L, V) -> (B, L, k) int32, in no set order."""
    # A slice is a view that keeps its parent alive: without the copy, the (B, L, V) int32 output of
    # argpartition would stay in memory as long as the ids do (a whole optimizer step).
    return mx.contiguous(mx.argpartition(-mx.stop_gradient(logits), kth=top_k - 1, axis=-1)[..., :top_k])


@dataclass(frozen=True)
class TeacherTargets:
    """What the teacher contributes for a batch of scored positions.

    indices: (B, L, k) token ids of the support (the teacher's or the student's top-k; the sampled tokens
             for k1 / k3, k = 1), or None for the full vocabulary.
    logp:    (B, L, K) teacher log-probabilities on the support (K = k, or k + 1 with a tail; V for the
             full vocabulary), treated as constants.
    rest:    what became of the mass outside `indices` (Rest); the student's side is taken the same way.
    """

    indices: mx.array | None
    logp: mx.array
    rest: Rest = "renormalise"

    def positions(self, start: int, end: int) -> "TeacherTargets":
        """The targets of scored positions start .. end - 1."""
        indices = None if self.indices is None else self.indices[:, start:end]
        return TeacherTargets(indices=indices, logp=self.logp[:, start:end], rest=self.rest)

    @staticmethod
    def concat(parts: "list[TeacherTargets]") -> "TeacherTargets":
        """Blocks of consecutive positions joined back along the position axis."""
        indices = None if parts[0].indices is None else mx.concatenate([p.indices for p in parts], axis=1)
        return TeacherTargets(indices=indices, logp=mx.concatenate([p.logp for p in parts], axis=1), rest=parts[0].rest)

    def arrays(self) -> tuple[mx.array, ...]:
        """The arrays to evaluate (mx.eval) before the teacher's logits can be freed."""
        return (self.logp,) if self.indices is None else (self.logp, self.indices)


def teacher_targets(
    teacher_logits: mx.array, top_k: int, indices: Optional[mx.array] = None, rest: Rest = "renormalise",
) -> TeacherTargets:
    """The teacher's distribution on a support, a constant: its own top-k ids (renormalised, or with a
    tail), given ids (the student's top-k; the sampled tokens with rest = drop), or the full vocabulary
    when top_k == 0 (or >= the vocabulary) and no ids are given."""
    teacher_logits = mx.stop_gradient(teacher_logits.astype(mx.float32))
    if indices is None:
        if top_k == 0 or top_k >= teacher_logits.shape[-1]:
            return TeacherTargets(indices=None, logp=log_softmax(teacher_logits))
        indices = top_k_ids(teacher_logits, top_k)
    return TeacherTargets(indices=indices, logp=logp_on_support(teacher_logits, indices, rest), rest=rest)


def reads_student_ids(kl_settings: KlSettings, vocab: int) -> bool:
    """Whether the loss's support is the student's top-k (distill.top_k_from: student, a top-k below the vocabulary)."""
    return not kl_settings.estimator and kl_settings.top_k_from == "student" and 0 < kl_settings.top_k < vocab


def student_support(student_logits: mx.array, kl_settings: KlSettings) -> Optional[mx.array]:
    """The student's top-k ids when the support is the student's (reads_student_ids), else None."""
    if not reads_student_ids(kl_settings, student_logits.shape[-1]):
        return None
    return top_k_ids(student_logits, kl_settings.top_k)


def distill_targets(
    teacher_logits: mx.array, tokens: mx.array, kl_settings: KlSettings, student_ids: Optional[mx.array] = None,
) -> TeacherTargets:
    """The teacher's targets that the loss `kl_settings` reads at scored positions, a constant.

    teacher_logits (B, L, V); tokens (B, L): the scored token ids (the sampled y); student_ids: the
    student's top-k (student_support) when the support is the student's.
    """
    if kl_settings.estimator:
        return teacher_targets(teacher_logits, 1, indices=tokens[..., None], rest="drop")
    if student_ids is None and reads_student_ids(kl_settings, teacher_logits.shape[-1]):
        raise ValueError("distill.top_k_from is student but no student ids were given: pass student_support(...).")
    rest = "tail" if kl_settings.tail else "renormalise"
    return teacher_targets(teacher_logits, kl_settings.top_k, indices=student_ids, rest=rest)


def student_logp_on(student_logits: mx.array, targets: TeacherTargets) -> mx.array:
    """Student log-probabilities on the teacher targets' support, taken as the teacher's were."""
    if targets.indices is None:
        return log_softmax(student_logits)
    return logp_on_support(student_logits, targets.indices, targets.rest)


def distill_token_kl(student_logits: mx.array, targets: TeacherTargets, kl_settings: KlSettings) -> mx.array:
    """Per-position loss between student and (constant) teacher, shape (B, L); `targets` from distill_targets."""
    return token_divergence(student_logp_on(student_logits, targets), targets.logp, kl_settings)


def token_divergence(s: mx.array, teacher_logp: mx.array, kl_settings: KlSettings) -> mx.array:
    """Per-position loss from log-probabilities on a shared support (..., K) -> (...); the teacher is made constant."""
    t = mx.stop_gradient(teacher_logp)
    kind = kl_settings.kind
    if kind == "reverse":
        return reverse_kl(s, t)
    if kind == "forward":
        return forward_kl(s, t)
    if kind == "mixed":
        return mixed_kl(s, t, kl_settings.forward_weight)
    if kind == "jsd":
        return generalized_jsd(s, t, kl_settings.beta)
    if kind == "k1":
        return score_function(k1_kl(s[..., 0], t[..., 0]), s[..., 0])
    if kind == "k3":
        return k3_kl(s[..., 0], t[..., 0])
    raise ValueError(f"Unknown KL kind {kind!r}: use reverse, forward, mixed, jsd, k1 or k3.")


def gather_logprobs(logp: mx.array, token_ids: mx.array) -> mx.array:
    """The log-probabilities of the given tokens: (B, L, V), (B, L) -> (B, L). The one gather."""
    return mx.take_along_axis(logp, token_ids[..., None], axis=-1)[..., 0]


def token_logprobs(logits: mx.array, token_ids: mx.array) -> mx.array:
    """log p(token) at every position, full vocabulary, float32. (B, L, V), (B, L) -> (B, L)."""
    return gather_logprobs(log_softmax(logits), token_ids)


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


def k1_kl(logp: mx.array, ref_logp: mx.array) -> mx.array:
    """Per-token k1: log pi - log pi_ref, pi_ref a constant. On tokens drawn from pi its mean estimates
    KL(pi || pi_ref) without bias (one term may be negative). As a loss its own gradient, grad log pi,
    has expectation 0: distill trains it through score_function. Example: log 0.5 - log 0.25 = 0.693."""
    return logp - mx.stop_gradient(ref_logp)


def score_function(value: mx.array, logp: mx.array) -> mx.array:
    """`value` as it is, with the gradient value x grad log p (REINFORCE): the policy-gradient form of a
    per-token estimate on tokens sampled from p. For k1: E[(log p - log q) grad log p] = grad KL(p || q),
    the reverse KL's gradient per position (verl's use_policy_gradient; SDPO's sampled-token loss)."""
    v = mx.stop_gradient(value)
    return v + v * (logp - mx.stop_gradient(logp))


def k3_kl(logp: mx.array, ref_logp: mx.array) -> mx.array:
    """Per-token k3 penalty: exp(d) - d - 1, d = log pi_ref - log pi, both at temperature 1.

    What it is: non-negative, zero where the two agree; pi_ref is a constant. On tokens drawn from pi
    its value estimates KL(pi || pi_ref), but as a loss its expected gradient is that of KL(pi_ref || pi)
    (sum_y pi (1 - pi_ref / pi) grad log pi = -sum_y pi_ref grad log pi; test_kl_to_initial checks it):
    it pulls pi back over pi_ref's support. On tokens not drawn from pi (RFT's kept answers, SFT's gold
    solutions, SRT's tuples) it is a per-token penalty on those tokens, not a KL estimate. Example: logp = ref_logp -> 0;
    logp = log 0.5, ref_logp = log 0.25 -> d = -log 2, exp(d) - d - 1 = 0.5 + 0.693 - 1 = 0.193.
    """
    d = mx.stop_gradient(ref_logp) - logp
    return mx.exp(d) - d - 1.0


def kl_to_initial_penalty(logp: mx.array, ref_logp: mx.array, weights: mx.array) -> mx.array:
    """The optim.kl_to_initial term before its weight: sum of weights x k3_kl(logp, ref_logp) over the tokens.

    logp, ref_logp, weights: (B, L); weights carry the mask (0 on padding) and any normalisation.
    """
    return (weights * k3_kl(logp, ref_logp)).sum()


# ---------------------------------------------------------------------------------------------
# Model losses on scored batches (forward.py), a block of positions at a time
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightedBatch:
    """Scored tokens with a loss weight each: the NLL micro-batch of SRT, RFT and SFT."""

    batch: ScoredBatch  # ids (B, T); positions / mask / targets (B, L)
    weights: mx.array  # (B, L): weight per target, already divided by the step's token count(s); 0 on padding
    ref_logp: Optional[mx.array] = None  # (B, L): the initial model's log p(target), for optim.kl_to_initial

    @property
    def targets(self) -> mx.array:
        return self.batch.targets


def weighted_nll(
    model: nn.Module, mb: WeightedBatch, max_elements: int = LOGITS_CHUNK_ELEMENTS, kl_to_initial: float = 0.0
) -> tuple[mx.array, tuple[mx.array, mx.array]]:
    """Sum of weight x NLL over the micro-batch (weights carry the step normalisation), + entropy monitor.

    A block of positions at a time (logit_chunks), as the distill loss: SRT's long sequences at a
    152k vocabulary otherwise hold (B, T, V) logits and their log-softmax at once. With
    `kl_to_initial` > 0 and `mb.ref_logp` set, each target also adds kl_to_initial x weight x
    k3(pi, pi_initial) (loss.k3_kl).
    """
    loss = entropy = mx.array(0.0)
    for start, end, logits in logit_chunks(model, mb.batch, max_elements):
        logp = log_softmax(logits)  # (B, block, V)
        token_logp = gather_logprobs(logp, mb.targets[:, start:end])
        weights = mb.weights[:, start:end]
        loss = loss - (token_logp * weights).sum()
        if kl_to_initial > 0 and mb.ref_logp is not None:
            loss = loss + kl_to_initial * kl_to_initial_penalty(token_logp, mb.ref_logp[:, start:end], weights)
        entropy = entropy + monitor_entropy(logp, mb.batch.mask[:, start:end])[0]
    return loss, (entropy, mb.batch.mask.sum())


def constant_logprobs(
    model: nn.Module, batch: ScoredBatch, temperature: float = 1.0, max_elements: int = LOGITS_CHUNK_ELEMENTS
) -> mx.array:
    """log p(target) of the scored tokens, logits divided by `temperature`, evaluated a block of positions at a
    time, a constant. (B, L)"""
    parts = []
    for start, end, logits in logit_chunks(model, batch, max_elements):
        part = token_logprobs(logits.astype(mx.float32) / max(temperature, 1e-6), batch.targets[:, start:end])
        mx.eval(part)
        parts.append(part)
    return mx.stop_gradient(mx.concatenate(parts, axis=1))


def initial_logprobs(
    model: nn.Module, values: dict[str, mx.array], batch: ScoredBatch, temperature: float = 1.0,
    max_elements: int = LOGITS_CHUNK_ELEMENTS,
) -> mx.array:
    """log p(target) of the scored tokens under the model with other values of its trained parameters
    (the initial ones: the reference of optim.kl_to_initial), a constant. (B, L)

    The one reference pass of the penalty, for every stage.
    """
    with lora_values(model, values):
        return constant_logprobs(model, batch, temperature, max_elements)


@dataclass(frozen=True)
class Penalty:
    """optim.kl_to_initial with its reference: the trained parameters' starting values, kept only when a stage
    uses them (with full fine-tuning they are a second copy of the trained weights)."""

    weight: float = 0.0  # optim.kl_to_initial
    reference: Optional[dict[str, mx.array]] = None  # None: nothing kept, the penalty is off

    @property
    def on(self) -> bool:
        return self.weight > 0 and self.reference is not None


def with_reference(model: nn.Module, penalty: Penalty, batches: Sequence[WeightedBatch]) -> list[WeightedBatch]:
    """The batches with the initial model's log-probabilities filled in, when the penalty is on."""
    if not penalty.on:
        return list(batches)
    return [replace(mb, ref_logp=initial_logprobs(model, penalty.reference, mb.batch)) for mb in batches]


def nll_batches(
    sequences: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], micro_batch_size: int, pad_id: int
) -> list[WeightedBatch]:
    """Micro-batches whose weighted NLLs sum to the token mean over every span of the step.

    Example: spans of 2 and 3 tokens -> every real token weighs 1/5. With several processes the
    count is the whole step's on all ranks (a collective: every rank calls this every step).
    """
    n = step_tokens(spans)
    out = []
    for idx in chunks(list(range(len(sequences))), micro_batch_size):
        batch = scored_batch([sequences[i] for i in idx], [spans[i] for i in idx], pad_id)
        out.append(WeightedBatch(batch, batch.mask / n))
    return out


@dataclass(frozen=True)
class DistillMicroBatch:
    """One micro-batch of a distill step: the student's sequences and the teacher's constant targets."""

    student: ScoredBatch
    targets: TeacherTargets
    ref_logp: Optional[mx.array] = None  # (B, L): the initial model's log p(y_t), for optim.kl_to_initial
    advantages: Optional[mx.array] = None  # (B,): GRPO's advantage of each answer, for distill.advantage_weight


def distill_loss(
    model: nn.Module, mb: DistillMicroBatch, kl_settings: KlSettings, step_tokens: int,
    max_elements: int = LOGITS_CHUNK_ELEMENTS, kl_to_initial: float = 0.0, advantage_weight: float = 0.0,
) -> tuple[mx.array, tuple[mx.array, mx.array]]:
    """Sum of per-token KL over this micro-batch divided by the tokens of the whole step (+ entropy monitor).

    The student's logits come a block of positions at a time (forward.logit_chunks) and each block's
    KL is summed into the loss, without recomputation. On a renormalised top-k a block's logits are
    needed only until its KL exists (the backward of the gather and the head needs indices and weights,
    not logits); the full vocabulary keeps V-sized arrays per token for the backward (2 to 6 by the
    divergence), and a tail or k1 / k3 the logits their log-normaliser's gradient needs
    (doctor.cost.loss_footprint counts them).
    The entropy monitor is the student's on the loss's support (the top-k, renormalised or with its
    tail; the full vocabulary when top_k = 0; for k1 / k3 the sampled token's -log p, whose mean
    estimates the full entropy): a full-vocabulary one kept every block alive to the end.
    With `kl_to_initial` > 0 and `mb.ref_logp` set, each token adds kl_to_initial x k3(pi, pi_initial)
    on the sampled token (loss.k3_kl; a full-vocabulary log-softmax per block, only then).
    With `advantage_weight` > 0 and `mb.advantages` set, each token adds GRPO's term on the same sample at one
    update (ratio 1, where clipping never acts): advantage_weight x score_function(-A, log p(y_t)), worth -A with
    the gradient -A grad log p(y_t), at temperature 1 as the KL.
    """
    loss = entropy = mx.array(0.0)
    for start, end, logits in logit_chunks(model, mb.student, max_elements):
        mask, part = mb.student.mask[:, start:end], mb.targets.positions(start, end)
        s = student_logp_on(logits, part)  # (B, block, K)
        loss = loss + masked_sum(token_divergence(s, part.logp, kl_settings), mask)
        penalty = kl_to_initial > 0 and mb.ref_logp is not None
        policy = advantage_weight > 0 and mb.advantages is not None
        y = token_logprobs(logits, mb.student.targets[:, start:end]) if penalty or policy else None
        if penalty:
            loss = loss + kl_to_initial * kl_to_initial_penalty(y, mb.ref_logp[:, start:end], mask)
        if policy:
            per_token = score_function(-mx.broadcast_to(mb.advantages[:, None], y.shape), y)
            loss = loss + advantage_weight * masked_sum(per_token, mask)
        if part.rest == "drop":  # the sampled token's surprisal: its mean over samples estimates the entropy
            entropy = entropy + masked_sum(mx.stop_gradient(-s[..., 0]), mask)
        else:
            entropy = entropy + monitor_entropy(s, mask)[0]
    return loss / step_tokens, (entropy, mb.student.mask.sum())


@dataclass(frozen=True)
class PolicyBatch:
    """One GRPO micro-batch of sampled answers with what the surrogate needs, all constants but the policy."""

    batch: ScoredBatch
    advantages: mx.array  # (B,)
    old_logp: mx.array  # (B, L) behaviour log-probabilities of the sampled tokens (sampling temperature)
    ref_logp: Optional[mx.array]  # (B, L) the initial policy's, when optim.kl_to_initial > 0


def policy_loss(
    model: nn.Module, mb: PolicyBatch, clip_low: float, clip_high: float, temperature: float, step_tokens: int,
    kl_to_initial: float = 0.0, max_elements: int = LOGITS_CHUNK_ELEMENTS,
) -> tuple[mx.array, tuple[mx.array, mx.array]]:
    """GRPO's loss: the clipped surrogate (+ kl_to_initial x k3) summed over the tokens, over the step's tokens.

    A block of positions at a time (forward.logit_chunks), as distill_loss: no (B, T, V) or (B, L, V) logits.
    The policy is scored at the sampling temperature, as pi_old was.
    """
    loss = entropy = mx.array(0.0)
    for start, end, logits in logit_chunks(model, mb.batch, max_elements):
        mask = mb.batch.mask[:, start:end]
        logp_all = log_softmax(logits.astype(mx.float32) / max(temperature, 1e-6))  # (B, block, V)
        logp = gather_logprobs(logp_all, mb.batch.targets[:, start:end])
        per_token = clipped_policy_loss(logp, mb.old_logp[:, start:end], mb.advantages, clip_low, clip_high)
        loss = loss + masked_sum(per_token, mask)
        if kl_to_initial > 0 and mb.ref_logp is not None:  # at T = 1, as in every stage (k3_kl)
            y = token_logprobs(logits, mb.batch.targets[:, start:end])
            loss = loss + kl_to_initial * kl_to_initial_penalty(y, mb.ref_logp[:, start:end], mask)
        entropy = entropy + monitor_entropy(logp_all, mask)[0]
    return loss / step_tokens, (entropy, mb.batch.mask.sum())

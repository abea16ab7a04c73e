"""Scoring fixed token ids with a model: the forward pass every training stage (and `explain`) shares.

A stage builds token sequences from sampled or collected ids, says which span of each sequence is
scored, and gets back the logits that predict exactly those tokens. Nothing here knows about
phases, rewards or losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mlx.core as mx
import mlx.nn as nn

from .distributed import step_tokens
from .loss import log_softmax, monitor_entropy


@dataclass(frozen=True)
class ScoredBatch:
    """Padded sequences plus, for each scored token, the logit position that predicts it."""

    ids: mx.array  # (B, T)
    positions: mx.array  # (B, L): logits[b, positions[b, j]] predicts token j of the span
    mask: mx.array  # (B, L): 1 on real tokens, 0 on padding
    targets: mx.array  # (B, L): the scored token ids themselves (pad id on padding)


def scored_batch(sequences: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], pad_id: int) -> ScoredBatch:
    """Right-pad sequences; causal attention keeps padding from touching earlier positions.

    Example: scored_batch([(5, 6, 7)], [(1, 3)], 0) scores tokens 6, 7 with the logits at positions 0, 1.
    """
    width = max(len(s) for s in sequences)
    span_len = max(max(end - start for start, end in spans), 1)
    ids, positions, mask, targets = [], [], [], []
    for seq, (start, end) in zip(sequences, spans):
        if not 1 <= start <= end <= len(seq):
            raise ValueError(f"span {(start, end)} does not fit a sequence of {len(seq)} tokens (the first token is never scored).")
        ids.append(list(seq) + [pad_id] * (width - len(seq)))
        n = end - start
        positions.append([start - 1 + j for j in range(n)] + [0] * (span_len - n))
        mask.append([1] * n + [0] * (span_len - n))
        targets.append(list(seq[start:end]) + [pad_id] * (span_len - n))
    return ScoredBatch(mx.array(ids), mx.array(positions), mx.array(mask, dtype=mx.float32), mx.array(targets))


def logits_at(model: nn.Module, batch: ScoredBatch) -> mx.array:
    """Logits at the scored positions only, (B, L, V)."""
    logits = model(batch.ids)
    return mx.take_along_axis(logits, batch.positions[..., None], axis=1)


def chunks(items: Sequence, size: int) -> list[list]:
    """Consecutive micro-batches of at most `size` items."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class WeightedBatch:
    """Scored tokens with a loss weight each: the NLL micro-batch of SRT, RFT and SFT."""

    batch: ScoredBatch  # ids (B, T); positions / mask / targets (B, L)
    weights: mx.array  # (B, L): weight per target, already divided by the step's token count(s); 0 on padding

    @property
    def targets(self) -> mx.array:
        return self.batch.targets


def weighted_nll(model: nn.Module, mb: WeightedBatch) -> tuple[mx.array, tuple[mx.array, mx.array]]:
    """Sum of weight x NLL over the micro-batch (weights carry the step normalisation), + entropy monitor."""
    logp = log_softmax(logits_at(model, mb.batch))  # (B, L, V)
    token_logp = mx.take_along_axis(logp, mb.targets[..., None], axis=-1)[..., 0]
    return -(token_logp * mb.weights).sum(), monitor_entropy(logp, mb.batch.mask)


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

"""Forward passes on fixed token ids: the pass every training stage (and `explain`) shares.

A stage builds token sequences from sampled or collected ids, says which span of each sequence is
scored, and gets back the logits that predict exactly those tokens, whole (logits_at) or a block of
positions at a time (logit_chunks). Nothing here knows about phases, rewards or losses (loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn


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


# Largest logits block computed at once (float32: 64 MB). At a 152k vocabulary and 2 sequences that
# is 55 positions; a 512-token answer used to need (2, 512, 152k) floats, 0.6 GB, for one copy.
LOGITS_CHUNK_ELEMENTS = 1 << 24
PROBE_IDS = (1, 2, 3, 5, 8, 13, 21, 34)  # token ids every vocabulary has


def candidate_split(model: nn.Module) -> Optional[tuple[Callable, Callable]]:
    """(body, head) as mlx-lm models are usually built: `model.model` then `lm_head`, or the tied
    embedding when there is no lm_head. Whether model(ids) == head(body(ids)) is checked by the caller."""
    body = getattr(model, "model", None)
    if not callable(body):
        return None
    if "lm_head" in model:
        return body, model.lm_head
    embed = getattr(body, "embed_tokens", None)
    return (body, embed.as_linear) if hasattr(embed, "as_linear") else None


def body_and_head(model: nn.Module) -> Optional[tuple[Callable, Callable]]:
    """(body, head) with model(ids) == head(body(ids)), else None.

    Decided per model object by a probe, not by a list of families: the logits of 8 tokens through
    the split must equal the model's own. Families whose __call__ does more after the head (Gemma's
    final soft-cap, Granite's logit scaling, Cohere's logit scale) fail it and get the full forward.
    """
    cached = getattr(model, "_sdzero_split_checked", None)
    if cached is not None:
        return candidate_split(model) if cached else None
    split = candidate_split(model)
    ok = False
    if split is not None:
        was_training = model.training
        model.eval()  # no dropout in the comparison
        try:
            ids = mx.array([PROBE_IDS])
            whole = mx.stop_gradient(model(ids))
            parts = mx.stop_gradient(split[1](split[0](ids)))
            ok = whole.shape == parts.shape and bool(mx.allclose(whole, parts, rtol=1e-4, atol=1e-4))
        except Exception:  # a body that needs other arguments: no split
            ok = False
        finally:
            model.train(was_training)
    object.__setattr__(model, "_sdzero_split_checked", ok)  # a plain attribute, not a parameter
    return split if ok else None


def logit_chunks(
    model: nn.Module, batch: ScoredBatch, max_elements: int = LOGITS_CHUNK_ELEMENTS
) -> Iterator[tuple[int, int, mx.array]]:
    """(start, end, logits (B, end - start, V)) over the scored positions, a block at a time.

    The hidden states are gathered at the scored positions first and the output head is applied
    one block of positions at a time, so no (B, T, V) or (B, L, V) array exists at once (B x
    block x V <= max_elements). Models whose head does not split off (body_and_head) get the full
    forward, then blocks.
    Gradients flow through every block; MLX frees each block's logits once its loss is computed.
    """
    split = body_and_head(model)
    if split is None:
        features, head = logits_at(model, batch), (lambda x: x)
    else:
        body, head = split
        features = mx.take_along_axis(body(batch.ids), batch.positions[..., None], axis=1)  # (B, L, D)
    b, length = features.shape[:2]
    vocab = head(features[:1, :1]).shape[-1]  # shapes are known without evaluating anything
    step = max(1, max_elements // max(b * vocab, 1))
    for start in range(0, length, step):
        end = min(start + step, length)
        yield start, end, head(features[:, start:end])


def span_tokens(spans: Sequence[tuple[int, int]]) -> int:
    """Number of scored tokens over spans (at least 1, so it can divide a loss)."""
    return max(sum(end - start for start, end in spans), 1)


def chunks(items: Sequence, size: int) -> list[list]:
    """Consecutive micro-batches of at most `size` items."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]

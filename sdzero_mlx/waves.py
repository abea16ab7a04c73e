"""Batched sampling in waves: prompts prefilled together, decoded together, the batch refilled in bulk.

Why not mlx-lm's BatchGenerator, which rollout.py used before (and still uses for models whose cache
is not a plain KV cache): it serves a stream of requests, so it refills a slot the moment a sequence
ends and drops ended ones at once. Both cost a copy of every layer's KV cache (a merge to add, a
gather to drop), and with short answers (10-20 tokens under a 64-token cap, the recipes' tasks) a
sequence ends at nearly every step: on SmolLM2 at batch 32 the generator reached 40 sampled tokens
per CPU second where its decoding step alone reaches 120 (docs/performance.md, "Sampling in waves").

Here at most `sampling.batch_size` rows decode at once (the `copies` samples of a prompt enter together):
1. admit prompts: prefill them together, left-padded (mlx-lm's BatchKVCache and its masks), in chunks
   of at most PREFILL_TOKENS padded tokens, the output head at the last position only; copy each
   prompt's cache rows and last logits `copies` times (one prefill per prompt); join the batch;
2. decode: sample a token for every row and note which sequences ended (a stop id, or max_tokens);
3. once half of the rows have ended, compact the batch (gather the live rows' caches) and admit the
   next waiting prompts into the freed rows: one cache copy and one prefill per refill, not per
   sequence, and an ended row costs at most as much extra decoding as a live one;
4. stop when every sequence has ended.
A row that has ended keeps decoding until the next compaction; what it samples is thrown away and
cannot reach another row (attention stays within a row). An evaluation's greedy answer can be one
more row per prompt (`greedy_copy`), so it shares the prompt's prefill with the k samples.

Sampling follows mlx-lm's samplers (`make_sampler`): greedy at temperature 0, else categorical at
the temperature, on raw logits (softmax does not change under a shift, so log-normalising first is
skipped) unless top-p needs probabilities. Seeds: the caller seeds MLX's generator once per call;
which tokens a seed draws depends on how the rows are batched, so waves draw other samples than
mlx-lm's generator did for the same seed (greedy answers do not depend on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import mlx.core as mx
from mlx_lm.models.cache import BatchKVCache, KVCache, make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from .forward import body_and_head

# Padded prompt tokens prefilled in one forward pass: the attention scores of a prefill grow with
# prompts x length^2, so long prompts go a few at a time (rollout.py's budget, kept).
PREFILL_TOKENS = 8192


@dataclass(frozen=True)
class Ended:
    """One sampled sequence: its tokens (no stop id), why it ended, and the stop id if one ended it."""

    ids: tuple[int, ...]
    finish_reason: str  # "stop" or "length"
    stop_id: Optional[int]


def plain_kv_cache(model) -> bool:
    """Whether every layer of the model keeps a plain KV cache, the one kind waves batch (BatchKVCache)."""
    return all(type(c) is KVCache for c in make_prompt_cache(model))


def prefill_chunks(lengths: Sequence[int], budget: int = PREFILL_TOKENS) -> list[range]:
    """Consecutive prompts grouped so that each group's padded size (count x longest) stays within `budget`
    (a prompt longer than the budget goes alone).

    Example: prefill_chunks([60, 60, 60, 5000, 10], 8192) == [range(0, 3), range(3, 4), range(4, 5)]"""
    chunks, start, longest = [], 0, 0
    for i, n in enumerate(lengths):
        if i > start and max(longest, n) * (i - start + 1) > budget:
            chunks.append(range(start, i))
            start, longest = i, 0
        longest = max(longest, n)
    if lengths:
        chunks.append(range(start, len(lengths)))
    return chunks


def _last_logits(model, ids: mx.array, cache) -> mx.array:
    """The logits after each row's last token, (B, V): the output head applied to the last position only when
    the model splits into body and head (forward.body_and_head); a prompt's other positions need no logits."""
    split = body_and_head(model)
    if split is None:
        return model(ids, cache=cache)[:, -1, :]
    body, head = split
    try:
        hidden = body(ids, cache=cache)
    except TypeError:  # a body that takes its cache by another name: the whole forward
        return model(ids, cache=cache)[:, -1, :]
    return head(hidden[:, -1:, :])[:, 0, :]


def _prefill(model, prompts: Sequence[Sequence[int]]) -> tuple[list[BatchKVCache], mx.array]:
    """Every prompt through the model, left-padded, in chunks; returns the joined caches and the last logits (P, V)."""
    caches, logits = None, []
    for chunk in prefill_chunks([len(p) for p in prompts]):
        group = [prompts[i] for i in chunk]
        width = max(len(p) for p in group)
        padding = [width - len(p) for p in group]
        ids = mx.array([[0] * pad + list(p) for pad, p in zip(padding, group)])
        cache = [BatchKVCache(padding) for _ in model.layers]
        logits.append(_last_logits(model, ids, cache))
        mx.eval(logits[-1], [c.state for c in cache])
        if caches is None:
            caches = cache
        else:
            for joined, more in zip(caches, cache):
                joined.extend(more)  # right-justified to the longer one, the rest left padding
    return caches, mx.concatenate(logits, axis=0)


def decode(
    model, prompts: Sequence[Sequence[int]], copies: int, capacity: int, max_tokens: int, stop_ids: Sequence[int],
    temperature: float, top_p: float, on_finish: Optional[Callable[[int], None]] = None, greedy_copy: bool = False,
) -> list[Ended]:
    """`copies` samples per prompt, prompt-major, at most about `capacity` rows at a time (see the module doc).
    `greedy_copy`: one more row per prompt, decoded greedily (an evaluation's greedy answer shares the prefill)."""
    sample = make_sampler(temp=temperature, top_p=top_p if top_p < 1.0 else 0.0)
    normalise = temperature > 0 and top_p < 1.0  # top-p reads probabilities
    per_prompt = copies + greedy_copy

    def draw(logits: mx.array, rows: Sequence[int]) -> mx.array:
        drawn = sample(logits - mx.logsumexp(logits, axis=-1, keepdims=True) if normalise else logits)
        if greedy_copy and temperature > 0:
            greedy = mx.array([seq % per_prompt == copies for seq in rows])
            drawn = mx.where(greedy, mx.argmax(logits, axis=-1), drawn)
        return drawn

    stop = set(stop_ids)
    tokens: list[list[int]] = [[] for _ in range(len(prompts) * per_prompt)]
    ended: list[Optional[Ended]] = [None] * len(tokens)

    def record(rows: Sequence[int], drawn: Sequence[int]) -> None:
        """Each row's drawn token: appended, or the end of its sequence (a stop id, or max_tokens reached)."""
        for seq, t in zip(rows, drawn):
            if ended[seq] is not None:
                continue  # an ended row still decoding until the next compaction
            if t in stop:
                ended[seq] = Ended(tuple(tokens[seq]), "stop", t)
            else:
                tokens[seq].append(t)
                if len(tokens[seq]) >= max_tokens:
                    ended[seq] = Ended(tuple(tokens[seq]), "length", None)
            if ended[seq] is not None and on_finish is not None:
                on_finish(1)

    batch = _Batch()
    admitted = batch.admit(model, prompts, 0, max(1, capacity // per_prompt), per_prompt, draw)
    while True:
        record(batch.rows[batch.unrecorded:], batch.next_ids[batch.unrecorded:].tolist())
        live = [row for row, seq in enumerate(batch.rows) if ended[seq] is None]
        if len(live) <= len(batch.rows) * REFILL_AT:  # compact, then refill the freed rows with waiting prompts
            batch.keep(live)
            room = (capacity - len(live)) // per_prompt
            if admitted < len(prompts) and (room > 0 or not live):
                admitted = batch.admit(model, prompts, admitted, max(room, 1), per_prompt, draw)
                continue  # the new rows' first tokens are recorded before they are decoded further
        if not batch.rows:
            return list(ended)
        batch.next_ids = draw(model(batch.next_ids[:, None], cache=batch.caches)[:, -1, :], batch.rows)
        batch.unrecorded = 0


# Compact (and refill) once this share of the rows or fewer are live: an ended row's extra decoding costs
# less than a compaction's cache copy and a refill's forward pass, until many rows have ended.
REFILL_AT = 0.5


class _Batch:
    """The rows being decoded: their KV caches, the tokens drawn for them, and the sequence each row is."""

    def __init__(self):
        self.caches: Optional[list[BatchKVCache]] = None
        self.next_ids: Optional[mx.array] = None
        self.rows: list[int] = []
        self.unrecorded = 0  # next_ids[unrecorded:] have not been recorded yet (rows just admitted)

    def keep(self, live: list[int]) -> None:
        """Only these rows (by position) stay."""
        if len(live) == len(self.rows):
            return
        if not live:
            self.caches, self.next_ids, self.rows, self.unrecorded = None, None, [], 0
            return
        for c in self.caches:
            c.filter(live)
        self.next_ids = self.next_ids[mx.array(live)]
        self.rows = [self.rows[row] for row in live]
        self.unrecorded = len(self.rows)  # every kept row's token is recorded

    def admit(self, model, prompts, start: int, count: int, copies: int, draw) -> int:
        """Prefill prompts[start:start + count], `copies` rows each, draw their first tokens, join them; returns
        the index of the next prompt waiting."""
        stop = min(start + count, len(prompts))
        caches, logits = _prefill(model, prompts[start:stop])
        if copies > 1:
            repeat = [i for i in range(stop - start) for _ in range(copies)]
            for c in caches:
                c.filter(repeat)  # each prompt's cache rows, `copies` times
            logits = logits[mx.array(repeat)]
        seqs = [i * copies + j for i in range(start, stop) for j in range(copies)]
        first = draw(logits, seqs)
        self.unrecorded = len(self.rows)
        if self.caches is None:
            self.caches, self.next_ids, self.rows = caches, first, seqs
        else:
            for joined, more in zip(self.caches, caches):
                joined.extend(more)  # right-justified to the longer one, the rest left padding
            self.next_ids = mx.concatenate([self.next_ids, first])
            self.rows = self.rows + seqs
        return stop

"""Data-parallel training over `mx.distributed` (mlx.launch: ring, MPI, NCCL): the few helpers every stage uses.

One process per rank, each with the whole model. Per optimizer step every rank takes the same
global batch (a function of (seed, step)), keeps its contiguous `shard`, and computes the gradient
of its part of the step's loss. The normalisation rule (update.py): every loss is divided by the
token count of the whole step on all ranks (`step_tokens`, an all_sum), so the per-rank gradients
are SUMMED (`sum_across_ranks`), not averaged, and equal the 1-rank gradient of the same global
batch. mlx-lm's `average_gradients` is right only when each rank divides by its own count and the
counts are equal, which on-policy samples of different lengths never guarantee.

Rank 0 alone writes (recipe, metrics, checkpoints, adapters: loop.py); every rank reads a
checkpoint on resume, so the run directory must be at the same path on every machine (a shared or
copied folder). With world size 1 (no launcher) every helper is the identity and no collective runs.

Collectives (`step_tokens`, `all_sum_values`, `sum_across_ranks`) must be called by every rank at
the same point of every step, even by a rank with nothing to contribute.
"""

from __future__ import annotations

import functools
from typing import Sequence, TypeVar

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..seeds import derive_seed

T = TypeVar("T")

# arrays are summed in groups of about this many bytes: one collective per group, as mlx-lm does
_GROUP_BYTES = 32 * 1024**2


@functools.lru_cache(maxsize=1)
def group() -> mx.distributed.Group:
    """The process group mlx.launch set up (size 1 without a launcher)."""
    return mx.distributed.init()


def world() -> int:
    return group().size()


def rank() -> int:
    return group().rank()


def is_writer() -> bool:
    """Only rank 0 writes run files: one metrics line and one checkpoint per step."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's contiguous part of a step's global batch.

    Example: 4 questions, 2 ranks -> rank 0 gets questions 0, 1 and rank 1 gets 2, 3. When the world
    size divides the batch (and the micro-batch size divides each part) every rank's micro-batches
    are exactly those of a 1-rank run; an uneven split (an epoch's last, short batch) is exact too,
    because the loss is normalised by the global token count (update.py).
    """
    n, w, r = len(items), world(), rank()
    return list(items[r * n // w : (r + 1) * n // w])


def all_sum_values(*values: float) -> list[float]:
    """Sums of Python numbers over all ranks (one collective), e.g. counts and sums for the metrics.

    float32, which every backend reduces: counts are exact up to 2^24 (a step has far fewer tokens).
    """
    if world() == 1:
        return [float(v) for v in values]
    total = mx.distributed.all_sum(mx.array(values, dtype=mx.float32))
    return [float(v) for v in total.tolist()]


def step_tokens(spans: Sequence[tuple[int, int]]) -> int:
    """Scored tokens of the whole optimizer step on all ranks (at least 1): every loss's divisor."""
    local = sum(end - start for start, end in spans)
    return max(int(round(all_sum_values(local)[0])), 1)


def sum_across_ranks(tree):
    """Element-wise sum of a tree of arrays over all ranks, in size-bounded groups of concatenated arrays."""
    if world() == 1:
        return tree
    flat = tree_flatten(tree)
    out, batch, size = [], [], 0

    def flush():
        if not batch:
            return
        joined = mx.concatenate([v.reshape(-1) for _, v in batch]) if len(batch) > 1 else batch[0][1].reshape(-1)
        total = mx.distributed.all_sum(joined)
        offset = 0
        for key, v in batch:
            out.append((key, total[offset : offset + v.size].reshape(v.shape)))
            offset += v.size
        batch.clear()

    for key, v in flat:
        if batch and (v.dtype != batch[0][1].dtype or size + v.nbytes > _GROUP_BYTES):
            flush()
            size = 0
        batch.append((key, v))
        size += v.nbytes
    flush()
    return tree_unflatten(out)


def rank_seed(seed: int) -> int:
    """A sampling seed per rank (world size 1: the seed itself), so ranks do not draw the same noise."""
    return seed if world() == 1 else derive_seed(seed, "rank", rank())


def describe() -> str:
    """One line for `sdzero info`."""
    return "1 process (no launcher)" if world() == 1 else f"rank {rank()} of {world()} processes"


def outcome_across_ranks(out):
    """A stage's StepOutcome (loop.py) with its counters, sample statistics and `details` summed over ranks.

    The loss, gradient norm and entropy are already global (update.py); `global_details` are too.
    Times and memory stay this rank's (rank 0 reports them).
    """
    if world() == 1:
        return out
    from dataclasses import replace

    n, s = out.generations, out.samples
    means = () if s is None else (s.reward * n, s.response_tokens * n, s.truncated * n)
    totals = all_sum_values(out.generations, out.sampled_tokens, out.trained_tokens, *means, *(v for _, v in out.details))
    gens, sampled, trained = (int(round(v)) for v in totals[:3])
    if s is not None:
        reward, length, truncated = (v / max(gens, 1) for v in totals[3:6])
        s = replace(s, reward=reward, response_tokens=length, truncated=truncated)
    details = tuple((k, v) for (k, _), v in zip(out.details, totals[3 + len(means):]))
    return replace(out, generations=gens, sampled_tokens=sampled, trained_tokens=trained, samples=s, details=details)

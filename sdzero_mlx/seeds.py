"""Every seed derived from run.seed, in one place: derive_seed(seed, purpose, index).

A derived seed is (seed * multiplier + index) mod 2^63, the multiplier fixed per purpose below (the
constants the code has always used, so that runs repeat what they did before). A resume recomputes
them from (seed, step), nothing is stored.
"""

from __future__ import annotations

SEED_MULTIPLIERS = {
    "epoch_order": 1_000_003,  # data.epoch_order: the shuffle of one pass (index: the epoch)
    "step_sampling": 100_003,  # loop.sample_and_grade: an on-policy step's samples (index: the step)
    "collect_batch": 1_000_003,  # collect: one batch of questions (index: the batch) ...
    "collect_role": 2,  # ... then its initial answers (index 0) or its revisions (index 1)
    "rank": 1_000_003,  # distributed.rank_seed: each process its own sampling stream (index: the rank)
    "srt_part": 1,  # srt: the data order of each part of staged SRT (index: the part)
    "revision": 1,  # evaluate.generate_then_revise: the revisions after the first attempts (index 1)
}


def derive_seed(seed: int, purpose: str, index: int) -> int:
    """The seed of `purpose` number `index` under `seed`.

    Example: derive_seed(3, "step_sampling", 2) == 3 * 100_003 + 2 == 300_011.
    """
    if purpose not in SEED_MULTIPLIERS:
        raise ValueError(f"Unknown seed purpose {purpose!r}; use one of {list(SEED_MULTIPLIERS)}.")
    return (seed * SEED_MULTIPLIERS[purpose] + index) % 2**63

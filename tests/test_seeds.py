"""One seed derivation: derive_seed reproduces, for every purpose, the formula each call site used to write."""

import pytest

from sdzero_mlx.seeds import SEED_MULTIPLIERS, derive_seed

# the hand-written formulas the call sites held before derive_seed (loop, data, collect, distributed, srt, evaluate)
BEFORE = {
    "step_sampling": lambda seed, step: seed * 100_003 + step,
    "epoch_order": lambda seed, epoch: seed * 1_000_003 + epoch,
    "rank": lambda seed, rank: (seed * 1_000_003 + rank) % 2**63,
    "srt_part": lambda seed, part: seed + part,
    "revision": lambda seed, one: seed + one,
}


@pytest.mark.parametrize("purpose", sorted(BEFORE))
def test_each_purpose_gives_the_seed_it_always_gave(purpose):
    # run seeds (run.seed < 2^31); rank_seed also takes derived ones (a step's sampling seed), where the modulus acts
    seeds = (0, 1, 3, 12345, 2**31 - 1) + ((2**47 + 5, (2**31 - 1) * 100_003 + 999) if purpose == "rank" else ())
    for seed in seeds:
        for index in (0, 1, 2, 7, 999):
            assert derive_seed(seed, purpose, index) == BEFORE[purpose](seed, index), (seed, index)


def test_collect_seed_by_hand():
    for seed in (0, 3, 2**31 - 1):
        for batch in (0, 1, 5):
            for role in (0, 1):
                expected = (seed * 1_000_003 + batch) * 2 + role
                assert derive_seed(derive_seed(seed, "collect_batch", batch), "collect_role", role) == expected
    assert derive_seed(3, "step_sampling", 2) == 300_011
    assert set(SEED_MULTIPLIERS) == set(BEFORE) | {"collect_batch", "collect_role"}


def test_unknown_purpose_is_refused():
    with pytest.raises(ValueError, match="step_sampling"):
        derive_seed(0, "sampling", 1)

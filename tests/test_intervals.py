"""The intervals of learning tables (stats.py) on cases checked by hand or by an independent numpy computation."""

import math
from collections import Counter

import numpy as np
import pytest

from sdzero_mlx.stats import (
    bootstrap_ci, hierarchical_ci, hierarchical_resamples, means, paired, problem_resamples, seed_value, shares,
)


def test_hierarchical_resamples_follow_their_documented_draws():
    """rng seed 7, 4 resamples of 2 seeds: the seeds drawn are [[1, 1], [1, 1], [1, 1], [1, 0]] (seed 0 once, in the
    last resample). Seed 0 ([0, 1]) then draws problems [0, 0]: mean 0. Seed 1 ([1, 1, 0]) draws, for its 7 slots in
    row-major order, [0,2,2] 1/3, [0,1,2] 2/3, [0,2,0] 2/3, [1,2,0] 2/3, [1,0,2] 2/3, [0,2,1] 2/3, [1,1,1] 1.
    Resample means: (1/3 + 2/3) / 2, (2/3 + 2/3) / 2, (2/3 + 2/3) / 2, (1 + 0) / 2."""
    seeds = [[0.0, 1.0], [1.0, 1.0, 0.0]]
    got = hierarchical_resamples(seeds, resamples=4, rng_seed=7)
    assert got == pytest.approx([1 / 2, 2 / 3, 2 / 3, 1 / 2])

    # the same draws, consumed by plain loops in the documented order
    rng = np.random.default_rng(7)
    drawn = rng.integers(0, 2, size=(4, 2))
    assert drawn.tolist() == [[1, 1], [1, 1], [1, 1], [1, 0]]
    value = np.zeros((4, 2))
    for s, v in enumerate(seeds):
        slots = [(b, j) for b in range(4) for j in range(2) if drawn[b, j] == s]
        for (b, j), rows in zip(slots, rng.integers(0, len(v), size=(len(slots), len(v)))):
            value[b, j] = np.mean([v[i] for i in rows])
    assert got == pytest.approx(value.mean(axis=1))


def test_one_problem_per_seed_is_a_bootstrap_over_seeds():
    """With one problem per seed nothing moves inside a seed: the interval is the percentile bootstrap of the
    per-seed values, computed here directly from the same seed draws."""
    per_seed = [0.204, 0.096, 0.137, 0.25, 0.11]
    got = hierarchical_ci([[v] for v in per_seed], resamples=5000, rng_seed=3)
    drawn = np.random.default_rng(3).integers(0, 5, size=(5000, 5))
    expected = np.percentile(np.asarray(per_seed)[drawn].mean(axis=1), [2.5, 97.5])
    assert got == pytest.approx(tuple(expected), abs=1e-12)
    assert got[0] > min(per_seed) and got[1] < max(per_seed)  # a mean of 5 draws: inside the range, not at its ends


def test_identical_seeds_give_the_over_problems_bootstrap():
    """Two identical seeds, problems [0, 1] each: drawing seeds changes nothing, so either way a resample is the
    mean of 4 fair coin flips: 0, 1/4, 1/2, 3/4, 1 with probabilities 1/16, 4/16, 6/16, 4/16, 1/16."""
    seeds = [[0.0, 1.0], [0.0, 1.0]]
    binomial = {0.0: 1 / 16, 0.25: 4 / 16, 0.5: 6 / 16, 0.75: 4 / 16, 1.0: 1 / 16}
    for draws in (hierarchical_resamples(seeds, 40_000, 1), problem_resamples(seeds, 40_000, 1)):
        freq = Counter(np.round(draws, 6).tolist())
        assert set(freq) == set(binomial)
        for value, p in binomial.items():
            assert freq[value] / 40_000 == pytest.approx(p, abs=0.01)
    # on a larger case the two intervals agree up to resampling noise
    v = [1.0] * 9 + [0.0] * 21
    assert hierarchical_ci([v] * 3, 20_000) == pytest.approx(bootstrap_ci([v] * 3, 20_000), abs=0.015)


def test_seeds_that_disagree_widen_the_interval_over_seeds_and_problems():
    """Two seeds of 40 problems, 20% and 60% right: the models-fixed interval is about 0.4 +- 1.96 x 0.05 (the sd
    of the mean of the two seeds' means: sqrt(0.2 x 0.8 / 40 + 0.6 x 0.4 / 40) / 2), the hierarchical one reaches
    towards the seeds' own values (a quarter of its resamples draw one seed twice)."""
    seeds = [[1.0] * 8 + [0.0] * 32, [1.0] * 24 + [0.0] * 16]
    fixed = bootstrap_ci(seeds)
    both = hierarchical_ci(seeds)
    assert 0.4 - 0.11 < fixed[0] < 0.4 - 0.07 and 0.4 + 0.07 < fixed[1] < 0.4 + 0.11
    assert both[0] < 0.25 and both[1] > 0.55


def test_shares_and_paired_differences():
    # the correction rate of first attempts [wrong, wrong, right, wrong] revised to [right, wrong, right, right]: 2 / 3
    assert seed_value(shares([1, 0, 0, 1], [1, 1, 0, 1])) == pytest.approx(2 / 3)
    assert math.isnan(seed_value(shares([0, 0], [0, 0])))  # no wrong first attempt: no rate
    # a paired difference is a's share minus b's on the same problems: A corrects 1 of its 2 wrong, B 1 of its 2
    a, b = shares([1, 0, 0, 0], [1, 1, 0, 0]), shares([0, 0, 1, 0], [1, 0, 1, 0])
    assert seed_value(paired(a, b)) == 0.0
    # a constant per-problem difference of 1 in every seed: every resample says 1
    ones = [paired(means([1.0, 1.0, 1.0]), means([0.0, 0.0, 0.0]))] * 2
    assert hierarchical_ci(ones) == (1.0, 1.0) and bootstrap_ci(ones) == (1.0, 1.0)
    # resamples without a denominator are left out: one problem right first, one wrong and corrected; the
    # resamples that drew only the right one (1/4 of them) have no rate, the others all say 1
    assert bootstrap_ci([shares([0, 1], [0, 1])]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="same problems"):
        paired(means([1.0]), means([1.0, 0.0]))


def test_one_seed_has_no_interval_over_seeds():
    assert all(math.isnan(x) for x in hierarchical_ci([[0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="at least one problem"):
        hierarchical_ci([[1.0], []])


# -- the sweep's tables read the rows each seed's evaluation wrote -------------------------------------


def _write_rows(run_dir, method, first, revised):
    """A method's test rows: one sample per problem (its reward = the first attempt's) and its revision."""
    import json

    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    ids = [f"p{i}" for i in range(len(first))]
    (run_dir / "eval" / f"{method}.sample.rows.jsonl").write_text("".join(
        json.dumps({"id": i, "rewards": [f]}) + "\n" for i, f in zip(ids, first)))
    (run_dir / "eval" / f"{method}.revise.rows.jsonl").write_text("".join(
        json.dumps({"id": i, "first_reward": f, "revised_reward": r}) + "\n" for i, f, r in zip(ids, first, revised)))


def test_sweep_compares_correction_rates_on_one_definition(tmp_path):
    """Seed 0: SD-Zero is wrong first on p0, p1 and corrects p0 (1/2); GRPO is wrong first on p0, p2 and corrects p2
    (1/2). Seed 1: SD-Zero wrong on p0, p1, p2, corrects p0 (1/3); GRPO wrong on p0 only, not corrected (0).
    Rows: 5/12 and 1/4; their difference 1/6 (per seed 0 and 1/3). On the problems both got wrong (p0 alone) the
    difference would be +1 in both seeds: the number the table printed before."""
    from sdzero_mlx.recipe import load_recipe
    from sdzero_mlx.demo.app import TASKS
    from sdzero_mlx.sweep import aggregate, sweep_table

    _write_rows(tmp_path / "seed-0", "distill", first=[0, 0, 1, 1], revised=[1, 0, 1, 1])
    _write_rows(tmp_path / "seed-0", "grpo", first=[0, 1, 0, 1], revised=[0, 1, 1, 0])
    _write_rows(tmp_path / "seed-1", "distill", first=[0, 0, 0, 1], revised=[1, 0, 0, 1])
    _write_rows(tmp_path / "seed-1", "grpo", first=[0, 1, 1, 1], revised=[0, 1, 1, 1])
    recipe = load_recipe(TASKS["inverse"].recipe, ["model.path=unused", "eval.k=1"])
    data = aggregate(recipe, tmp_path, [0, 1], ["distill", "grpo"], {"distill": "SD-Zero", "grpo": "GRPO"})
    sd, grpo = data["methods"]["SD-Zero"]["correction_rate"], data["methods"]["GRPO"]["correction_rate"]
    assert sd["per_seed"] == pytest.approx([1 / 2, 1 / 3]) and grpo["per_seed"] == pytest.approx([1 / 2, 0])
    diff = data["pairs"]["SD-Zero - GRPO"]["correction_rate"]
    assert diff["per_seed"] == pytest.approx([0, 1 / 3])
    assert diff["diff_mean"] == pytest.approx(sd["mean"] - grpo["mean"]) == pytest.approx(1 / 6)
    # avg@1 is the first attempts' accuracy: 1/2 and 1/4 against 1/2 and 3/4
    assert data["pairs"]["SD-Zero - GRPO"]["avg_at_k"]["per_seed"] == pytest.approx([0, -1 / 2])
    table = sweep_table(data, 1)
    assert "each model on its own wrong first attempts" in table
    pair_row = next(line for line in table.splitlines() if line.startswith("| SD-Zero - GRPO | -25.0 ["))
    assert pair_row.split(" | ")[-1].startswith("+16.7 [")  # the correction-rate column: 41.7 - 25.0
    # the second figures name their intervals, one row per metric
    assert "| SD-Zero | correction rate | " in table and "| over seeds (Student-t) | over problems, models fixed |" in table

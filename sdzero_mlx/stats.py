"""Intervals for learning tables: per-seed values, their mean, and 95% intervals.

A learning number is the mean over seeds of a per-seed statistic of that seed's test problems, each
seed being its own training run (and, where the data allows, its own problems). The statistic is a
share, sum(numerators) / sum(denominators) over the problems: avg@k, greedy accuracy and pass@k have
denominator 1 per problem (a mean); the correction rate counts revisions that are right over first
attempts that were wrong. A difference between two methods is the difference of their shares on the
same problems of each seed. A seed's data is an array, one row per problem, with the columns
(numerator, denominator) per method (`means`, `shares`, `paired`).

Three 95% intervals, each named for what it covers (docs/results.md, "How intervals are computed"):
- `hierarchical_ci`, "over seeds and problems" (the headline): draw as many seeds as there are, with
  replacement, then each drawn seed's problems with replacement, and take the mean over the drawn seeds
  of their statistic; 10,000 times; the 2.5th and 97.5th percentiles. It covers training noise (which
  run) and problem noise (which problems). None with one seed: one run says nothing of training noise.
- `seed_t_ci`, "over seeds, Student-t": mean +- t * sd / sqrt(n) over the per-seed values.
- `bootstrap_ci`, "over problems, models fixed": each seed's problems resampled, the seeds kept as
  they are. How much the numbers move with the problems drawn, given these trained models; it leaves
  training noise out.
A resample in which a share has no denominator (a correction rate with no wrong first attempt drawn)
has no value and is left out of the percentiles.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30 (standard table); the normal 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

RESAMPLES = 10_000


def t975(df: int) -> float:
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}.")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def seed_t_ci(per_seed: Sequence[float]) -> tuple[float, float]:
    """mean +- t(0.975, n-1) * sd / sqrt(n) over seeds; (nan, nan) with one seed.

    Example: seed_t_ci([1.0, 2.0, 3.0]) == (2 - 4.303 / sqrt(3), 2 + 4.303 / sqrt(3))
    """
    n = len(per_seed)
    if n < 2:
        return math.nan, math.nan
    mean = sum(per_seed) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_seed) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


# -- a seed's data: one row per problem, (numerator, denominator) per method ------------------------


def means(values: Sequence[float]) -> np.ndarray:
    """Per-problem values whose statistic is their mean: (value, 1) rows."""
    v = np.asarray(values, dtype=np.float64)
    return np.column_stack([v, np.ones_like(v)])


def shares(numerators: Sequence[float], denominators: Sequence[float]) -> np.ndarray:
    """Per-problem (numerator, denominator) rows whose statistic is sum(numerators) / sum(denominators).

    Example: the correction rate of first attempts [wrong, wrong, right] revised to [right, wrong, right]
    is shares([1, 0, 0], [1, 1, 0]): 1 / 2."""
    return np.column_stack([np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)])


def paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two methods' rows on the same problems (aligned), whose statistic is a's share minus b's."""
    if len(a) != len(b):
        raise ValueError(f"A paired difference needs the same problems: got {len(a)} and {len(b)} rows.")
    return np.column_stack([a, b])


def _columns(data) -> np.ndarray:
    """A seed's rows; a plain list of values reads as `means` of them."""
    arr = np.asarray(data, dtype=np.float64)
    return means(arr) if arr.ndim == 1 else arr


def statistic(sums: np.ndarray) -> np.ndarray:
    """The statistic of column sums (..., 2m): the share of the one method, or the first's minus the second's;
    nan where a denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = sums[..., 0::2] / sums[..., 1::2]
    s = np.where(sums[..., 1::2] == 0, np.nan, s)
    return s[..., 0] if s.shape[-1] == 1 else s[..., 0] - s[..., 1]


def seed_value(data) -> float:
    """One seed's statistic on its problems as they are (nan without a denominator)."""
    return float(statistic(_columns(data).sum(axis=0)))


def _resampled(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The statistic of each row of problem indices `idx` (r, n) into `data` (n, 2m). A constant column (a mean's
    denominators) sums to n times its value whatever is drawn: not gathered (half the work of a mean)."""
    n = idx.shape[1]
    sums = np.stack([np.full(len(idx), col[0] * n) if (col == col[0]).all() else col[idx].sum(axis=1)
                     for col in data.T], axis=-1)
    return statistic(sums)


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if not len(finite):
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _check(per_seed) -> list[np.ndarray]:
    data = [_columns(d) for d in per_seed]
    if not data or any(len(d) == 0 for d in data):
        raise ValueError("An interval needs at least one seed, each with at least one problem.")
    return data


def problem_resamples(per_seed, resamples: int = RESAMPLES, rng_seed: int = 0) -> np.ndarray:
    """`resamples` means over the seeds (all of them, as they are) of their statistic on resampled problems."""
    data = _check(per_seed)
    rng = np.random.default_rng(rng_seed)
    combined = np.zeros(resamples)
    for d in data:
        combined += _resampled(d, rng.integers(0, len(d), size=(resamples, len(d))))
    return combined / len(data)


def bootstrap_ci(per_seed, resamples: int = RESAMPLES, rng_seed: int = 0) -> tuple[float, float]:
    """95% interval over problems with the models fixed: each seed's problems resampled, seeds kept."""
    return _percentiles(problem_resamples(per_seed, resamples, rng_seed))


def hierarchical_resamples(per_seed, resamples: int = RESAMPLES, rng_seed: int = 0) -> np.ndarray:
    """`resamples` means over S seeds drawn with replacement of their statistic on their problems drawn with
    replacement (S = the number of seeds). The draws, in this order: the seeds, an (resamples, S) array; then per
    seed s, in order, one row of problem indices for each slot that drew s, slots in row-major order."""
    data = _check(per_seed)
    rng = np.random.default_rng(rng_seed)
    drawn = rng.integers(0, len(data), size=(resamples, len(data)))
    values = np.empty(drawn.shape)
    for s, d in enumerate(data):
        slots = drawn == s
        values[slots] = _resampled(d, rng.integers(0, len(d), size=(int(slots.sum()), len(d))))
    return values.mean(axis=1)


def hierarchical_ci(per_seed, resamples: int = RESAMPLES, rng_seed: int = 0) -> tuple[float, float]:
    """95% interval over seeds and problems (the headline); (nan, nan) with one seed."""
    if len(per_seed) < 2:
        _check(per_seed)
        return math.nan, math.nan
    return _percentiles(hierarchical_resamples(per_seed, resamples, rng_seed))


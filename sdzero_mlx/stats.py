"""Intervals for learning tables: per-seed values, their mean, and 95% intervals.

Two intervals, because they answer different questions:
- `bootstrap_ci`: resample the problems of each seed with replacement (each seed on its own), take the
  mean over seeds of the per-seed means, 10,000 times; the 2.5th and 97.5th percentiles. It measures
  how much the numbers move with the problems drawn, given the trained models. For a paired
  difference (two methods on the same problems of a seed) it resamples per-problem differences, so
  the shared difficulty of a problem cancels.
- `seed_t_ci`: a Student-t interval over the per-seed values (mean +- t * sd / sqrt(n)). With each seed
  on its own problems and its own training run, it also covers training noise; with 3 seeds it is wide.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30 (standard table); the normal 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


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


def bootstrap_ci(
    per_seed_values: Sequence[Sequence[float]], resamples: int = 10_000, rng_seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean over seeds of per-seed means, problems resampled within seeds."""
    if not per_seed_values or any(len(v) == 0 for v in per_seed_values):
        raise ValueError("bootstrap_ci needs at least one seed, each with at least one value.")
    rng = np.random.default_rng(rng_seed)
    combined = np.zeros(resamples)
    for values in per_seed_values:
        v = np.asarray(values, dtype=np.float64)
        idx = rng.integers(0, len(v), size=(resamples, len(v)))
        combined += v[idx].mean(axis=1)
    combined /= len(per_seed_values)
    low, high = np.percentile(combined, [2.5, 97.5])
    return float(low), float(high)


def paired_differences(a: dict[str, float], b: dict[str, float]) -> list[float]:
    """a[id] - b[id] over the problems both were evaluated on (the same problems of one seed)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("The two methods share no evaluated problem: a paired difference needs the same problems.")
    return [a[i] - b[i] for i in shared]

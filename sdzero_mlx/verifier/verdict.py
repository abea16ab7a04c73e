"""What grading one answer found: the record every verifier kind returns (grade.py for math, code.py for code)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    score: float  # 1.0 or 0.0
    extracted: str | None  # the answer found in the text (before normalisation)
    gold: str | None  # the normalised gold answer (un-normalised if the worker never answered)
    reason: str  # one short sentence

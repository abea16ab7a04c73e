"""Plain numbers compared in the caller, without a worker or sympy.

Most final answers are numbers ("42", "0.5", "\\frac{3}{4}", "-7", "12 cm^2", "50\\%"): those
are decided here exactly (fractions.Fraction), with the same normalisation, percent policy and
tolerance as `compare`, in microseconds. That keeps a cold `sdzero verify` free of the worker's
sympy import. Anything else returns None and goes to the worker.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .config import VerifierConfig
from .extract import normalize, numeric_gold

# bounded inputs only: normalize's regexes stay cheap on short strings
MAX_QUICK_CHARS = 100
_PLAIN = re.compile(r"(-?)(?:(\d+(?:\.\d+)?|\.\d+)(?:/(\d+))?|\\frac\{(\d+)\}\{(\d+)\})")
# "x = 5", "a_1 = 0.5": a one-letter name before a plain number names that number (parse.is_name)
_NAMED = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?P<value>[^=<>]+)")


def plain_number(s: str) -> Fraction | None:
    """The exact value of '42', '-0.5', '3/4', '\\frac{3}{4}'; None for anything else."""
    m = _PLAIN.fullmatch(s.strip())
    if not m:
        return None
    sign, num, den, fnum, fden = m.groups()
    if (den is not None and int(den) == 0) or (fden is not None and int(fden) == 0):
        return None  # 1/0 is for the worker to refuse
    value = Fraction(int(fnum), int(fden)) if num is None else Fraction(num) / Fraction(den or 1)
    return -value if sign else value


def _close(a: Fraction, b: Fraction, rel_tol: float, abs_tol: float) -> bool:
    return abs(a - b) <= max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(abs_tol))


def compare_plain_numbers(answer: str, gold: str, config: VerifierConfig) -> tuple[bool, str, str] | None:
    """(equal, reason, normalised gold) when both answers are plain numbers, else None."""
    if len(answer) > MAX_QUICK_CHARS or len(gold) > MAX_QUICK_CHARS:
        return None
    norm_g, pct_g = normalize(gold)
    norm_a, pct_a = normalize(answer, bare_units=numeric_gold(norm_g))
    a, g = (plain_number(m.group("value") if (m := _NAMED.fullmatch(x)) else x) for x in (norm_a, norm_g))
    if a is None or g is None:
        return None
    forms_a, forms_g = [a], [g]
    if config.percent_policy != "strip":  # as in compare.compare
        if pct_a:
            forms_a = [a / 100] + ([a] if config.percent_policy == "either" else [])
        if pct_g:
            forms_g = [g / 100] + ([g] if config.percent_policy == "either" else [])
    for x in forms_a:
        for y in forms_g:
            if x == y:
                return True, "equal as numbers", norm_g
            if _close(x, y, config.rel_tol, config.abs_tol):
                return True, "equal within tolerance", norm_g
    return False, "different numbers", norm_g

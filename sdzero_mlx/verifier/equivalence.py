"""Equivalence of two normalised answers: numbers, expressions, containers, text, choices.

Runs inside the verifier's worker process (it may be slow on adversarial input; the worker is
killed when it overruns). `compare` returns (equal, reason).

Tolerance policy: exact rationals (integers, fractions, finite decimals such as 0.25) compare
exactly first; anything else is equal when |a - b| <= max(rel_tol * max(|a|, |b|), abs_tol),
evaluated with 30 significant digits. The defaults (1e-9, 1e-12) absorb floating-point noise in
irrational values (sqrt(2)/2 vs 1/sqrt(2)) but not rounding: 0.3333 is not 1/3, and 3.14 is not pi.

Expressions: numeric spot-check at fixed pseudo-random points first (a single disagreement
proves inequality and is fast), then sympy.simplify(a - b) == 0 when the points are
inconclusive. Agreement at every point is accepted: two distinct elementary expressions agreeing
at several generic points to 9 digits is vanishingly unlikely in a final answer.
"""

from __future__ import annotations

import random
import re

import sympy as sp

from .extract import choice_letter, is_text, plain_text
from .parse import Matrix, ParseError, Relation, Seq, SetOf, Union, parse_answer

N_POINTS = 5
_DIGITS = 30


def _close(x: complex, y: complex, rel_tol: float, abs_tol: float) -> bool:
    return abs(x - y) <= max(rel_tol * max(abs(x), abs(y)), abs_tol)


def _num(e: sp.Expr) -> complex | None:
    """A finite complex value of a closed expression, or None (infinite, undefined, overflow)."""
    try:
        v = complex(sp.N(e, _DIGITS))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None
    if v != v or abs(v) == float("inf"):
        return None
    return v


def _points(symbols: list[sp.Symbol], n: int) -> list[dict]:
    # fixed seed: the same pair always gets the same verdict; positive values avoid
    # branch cuts of sqrt/log, the usual domain of a competition answer's variables
    rng = random.Random(1234)
    return [{s: sp.Rational(rng.randint(1100, 2900), 1000 + k) for s in symbols} for k in range(n)]


def expr_equal(a: sp.Expr, b: sp.Expr, rel_tol: float, abs_tol: float) -> tuple[bool, str]:
    """Equality of two sympy expressions under the tolerance policy above."""
    if a == b:
        return True, "equal as numbers" if a.is_number else "identical expressions"
    if a.is_infinite or b.is_infinite:
        return False, "different infinities or infinite vs finite"
    syms = sorted(a.free_symbols | b.free_symbols, key=str)
    if not syms:
        if a.is_Rational and b.is_Rational:
            if a == b:
                return True, "equal as numbers"
            # exact arithmetic: float() overflows on the huge integers the parser allows
            if abs(a - b) <= max(sp.Rational(rel_tol) * max(abs(a), abs(b)), sp.Rational(abs_tol)):
                return True, "equal within tolerance"
            return False, "different numbers"
        x, y = _num(a), _num(b)
        if x is None or y is None:
            return False, "a value could not be evaluated"
        if _close(x, y, rel_tol, abs_tol):
            return True, "equal as numbers"
        return False, "different numbers"
    agree = 0
    for point in _points(syms, N_POINTS):
        x, y = _num(a.xreplace(point)), _num(b.xreplace(point))
        if x is None or y is None:
            continue
        if not _close(x, y, rel_tol, max(abs_tol, 1e-20)):
            return False, "expressions differ at a sample point"
        agree += 1
    if agree >= 3:
        return True, f"equal at {agree} sample points"
    if sp.simplify(a - b) == 0:
        return True, "equal after simplification"
    return False, "expressions not shown equal"


def _proportional(d1: sp.Expr, d2: sp.Expr, positive: bool, rel_tol: float) -> bool:
    """d1 = k * d2 for a constant k != 0 (k > 0 when positive): the same equation or inequality."""
    syms = sorted(d1.free_symbols | d2.free_symbols, key=str)
    ratios = []
    for point in _points(syms, N_POINTS):
        x, y = _num(d1.xreplace(point)), _num(d2.xreplace(point))
        if x is None or y is None:
            continue
        if abs(y) < 1e-12 or abs(x) < 1e-12:
            if abs(x) < 1e-12 and abs(y) < 1e-12:
                continue  # both sides vanish here: no information
            return False
        ratios.append(x / y)
    if len(ratios) < 2:
        return False
    k = ratios[0]
    if positive and not (abs(k.imag) < 1e-12 and k.real > 0):
        return False
    return all(_close(r, k, max(rel_tol, 1e-9), 1e-12) for r in ratios)


def _unordered(xs: tuple, ys: tuple, tol: tuple) -> bool:
    """Multiset equality under `values_equal`: every x matched to a distinct y."""
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        for j, y in enumerate(left):
            if values_equal(x, y, *tol)[0]:
                del left[j]
                break
        else:
            return False
    return True


def _as_interval(r: Relation) -> Seq | None:
    """x < 3 as (-oo, 3), 3 <= x as [3, oo): a one-sided inequality of a lone variable; else None."""
    if r.op not in ("<", "<=") or not (isinstance(r.lhs, sp.Basic) and isinstance(r.rhs, sp.Basic)):
        return None
    closed = "]" if r.op == "<=" else ")"
    if r.lhs.is_Symbol and not r.rhs.free_symbols:
        return Seq((-sp.oo, r.rhs), "(", closed, interval=True)
    if r.rhs.is_Symbol and not r.lhs.free_symbols:
        return Seq((r.lhs, sp.oo), "[" if r.op == "<=" else "(", ")", interval=True)
    return None


def _relations_equal(a: Relation, b: Relation, tol: tuple) -> tuple[bool, str]:
    if a.op != b.op:
        return False, "different relations"
    if all(isinstance(v, sp.Basic) for v in (a.lhs, a.rhs, b.lhs, b.rhs)):
        if _proportional(a.lhs - a.rhs, b.lhs - b.rhs, positive=a.op in ("<", "<="), rel_tol=tol[0]):
            return True, "equivalent equations"
    if a.named and b.named:  # x = 3 and y = 3 both name the value 3
        ok = values_equal(a.rhs, b.rhs, *tol)[0]
        return ok, "equal named values" if ok else "different equations"
    return False, "different equations"


def values_equal(a, b, rel_tol: float, abs_tol: float) -> tuple[bool, str]:
    """Equality of two parsed answers (see parse for the value kinds)."""
    tol = (rel_tol, abs_tol)
    if isinstance(a, sp.Basic) and isinstance(b, sp.Basic):
        return expr_equal(a, b, rel_tol, abs_tol)
    if isinstance(a, Relation) and isinstance(b, Relation):
        return _relations_equal(a, b, tol)
    # an equation naming its value against a value: "y = 2x" against "2x", "(p,q) = (3,2)" against "(3,2)"
    if isinstance(a, Relation) and a.named:
        return values_equal(a.rhs, b, *tol)
    if isinstance(b, Relation) and b.named:
        return values_equal(a, b.rhs, *tol)
    # a one-sided inequality against an interval: x > 5 against (5, \infty)
    if isinstance(a, Relation) and isinstance(b, Seq) and b.open and _as_interval(a) is not None:
        return values_equal(_as_interval(a), b, *tol)
    if isinstance(b, Relation) and isinstance(a, Seq) and a.open and _as_interval(b) is not None:
        return values_equal(a, _as_interval(b), *tol)
    if isinstance(a, Seq) and isinstance(b, Seq):
        if len(a.items) != len(b.items):
            return False, "different numbers of items"
        if a.open == b.open == "":
            ok = _unordered(a.items, b.items, tol)
            return ok, "same items" if ok else "different items"
        # a bare list stands for a parenthesised tuple, never for an interval like [1, 2) or 1 < x < 2
        if "" in (a.open, b.open) and (a.interval or b.interval):
            return False, "an interval against a list"
        brackets = {(a.open, a.close), (b.open, b.close)} - {("", "")}
        if len(brackets) > 1 or (("", "") in {(a.open, a.close), (b.open, b.close)} and brackets != {("(", ")")}):
            return False, "different brackets (interval ends or tuple vs interval)"
        ok = all(values_equal(x, y, *tol)[0] for x, y in zip(a.items, b.items))
        return ok, "same items in order" if ok else "different items"
    if isinstance(a, (SetOf, Seq)) and isinstance(b, (SetOf, Seq)):
        sa = a.items if isinstance(a, SetOf) or a.open == "" else None
        sb = b.items if isinstance(b, SetOf) or b.open == "" else None
        if sa is None or sb is None:
            return False, "a set compared with a tuple or interval"
        ok = _unordered(sa, sb, tol)
        return ok, "same set of items" if ok else "different items"
    if isinstance(a, Union) and isinstance(b, Union):
        ok = _unordered(a.parts, b.parts, tol)
        return ok, "same union" if ok else "different unions"
    if isinstance(a, Matrix) and isinstance(b, Matrix):
        if len(a.rows) != len(b.rows) or len(a.rows[0]) != len(b.rows[0]):
            return False, "different matrix shapes"
        ok = all(values_equal(x, y, *tol)[0] for ra, rb in zip(a.rows, b.rows) for x, y in zip(ra, rb))
        return ok, "equal matrices" if ok else "different matrix entries"
    return False, f"different kinds of answer ({type(a).__name__} vs {type(b).__name__})"


def _scaled(v, factor):
    """v * factor for expressions and the value an equation names (x = 50%); other containers are left
    alone (percent applies to numbers)."""
    if isinstance(v, Relation) and v.named and isinstance(v.rhs, sp.Basic):
        return Relation(v.op, v.lhs, v.rhs * factor, named=True)
    return v * factor if isinstance(v, sp.Basic) else v


def compare(answer: str, answer_pct: bool, gold: str, gold_pct: bool, percent_policy: str,
            rel_tol: float, abs_tol: float) -> tuple[bool, str]:
    """Whether a normalised answer matches the normalised gold, with a short reason."""
    # multiple choice: a gold of one capital letter (or "(a)"); lowercase "e" or "x" stay maths
    if re.fullmatch(r"[A-J]|\([A-Ja-j]\)", gold.strip()):
        ok = choice_letter(answer) == gold.strip("() ").upper()
        return ok, "same choice" if ok else "different choice"
    if is_text(answer) or is_text(gold):
        same = plain_text(answer) == plain_text(gold)
        return same, "equal as text" if same else "different text"
    try:
        a = parse_answer(answer)
    except ParseError as exc:
        same = plain_text(answer) == plain_text(gold)
        return same, "equal as text" if same else f"answer not understood ({exc})"
    try:
        g = parse_answer(gold)
    except ParseError as exc:
        same = plain_text(answer) == plain_text(gold)
        return same, "equal as text" if same else f"gold answer not understood ({exc})"
    a_forms, g_forms = [a], [g]
    if percent_policy != "strip":
        # "divide": 50% means 1/2; "either": accept the reading with or without the /100
        if answer_pct:
            a_forms = [_scaled(a, sp.Rational(1, 100))] + ([a] if percent_policy == "either" else [])
        if gold_pct:
            g_forms = [_scaled(g, sp.Rational(1, 100))] + ([g] if percent_policy == "either" else [])
    reason = ""
    for x in a_forms:
        for y in g_forms:
            ok, reason = values_equal(x, y, rel_tol, abs_tol)
            if ok:
                return True, reason
    return False, reason

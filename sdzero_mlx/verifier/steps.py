"""Where a math answer first goes wrong: the first line holding an equation that does not hold.

An answer's working is read line by line ("\\n"). In a line, each "=" joins the numeric expression
that ends just before it (its left side) to the one that starts just after it (its right side), each
read with the verifier's own parser (parse.parse_expr) after the verifier's own replacements
(extract._REPLACEMENTS: \\times, ×, \\div ...; thousands commas and "$" dropped). A side is the
longest stretch of text next to the "=" that parses to a number (no free symbol); "He has 3 + 4 = 7
apples" is the equation 3 + 4 = 7. What is not checked, so that a line is only ever marked wrong on
an equation the parser reads:
- a side that is not a number (x = 7, 2x + 1 = 7) or that is cut out of a larger expression the
  parser does not read (glued to a letter, a "%", an operator, or after "of" / "times" / "by" ...);
- an equation whose left side is a bare number (7 = 7, "half of 8 = 4" read as 8 = 4), unless it
  continues a chain: in "3 + 4 = 7 = 8" the 7 is the chain's value and 8 is checked against it;
- a line with no "=" at all, or whose equations are all skipped.
An equation holds when its sides are equal as the verifier compares numbers (equivalence.expr_equal
at VerifierConfig's tolerances), or within half a unit of the written right side's last decimal
(10 / 3 = 3.33 holds; 10 / 3 = 3 does not). One form is read as a rewrite, not literally: a left side
of one operation on two numbers and a right side of a number followed by more + and - terms, "a op b =
c + terms", holds when a op b equals c. That is the demo's chain scratchpad ("7-1=6-4+5": 7-1 is 6,
and -4+5 is carried from the line above; "7-1=5-4+5" is wrong though 6 = 6), and run-on working such
as "12 / 4 = 3 - 1 = 2" (then the chain goes on from the right side's value).

On the first equation that fails, the wrong value is its right side (the number a rewrite line puts
first), and the right value is what the left side evaluates to, written as an integer or a
terminating decimal (at the written value's decimal places when it does not terminate); None when it
cannot be written so (sqrt(2)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import sympy as sp

from .config import VerifierConfig
from .equivalence import expr_equal
from .extract import _REPLACEMENTS, _THOUSANDS
from .parse import ParseError, parse_expr

MAX_LINE = 400  # characters: a longer line is not read (every side is found by trying to parse its stretches)
# words after which a number is an operand of a larger quantity ("20% of 50", "3 times 4"), not a side
_ARITHMETIC_WORDS = {"of", "times", "by", "per", "plus", "minus", "over", "divided", "multiplied", "into", "x"}
_DROPPED = ("\\$", "$", "\\(", "\\)", "\\[", "\\]")
# an operator or a continuation of a number: a side next to one was cut out of something larger
_GLUE = set("+-*/^%.0123456789_")
# what a line is normalised with: the verifier's replacements, dropped math delimiters, thousands commas (as \0)
_TABLE = [(old, new) for old, new in _REPLACEMENTS if old] + [(d, "") for d in _DROPPED] + [("\0", "")]


@dataclass(frozen=True)
class WrongStep:
    """The first equation of an answer that does not hold, as character spans of the answer's text."""

    line: tuple[int, int]  # the line holding it, [start, end)
    value: tuple[int, int]  # the wrong value as written on that line
    left: str  # the left side as written
    written: str  # text[value[0]:value[1]]
    right: Optional[str]  # what the left side evaluates to, as the answer would write it; None: no finite form


@dataclass(frozen=True)
class _Side:
    start: int  # in the normalised line
    end: int
    value: sp.Expr


def _normalised(line: str) -> tuple[str, list[tuple[int, int]]]:
    """The line with the verifier's replacements applied, and for each of its characters the span of the
    original line it came from (so a side found in the first maps back to the second)."""
    merged = _THOUSANDS.sub(lambda m: m.group(0).replace(",", "\0"), line)  # \0: a comma to drop
    out, spans, i = [], [], 0
    while i < len(merged):
        hit = next(((old, new) for old, new in _TABLE if merged.startswith(old, i)
                    and not (old[-1].isalpha() and merged[i + len(old):i + len(old) + 1].isalpha())), None)
        if hit is None:
            out.append(merged[i])
            spans.append((i, i + 1))
            i += 1
            continue
        old, new = hit
        out.extend(new)
        spans.extend([(i, i + len(old))] * len(new))
        i += len(old)
    text = "".join(out)
    # "5 x 3" between numbers is a product
    text = re.sub(r"(?<=\d)(\s*)x(\s*)(?=\d)", lambda m: m.group(1) + "*" + m.group(2), text)
    return text, spans


def _number(text: str) -> Optional[sp.Expr]:
    """The value of `text` when the parser reads it as a real number, else None. A letter outside a command
    (\\frac, \\pi) makes it no number: "16 eggs" is not 16 e g g s, nor "3 e" 3e."""
    if not re.search(r"\d", text) or re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", text)):
        return None
    if re.search(r"\d\.?\s+\d(?!\d*\s*/)", text):
        return None  # "7. 3 + 4", "12 3": two numbers side by side are no product anyone writes (3 1/2 is a mixed number)
    try:
        value = parse_expr(text)
    except (ParseError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    if not isinstance(value, sp.Expr) or value.free_symbols or not value.is_finite or value.is_real is not True:
        return None
    return value


_OPERAND_START = set("0123456789.-+*/^(\\{[|")  # "+*/^": tried so that a side cut after an operator is refused
_OPERAND_END = set("0123456789.)}]|")


def _glued(before: str, first: str) -> bool:
    """Whether a side starting with `first` after the text `before` is cut out of something larger: it starts
    with a binary operator, or follows an operator, a "%", or (with no space between) a number or a word; or it
    follows a word such as "of" (20% of 50) or "times"."""
    if first in "+*/^":
        return True
    if not before:
        return False
    last = before[-1]
    if last.isspace():
        stripped = before.rstrip()
        if not stripped:
            return False
        if stripped[-1] in "+-*/^%_":
            return True
        word = re.search(r"([A-Za-z]+)$", stripped)
        return bool(word) and word.group(1).lower() in _ARITHMETIC_WORDS
    if first == "-" and (last.isalnum() or last in ")}]"):
        return True  # a binary minus: the expression starts further left
    return last.isalnum() or last in _GLUE or last == "\\"


def _left_side(part: str, offset: int) -> Optional[_Side]:
    """The longest numeric stretch ending `part` (the text before an "="), or None when there is none or it is
    cut out of something larger."""
    end = len(part.rstrip())
    for start in range(end):
        c = part[start]
        if c not in _OPERAND_START or (start and c in "0123456789." and part[start - 1] in "0123456789."):
            continue
        value = _number(part[start:end])
        if value is not None:
            return None if _glued(part[:start], c) else _Side(offset + start, offset + end, value)
    return None


def _right_side(part: str, offset: int) -> Optional[_Side]:
    """The longest numeric stretch starting `part` (the text after an "="), or None when there is none or more
    of an expression follows it."""
    start = len(part) - len(part.lstrip())
    for end in range(len(part), start, -1):
        if part[end - 1] not in _OPERAND_END or (end < len(part) and part[end - 1] in "0123456789" and part[end].isdigit()):
            continue
        text = part[start:end]
        if text.endswith(".") and _number(text[:-1]) is not None:
            continue  # a full stop after the number: the side is the number
        value = _number(text)
        if value is None:
            continue
        after = part[end:]
        rest = after.lstrip()
        word = re.match(r"[A-Za-z]+", rest)
        full_stop = rest[:1] in (".", ",") and rest[1:2] in ("", " ", "\n")
        if rest and not full_stop and (rest[0] in _GLUE or (rest[0].isalnum() and after[0] == rest[0])
                     or (word and word.group(0).lower() in _ARITHMETIC_WORDS)):
            return None
        return _Side(offset + start, offset + end, value)
    return None


def _decimals(text: str) -> Optional[int]:
    """Decimal places of a plain written number ("3.33" -> 2, "14" -> 0), None for anything else."""
    m = re.fullmatch(r"\s*-?\d*(?:\.(\d+))?\s*", text)
    return None if m is None or not re.search(r"\d", text) else len(m.group(1) or "")


def _equal(left: sp.Expr, right: sp.Expr, written: str) -> bool:
    config = VerifierConfig()
    if expr_equal(left, right, config.rel_tol, config.abs_tol)[0]:
        return True
    places = _decimals(written)
    if places:  # a rounded decimal: within half a unit of its last place
        try:
            return abs(float(left) - float(right)) <= 0.5 * 10 ** -places + 1e-12
        except (TypeError, ValueError, OverflowError):
            return False
    return False


def _one_operation(text: str) -> bool:
    """a op b: one + - * / between two plain numbers (the rewrite scratchpad's left side)."""
    return re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*[-+*/]\s*\d+(?:\.\d+)?\s*", text) is not None


def _rewrite_head(text: str) -> Optional[tuple[int, int]]:
    """The span of the leading number of `text` when more + or - terms follow it ("6-4+5" -> (0, 1))."""
    m = re.match(r"\s*(-?\d+(?:\.\d+)?)\s*[-+]\s*\S", text)
    return m.span(1) if m else None


# the longest right value written out: no answer the verifier reads is longer (VerifierConfig.max_answer_chars)
MAX_WRITTEN = VerifierConfig().max_answer_chars


def _fixed(q: Fraction, places: int) -> str:
    """q rounded to `places` decimal places, in exact arithmetic (a float keeps 17 digits and ends at 1e308).

    Example: _fixed(Fraction(-10, 3), 2) == "-3.33"; _fixed(Fraction(1, 8), 3) == "0.125"
    """
    n = round(q * 10**places)
    digits = str(abs(n)).rjust(places + 1, "0")
    return ("-" if n < 0 else "") + (f"{digits[:-places]}.{digits[-places:]}" if places else digits)


def written_value(value: sp.Expr, like: str) -> Optional[str]:
    """`value` as an answer writes it: an integer, a terminating decimal, or rounded to the decimal places of
    `like` (the wrong value it replaces); None when none applies, or when it would be longer than MAX_WRITTEN.

    Example: written_value(7/2, "3") == "3.5"; written_value(10/3, "3.34") == "3.33"; written_value(10/3, "3") is None
    """
    if not value.is_Rational:
        return None
    q = Fraction(int(value.p), int(value.q))
    if abs(q) >= 10**MAX_WRITTEN or q.denominator >= 10**MAX_WRITTEN:  # before str(): Python refuses 4300+ digits
        return None
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:  # terminating: as many places as it needs
        places = 0
        while (q * 10**places).denominator != 1:
            places += 1
    else:
        places = _decimals(like)
        if not places:
            return None
    text = _fixed(q, places)
    return text if len(text) <= MAX_WRITTEN else None


def _line_error(line: str) -> Optional[tuple[tuple[int, int], str, str, Optional[str]]]:
    """(span of the wrong value, left side text, written value, right value) of the line's first failing
    equation, in the line's characters; None when every equation read holds (or none is read)."""
    text, spans = _normalised(line)
    parts, offsets = zip(*_between_equals(text))
    chain: Optional[sp.Expr] = None  # the value the next side must have, inside a chain a = b = c
    for i in range(len(parts) - 1):
        left = _left_side(parts[i], offsets[i])
        right = _right_side(parts[i + 1], offsets[i + 1])
        whole = left is not None and parts[i].strip() and text[left.start:left.end].strip() == parts[i].strip()
        if left is None or right is None:
            chain = None
            continue
        if chain is not None and whole:
            expected, computation = chain, True
        else:
            expected, computation = left.value, not re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", text[left.start:left.end])
        if not computation:
            chain = None
            continue
        right_text = text[right.start:right.end]
        # a op b = c + more terms is a rewrite (c must be a op b); anything else is read literally
        head = _rewrite_head(right_text) if _one_operation(text[left.start:left.end]) and chain is None else None
        if head is None:
            holds, wrong = _equal(expected, right.value, right_text), (right.start, right.end)
        else:
            c_text = right_text[head[0]:head[1]]
            holds, wrong = _equal(expected, _number(c_text), c_text), (right.start + head[0], right.start + head[1])
        if not holds:
            a, b = spans[wrong[0]][0], spans[wrong[1] - 1][1]
            written = line[a:b]
            left_text = line[spans[left.start][0]:spans[left.end - 1][1]]
            return (a, b), left_text.strip(), written, written_value(expected, written)
        chain = right.value if head is not None else expected
    return None


_EQUALS = re.compile(r"(?<![<>!=])==?(?!=)")  # "=" or "=="; "<=", ">=", "!=" are no equations


def _between_equals(text: str) -> list[tuple[str, int]]:
    """The stretches of `text` between its "=" signs, each with its offset (at any bracket depth: a model's
    "(3 + 4 = 7)" and an unmatched "1)" are prose, not containers)."""
    out, start = [], 0
    for m in _EQUALS.finditer(text):
        out.append((text[start:m.start()], start))
        start = m.end()
    return out + [(text[start:], start)]


def first_wrong_step(text: str) -> Optional[WrongStep]:
    """The first line of `text` with an equation that does not hold, or None (see the module docstring).

    Example: first_wrong_step("3 + 4 = 7\\n7 * 2 = 15\\n15 - 1 = 14") marks "7 * 2 = 15": its value "15"
    at (18, 20), the right value "14".
    """
    start = 0
    for line in text.split("\n"):
        if "=" in line and len(line) <= MAX_LINE:
            found = _line_error(line)
            if found is not None:
                (a, b), left, written, right = found
                return WrongStep((start, start + len(line)), (start + a, start + b), left, written, right)
        start += len(line) + 1
    return None

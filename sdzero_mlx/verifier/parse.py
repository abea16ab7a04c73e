"""A safe parser from (LaTeX-flavoured) answer strings to sympy values.

sympy's `sympify` / `parse_expr` run Python `eval` on their input, so model text never goes near
them. This is a recursive-descent parser over a fixed grammar that builds sympy objects through
their constructors; anything outside the whitelist is a `ParseError`.

Guards keep evaluation cheap: nesting depth, literal length, and the size of integer powers and
factorials are capped (`2^{2^{100}}` is refused at once instead of being computed). The killable
worker in `verifier` is the backstop for anything these caps miss.

Values: a sympy expression, or one of the containers below (tuples, sets, intervals, unions,
equations, relations, matrices).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import sympy as sp

MAX_DEPTH = 120         # parser nesting counter (about 2 per bracket level): ~7 frames each, under Python's 1000
MAX_BRACKETS = 50       # bracket nesting checked before parsing
MAX_DIGITS = 400        # a literal longer than this is not a plausible answer
MAX_LOG10 = 100_000     # refuse integer powers beyond 10**100000 (computing those exactly takes milliseconds,
                        # and answers such as 2^{1000}-2^{1000}+3 or 10^{400}/10^{399} must cancel exactly)
MAX_TERMS = 10_000      # a sum or product with numeric bounds is expanded term by term up to this many terms
MAX_SYMBOLIC_EXP = 200  # (x+1)^N with larger N makes expansion slow for no real answer
MAX_FACTORIAL = 1000


class ParseError(ValueError):
    """The string is not an answer this grammar understands (or is too large to evaluate)."""


@dataclass(frozen=True)
class Seq:
    """Ordered items in brackets: a tuple / point / interval ('(', ']', ...), or a bare list ('' '').

    `interval`: read from a relation (1 < x < 2, x > 5), so surely an interval: a bare list "1, 2"
    (which stands for the tuple (1, 2)) never equals it.
    """

    items: tuple
    open: str
    close: str
    interval: bool = False


@dataclass(frozen=True)
class SetOf:
    """An explicit set \\{a, b\\}: compared without order."""

    items: tuple


@dataclass(frozen=True)
class Union:
    """Intervals joined by \\cup: compared without order."""

    parts: tuple


@dataclass(frozen=True)
class Relation:
    """lhs op rhs with op one of '=', '<', '<=', '!=' ('>' and '>=' are flipped on parsing).

    `named`: an equation whose left side is written without digits (x, f(x), |AB|, (p,q), V_1:V_2)
    names the quantity its right side gives, so it also stands for that value: `x = 5` is 5. Its
    right side may then be a container: `(p,q) = (3,2)`.
    """

    op: str
    lhs: object  # a sympy expression (a container only when named)
    rhs: object
    named: bool = False


@dataclass(frozen=True)
class Matrix:
    rows: tuple  # tuple of tuples of sympy expressions


_FUNCS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "exp": sp.exp, "ln": sp.log, "log": sp.log,
}
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
    "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}
_REL_CMDS = {"le": "<=", "ge": ">=", "lt": "<", "gt": ">", "ne": "!="}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[A-Za-z]+|\\[{}|])|(?P<op><=|>=|!=|[-+*/^_!=<>,;|&()\[\]{}'])|(?P<name>[A-Za-z]))"
)


def tokenize(s: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; kinds are num, cmd, op, name."""
    tokens, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise ParseError(f"unexpected character {s[pos]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _check_pow(base: sp.Expr, exp: sp.Expr) -> None:
    """Refuse powers whose exact value would be astronomically large."""
    if exp.is_number and exp.is_real is not False:
        try:
            e = abs(float(exp))
        except (TypeError, ValueError, OverflowError):
            raise ParseError("exponent too large") from None
        if base.is_number:
            log_b = _log10_abs(base)
            if log_b is None:
                raise ParseError("base too large")
            if abs(e * log_b) > MAX_LOG10:
                raise ParseError("number too large" if log_b > 0 else "number too small")
        elif e > MAX_SYMBOLIC_EXP:
            raise ParseError("exponent too large")


def _log10_abs(x: sp.Expr) -> float | None:
    """log10 |x| without overflowing on big exact integers; None if not a finite nonzero value."""
    try:
        if x.is_Rational:
            if x == 0:
                return 0.0  # 0^e is cheap whatever e is
            return math.log10(abs(int(x.p))) - math.log10(int(x.q))
        v = abs(complex(x))
    except (TypeError, ValueError, OverflowError):
        return None
    return math.log10(v) if 0 < v < float("inf") else (0.0 if v == 0 else None)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.toks = tokens
        self.i = 0
        self.depth = 0

    # -- token helpers --------------------------------------------------------------------
    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t[1] == text

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise ParseError("unexpected end of answer")
        self.i += 1
        return t

    def expect(self, text: str) -> None:
        t = self.take()
        if t[1] != text:
            raise ParseError(f"expected {text!r}, got {t[1]!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too deeply nested")

    # -- grammar --------------------------------------------------------------------------
    def expr(self) -> sp.Expr:
        """sum := term (('+' | '-') term)*"""
        self.enter()
        value = self.unary()
        while self.at("+") or self.at("-"):
            op = self.take()[1]
            rhs = self.unary()
            value = value + rhs if op == "+" else value - rhs
        self.depth -= 1
        return value

    def unary(self) -> sp.Expr:
        if self.at("-"):
            self.take()
            return -self.term()
        if self.at("+"):
            self.take()
        return self.term()

    def term(self) -> sp.Expr:
        """term := power (('*' | '/' | implicit) power)*"""
        value = self.power()
        while True:
            t = self.peek()
            if t is None:
                return value
            if t[1] in ("*", "/"):
                self.take()
                rhs = self.unary_power()
                if t[1] == "*":
                    value = value * rhs
                else:
                    if rhs == 0:
                        raise ParseError("division by zero")
                    value = value / rhs
            elif self.starts_atom(t):
                value = value * self.power()  # implicit multiplication: 2x, 3\sqrt{2}, (a)(b)
            else:
                return value

    def unary_power(self) -> sp.Expr:
        if self.at("-"):
            self.take()
            return -self.power()
        return self.power()

    def starts_atom(self, t: tuple[str, str]) -> bool:
        kind, text = t
        if kind in ("num", "name"):
            return True
        if kind == "cmd":
            return text[1:] not in _REL_CMDS and text not in ("\\cup", "\\}", "\\pm", "\\mp", "\\in")
        return text in ("(", "{")  # not "|": inside |x| a bar closes, it does not multiply

    def power(self) -> sp.Expr:
        """power := postfix ('^' exponent)?, right-associative"""
        base = self.postfix()
        if self.at("^"):
            self.take()
            self.enter()
            if self.at("-"):
                self.take()
                exp = -self.power_operand()
            else:
                exp = self.power_operand()
            if self.at("^"):  # a^b^c = a^(b^c)
                self.take()
                inner = self.power_operand()
                _check_pow(exp, inner)
                exp = exp**inner
            self.depth -= 1
            _check_pow(base, exp)
            return base**exp
        return base

    def power_operand(self) -> sp.Expr:
        """An exponent: a braced group, or a single token (x^2, x^n, e^\\pi)."""
        t = self.peek()
        if t is not None and t[0] == "num" and not self.at("{"):
            self.take()
            return self.number(t[1])
        return self.postfix()

    def postfix(self) -> sp.Expr:
        value = self.atom()
        while self.at("!") or self.at("'"):
            if self.take()[1] == "'":
                raise ParseError("derivative marks are not supported")
            if not (value.is_Integer and 0 <= value <= MAX_FACTORIAL):
                raise ParseError("factorial of a non-integer or too large number")
            value = sp.factorial(value)
        return value

    def number(self, text: str) -> sp.Expr:
        if len(text) > MAX_DIGITS:
            raise ParseError("number literal too long")
        if "." in text:
            whole, frac = text.split(".")
            # exact decimal: 0.1 is 1/10, so decimals compare exactly with fractions
            return sp.Rational(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
        return sp.Integer(int(text))

    def group(self, close: str) -> sp.Expr:
        self.enter()
        value = self.expr()
        self.expect(close)
        self.depth -= 1
        return value

    def arg(self) -> sp.Expr:
        """A command argument: {expr} or a single token (\\frac12, \\sqrt2, \\sqrt x)."""
        if self.at("{"):
            self.take()
            return self.group("}")
        t = self.peek()
        if t is not None and t[0] == "num":
            if len(t[1]) > 1:
                # as in TeX, an unbraced argument is one character: \frac12 = 1/2, \sqrt23 = 3 sqrt(2)
                self.toks[self.i] = ("num", t[1][1:])
                return self.number(t[1][0]) if t[1][0] != "." else self._bad_arg()
            self.take()
            return self.number(t[1])
        return self.atom()

    def mixed_fraction(self) -> sp.Expr | None:
        """After a whole number, the proper fraction of a mixed number (3\\frac{1}{2}, 3 1/2) or None.

        An improper one (11\\frac{6}{6}, 11 6/6) is refused: it is neither a mixed number nor a
        product anyone writes, so it is not guessed at as 12 or 11.
        """
        save = self.i
        t = self.peek()
        if t[1] == "\\frac":
            self.take()
            num, den = self.frac_args()
        elif t[0] == "num" and "." not in t[1] and self.at_offset(1, "/") and (self.peek(2) or ("", ""))[0] == "num":
            num = self.number(self.take()[1])
            self.take()  # "/"
            den = self.number(self.take()[1])
        else:
            return None
        if not (num.is_Integer and den.is_Integer and den > 0 and num >= 0):
            self.i = save
            return None
        if num >= den:
            raise ParseError("a whole number before an improper fraction (11 6/6) is not a mixed number")
        return num / den

    def at_offset(self, k: int, text: str) -> bool:
        t = self.peek(k)
        return t is not None and t[1] == text

    def _bad_arg(self):
        raise ParseError("a decimal point cannot start an unbraced argument")

    def frac_args(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg(), self.arg()

    def atom(self) -> sp.Expr:
        t = self.take()
        kind, text = t
        if kind == "num":
            value = self.number(text)
            nxt = self.peek()
            if nxt is not None and value.is_Integer and "." not in text:
                fraction = self.mixed_fraction()
                if fraction is not None:
                    return value + fraction
            if nxt is not None and nxt[0] == "name" and nxt[1] in "eE":
                after = self.peek(1)
                # scientific notation 1.5e3 / 2E-4, written without spaces
                if after is not None and (after[0] == "num" or (after[1] in "+-" and (self.peek(2) or ("", ""))[0] == "num")):
                    self.take()
                    sign = 1
                    if self.peek()[1] in "+-":
                        sign = -1 if self.take()[1] == "-" else 1
                    exp = sign * int(self.take()[1].split(".")[0])
                    _check_pow(sp.Integer(10), sp.Integer(exp))
                    return value * sp.Integer(10) ** exp
            return value
        if kind == "name":
            if text == "e":
                return sp.E
            if text == "i":
                return sp.I
            name = text
            if self.at("_"):  # x_1, a_{n}
                self.take()
                sub = self.take()
                if sub[1] == "{":
                    parts = []
                    while not self.at("}"):
                        parts.append(self.take()[1])
                        if len(parts) > 20:
                            raise ParseError("subscript too long")
                    self.take()
                    sub = ("", "".join(parts))
                name = f"{text}_{sub[1]}"
            return sp.Symbol(name)
        if kind == "op":
            if text == "(":
                return self.group(")")
            if text == "{":
                return self.group("}")
            if text == "[":
                return self.group("]")
            if text == "|":
                self.enter()
                value = self.expr()
                self.expect("|")
                self.depth -= 1
                return sp.Abs(value)
            raise ParseError(f"unexpected {text!r}")
        # commands
        name = text[1:]
        if name in ("frac", "dfrac", "tfrac"):
            num, den = self.frac_args()
            if den == 0:
                raise ParseError("division by zero")
            return num / den
        if name == "sqrt":
            if self.at("["):
                self.take()
                n = self.group("]")
                return sp.root(self.arg(), n)
            return sp.sqrt(self.arg())
        if name == "binom":
            n, k = self.arg(), self.arg()
            if not (n.is_Integer and k.is_Integer and 0 <= n <= MAX_FACTORIAL):
                raise ParseError("binomial of non-integers or too large numbers")
            return sp.binomial(n, k)
        if name == "pi":
            return sp.pi
        if name in ("infty", "infinity"):
            return sp.oo
        if name in ("mathbb", "mathcal"):
            return sp.Symbol(f"{name}_{self.arg()}")
        if name in _GREEK:
            return sp.Symbol(name)
        if name in _FUNCS:
            return self.function(name)
        if name in ("sum", "prod"):
            return self.sum_or_product(name)
        if name == "int":
            return self.integral()
        raise ParseError(f"unsupported command \\{name}")

    def bound_variable(self) -> sp.Symbol:
        t = self.take()
        if t[0] == "name" or (t[0] == "cmd" and t[1][1:] in _GREEK):
            return sp.Symbol(t[1].lstrip("\\"))
        raise ParseError(f"expected a variable, got {t[1]!r}")

    def sum_or_product(self, name: str) -> sp.Expr:
        """\\sum_{k=a}^{b} f and \\prod_{k=a}^{b} f: the body binds like a function argument (a term)."""
        if self.at("\\limits"):
            self.take()
        self.expect("_")
        self.expect("{")
        var = self.bound_variable()
        self.expect("=")
        low = self.group("}")
        self.expect("^")
        high = self.power_operand()
        self.enter()
        body = self.term()
        self.depth -= 1
        kind = sp.Sum if name == "sum" else sp.Product
        value = kind(body, (var, low, high))
        if low.is_Integer and high.is_Integer and int(high) - int(low) < MAX_TERMS:
            terms = [body.xreplace({var: sp.Integer(k)}) for k in range(int(low), int(high) + 1)]
            return sp.Add(*terms) if name == "sum" else sp.Mul(*terms)
        if name == "sum" and body.is_polynomial(var):
            return value.doit()  # closed form: \\sum_{k=1}^{n} k = n(n+1)/2
        return value  # evaluated numerically when compared

    def integral(self) -> sp.Expr:
        """A definite integral \\int_a^b f dx (or d x, \\mathrm{d}x): exact for polynomials, else numeric."""
        if self.at("\\limits"):
            self.take()
        self.expect("_")
        low = self.power_operand()
        self.expect("^")
        high = self.power_operand()
        # the integrand runs up to the differential "d x" at its own bracket level
        depth, j = 0, self.i
        while j + 1 < len(self.toks):
            text = self.toks[j][1]
            if text in ("(", "{", "[", "\\{"):
                depth += 1
            elif text in (")", "}", "]", "\\}"):
                depth -= 1
            elif depth == 0 and self.toks[j] == ("name", "d") and self.toks[j + 1][0] == "name":
                break
            j += 1
        else:
            raise ParseError("integral without a differential (dx)")
        inner = _Parser(self.toks[self.i : j])
        inner.depth = self.depth
        body = inner.expr()
        if inner.peek() is not None:
            raise ParseError(f"unexpected {inner.peek()[1]!r} in an integrand")
        var = sp.Symbol(self.toks[j + 1][1])
        self.i = j + 2
        value = sp.Integral(body, (var, low, high))
        return value.doit() if body.is_polynomial(var) else value

    def function(self, name: str) -> sp.Expr:
        base = None
        if name == "log" and self.at("_"):
            self.take()
            base = self.arg()
        power = None
        if self.at("^"):  # \sin^2 x
            self.take()
            power = self.power_operand()
        self.enter()
        if self.at("(") or self.at("{"):
            arg = self.atom()
        else:
            arg = self.power()  # \sin x, \ln 2
        self.depth -= 1
        if base is not None:
            value = sp.log(arg, base)
        else:
            value = _FUNCS[name](arg)
        if power is not None:
            _check_pow(value, power)
            value = value**power
        return value


def parse_expr(s: str) -> sp.Expr:
    """One expression; the whole string must be consumed."""
    if not s.strip():
        raise ParseError("empty expression")
    p = _Parser(tokenize(s))
    value = p.expr()
    if p.peek() is not None:
        raise ParseError(f"unexpected {p.peek()[1]!r}")
    return value


def _split_top(s: str, seps: tuple[str, ...]) -> list[str]:
    """Split at separators that are outside any (), [], {} or \\{ \\}."""
    return _split_top_kept(s, seps)[0]


def _split_top_kept(s: str, seps: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(parts, the separator found between each two parts), splitting as _split_top does; a separator
    that is the prefix of another must come after it in seps ('<=' before '<')."""
    parts, found, depth, start, i = [], [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            sep = next((x for x in seps if s.startswith(x, i)), None)
            # a command separator (\cup) must not be the prefix of a longer command
            if sep is not None and not (sep[-1].isalpha() and s[i + len(sep) : i + len(sep) + 1].isalpha()):
                parts.append(s[start:i])
                found.append(sep)
                i += len(sep)
                start = i
                continue
        i += 1
    parts.append(s[start:])
    return parts, found


def _outer_pair(s: str) -> bool:
    """True when s[0] is an opening bracket whose match (any kind: intervals mix them) is s[-1]."""
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


def max_nesting(s: str) -> int:
    """Deepest bracket nesting in s: a cheap pre-check before parsing."""
    depth = best = 0
    for c in s:
        if c in "([{":
            depth += 1
            best = max(best, depth)
        elif c in ")]}":
            depth -= 1
    return best


def parse_answer(s: str):
    """An answer string (already normalised) -> sympy expression or container value."""
    s = s.strip()
    if not s:
        raise ParseError("empty answer")
    if max_nesting(s) > MAX_BRACKETS:
        raise ParseError("too deeply nested")
    m = re.fullmatch(r"\\begin\{([pbvB]?matrix)\}(.*)\\end\{\1\}", s, re.S)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = tuple(tuple(parse_expr(c) for c in r.split("&")) for r in rows)
        if len({len(r) for r in cells}) != 1:
            raise ParseError("ragged matrix")
        return Matrix(cells)
    if s.count("\\pm") + s.count("\\mp") > 3:
        raise ParseError("too many \\pm signs")  # each one doubles the work
    for pm in ("\\pm", "\\mp"):
        p = s.find(pm)
        if p >= 0 and "," not in s:
            # a \pm b stands for the two answers a + b and a - b (unordered)
            signs = ("+", "-") if pm == "\\pm" else ("-", "+")
            return Seq(tuple(parse_answer(s[:p] + sign + s[p + len(pm):]) for sign in signs), "", "")
    parts = _split_top(s, ("\\cup",))
    if len(parts) > 1:
        return Union(tuple(parse_answer(p) for p in parts))
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2].strip()
        return SetOf(tuple(parse_answer(p) for p in _split_top(inner, (",", ";"))) if inner else ())
    if s[0] == "{" and s[-1] == "}" and _outer_pair(s):
        items = _split_top(s[1:-1], (",", ";"))
        if len(items) > 1:  # {-2021, 2021}: a set written without its backslashes ({5} is a group)
            return SetOf(tuple(parse_answer(p) for p in items))
    if s[0] in "([" and s[-1] in ")]" and _outer_pair(s):
        items = _split_top(s[1:-1], (",", ";"))
        if len(items) > 1:
            return Seq(tuple(parse_answer(p) for p in items), s[0], s[-1])
    # at the top level ";" parts solutions and "," their components: p=5,q=2; p=7,q=2
    for seps in ((";",), (",",)):
        items = _split_top(s, seps)
        if len(items) > 1:
            return Seq(tuple(parse_answer(p) for p in items), "", "")
    relation = _relation(s)
    if relation is not None:
        return relation
    return _ratio_or_expr(s)


_REL_OPS = ("<=", ">=", "!=", "≈", "=", "<", ">")  # longest first


def _relation_chain(s: str) -> tuple[list[str], list[str]]:
    """The sides and the relation signs between them, at the top bracket level: 'a = b < c' ->
    (['a ', ' b ', ' c'], ['=', '<'])."""
    for cmd, op in _REL_CMDS.items():
        s = re.sub(r"\\" + cmd + r"(?![A-Za-z])", op, s)
    s = re.sub(r"\\approx(?![A-Za-z])", "≈", s)
    return _split_top_kept(s, _REL_OPS)


def is_name(side: str) -> bool:
    """Whether one side of an equation names a quantity: written without digits (subscripts aside) or a
    leading sign: x, f(x), |AB|, \\frac{NO}{BO}, (p,q), V_1:V_2 -- but not 2x+4y-3 or a^2+b."""
    t = re.sub(r"_\{[^{}]*\}|_\w", "", side.strip())
    return bool(re.search(r"[A-Za-z]", t)) and not re.search(r"\d", t) and t[:1] not in "+-" and "\\infty" not in t


def _relation(s: str):
    """A relation or a chain of them, or None when s has no relation sign.

    x = 2+3 = 5 is the equation x = 5 (working that ends in a value is read as that value; with no
    name on the left, 1+1 = 2 is 2); an approximation ends the exact part (x = 1/3 \\approx 0.33 is
    x = 1/3, x \\approx 11 is x = 11); a < x <= b is the interval (a, b].
    """
    sides, ops = _relation_chain(s)
    if not ops:
        return None
    if not sides[0].strip() and ops[0] in ("=", "≈"):  # "= 5", "\\approx 11": the value itself
        sides, ops = sides[1:], ops[1:]
        if not ops:
            return parse_answer(sides[0])
    if any(not side.strip() for side in sides):
        raise ParseError("a relation with an empty side")
    if all(op in ("=", "≈") for op in ops):
        kept = sides[: ops.index("≈") + 1] if "≈" in ops else sides
        if len(kept) == 1 and is_name(kept[0]):
            kept = sides[:2]
        if len(kept) == 1:
            return parse_answer(kept[0])
        first, last = kept[0], kept[-1]
        if is_name(first):
            return Relation("=", parse_answer(first), parse_answer(last), named=True)
        rhs = parse_answer(last)
        if len(kept) > 2:
            return rhs
        lhs = parse_answer(first)
        if not (isinstance(lhs, sp.Basic) and isinstance(rhs, sp.Basic)):
            raise ParseError("an equation between containers")
        return rhs if not (lhs.free_symbols or rhs.free_symbols) else Relation("=", lhs, rhs)
    if len(ops) == 1:
        lhs, rhs = parse_expr(sides[0]), parse_expr(sides[1])
        if ops[0] in (">", ">="):
            return Relation(ops[0].replace(">", "<"), rhs, lhs)
        return Relation(ops[0], lhs, rhs)
    if len(ops) == 2 and is_name(sides[1]) and ({*ops} <= {"<", "<="} or {*ops} <= {">", ">="}):
        up = ops[0] in ("<", "<=")
        lo, hi = (sides[0], sides[2]) if up else (sides[2], sides[0])
        lo_op, hi_op = (ops[0], ops[1]) if up else (ops[1], ops[0])
        return Seq((parse_expr(lo), parse_expr(hi)), "[" if "=" in lo_op else "(", "]" if "=" in hi_op else ")",
                   interval=True)
    raise ParseError("a chain of relations other than a = b = c or a < x < b")


def _ratio_or_expr(s: str) -> sp.Expr:
    """An expression, or a ratio a:b read as the number a/b (7:32 is 7/32; 12:00 is refused)."""
    parts = _split_top(s, (":",))
    if len(parts) == 1:
        return parse_expr(s)
    if len(parts) > 2:
        raise ParseError("a ratio of more than two parts")
    a, b = parse_expr(parts[0]), parse_expr(parts[1])
    if b == 0:
        raise ParseError("a ratio with a zero part")
    return a / b

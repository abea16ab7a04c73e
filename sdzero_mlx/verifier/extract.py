"""Final-answer extraction from model text and string-level normalisation of answers.

Everything here is plain string work that runs in linear (or, on the short extracted answer,
small polynomial) time, so it is safe to run in the caller's process. Parsing and symbolic
comparison happen in `parse` / `equivalence`, inside a killable worker.

Extraction order (the first that matches wins):
  1. the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces allowed), with the boxes
     right before it that only separators part from it (``\\boxed{1}, \\boxed{2}`` is the list 1, 2);
  2. GSM8K's last ``#### 42``;
  3. the last "The answer is ..." / "Final answer: ...";
  4. optionally the last number in the text (off by default: with boxed-style prompts a number
     left in the reasoning is not an answer).
"""

from __future__ import annotations

import re

BOX_COMMANDS = ("\\boxed", "\\fbox")
MAX_BOXES = 100  # boxes joined into one answer at most: bounds the backward walk on hostile text
_ANSWER_PHRASES = ("final answer is", "final answer:", "final answer", "the answer is", "answer is", "answer:")
_MATH_DELIMITERS = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}  # opening -> closing, longest first
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_BARE_ARGUMENT = re.compile(r"[^\s$]+")  # "\\boxed 5": the next whitespace-delimited token


def matching_brace(s: str, start: int) -> int:
    """Index of the brace closing the one at s[start], or -1 if it never closes."""
    depth = 0
    i = start
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            i += 2  # escaped braces (\{ \}) are set delimiters, not grouping
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def box_argument_start(text: str) -> int | None:
    """Index of what follows the last \\boxed / \\fbox and its spaces (its '{' when braced); None without one."""
    pos = max(text.rfind(cmd) for cmd in BOX_COMMANDS)
    if pos < 0:
        return None
    cmd = next(c for c in BOX_COMMANDS if text.startswith(c, pos))
    i = pos + len(cmd)
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _stripped(text: str, start: int, end: int) -> tuple[int, int] | None:
    """[start, end) narrowed to its text without surrounding whitespace; None when nothing is left."""
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    start, end = start + lead, start + len(piece.rstrip())
    return (start, end) if end > start else None


def _box_content(text: str, cmd_pos: int, braced_only: bool) -> tuple[int, int, int] | None:
    """(content start, content end, end of the box) of the box command at cmd_pos; None if unclosed."""
    cmd = next(c for c in BOX_COMMANDS if text.startswith(c, cmd_pos))
    i = cmd_pos + len(cmd)
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        end = matching_brace(text, i)
        return None if end < 0 else (i + 1, end, end + 1)
    if braced_only:
        return None
    m = _BARE_ARGUMENT.match(text, i)
    return (m.start(), m.end(), m.end()) if m else None


def _last_box_command(text: str, before: int) -> int | None:
    pos = max(text.rfind(cmd, 0, before) for cmd in BOX_COMMANDS)
    return None if pos < 0 else pos


def _final_boxes(text: str) -> list[tuple[int, int]] | None:
    """Content spans (unstripped) of the boxes that make the final answer; None without a closed last box.

    The last box, and the boxes right before it that only separators part from it (spaces, commas,
    "and", "or", \\quad, \\text{ and }, math delimiters, the name of the next value "x_2 =", all on
    one line): `\\boxed{1}, \\boxed{2}` is one answer, two items. A box parted from the next by words or a line break is reasoning, and an
    unclosed last box (a truncated generation) means no answer: an earlier box is never graded as
    the final one.
    """
    pos = _last_box_command(text, len(text))
    if pos is None:
        return None
    box = _box_content(text, pos, braced_only=False)
    if box is None:
        return None
    spans = [box[:2]]
    while len(spans) < MAX_BOXES:
        prev = _last_box_command(text, pos)
        box = None if prev is None else _box_content(text, prev, braced_only=True)
        if box is None or box[2] > pos or not _BOX_GAP.fullmatch(text, box[2], pos):
            return spans[::-1]
        spans.append(box[:2])
        pos = prev
    return spans[::-1]


# what may part boxes that together make one answer (see _final_boxes)
_BOX_GAP = re.compile(r"(?:[ \t,;&$]|\\[()\[\]]|\\q?quad|\\[,;: !]|\band\b|\bor\b"
                      r"|\\text[ \t]*\{[ \t]*(?:and|or|,)?[ \t]*\}|[A-Za-z](?:_\{?\w+\}?)?[ \t]*=)*")


def _joined(text: str, spans: list[tuple[int, int]]) -> str:
    """The answer written in the spans: one span's text, or several boxes' contents as a list."""
    return ", ".join(text[a:b] for a, b in spans)


def _box_spans(text: str) -> list[tuple[int, int]] | None:
    """Stripped, non-empty content spans of the final boxes ([] when the last box is empty); a box
    repeated with the same content counts once."""
    boxes = _final_boxes(text)
    if boxes is None:
        return None
    spans = [s for s in (_stripped(text, a, b) for a, b in boxes) if s is not None]
    if len({text[a:b] for a, b in spans}) == 1:
        spans = spans[-1:]
    return spans


def boxed_answer(text: str) -> str | None:
    """The final answer written in boxes (several boxes as a comma list); None if absent or left unclosed."""
    spans = _box_spans(text)
    return None if spans is None else _joined(text, spans)


def _after_phrase(text: str) -> tuple[int, int] | None:
    """Span of the answer following the last 'the answer is' / 'final answer' phrase."""
    low = text.lower()
    best, best_end = -1, -1
    for phrase in _ANSWER_PHRASES:
        p = low.rfind(phrase)
        if p > best:
            best, best_end = p, p + len(phrase)
    if best < 0:
        return None
    begin = best_end
    while begin < len(text) and text[begin] in " :*\t":
        begin += 1
    rest = text[begin:]
    delim = next((d for d in _MATH_DELIMITERS if rest.startswith(d)), None)
    if delim is not None:
        # "$...$", "$$...$$", "\\[...\\]", "\\(...\\)": take the math span, across lines
        end = rest.find(_MATH_DELIMITERS[delim], len(delim))
        if end > 0:
            return begin + len(delim), begin + end  # unstripped, as before
    # up to the end of the line or the sentence (a period followed by a space or the end)
    line = rest.split("\n", 1)[0]
    m = re.search(r"\.(\s|$)", line)
    ans = line[: m.start()] if m else line
    for tail in (" i hope it is correct", ". i hope it is correct"):
        if ans.lower().endswith(tail):
            ans = ans[: -len(tail)]
    return _stripped(text, begin, begin + len(ans))


def _answer_spans(text: str, last_number_fallback: bool) -> list[tuple[int, int]] | None:
    """Spans of the final answer: one, or one per box when several boxes make the answer."""
    boxes = _box_spans(text)
    if boxes is not None:
        return boxes or None
    p = text.rfind("####")
    if p >= 0:
        tail = text[p + 4:]
        line_end = text.find("\n", len(text) - len(tail.lstrip()))  # the first line after the marker's blank lines
        span = _stripped(text, p + 4, len(text) if line_end < 0 else line_end)
        if span is not None:
            return [span]
    phrase = _after_phrase(text)
    if phrase is not None:
        start, end = phrase
        return [phrase] if text[start:end] else None
    if last_number_fallback:
        # scan only the tail: the last number is near the end, and this bounds the regex work
        offset = max(0, len(text) - 2000)
        last = None
        for last in _NUMBER.finditer(text, offset):
            pass
        if last is not None:
            number = last.group(0).rstrip(",")
            return [(last.start(), last.start() + len(number))]
    return None


def answer_span(text: str, last_number_fallback: bool = False) -> tuple[int, int] | None:
    """Character span [start, end) in `text` of the final answer `extract_answer` returns, or None
    (several boxes: from the first box's content to the last's).

    Example: answer_span("so Answer: 12.") == (11, 13)
    """
    spans = _answer_spans(text, last_number_fallback)
    return None if spans is None else (spans[0][0], spans[-1][1])


def extract_answer(text: str, last_number_fallback: bool = False) -> str | None:
    """The final answer written in model text, or None. See the module docstring for the order."""
    spans = _answer_spans(text, last_number_fallback)
    return None if spans is None else _joined(text, spans) or None


def extract_gold(answer: str) -> str:
    """The gold answer proper: unwrap \\boxed{} (several boxes: a list) or a GSM8K '#### x' suffix if present."""
    boxed = boxed_answer(answer)
    if boxed:
        return boxed
    p = answer.rfind("####")
    if p >= 0 and answer[p + 4 :].strip():
        return answer[p + 4 :].strip()
    return answer.strip()


def _unwrap_command(s: str, names: tuple[str, ...]) -> str:
    """Replace \\name{content} by content for each listed command (content may nest braces)."""
    for name in names:
        cmd = "\\" + name
        while True:
            p = s.find(cmd + "{")
            if p < 0:
                # also "\text {x}" with a space before the brace
                m = re.search(re.escape(cmd) + r"\s+\{", s)
                if not m:
                    break
                p, brace = m.start(), m.end() - 1
            else:
                brace = p + len(cmd)
            end = matching_brace(s, brace)
            if end < 0:
                break
            s = s[:p] + s[brace + 1 : end] + s[end + 1 :]
    return s


_REPLACEMENTS = (
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"),
    ("\\displaystyle", ""), ("\\left", ""), ("\\right", ""),
    ("\\bigl", ""), ("\\bigr", ""), ("\\Bigl", ""), ("\\Bigr", ""), ("\\big", ""), ("\\Big", ""),
    ("\\!", ""), ("\\,", " "), ("\\;", " "), ("\\:", " "), ("\\ ", " "), ("~", " "),
    ("\\qquad", " "), ("\\quad", " "), ("{,}", ""),
    ("\\cdot", "*"), ("\\times", "*"), ("\\ast", "*"), ("\\div", "/"),
    ("\\leqslant", "\\le"), ("\\geqslant", "\\ge"), ("\\leq", "\\le"), ("\\geq", "\\ge"),
    ("\\neq", "\\ne"), ("\\emptyset", "\\{\\}"), ("\\varnothing", "\\{\\}"),
    ("\\dots", ""), ("\\ldots", ""), ("\\cdots", ""),
    ("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"), ("–", "-"), ("π", "\\pi"), ("∞", "\\infty"),
    ("≤", "\\le"), ("≥", "\\ge"), ("√", "\\sqrt"), ("∪", "\\cup"), ("±", "\\pm"), ("≈", "\\approx"),
)
_TEXT_COMMANDS = ("text", "textnormal", "textup", "textsf", "textbf", "textit", "textrm", "mathrm", "mathbf", "mbox",
                  "operatorname", "hbox")
# Degrees and the percent sign are both dropped; percent is reported so the policy can apply.
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree|\s*\bdegrees?\b")
# The words keep the percent too: "28 pct", "28 percentage", a glued "9percent".
_PERCENT = re.compile(r"\\%|%|\s*(?:(?<=\d)|\b)(?:percentage|percent|per cent|pct)\b")
# Thousands groups; a first group of 0 is no thousands number ("0,111"), and inside brackets a
# comma parts items (see _merge_thousands).
_THOUSANDS = re.compile(r"(?<![\d.])[1-9]\d{0,2}(?:,\d{3})+(?![\d,])(?:\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"(?<![\d.])[1-9]\d{0,2}(?: \d{3})+(?![\d/])")
# TeX's own thousands marks, spaced or not: 14{,}916, 14 {, }916, 32,\! 349 (the \! cancels the comma's space)
_GROUP_MARK = re.compile(r"(?<=\d)\s*(?:\{\s*,\s*\}|,\s*\\!)\s*(?=\d)")
# A number followed only by words (units or "apples"): keep the number.
_TRAILING_WORDS = re.compile(r"(?P<num>.*?(?:\d|\}|\\pi))\s*(?:[A-Za-z]{2,}|[A-Za-z]+ [A-Za-z ]+)\.?(?:\s*\^\s*\{?[23]\}?)?")
# A plain number followed by a unit, possibly raised to a power: 12\text{ m}^3, 5 \mathrm{cm}^{2},
# 12 m^2, 9.8 \text{m/s}^2. A unit in \text{} / \mathrm{} may be any word; a bare unit must be one of
# the common one-letter SI symbols (a bare "12 x^2" is an expression, not a unit).
_NUM = r"(?P<num>-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?|-?\\frac\{\d+\}\{\d+\})"
_UNIT_POWER = r"(?:\s*\^\s*(?:\{\s*-?\d\s*\}|-?\d))?"
_TEXT_UNIT = re.compile(
    _NUM + r"\s*\\(?:text|textnormal|textup|textsf|mathrm|textrm|mbox|rm|operatorname)\s*\{\s*[A-Za-z][A-Za-z/. ^0-9{}-]*\}" + _UNIT_POWER
    + r"(?:\s*/\s*\\(?:text|mathrm)\s*\{\s*[A-Za-z]+\s*\}" + _UNIT_POWER + r")?\.?"
)
_BARE_UNIT = re.compile(_NUM + r"\s*(?:[mgsLlJNWVKh]|m/s)" + _UNIT_POWER + r"\.?")
# 0.1\overline{6} = 1/6: a repeating decimal, written as an exact fraction for the parser
_REPEATING = re.compile(r"(\d*)\.(\d*)\\overline\{(\d{1,20})\}")


def _repeating_to_fraction(m: re.Match) -> str:
    whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
    # x = whole.fixed(rep)(rep)... => x = (whole fixed rep - whole fixed) / (10^len(fixed) (10^len(rep) - 1))
    num = int(whole + fixed + rep) - int(whole + fixed)
    den = (10 ** len(rep) - 1) * 10 ** len(fixed)
    return f"({num}/{den})"
# "x \in [1, 2)" is the set itself (an equation "x = 5" stays a relation, read by the parser)
_WORD_NAMED = re.compile(r"(?P<name>[^=<>]+?)\s*=\s*(?P<rhs>[^=<>]+)")
_MEMBER_OF = re.compile(r"^\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\\[a-z]+)\s*\\in\s*(?P<rhs>[^=]+)$")


def _container_depths(s: str) -> list[int]:
    """For each index of s, how many (), [], \\{\\} and bare {} (a set or group) enclose it; the braces
    of a command's argument (\\frac{1,000}{3}, x^{2}) do not count."""
    depths, stack, depth = [], [], 0
    for i, c in enumerate(s):
        if c in "([{":
            counts = True
            if c == "{" and s[i - 1 : i] != "\\":
                j = i - 1
                while j >= 0 and s[j] == " ":
                    j -= 1
                if j >= 0 and s[j] in "^_}":
                    counts = False
                elif j >= 0 and s[j].isalpha():
                    while j >= 0 and s[j].isalpha():
                        j -= 1
                    counts = not (j >= 0 and s[j] == "\\")
            stack.append(counts)
            depth += counts
        elif c in ")]}" and stack:
            depth -= stack.pop()
        depths.append(depth)
    return depths


def _merge_thousands(s: str) -> str:
    """1,000,000 -> 1000000, but only outside brackets: (1,100) is a pair and (2,12) \\cup (12,102) two
    intervals, never the numbers 1100 or 12102."""
    if "," not in s:
        return s
    depths = _container_depths(s)
    return _THOUSANDS.sub(lambda m: m.group(0).replace(",", "") if depths[m.start()] == 0 else m.group(0), s)


def normalize(answer: str, bare_units: bool = False) -> tuple[str, bool]:
    """Canonical string form of an answer and whether it carried a percent sign.

    `bare_units`: also drop a one-letter unit written without \\text ("12 m^2" -> "12"); only safe
    for a model's answer to a purely numeric gold, where "2 s" cannot mean the expression 2s.

    Example: normalize("\\$1,000.") == ("1000", False); normalize("50\\%") == ("50", True)
    """
    s = answer.strip()
    if "\\begin" not in s:  # outside a matrix "\\\\frac" is a doubly escaped command (JSON text), not a row break
        s = re.sub(r"\\\\(?=[A-Za-z])", lambda m: "\\", s)
    # math delimiters around the whole answer
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    inner = boxed_answer(s)
    if inner is not None and inner.strip():
        s = inner.strip()
    s = _GROUP_MARK.sub("", s)
    s = s.replace("\\\\", "\x00")  # protect matrix row breaks from the "\\ " (space) rule
    for old, new in _REPLACEMENTS:
        s = s.replace(old, new)
    s = s.replace("\x00", "\\\\")
    s = re.sub(r"\s+", " ", s).strip().rstrip(",;").strip()  # "\\frac13,": a trailing comma parts nothing
    s, n_pct = _PERCENT.subn("", s)  # before units: "5 \\text{ percent}" is a percent, not a unit
    m = _WORD_NAMED.fullmatch(s)
    if m and is_text(m.group("name")) and not re.search(r"\d", m.group("name")):
        s = m.group("rhs").strip()  # "\\text{Area} = 12": a name in words is no unknown of an equation
    m = _TEXT_UNIT.fullmatch(s)
    if m:
        s = m.group("num")
    s = _unwrap_command(s, _TEXT_COMMANDS)
    s = s.replace("\\$", "").replace("$", "")
    s = _REPEATING.sub(_repeating_to_fraction, s)
    # plain-text spellings of pi and sqrt, as written outside LaTeX
    s = re.sub(r"(?<![\\A-Za-z])(pi|sqrt)(?![A-Za-z])", lambda m: "\\" + m.group(1), s)
    s = re.sub(r"\\mathbb\s*\{?R\}?", lambda m: "(-\\infty,\\infty)", s)
    s = _DEGREES.sub("", s)
    s = re.sub(r"\s+(?:and|or)\s+|(?<=[)\]])\s*(?:and|or)\s*(?=[(\[])", ", ", s)  # also "(11,7)or(7,11)"
    s = _merge_thousands(s)
    s = _SPACED_THOUSANDS.sub(lambda m: m.group(0).replace(" ", ""), s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".,;").strip()
    m = _BARE_UNIT.fullmatch(s) if bare_units else None
    if m:
        s = m.group("num")
    if not s.startswith("\\") or s.startswith("\\sqrt") or s.startswith("\\frac"):
        m = _TRAILING_WORDS.fullmatch(s)
        # only after a plain number (commands such as \frac allowed): "2x cm" and "2 pi" stay
        if m and re.search(r"\d", m.group("num")) and not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", m.group("num"))):
            if not re.match(r"\s*(?:pi|sqrt|e|i)\b", s[m.end("num"):]):
                s = m.group("num").strip()
    m = _MEMBER_OF.match(s)
    if m and not re.search(r"[<>]|\\le|\\ge", m.group("rhs")):
        s = m.group("rhs").strip()
    if s.startswith("+") and len(s) > 1:
        s = s[1:]
    return s, n_pct > 0


_CHOICE = re.compile(r"^\(?([A-Ja-j])\)?(?:[\s.:)].*)?$", re.S)


def numeric_gold(normalized_gold: str) -> bool:
    """Whether a normalised gold answer is free of letters (so a letter after a number is a unit)."""
    return not re.search(r"[A-Za-z]", re.sub(r"\\(?:frac|sqrt|pi)", "", normalized_gold))


def choice_letter(s: str) -> str | None:
    """The multiple-choice letter of an answer such as 'B', '(b)', 'B) 42'; None otherwise."""
    m = _CHOICE.match(s.strip())
    return m.group(1).upper() if m else None


def plain_text(s: str) -> str:
    """Case- and space-insensitive form used when an answer is not mathematics."""
    return re.sub(r"[\s{}]", "", s).lower().strip(".")


_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "frac", "arcsin", "arccos",
               "arctan", "sinh", "cosh", "tanh", "infty", "pmatrix", "bmatrix", "matrix", "begin", "end"}


def is_text(s: str) -> bool:
    """Whether an answer is words (a name, yes/no), which must not be read as a product of symbols."""
    s = re.sub(r"_\{[^{}]*\}", "", s)  # a subscript is a label: S_{ABCD} is a symbol
    words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{3,}", s)
    return s.strip().lower() == "no" or any(w.lower() not in _MATH_WORDS for w in words)

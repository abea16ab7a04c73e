"""The demo's synthetic task: seeded multi-step running-total arithmetic with a verifiable boxed answer.

A problem is a chain of additions and subtractions evaluated left to right, e.g.

    problem:  "Compute 47+8-5+9."
    solution: "=55-5+9\n=50+9\n=59\n\\boxed{59}"
    answer:   "59"

Choices and reasons:
- Only + and -: left-to-right evaluation then equals ordinary precedence, so the problem text is also a
  valid expression and the project's verifier grades against a plain integer.
- A running total with short operands: each step is one local fact (a two-digit total plus a one-digit
  operand by default) that a sub-million-parameter model can learn in minutes, while a chain of several
  steps leaves room for a local mistake (a wrong carry or borrow in one line) that propagates to the
  answer. Accuracy is roughly (per-step accuracy) ** steps, so `min_steps`/`max_steps` is the main knob.
- Rewrite scratchpad: each line is the previous expression with its first operation done ("=55-5+9"),
  so every step reads its two operands at the start of the line above and copies the rest of that line.
  Both are local patterns a tiny transformer learns quickly; the alternative "a+b=c" lines make it find
  the k-th operand in the prompt, which it learns far more slowly (measured: see pretrain.py).
- No spaces inside the arithmetic: every space is a token of its own with this tokenizer, and short
  sequences are what makes CPU pretraining affordable (about 50 tokens per example, prompt included).
- Running totals never go negative (a subtraction that would is turned into an addition), so every
  number is a plain non-negative integer and digits are tokens of their own.
- Problems are generated as one seeded stream of distinct problem texts; `make_splits` deals the first
  items to "test", then "phase2", "phase1", "pretrain", so the evaluation split does not depend on how
  much pretraining data is requested, and all splits are disjoint by problem text.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

SPLIT_ORDER = ("test", "phase2", "phase1", "pretrain")


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator."""

    min_steps: int = 3  # operations per problem, drawn uniformly in [min_steps, max_steps]
    max_steps: int = 4
    start_digits: int = 2  # the first number has exactly this many digits
    operand_digits: int = 1  # later operands have 1..operand_digits digits (never 0)
    max_total: int = 199  # an addition that would exceed this becomes a subtraction

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"Need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}.")
        if self.start_digits < 1 or self.operand_digits < 1:
            raise ValueError("start_digits and operand_digits must be >= 1.")
        if self.max_total < max(10**self.start_digits, 10**self.operand_digits) - 1:
            raise ValueError(f"max_total={self.max_total} is below the largest start number or operand; raise it.")


@dataclass(frozen=True)
class Problem:
    """One generated item; `solution` is the gold step-by-step answer ending in \\boxed{answer}."""

    id: str
    problem: str
    answer: str
    solution: str


def _number(rng: random.Random, digits: int, exact: bool) -> int:
    low = 10 ** (digits - 1) if exact else 1
    return rng.randint(low, 10**digits - 1)


def sample_chain(rng: random.Random, difficulty: Difficulty) -> tuple[int, list[tuple[str, int]]]:
    """A start number and a list of (op, operand) with every running total in [0, max_total]."""
    d = difficulty
    total = start = _number(rng, d.start_digits, exact=True)
    ops = []
    for _ in range(rng.randint(d.min_steps, d.max_steps)):
        operand = _number(rng, d.operand_digits, exact=False)
        op = rng.choice("+-")
        if op == "-" and operand > total:
            op = "+"
        if op == "+" and total + operand > d.max_total:
            op = "-"
            if operand > total:  # neither fits: subtract a smaller number (total >= 1 here, see checks)
                operand = rng.randint(1, total)
        total = total + operand if op == "+" else total - operand
        ops.append((op, operand))
    return start, ops


def render_solution(start: int, ops: list[tuple[str, int]], results: list[int] | None = None) -> str:
    """One line per step: `=` the running total followed by the operations still to do; then `\\boxed{}`.

    `results` overrides the running totals (used to inject a mistake; later lines stay consistent with it).
    Example: start 59, ops [-1, -9] -> "=58-9\\n=49\\n\\\\boxed{49}".
    """
    lines, total = [], start
    for i, (op, b) in enumerate(ops):
        total = total + b if op == "+" else total - b
        if results is not None:
            total = results[i]
        lines.append(f"={total}" + "".join(f"{o}{x}" for o, x in ops[i + 1 :]))
    return "\n".join(lines) + f"\n\\boxed{{{total}}}"


def evaluate_chain(start: int, ops: list[tuple[str, int]]) -> int:
    total = start
    for op, b in ops:
        total = total + b if op == "+" else total - b
    return total


def render_problem(start: int, ops: list[tuple[str, int]]) -> str:
    return "Compute " + "".join([str(start)] + [f"{op}{b}" for op, b in ops]) + "."


def generate(seed: int, n: int, difficulty: Difficulty = Difficulty(), start_index: int = 0) -> list[Problem]:
    """`n` distinct problems from one seeded stream (distinct by problem text)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"Could only make {len(out)} distinct problems of {n}: widen the Difficulty.")
        start, ops = sample_chain(rng, difficulty)
        text = render_problem(start, ops)
        if text in seen:
            continue
        seen.add(text)
        answer = evaluate_chain(start, ops)
        out.append(Problem(f"arith-{start_index + len(out):06d}", text, str(answer), render_solution(start, ops)))
    return out


def make_splits(
    seed: int, sizes: dict[str, int], difficulty: Difficulty = Difficulty()
) -> dict[str, list[Problem]]:
    """Disjoint splits dealt from one stream in the order test, phase2, phase1, pretrain.

    Example: `make_splits(0, {"test": 200, "pretrain": 10000})["test"][0].problem`
    """
    unknown = set(sizes) - set(SPLIT_ORDER)
    if unknown:
        raise ValueError(f"Unknown split names {sorted(unknown)}; use {list(SPLIT_ORDER)}.")
    items = generate(seed, sum(sizes.values()), difficulty)
    splits, i = {}, 0
    for name in SPLIT_ORDER:
        if name in sizes:
            splits[name] = items[i : i + sizes[name]]
            i += sizes[name]
    return splits


def boxed_answer(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (no nesting needed for this task), or None."""
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return found[-1].strip() if found else None


def write_jsonl(rows: list[Problem], path: Path, *, with_solution: bool = True) -> None:
    """One JSON object per line: id, problem, answer (and solution unless with_solution=False)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            record = asdict(row)
            if not with_solution:
                record.pop("solution")
            f.write(json.dumps(record) + "\n")

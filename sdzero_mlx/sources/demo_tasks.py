"""The demo's synthetic task: seeded multi-step running-total arithmetic with a verifiable boxed answer.

A problem is a chain of additions and subtractions evaluated left to right, e.g.

    problem:  "Compute 7-1-4+5."
    solution: "7-1=6-4+5\n6-4=2+5\n2+5=7\n\\boxed{7}"
    answer:   "7"

Choices and reasons:
- Only + and -: left-to-right evaluation then equals ordinary precedence, so the problem text is also a
  valid expression and the project's verifier grades against a plain integer.
- Defaults: single-digit running totals (0..9) and operands (1..9), exactly 5 steps. Each step is one
  local fact a sub-million-parameter model learns in minutes on a CPU, and a chain of 5 leaves room for
  a local mistake in one line that propagates to the answer. Accuracy is roughly
  (per-step accuracy) ** steps, so the pretraining budget sets the base level.
- A fixed number of steps makes every chat prompt 22 tokens and every solution 55 tokens. That is what lets
  a tiny model act as a Reviser: its second attempt then sits at the same offsets from the question and
  from the first attempt in every transcript, so reading them back is learnt like any other fixed-offset
  lookup. With 4-6 steps (lengths 41-71) the previous base of the same size kept a correct first
  attempt after "rephrase" only 16% of the time and revised far worse than it generated.
  Two-digit totals (10..99 or 0..199, one-digit operands) are available through the knobs but were not
  learnable in the demo's budget: a 0.5-0.7M model stayed under 10% per-step accuracy after 200-1000
  steps (up to 9 CPU minutes), in every scratchpad format tried, while its copying was ~99% right.
- Rewrite scratchpad: each line copies the first operation still to do from the line above, then `=`,
  its result, and the rest of the line above ("6-4=2+5"). The result is a function of the few tokens just
  before `=` at fixed offsets (every number is one digit), and everything else is copying, which a tiny
  transformer learns first. A final `\\boxed{N}` line carries the answer.
- No spaces inside the arithmetic: every space is a token of its own with this tokenizer, and short
  sequences are what makes CPU pretraining affordable (77 tokens per single-answer chat, prompt included).
- Running totals stay in [min_total, max_total]: an operation that would leave the range is flipped to
  the other sign, and if neither sign fits, a smaller operand is drawn in the roomier direction.
- Problems are generated as one seeded stream of distinct problem texts; `split_problems` deals the first
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
    """Knobs of the generator. `kind` picks the task: "chain" (compute a running total, above) or
    "inverse" (find the start x of a chain mod 10 from its result, see `inverse_problem`)."""

    kind: str = "chain"

    min_steps: int = 5  # operations per problem, drawn uniformly in [min_steps, max_steps]; equal by
    max_steps: int = 5  # default, so every solution has the same length (see the module docstring)
    start_digits: int = 1  # the first number has exactly this many digits
    operand_digits: int = 1  # later operands have 1..operand_digits digits (never 0)
    min_total: int = 0  # running totals stay in [min_total, max_total]; the defaults (single digits)
    max_total: int = 9  # make every number one token at a fixed offset in each line

    def __post_init__(self):
        if self.kind not in ("chain", "inverse"):
            raise ValueError(f"Difficulty.kind is {self.kind!r}; use 'chain' or 'inverse'.")
        if self.kind == "inverse" and (self.start_digits, self.operand_digits, self.min_total, self.max_total) != (1, 1, 0, 9):
            raise ValueError("The inverse task works on single digits: keep start_digits = operand_digits = 1, totals 0..9.")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"Need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}.")
        if self.start_digits < 1 or self.operand_digits < 1:
            raise ValueError("start_digits and operand_digits must be >= 1.")
        low, high = 10 ** (self.start_digits - 1), 10**self.start_digits - 1
        if not (self.min_total <= low and high <= self.max_total):
            raise ValueError(
                f"Start numbers {low}..{high} must lie in [min_total, max_total] = "
                f"[{self.min_total}, {self.max_total}]; change start_digits or the bounds."
            )
        # The start range spans at least 1..9, so [min_total, max_total] always leaves room for a step.


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
    start = _number(rng, difficulty.start_digits, exact=True)
    return start, sample_ops(rng, difficulty, start)[0]


def sample_ops(rng: random.Random, difficulty: Difficulty, start: int) -> tuple[list[tuple[str, int]], int]:
    """(op, operand) steps from `start` keeping every running total in [min_total, max_total]; and the result."""
    d = difficulty
    total = start
    ops = []
    for _ in range(rng.randint(d.min_steps, d.max_steps)):
        operand = _number(rng, d.operand_digits, exact=False)
        op = rng.choice("+-")
        if op == "-" and total - operand < d.min_total:
            op = "+"
        elif op == "+" and total + operand > d.max_total:
            op = "-"
        if not d.min_total <= (total + operand if op == "+" else total - operand) <= d.max_total:
            # Neither sign fits (only in narrow ranges): a smaller operand in the roomier direction.
            up, down = d.max_total - total, total - d.min_total
            op = "+" if up >= down else "-"
            operand = rng.randint(1, max(up, down))
        total = total + operand if op == "+" else total - operand
        ops.append((op, operand))
    return ops, total


def render_solution(start: int, ops: list[tuple[str, int]], results: list[int] | None = None) -> str:
    """One line per step, `a op b=` + the running total + the operations still to do; then `\\boxed{}`.

    `results` overrides the running totals (used to inject a mistake; later lines stay consistent with it).
    Example: start 59, ops [-1, -9] -> "59-1=58-9\\n58-9=49\\n\\\\boxed{49}".
    """
    lines, total = [], start
    for i, (op, b) in enumerate(ops):
        head = f"{total}{op}{b}="
        total = total + b if op == "+" else total - b
        if results is not None:
            total = results[i]
        lines.append(head + f"{total}" + "".join(f"{o}{x}" for o, x in ops[i + 1 :]))
    return "\n".join(lines) + f"\n\\boxed{{{total}}}"


def evaluate_chain(start: int, ops: list[tuple[str, int]]) -> int:
    total = start
    for op, b in ops:
        total = total + b if op == "+" else total - b
    return total


def render_problem(start: int, ops: list[tuple[str, int]]) -> str:
    return "Compute " + "".join([str(start)] + [f"{op}{b}" for op, b in ops]) + "."


def parse_problem(text: str) -> tuple[int, list[tuple[str, int]]]:
    """Inverse of `render_problem`."""
    parts = re.findall(r"\d+|[+-]", text)
    return int(parts[0]), [(parts[i], int(parts[i + 1])) for i in range(1, len(parts), 2)]


# ---------------------------------------------------------------------------------------------
# The inverse task: find the start x of a chain. Checking an answer is easier than finding it.
# ---------------------------------------------------------------------------------------------
#
#   problem:  "Solve x+3-5+2=6."
#   answer:   "x=7\n7+3=... (replay) ...\n7-6=1\n7-1=6\n\\boxed{7}"     (a guess, checked, fixed, boxed)
#   gold:     "x=6\n6+3=9-5+2\n9-5=4+2\n4+2=6\n6-6=0\n6-0=6\n\\boxed{6}"
#
# An answer writes a guess "x=G" first, in one token (inverting every step at once is beyond a tiny
# model: it guesses), replays the chain forward from G with the chain task's scratchpad, then checks
# and fixes: every total of a wrong guess is off by the same amount, so with r the replay's result,
# "r-t=d" then "G-d=F" (or, when r < t, "t-r=e" then "G+e=F") gives F = x whenever the arithmetic is
# right. Every line is a single-digit fact at fixed offsets, as in the chain task (guesses keep every
# total in [min_total, max_total], so no number needs two digits). Then it boxes an answer: a
# *diligent* answer boxes F, a *lazy* one its guess G. The demo's base model is pretrained with lazy
# Generator answers (it checks and fixes, then boxes the guess anyway: unfaithful self-verification,
# so its accuracy is the guess's) and a Reviser that, after "not correct", writes diligent answers
# whose guess often copies the first attempt's F. Only hindsight (the reward bit and the first
# attempt's fix line) says that F, not G, should be boxed: the dense signal SD-Zero's teacher gives at
# the very tokens where a lazy answer goes wrong, which a sparse reward finds only when sampling
# happens to box F.


def inverse_chain(x: int, ops: list[tuple[str, int]]) -> list[int]:
    """Running totals of the chain started at x."""
    totals, total = [], x
    for op, b in ops:
        total = total + b if op == "+" else total - b
        totals.append(total)
    return totals


def valid_guesses(x: int, ops: list[tuple[str, int]], difficulty: "Difficulty") -> range:
    """Starts whose replay keeps every total in [min_total, max_total] (a shift of x's chain)."""
    values = [x] + inverse_chain(x, ops)
    return range(x - (min(values) - difficulty.min_total), x + (difficulty.max_total - max(values)) + 1)


def render_inverse_problem(ops: list[tuple[str, int]], target: int) -> str:
    return "Solve x" + "".join(f"{op}{b}" for op, b in ops) + f"={target}."


def render_inverse_solution(guess: int, ops: list[tuple[str, int]], target: int, diligent: bool = True) -> str:
    """'x=G', the replay from G, the check and the fix, then the box: F (diligent) or G (lazy).
    With the right guess both are the gold solution.

    Example: render_inverse_solution(6, [("+", 3), ("-", 5)], 4)
             == "x=6\n6+3=9-5\n9-5=4\n4-4=0\n6-0=6\n\\boxed{6}"
    """
    scratch = render_solution(guess, ops).split("\n")[:-1]  # the chain's lines, without its box
    result = inverse_chain(guess, ops)[-1] if ops else guess
    if result >= target:
        d = result - target
        check, fix, fixed = f"{result}-{target}={d}", f"{guess}-{d}={guess - d}", guess - d
    else:
        e = target - result
        check, fix, fixed = f"{target}-{result}={e}", f"{guess}+{e}={guess + e}", guess + e
    return "\n".join([f"x={guess}", *scratch, check, fix]) + f"\n\\boxed{{{fixed if diligent else guess}}}"


def parse_inverse_problem(text: str) -> tuple[list[tuple[str, int]], int]:
    """Inverse of `render_inverse_problem`: (ops, target)."""
    chain, target = text[len("Solve x") : -1].rsplit("=", 1)
    parts = re.findall(r"\d+|[+-]", chain)
    return [(parts[i], int(parts[i + 1])) for i in range(0, len(parts), 2)], int(target)


def inverse_answer(problem: Problem, guess: int, diligent: bool) -> str:
    """This inverse problem answered from `guess`, lazily (box the guess) or diligently (box the fix)."""
    ops, target = parse_inverse_problem(problem.problem)
    return render_inverse_solution(guess, ops, target, diligent)


def random_guess(problem: Problem, rng: random.Random, difficulty: "Difficulty", wrong: bool = False) -> int:
    """A guess whose replay stays in range: uniform over the valid starts (excluding x when `wrong`)."""
    ops, _ = parse_inverse_problem(problem.problem)
    x = int(problem.answer)
    return rng.choice([g for g in valid_guesses(x, ops, difficulty) if not (wrong and g == x)])


def wrong_attempt(problem: Problem, rng: random.Random, difficulty: "Difficulty") -> str:
    """A lazy answer from a wrong guess: its fix line holds the right x, its box the wrong guess."""
    return inverse_answer(problem, random_guess(problem, rng, difficulty, wrong=True), diligent=False)


def _sample_inverse(rng: random.Random, difficulty: "Difficulty") -> tuple[int, list[tuple[str, int]], int]:
    """x and a chain from it within range whose valid guesses number at least 3 (so guessing is a choice)."""
    while True:
        x = rng.randint(difficulty.min_total, difficulty.max_total)
        ops, total = sample_ops(rng, difficulty, x)  # operands are one digit: Difficulty checks it
        if len(valid_guesses(x, ops, difficulty)) >= 3:
            return x, ops, total


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
        if difficulty.kind == "inverse":
            x, ops, target = _sample_inverse(rng, difficulty)
            text = render_inverse_problem(ops, target)
            if text not in seen:
                seen.add(text)
                out.append(Problem(f"inv-{start_index + len(out):06d}", text, str(x), render_inverse_solution(x, ops, target)))
            continue
        start, ops = sample_chain(rng, difficulty)
        text = render_problem(start, ops)
        if text in seen:
            continue
        seen.add(text)
        answer = evaluate_chain(start, ops)
        out.append(Problem(f"arith-{start_index + len(out):06d}", text, str(answer), render_solution(start, ops)))
    return out


def split_problems(
    seed: int, sizes: dict[str, int], difficulty: Difficulty = Difficulty()
) -> dict[str, list[Problem]]:
    """Disjoint splits dealt from one stream in the order test, phase2, phase1, pretrain.

    Example: `split_problems(0, {"test": 200, "pretrain": 10000})["test"][0].problem`
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

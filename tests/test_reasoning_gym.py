"""rg:// data sources: reasoning-gym's procedural tasks, offline, fresh problems per data seed."""

import importlib.util
import re
import sys

import pytest

from sdzero_mlx.config import DataConfig, FieldMap
from sdzero_mlx.data import load_examples, make_splits
from sdzero_mlx.sources.reasoning_gym import parse_spec
from sdzero_mlx.verifier import verify_batch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None,
                                reason="reasoning-gym (tasks extra) not installed")

CHAIN = "rg://chain_sum?min_terms=2&max_terms=3&min_digits=1&max_digits=2"
CHAIN_PROMPT = re.compile(r"State the final answer to the following arithmetic problem: (.*) =$")


def problems(source: str, seed: int, n: int) -> list:
    return load_examples(source, FieldMap(), seed=seed, n=n)


def test_gold_answers_are_the_sums_and_the_verifier_grades_them():
    examples = problems(CHAIN, 0, 40)
    for ex in examples:
        expression = CHAIN_PROMPT.match(ex.problem).group(1)
        terms = re.fullmatch(r"\d+(?: [+-] \d+){1,2}", expression)
        assert terms, expression  # 2 or 3 terms of at most 2 digits, no negation: the options took effect
        assert int(ex.answer) == eval(expression)  # plain integer sums, checked here independently
    golds = [ex.answer for ex in examples]
    assert verify_batch([f"So the result is {g}.\nAnswer: {g}" for g in golds], golds) == [1.0] * 40
    assert verify_batch([f"Answer: {int(g) + 1}" for g in golds], golds) == [0.0] * 40


def test_same_seed_same_problems_other_seed_other_problems():
    seed0, again, seed1 = problems(CHAIN, 0, 50), problems(CHAIN, 0, 50), problems(CHAIN, 1, 50)
    assert seed0 == again
    assert [ex.id for ex in seed0[:2]] == ["chain_sum-0-0", "chain_sum-0-1"]
    # reasoning-gym seeds item i with seed + i: without the stride, seed 1 would be seed 0 shifted by one
    assert not {ex.problem for ex in seed0} & {ex.problem for ex in seed1}
    # a longer draw extends a shorter one, so the splits of a larger recipe start with the same problems
    assert problems(CHAIN, 0, 80)[:50] == seed0


def test_problems_are_distinct_and_a_task_too_small_says_so():
    # one-digit products: a * b with a, b in 0..9, so exactly 100 distinct problems exist
    products = problems("rg://products?min_digits=1&max_digits=1", 3, 100)
    assert len({ex.problem for ex in products}) == 100
    assert all(int(ex.answer) == eval(ex.problem.split(": ")[1].split(".")[0]) for ex in products)
    with pytest.raises(ValueError, match="only 100 distinct problems.*widen the task's options"):
        problems("rg://products?min_digits=1&max_digits=1", 3, 101)


def test_splits_of_a_generated_task_are_disjoint():
    config = DataConfig(source=CHAIN, phase1_size=6, phase2_size=5, validation_size=4, eval_size=3, seed=2)
    splits = make_splits(config, with_test=True)
    parts = (splits.phase1, splits.phase2, splits.validation, splits.test)
    assert [len(p) for p in parts] == [6, 5, 4, 3]
    assert len({ex.problem for p in parts for ex in p}) == 18
    assert splits.test == tuple(problems(CHAIN, 2, 18)[:3])  # dealt in order: test first


def test_options_are_parsed_as_the_config_field_types():
    assert parse_spec("basic_arithmetic?operators=+,-&max_terms=3") == (
        "basic_arithmetic", {"operators": "+,-", "max_terms": "3"})  # "+" is not a space here
    examples = problems("rg://basic_arithmetic?operators=+,-&allow_parentheses=false&max_terms=2&max_digits=1", 0, 30)
    # operators=+,- took effect: no product or quotient among 30 problems (the default mixes all four)
    assert all(re.fullmatch(r"Calculate -?\d+ [+-] -?\d+\.", ex.problem) for ex in examples), examples[:3]


@pytest.mark.parametrize("source, message", [
    ("rg://basic_arithmetc", r"no task 'basic_arithmetc'; did you mean one of \['basic_arithmetic'"),
    ("rg://chain_sum?max_term=3", r"chain_sum has no option 'max_term'; its options: \['allow_negation'"),
    ("rg://chain_sum?max_terms=three", r"option max_terms is 'three'; expected int like 6"),
    ("rg://chain_sum?seed=4", r"seed is set by sdzero"),
    ("rg://chain_sum?min_terms=3&max_terms=2", r"reasoning-gym rejects these options: max_terms must be >= min_terms"),
    ("rg://chain_sum?max_terms", r"option 'max_terms' should look like key=value"),
])
def test_unknown_task_or_option_is_named(source, message):
    with pytest.raises(ValueError, match=message):
        problems(source, 0, 5)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # what `import` sees when it is not installed
    with pytest.raises(ImportError, match=r"pip install 'sdzero-mlx\[tasks\]'"):
        problems(CHAIN, 0, 5)

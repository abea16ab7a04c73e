"""The demo task generator, its splits, its gold solutions, and the reproducibility of pretraining."""

import hashlib
import json
import re

import numpy as np
import pytest

from sdzero_mlx.demo import task
from sdzero_mlx.demo.pretrain import RESTART, REPHRASE, encode_examples, inject_error, parse_problem, pretrain
from sdzero_mlx.tinymodel import build_tokenizer


def test_generator_is_deterministic_and_seed_dependent():
    a = task.generate(3, 50)
    assert a == task.generate(3, 50)
    assert a != task.generate(4, 50)
    # A longer stream starts with the shorter one: splits do not move when sizes grow.
    assert task.generate(3, 80)[:50] == a


def test_known_item_checked_by_hand():
    p = task.Problem("x", "Compute 59-1-9-7-8.", "34", "=58-9-7-8\n=49-7-8\n=42-8\n=34\n\\boxed{34}")
    start, ops = parse_problem(p.problem)
    assert (start, ops) == (59, [("-", 1), ("-", 9), ("-", 7), ("-", 8)])
    assert task.render_solution(start, ops) == p.solution
    assert task.evaluate_chain(start, ops) == 34


def test_splits_disjoint_and_sized():
    sizes = {"test": 100, "phase2": 150, "phase1": 150, "pretrain": 600}
    splits = task.make_splits(0, sizes)
    assert {k: len(v) for k, v in splits.items()} == sizes
    texts = [p.problem for rows in splits.values() for p in rows]
    assert len(set(texts)) == sum(sizes.values())
    ids = [p.id for rows in splits.values() for p in rows]
    assert len(set(ids)) == len(ids)
    # The test split is the same whatever the other sizes are.
    assert task.make_splits(0, {"test": 100})["test"] == splits["test"]


def test_difficulty_knobs_respected():
    d = task.Difficulty(min_steps=2, max_steps=5, start_digits=2, operand_digits=2, max_total=150)
    for p in task.generate(1, 300, d):
        start, ops = parse_problem(p.problem)
        assert 10 <= start <= 99 and 2 <= len(ops) <= 5
        assert all(1 <= b <= 99 for _, b in ops)
        totals = [int(re.match(r"=(\d+)", line).group(1)) for line in p.solution.splitlines()[:-1]]
        assert all(0 <= t <= 150 for t in totals)
    with pytest.raises(ValueError, match="max_steps"):
        task.Difficulty(min_steps=3, max_steps=2)


def test_gold_solutions_box_the_gold_answer_and_verify():
    from sdzero_mlx.verifier import verify

    rows = task.generate(0, 300)
    for p in rows:
        assert task.boxed_answer(p.solution) == p.answer
        # The problem is also an ordinary expression: Python agrees with the gold answer.
        assert eval(p.problem.removeprefix("Compute ").rstrip(".")) == int(p.answer)
        assert verify(p.solution, p.answer) == 1.0
    wrong = inject_error(*parse_problem(rows[0].problem), np.random.default_rng(0))
    assert verify(wrong, rows[0].answer) == 0.0


def _wrong_lines(problem: str, solution: str) -> int:
    """Lines that are not the line above (the problem first) with its first operation done correctly."""
    exprs = [problem.removeprefix("Compute ").rstrip(".")] + [x[1:] for x in solution.splitlines()[:-1]]
    wrong = 0
    for before, after in zip(exprs, exprs[1:]):
        head = re.match(r"\d+[+-]\d+", before).group(0)
        wrong += after != str(eval(head)) + before[len(head) :]
    return wrong


def test_injected_error_is_one_local_mistake():
    rng = np.random.default_rng(1)
    for p in task.generate(2, 100):
        assert _wrong_lines(p.problem, p.solution) == 0
        wrong = inject_error(*parse_problem(p.problem), rng)
        assert _wrong_lines(p.problem, wrong) == 1
        assert task.boxed_answer(wrong) != p.answer
        assert wrong.splitlines()[-1] == f"\\boxed{{{wrong.splitlines()[-2][1:]}}}"


def test_revision_transcripts_layout():
    tok = build_tokenizer()
    problems = task.generate(0, 200)
    examples = encode_examples(problems, tok, np.random.default_rng(0), revision_share=0.5)
    texts = [tok.decode(ids[start:], skip_special_tokens=False) for ids, start in examples]
    n_rephrase = sum(f"\n\n{REPHRASE}\n\n" in t for t in texts)
    n_restart = sum(f"\n\n{RESTART}\n\n" in t for t in texts)
    assert 30 < n_rephrase < 70 and 30 < n_restart < 70
    for t, p in zip(texts, problems):
        assert t.endswith(p.solution + "<|im_end|>")
        if RESTART in t:
            assert task.boxed_answer(t.split(RESTART)[0]) != p.answer


def test_write_jsonl(tmp_path):
    rows = task.generate(0, 3)
    task.write_jsonl(rows, tmp_path / "a.jsonl", with_solution=False)
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [sorted(x) for x in lines] == [["answer", "id", "problem"]] * 3
    assert lines[0]["answer"] == rows[0].answer


def test_pretraining_is_reproducible(tmp_path):
    kw = dict(steps=3, batch_size=4, warmup_steps=1, hidden_size=32, num_hidden_layers=1,
              num_attention_heads=2, intermediate_size=64, pretrain_problems=64, log_every=100)
    infos = [pretrain(tmp_path / name, seed=seed, **kw) for name, seed in (("a", 5), ("b", 5), ("c", 6))]

    def sha(name):
        return hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest()

    assert sha("a") == sha("b") != sha("c")
    assert infos[0]["final_loss"] == infos[1]["final_loss"]
    assert re.fullmatch(r"[0-9a-f]{64}", sha("a"))

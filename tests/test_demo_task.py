"""The demo task generator, its splits, its gold solutions, and the reproducibility of pretraining."""

import hashlib
import json
import re

import numpy as np
import pytest

from sdzero_mlx.sources import demo_tasks as task
from sdzero_mlx.demo.pretrain import RESTART, REPHRASE, encode_examples, pretrain
from sdzero_mlx.demo.tinymodel import build_tokenizer


def test_generator_is_deterministic_and_seed_dependent():
    a = task.generate(3, 50)
    assert a == task.generate(3, 50)
    assert a != task.generate(4, 50)
    # A longer stream starts with the shorter one: splits do not move when sizes grow.
    assert task.generate(3, 80)[:50] == a


def test_known_item_checked_by_hand():
    d = task.Difficulty(min_steps=3, max_steps=4, start_digits=2, min_total=10, max_total=99)
    p = task.Problem("x", "Compute 59-1-9-7-8.", "34", "59-1=58-9-7-8\n58-9=49-7-8\n49-7=42-8\n42-8=34\n\\boxed{34}")
    start, ops = task.parse_problem(p.problem)
    assert (start, ops) == (59, [("-", 1), ("-", 9), ("-", 7), ("-", 8)])
    assert task.render_solution(start, ops) == p.solution
    assert task.evaluate_chain(start, ops) == 34
    # The same item, dealt by the generator (seed 0, first draw) at that difficulty.
    assert task.generate(0, 1, d)[0] == task.Problem("arith-000000", p.problem, p.answer, p.solution)


def test_splits_disjoint_and_sized():
    sizes = {"test": 100, "phase2": 150, "phase1": 150, "pretrain": 600}
    splits = task.split_problems(0, sizes)
    assert {k: len(v) for k, v in splits.items()} == sizes
    texts = [p.problem for rows in splits.values() for p in rows]
    assert len(set(texts)) == sum(sizes.values())
    ids = [p.id for rows in splits.values() for p in rows]
    assert len(set(ids)) == len(ids)
    # The test split is the same whatever the other sizes are.
    assert task.split_problems(0, {"test": 100})["test"] == splits["test"]


def test_difficulty_knobs_respected():
    d = task.Difficulty(min_steps=2, max_steps=5, start_digits=2, operand_digits=2, min_total=0, max_total=250)
    for p in task.generate(1, 300, d):
        start, ops = task.parse_problem(p.problem)
        assert 10 <= start <= 99 and 2 <= len(ops) <= 5
        assert all(1 <= b <= 99 for _, b in ops)
        totals = [int(re.search(r"=(\d+)", line).group(1)) for line in p.solution.splitlines()[:-1]]
        assert all(0 <= t <= 250 for t in totals)
    for p in task.generate(1, 300):  # defaults: single-digit totals, 4-6 steps
        lines = p.solution.splitlines()[:-1]
        assert 4 <= len(lines) <= 6 and all(re.fullmatch(r"\d[+-]\d=\d([+-]\d)*", x) for x in lines)
    with pytest.raises(ValueError, match="Start numbers 10..99"):
        task.Difficulty(start_digits=2)
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
    assert verify(rows[1].solution, rows[0].answer) == float(rows[1].answer == rows[0].answer)


def _wrong_lines(problem: str, solution: str) -> int:
    """Lines that are not `head=result+rest` for the line above's remainder `head+rest`, done right."""
    remainder = problem.removeprefix("Compute ").rstrip(".")
    wrong = 0
    for line in solution.splitlines()[:-1]:
        head, new = line.split("=")
        rest = remainder[len(head) :]
        wrong += not (remainder.startswith(head) and new == str(eval(head)) + rest)
        remainder = new
    return wrong


def test_gold_solutions_are_right_line_by_line_and_all_the_same_length():
    tok = build_tokenizer()
    for p in task.generate(2, 100, task.Difficulty(start_digits=2, min_total=10, max_total=99)):
        assert _wrong_lines(p.problem, p.solution) == 0
    # Default difficulty: every solution has the same token count, so a Reviser's second attempt sits at
    # the same offsets from the question and the first attempt in every transcript.
    rows = task.generate(3, 300)
    assert all(_wrong_lines(p.problem, p.solution) == 0 for p in rows)
    assert len({len(tok.encode(p.solution).ids) for p in rows}) == 1
    assert len({len(tok.encode(p.problem).ids) for p in rows}) == 1


def test_revision_transcripts_layout():
    tok = build_tokenizer()
    problems = task.generate(0, 200)
    examples = encode_examples(problems, tok, np.random.default_rng(0), 0.5, restart_fraction=0.5)
    texts = [tok.decode(ids, skip_special_tokens=False).split("<|im_start|>assistant\n")[1] for ids, _ in examples]
    n_rephrase = sum(f"\n\n{REPHRASE}\n\n" in t for t in texts)
    n_restart = sum(f"\n\n{RESTART}\n\n" in t for t in texts)
    assert 30 < n_rephrase < 70 and 30 < n_restart < 70
    for (ids, spans), t, p in zip(examples, texts, problems):
        assert t.endswith(p.solution + "<|im_end|>")
        trained = [tok.decode(ids[a:b], skip_special_tokens=False) for a, b in spans]
        # Only gold solutions are trained: never the cue, never the wrong first attempt; <|im_end|> closes the turn.
        assert trained[-1] == p.solution + "<|im_end|>"
        assert all(x == p.solution for x in trained[:-1])
        if RESTART in t:  # the wrong first attempt is another problem's solution, with another answer
            first = t.split(f"\n\n{RESTART}")[0]
            assert task.boxed_answer(first) != p.answer and first.split("\n")[0] != p.solution.split("\n")[0]
            assert first in {q.solution for q in problems} and len(spans) == 1
        elif REPHRASE in t:
            assert len(spans) == 2
        else:
            assert len(spans) == 1


def test_make_batch_masks_exactly_the_trained_tokens():
    from sdzero_mlx.demo.pretrain import make_batch

    rows = [([5, 6, 7, 8, 9, 10], [(2, 4), (5, 6)]), ([5, 6, 7], [(1, 3)])]
    ids, mask = make_batch(rows, pad_id=0)
    assert ids.shape == (2, 9) and mask.shape == (2, 8)
    # Position t predicts token t+1: tokens 2, 3 and 5 of row 0, tokens 1 and 2 of row 1.
    assert mask.tolist()[0] == [0, 1, 1, 0, 1, 0, 0, 0]
    assert mask.tolist()[1] == [1, 1, 0, 0, 0, 0, 0, 0]


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


@pytest.mark.parametrize("name", ["chain", "inverse"])
def test_shipped_base_models_match_their_recorded_arguments_and_score_as_recorded(name):
    """The shipped folder's pretraining arguments resolve to the configuration its build_info.json records,
    its weights are the ones recorded (hash), and they score as recorded. Rebuilding the weights themselves
    (minutes of pretraining) is `python -m sdzero_mlx.demo.pretrain OUT ARGS`, not run here."""
    from dataclasses import asdict

    import mlx_lm

    from sdzero_mlx.config import EvalConfig, PromptConfig
    from sdzero_mlx.demo.app import TASKS
    from sdzero_mlx.demo.pretrain import main as pretrain_main
    from sdzero_mlx.evaluate import EvalSettings, evaluate_examples
    from sdzero_mlx.types import Example
    from sdzero_mlx.verifier import VerifierConfig

    shipped = TASKS[name]
    info = json.loads((shipped.model / "build_info.json").read_text())
    # `python -m sdzero_mlx.demo.pretrain OUT ARGS` resolves exactly the recorded configuration
    captured = {}
    import sdzero_mlx.demo.pretrain as pretrain_module

    real = pretrain_module.pretrain
    pretrain_module.pretrain = lambda out, **kw: captured.update(kw) or {}
    try:
        pretrain_main(["OUT", "--evaluate", "0", *shipped.pretrain_args])
    finally:
        pretrain_module.pretrain = real
    captured.pop("checkpoints")  # where to save intermediate folders: not part of the weights
    config = pretrain_module.PretrainConfig(**captured)
    assert info["config"] == json.loads(json.dumps(asdict(config)))
    assert hashlib.sha256((shipped.model / "model.safetensors").read_bytes()).hexdigest() == info["weights_sha256"]
    model, tok = mlx_lm.load(str(shipped.model))
    difficulty = task.Difficulty(**info["config"]["difficulty"])
    test = task.split_problems(info["config"]["task_seed"], {"test": info["test_eval"]["n"]}, difficulty)["test"]
    examples = [Example(p.id, p.problem, p.answer) for p in test]
    config = EvalConfig(k=1, temperature=0.0, max_tokens=128, greedy=False)
    greedy = evaluate_examples(model, tok, examples, EvalSettings(config, PromptConfig(template="{problem}"),
                                                                  VerifierConfig(), seed=0, batch_size=128)).avg_at_k
    # Same number up to float summation order (other BLAS, Metal): at most 2% of the problems may flip.
    assert abs(greedy - info["test_eval"]["greedy"]["accuracy"]) <= 0.02
    assert 0.15 <= greedy <= 0.5  # room to improve, skilled enough to self-revise


# -- the inverse task ------------------------------------------------------------------------------


def test_inverse_answers_by_hand():
    ops = [("-", 1), ("-", 4), ("+", 5)]
    # from x = 6: 5, 1, 6: the target is 6
    assert task.inverse_chain(6, ops) == [5, 1, 6]
    gold = task.render_inverse_solution(6, ops, 6)
    assert gold == "x=6\n6-1=5-4+5\n5-4=1+5\n1+5=6\n6-6=0\n6-0=6\n\\boxed{6}"
    # a guess 8 is 2 too high everywhere: 8-6=2, 8-2=6; lazy boxes 8, diligent the fix 6
    lazy = task.render_inverse_solution(8, ops, 6, diligent=False)
    assert lazy == "x=8\n8-1=7-4+5\n7-4=3+5\n3+5=8\n8-6=2\n8-2=6\n\\boxed{8}"
    # a guess 4 is 2 too low: the check subtracts the other way and the fix adds
    assert task.render_inverse_solution(4, ops, 6, diligent=True).endswith("6-4=2\n4+2=6\n\\boxed{6}")
    assert task.parse_inverse_problem(task.render_inverse_problem(ops, 6)) == (ops, 6)
    # valid guesses keep every total in 0..9: x's chain spans 1..6, so x may shift by -1..+3
    assert list(task.valid_guesses(6, ops, task.Difficulty(kind="inverse"))) == [5, 6, 7, 8, 9]


def test_inverse_problems_every_guess_fixes_to_the_answer():
    import random

    from sdzero_mlx.verifier import verify

    d = task.Difficulty(kind="inverse", min_steps=4, max_steps=4)
    problems = task.generate(0, 200, d)
    assert len({p.problem for p in problems}) == 200
    rng = random.Random(0)
    for p in problems[:40]:
        ops, target = task.parse_inverse_problem(p.problem)
        guesses = task.valid_guesses(int(p.answer), ops, d)
        assert len(guesses) >= 3 and verify(p.solution, p.answer) == 1.0
        wrong = task.wrong_attempt(p, rng, d)
        guess = int(wrong.split("\n")[0][2:])
        assert guess != int(p.answer) and verify(wrong, p.answer) == 0.0  # lazy: boxes the wrong guess
        assert wrong.split("\n")[-2].endswith(f"={p.answer}")  # ... while its fix line holds the answer
        for g in guesses:
            text = task.inverse_answer(p, g, diligent=True)
            assert verify(text, p.answer) == 1.0
            assert all(len(n) == 1 for n in re.findall(r"\d+", text))  # every number a single digit
    with pytest.raises(ValueError, match="single digits"):
        task.Difficulty(kind="inverse", start_digits=2)

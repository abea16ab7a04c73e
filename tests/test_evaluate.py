"""Evaluation protocols: pass@k by hand, revision rates on scripted pairs, and avg@k / greedy /
generate-then-revise on a scripted model whose every answer is known from its weights.

The scripted model is a real mlx-lm llama folder whose attention and MLP outputs are zero, so each
next token depends only on the current one (a bigram table written into the weights):
"\\n" -> "\\" -> "boxed" -> "{" -> ("7" with logit L, "8" with logit L - DELTA) -> "}" -> end-of-turn.
Every prompt and every sep(r) ends with "\\n", so every answer, first or revised, is exactly
"\\boxed{7}" or "\\boxed{8}"; greedy picks 7, and at temperature T, P(8) = 1 / (1 + exp(DELTA / T)).
"""

from __future__ import annotations

import json
import math

import mlx.core as mx
import mlx_lm
import pytest

from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.config import EvalConfig, PromptConfig
from sdzero_mlx.evaluate import (
    EvalResult,
    EvalSettings,
    evaluate_examples,
    evaluate_model,
    generate_then_revise,
    generations_per_model,
    pass_at_k,
    results_table,
    revision_rates,
    write_rows_jsonl,
    write_summary,
)
from sdzero_mlx.metrics import last_budget
from sdzero_mlx.demo.tinymodel import IM_END, init_weights, make_model_dir, model_config, vocabulary
from sdzero_mlx.types import Example, TrainingState
from sdzero_mlx.verifier import VerifierConfig

L, DELTA = 30.0, 0.35  # chain logit; 7-vs-8 margin (T = 0.7: P(7) = 1 / (1 + e^-0.5) = 0.62)
VERIFIER = VerifierConfig(workers=1)


def test_pass_at_k_by_hand():
    # n = 5, c = 2: 1 - C(3, k) / C(5, k)
    expected = {1: 1 - 3 / 5, 2: 1 - 3 / 10, 3: 1 - 1 / 10, 4: 1.0, 5: 1.0}
    for k, value in expected.items():
        assert pass_at_k(5, 2, k) == pytest.approx(value)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(5, 2, 6)


def test_revision_rates_on_scripted_pairs():
    first = [0, 0, 0, 0, 1, 1, 1, 0]
    revised = [1, 0, 1, 0, 1, 0, 1, 1]
    rates = revision_rates(first, revised)
    # wrong first: items 0,1,2,3,7 (5); corrected: 0,2,7 (3). right first: 4,5,6 (3); degraded: 5 (1)
    assert (rates.n_first_wrong, rates.corrected, rates.n_first_right, rates.degraded) == (5, 3, 3, 1)
    assert rates.correction_rate == pytest.approx(3 / 5)
    assert rates.degradation_rate == pytest.approx(1 / 3)
    assert rates.first_accuracy == pytest.approx(3 / 8)
    assert rates.revised_accuracy == pytest.approx(5 / 8)
    all_right = revision_rates([1, 1], [1, 0])
    assert all_right.correction_rate is None and all_right.degradation_rate == 0.5


def scripted_weights(config: dict) -> dict[str, mx.array]:
    vocab = {tok: i for i, tok in enumerate(vocabulary())}
    weights = init_weights(config, seed=0)
    for name in list(weights):
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = mx.zeros_like(weights[name])  # blocks add nothing: h = embed(current token)
    dim, n_vocab = config["hidden_size"], config["vocab_size"]
    chain = ["\n", "\\", "boxed", "{", "7", "8", "}"]
    basis = {tok: i for i, tok in enumerate(chain)}
    embed = mx.zeros((n_vocab, dim)).tolist()
    for tok, i in basis.items():
        embed[vocab[tok]][i] = 1.0
    # RMSNorm scales a unit basis vector to length sqrt(dim); divide it back out of the head
    head = mx.zeros((n_vocab, dim)).tolist()
    scale = 1.0 / math.sqrt(dim)
    for cur, nxt, logit in [("\n", "\\", L), ("\\", "boxed", L), ("boxed", "{", L), ("{", "7", L),
                            ("{", "8", L - DELTA), ("7", "}", L), ("8", "}", L), ("}", IM_END, L)]:
        head[vocab[nxt]][basis[cur]] = logit * scale
    weights["model.embed_tokens.weight"] = mx.array(embed)
    weights["lm_head.weight"] = mx.array(head)
    return weights


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory):
    config = model_config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    out = make_model_dir(tmp_path_factory.mktemp("scripted") / "model", hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, weights=scripted_weights(config))
    (out / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}, indent=2))
    return out


@pytest.fixture(scope="module")
def scripted(scripted_dir):
    return mlx_lm.load(str(scripted_dir))


def examples(golds):
    return [Example(f"p{i}", f"What is {i} + {g}?", g) for i, g in enumerate(golds)]


def by_hand(text: str, gold: str) -> float:
    assert text in ("\\boxed{7}", "\\boxed{8}"), text  # the bigram table allows nothing else
    return float(text[-2] == gold)


def test_avg_pass_greedy_on_scripted_model(scripted, tmp_path):
    model, tok = scripted
    golds = ["7", "8", "9", "7", "8", "9"]
    config = EvalConfig(k=8, temperature=0.7, max_tokens=12, greedy=True)
    res = evaluate_examples(model, tok, examples(golds), EvalSettings(config, PromptConfig(), VERIFIER, seed=1))

    assert (res.k, res.n_problems, res.generations) == (8, 6, 6 * 8 + 6)
    # greedy always answers 7: right exactly where the gold is 7
    assert [r.greedy_text for r in res.rows] == ["\\boxed{7}"] * 6
    assert res.greedy_accuracy == pytest.approx(2 / 6)
    hand = [[by_hand(t, r.answer) for t in r.texts] for r in res.rows]
    assert [list(r.rewards) for r in res.rows] == hand
    assert res.avg_at_k == pytest.approx(sum(map(sum, hand)) / 48)
    assert res.pass_at_k == pytest.approx(sum(any(h) for h in hand) / 6)
    # problems with gold 9 can never be solved; 7 and 8 both get sampled (P(never 8 in 16) ~ 5e-7)
    assert all(sum(h) == 0 for h, g in zip(hand, golds) if g == "9")
    assert any(r.texts.count("\\boxed{8}") for r in res.rows)
    assert res.avg_at_k < res.pass_at_k < 1.0
    # every answer is 5 tokens (\ boxed { d }) and stopped on the end-of-turn token
    assert res.mean_tokens == 5.0 and res.sampled_tokens == 54 * 5
    assert {f for r in res.rows for f in r.finish_reasons} == {"stop"}

    rows = [json.loads(l) for l in write_rows_jsonl(res, tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(6)] and rows[2]["rewards"] == [0.0] * 8


def test_generate_then_revise_on_scripted_model(scripted, tmp_path):
    model, tok = scripted
    golds = ["7", "8"] * 6
    config = EvalConfig(k=1, temperature=1.0, max_tokens=12)
    res = generate_then_revise(model, tok, examples(golds), EvalSettings(config, PromptConfig(), VERIFIER, seed=3))

    first = [by_hand(r.first_text, r.answer) for r in res.rows]
    revised = [by_hand(r.revised_text, r.answer) for r in res.rows]
    assert [r.first_reward for r in res.rows] == first
    assert [r.revised_reward for r in res.rows] == revised
    wrong = [i for i, f in enumerate(first) if f == 0]
    right = [i for i, f in enumerate(first) if f == 1]
    assert wrong and right  # 12 coin flips at P(7) = 0.59: both outcomes (fails with p ~ 1e-3)
    assert res.correction_rate == pytest.approx(sum(revised[i] for i in wrong) / len(wrong))
    assert res.degradation_rate == pytest.approx(sum(1 - revised[i] for i in right) / len(right))
    assert res.first_accuracy == pytest.approx(sum(first) / 12)
    assert res.revised_accuracy == pytest.approx(sum(revised) / 12)
    assert (res.first_tokens, res.revised_tokens, res.generations, res.sampled_tokens) == (5.0, 5.0, 24, 120)


def test_evaluate_model_revises_the_first_of_its_k_samples(scripted):
    """The protocol draws each problem's first attempt once: revise starts from sample 0 of the k."""
    model, tok = scripted
    golds = ["7", "8", "9"] * 4
    config = EvalConfig(k=3, temperature=1.0, max_tokens=12, greedy=False, revise=True)
    finished = []
    sampled, revised = evaluate_model(model, tok, examples(golds), EvalSettings(config, PromptConfig(), VERIFIER, seed=5),
                                      on_progress=finished.append)
    assert [r.first_text for r in revised.rows] == [r.texts[0] for r in sampled.rows]
    assert [r.first_reward for r in revised.rows] == [r.rewards[0] for r in sampled.rows]
    assert revised.first_accuracy == pytest.approx(sum(r.rewards[0] for r in sampled.rows) / 12)
    # what was drawn: 12 x 3 samples, then 12 revisions of 5 tokens each (the first attempts are not counted twice)
    assert (sampled.generations, revised.generations, revised.sampled_tokens) == (36, 12, 60)
    assert sum(finished) == generations_per_model(12, config) == 48


def fake_eval(avg, k=8) -> EvalResult:
    return EvalResult(avg_at_k=avg, pass_at_k=0.75, greedy_accuracy=None, mean_tokens=41.6, k=k,
                      temperature=0.7, n_problems=4, generations=32, sampled_tokens=1331, rows=())


def test_results_table_and_budget(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "generations": 4, "sampled_tokens": 40, "trained_tokens": 44}) + "\n"
        + json.dumps({"step": 2, "generations": 8, "sampled_tokens": 90, "trained_tokens": 98}) + "\n"
    )
    budget = last_budget(run)
    assert budget == TrainingState(step=2, generations=8, sampled_tokens=90, trained_tokens=98, elapsed_s=0.0)
    table = results_table({"base": fake_eval(0.25), "tuned": fake_eval(0.5)}, {"tuned": budget})
    lines = table.splitlines()
    assert lines[0].startswith("| model | n | avg@8 | pass@8 | greedy | tokens |") and "train gens" in lines[0]
    assert lines[2] == "| base | 4 | 25.0 | 75.0 | - | 42 | - | - | - |"
    assert lines[3] == "| tuned | 4 | 50.0 | 75.0 | - | 42 | 8 | 90 | 98 |"
    md, js = write_summary({"base": fake_eval(0.25)}, tmp_path / "out")
    assert md.read_text() == results_table({"base": fake_eval(0.25)})
    assert json.loads(js.read_text())[0]["sample"]["avg_at_k"] == 0.25


def test_eval_command_compares_models(scripted_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"q": f"What is {g} + 0?", "a": g}) + "\n" for g in ("7", "8", "9")))
    out = tmp_path / "eval"
    other = tmp_path / "copy"
    other.symlink_to(scripted_dir)
    args = ["eval", str(scripted_dir), str(other), "--data", str(data), "--field-problem", "q",
            "--field-answer", "a", "--k", "4", "--max-tokens", "12", "--revise", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in records] == ["model", "copy"]
    for r in records:
        rows = [json.loads(l) for l in (out / r["name"] / "samples.jsonl").read_text().splitlines()]
        assert [row["greedy_reward"] for row in rows] == [1.0, 0.0, 0.0]  # greedy says 7
        assert r["sample"]["avg_at_k"] == pytest.approx(sum(sum(row["rewards"]) for row in rows) / 12)
        assert r["revise"]["n_problems"] == 3
        assert f"| {r['name']} | 3 |" in result.output and "| 33.3 |" in result.output
    bad = CliRunner().invoke(app, ["eval", str(scripted_dir), "--data", str(data)])
    assert bad.exit_code == 2 and "has no field 'problem'" in bad.output

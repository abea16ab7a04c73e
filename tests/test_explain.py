"""Self-localisation: the report's per-token values are the loss module's, on ids laid out by hand."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
import yaml
from matplotlib import image as mpimg

from sdzero_mlx.config import KlSettings, LoraConfig, PromptConfig
from sdzero_mlx.explain import (
    Alternative,
    TokenReport,
    kl_concentration,
    localisation_summary,
    render_html,
    render_index,
    render_png,
    summary_table,
    token_report,
    top_alternatives,
    top_tokens,
)
from sdzero_mlx.loss import distill_token_kl, log_softmax, teacher_targets
from sdzero_mlx.modeling import make_trainable, set_params, trainable
from sdzero_mlx.prompts import prompt_ids, separators
from sdzero_mlx.demo.tinymodel import make_model_dir


@pytest.fixture(scope="module")
def student_and_teacher(tiny_model_dir):
    """Student: tiny model + LoRA with non-zero B; teacher dict: the initial LoRA (B = 0, the base)."""
    model, tok = mlx_lm.load(str(tiny_model_dir))
    make_trainable(model, LoraConfig(rank=4, scale=10.0), seed=0)
    base_lora = trainable(model)
    mx.random.seed(1)
    set_params(model, {k: v + 0.05 * mx.random.normal(v.shape) for k, v in base_lora.items()})
    return model, tok, base_lora


def by_hand(student, teacher_fn, prompt, y, eos, sep, kl_settings):
    """The distill layout written out: student prompt + y + eos; teacher prompt + y + sep + y + eos
    (no eos: a cut-off answer). Returns the per-token KL (loss.distill_token_kl) and log-prob gap."""
    scored = list(y) + ([] if eos is None else [eos])
    s_ids = list(prompt) + scored
    t_ids = list(prompt) + list(y) + list(sep) + scored
    n = len(scored)
    s_logits = student(mx.array([s_ids]))[:, len(prompt) - 1:len(prompt) - 1 + n]
    t_start = len(prompt) + len(y) + len(sep)
    t_logits = teacher_fn(mx.array([t_ids]))[:, t_start - 1:t_start - 1 + n]
    kl = distill_token_kl(s_logits, teacher_targets(t_logits, kl_settings.top_k), kl_settings)[0]
    ids = mx.array(scored)
    s_lp = log_softmax(s_logits)[0][mx.arange(n), ids]
    t_lp = log_softmax(t_logits)[0][mx.arange(n), ids]
    return np.array(kl), np.array(s_lp - t_lp)


@pytest.mark.parametrize("reward,top_k,kind", [(0.0, 0, "reverse"), (1.0, 16, "mixed")])
def test_lora_teacher_values_equal_loss_module(student_and_teacher, reward, top_k, kind):
    model, tok, base_lora = student_and_teacher
    pc = PromptConfig()
    seps = separators(tok, pc)
    prompt = prompt_ids(tok, "What is 3 + 4?", pc)
    y = tuple(tok.encode("3 plus 4 is 8. \\boxed{8}", add_special_tokens=False))
    report = token_report(model, tok, base_lora, prompt, y + (tok.eos_token_id,), reward, seps, KlSettings(kind, 0.5, top_k))

    def teacher_fn(ids):
        saved = trainable(model)
        set_params(model, base_lora)
        out = model(ids)
        set_params(model, saved)
        return out

    model.eval()
    kl, delta = by_hand(model, teacher_fn, prompt, y, tok.eos_token_id, seps.for_reward(reward), KlSettings(kind, 0.5, top_k))
    assert len(report.kl) == len(y) + 1 and report.token_ids == y + (tok.eos_token_id,)
    np.testing.assert_allclose(report.kl, kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(report.delta, delta, rtol=1e-4, atol=1e-5)
    assert max(report.kl) > 1e-4  # the student really differs from the teacher
    assert "".join(report.pieces) == tok.decode(list(report.token_ids))
    np.testing.assert_allclose(np.array(report.student_logp) - report.teacher_logp, report.delta, atol=1e-6)


def test_separate_teacher_model_and_renderings(student_and_teacher, tmp_path):
    model, tok, _ = student_and_teacher
    other, _ = mlx_lm.load(str(make_model_dir(tmp_path / "teacher", hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64, seed=5)))
    pc = PromptConfig()
    seps = separators(tok, pc)
    prompt = prompt_ids(tok, "What is 1 + 1?", pc)
    y = tuple(tok.encode("1 <plus> 1 & so \\boxed{2}", add_special_tokens=False))
    report = token_report(model, tok, other, prompt, y, 0.0, seps, KlSettings("reverse", 0.5, 0))  # no end-of-turn: a cut-off answer
    model.eval()
    # without a stop token the teacher reads all of y: prompt + y + sep + y
    scored = list(y)
    t_ids = list(prompt) + scored + list(seps.wrong) + scored
    start = len(prompt) + len(y) + len(seps.wrong)
    t_logits = other(mx.array([t_ids]))[:, start - 1:start - 1 + len(y)]
    s_logits = model(mx.array([list(prompt) + scored]))[:, len(prompt) - 1:len(prompt) - 1 + len(y)]
    np.testing.assert_allclose(report.kl, np.array(distill_token_kl(s_logits, teacher_targets(t_logits, 0), KlSettings("reverse", 0.5, 0))[0]),
                               rtol=1e-4, atol=1e-6)

    page = render_html(report, top_n=3)
    assert "<script" not in page and "src=" not in page and "http" not in page  # self-contained
    assert page.count("<span title=") == 2 * len(report.pieces)
    assert "<plus>" not in page and "&lt;" in page  # model text is escaped
    for i, piece, k, d in top_tokens(report, 3):
        assert f"<td>{i}</td>" in page and f"{k:.4f}" in page
    assert [t[2] for t in top_tokens(report, 3)] == sorted(report.kl, reverse=True)[:3]

    png = tmp_path / "strip.png"
    fig = render_png(report, png)
    pixels = mpimg.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] == 1200  # 10 in at 120 dpi
    assert len(fig.axes[1].patches) == len(report.kl)  # one KL bar per token
    assert len(fig.axes[0].texts) == len(report.pieces)


def test_kl_concentration_by_hand():
    assert kl_concentration([4, 0, 0, 0], 0.25) == 1.0
    assert kl_concentration([1, 1, 1, 1], 0.25) == 0.25
    assert kl_concentration([3, 1, 0, 0, 0, 0, 0, 0, 0, 0], 0.05) == 0.75  # ceil(0.5) = 1 token of 10
    assert kl_concentration([0, 0], 0.05) == 0.5  # zero KL is flat
    with pytest.raises(ValueError):
        kl_concentration([1.0], 0.0)


def fake_report(kl, reward) -> TokenReport:
    n = len(kl)
    zeros = (0.0,) * n
    return TokenReport(tuple(range(n)), ("x",) * n, zeros, zeros, zeros, tuple(kl), reward, KlSettings("reverse", 0.5, 0))


def test_localisation_summary_buckets():
    reports = [fake_report([9, 1, 0, 0], 0.0), fake_report([1, 0, 0, 0], 0.0), fake_report([1, 1, 1, 1], 1.0)]
    wrong, right = localisation_summary(reports, top_frac=0.25)
    assert (wrong.reward, wrong.n, right.reward, right.n) == (0.0, 2, 1.0, 1)
    assert wrong.concentration == pytest.approx((0.9 + 1.0) / 2)
    assert right.concentration == pytest.approx(0.25)
    assert wrong.mean_kl == pytest.approx(11 / 8) and right.mean_kl == pytest.approx(1.0)
    table = summary_table((wrong, right), 0.25)
    assert "| 0 | 2 | 0.950 | 1.3750 | 4.0 |" in table and "top 25% tokens" in table


def test_explain_command_writes_html_and_png(tiny_model_dir, tiny_data, tmp_path):
    from typer.testing import CliRunner

    from sdzero_mlx.cli import app

    teacher = make_model_dir(tmp_path / "t", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, seed=7)
    out = tmp_path / "one"
    result = CliRunner().invoke(app, ["explain", str(tiny_model_dir), "--teacher", str(teacher), "--problem",
                                      "What is 2 + 2?", "--response", "2 plus 2 is 5", "--reward", "0",
                                      "--top-n", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n  #") == 4 and "reward 0;" in result.output
    assert (out / "explain.html").read_text().startswith("<!DOCTYPE html>")
    assert mpimg.imread(out / "explain.png").ndim == 3

    many = tmp_path / "many"
    result = CliRunner().invoke(app, ["explain", str(tiny_model_dir), "--teacher", str(teacher), "--data",
                                      str(tiny_data), "--limit", "3", "--max-tokens", "6", "--out", str(many)])
    assert result.exit_code == 0, result.output
    assert len(list(many.glob("response-*.png"))) == 3 and (many / "buckets.png").is_file()
    assert "| 0 | 3 |" in (many / "summary.md").read_text()  # a random model answers nothing right
    index = (many / "index.html").read_text()
    assert index.count("<tr><td data-value=") == 3 and all(f'href="response-{i:03d}-r0.html"' in index for i in range(3))

    sampled = tmp_path / "sampled"  # no --response: one answer is sampled from the student and graded
    result = CliRunner().invoke(app, ["explain", str(tiny_model_dir), "--teacher", str(teacher), "--problem",
                                      "What is 2 + 2?", "--answer", "4", "--max-tokens", "5", "--out", str(sampled)])
    assert result.exit_code == 0, result.output
    assert "reward 0;" in result.output and (sampled / "explain.html").is_file()  # a random model is wrong


def test_explain_takes_the_student_as_its_own_teacher_by_default(tiny_model_dir, tmp_path):
    """SD-Zero's Reviser is the Generator's own weights: MODEL alone is the normal case, loaded once, and
    explains exactly what naming MODEL again as --teacher does."""
    from typer.testing import CliRunner

    from sdzero_mlx.cli import app
    from sdzero_mlx.explain import load_student_and_teacher

    student, teacher, _ = load_student_and_teacher(str(tiny_model_dir), None, None, None)
    assert teacher is student
    args = ["explain", str(tiny_model_dir), "--problem", "What is 2 + 2?", "--response", "2 plus 2 is 5",
            "--reward", "0", "--top-n", "3"]
    alone = CliRunner().invoke(app, args + ["--out", str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    named = CliRunner().invoke(app, args + ["--teacher", str(tiny_model_dir), "--out", str(tmp_path / "named")])
    assert named.exit_code == 0, named.output
    assert alone.output.count("\n  #") == 3 and "reward 0;" in alone.output
    assert alone.output.split("wrote")[0] == named.output.split("wrote")[0]  # the same KL and deltas
    assert (tmp_path / "alone" / "explain.html").is_file()


def test_top_alternatives_by_hand(tiny_model_dir):
    _, tok = mlx_lm.load(str(tiny_model_dir))
    probs = np.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.1, 0.25, 0.6]])
    logits = mx.array(np.log(probs)[None] + 7.0)  # (1, 2, 4); a shift changes no probability
    first, second = top_alternatives(logits, tok, 3)
    assert [a.token_id for a in first] == [0, 1, 2] and [a.token_id for a in second] == [3, 2, 1]
    np.testing.assert_allclose([a.prob for a in first], [0.5, 0.3, 0.15], rtol=1e-5)
    np.testing.assert_allclose([a.prob for a in second], [0.6, 0.25, 0.1], rtol=1e-5)
    assert first[0].piece == tok.decode([0])


def test_report_alternatives_are_each_roles_top_three(student_and_teacher):
    model, tok, base_lora = student_and_teacher
    pc = PromptConfig()
    seps = separators(tok, pc)
    prompt = prompt_ids(tok, "What is 3 + 4?", pc)
    y = tuple(tok.encode("3 plus 4 is 8. \\boxed{8}", add_special_tokens=False))
    report = token_report(model, tok, base_lora, prompt, y + (tok.eos_token_id,), 0.0, seps, KlSettings("reverse", 0.5, 16))
    model.eval()
    scored = list(y) + [tok.eos_token_id]
    n, start = len(scored), len(prompt) + len(y) + len(seps.wrong)
    s_probs = np.array(mx.softmax(model(mx.array([list(prompt) + scored]))[0, len(prompt) - 1:len(prompt) - 1 + n], axis=-1))
    saved = trainable(model)
    set_params(model, base_lora)  # the teacher: the base values of the LoRA factors
    t_ids = list(prompt) + list(y) + list(seps.wrong) + scored
    t_probs = np.array(mx.softmax(model(mx.array([t_ids]))[0, start - 1:start - 1 + n], axis=-1))
    set_params(model, saved)
    assert len(report.student_top) == len(report.teacher_top) == n
    for tops, probs in ((report.student_top, s_probs), (report.teacher_top, t_probs)):
        for i, alternatives in enumerate(tops):
            order = np.argsort(-probs[i])[:3]
            assert [a.token_id for a in alternatives] == order.tolist()
            np.testing.assert_allclose([a.prob for a in alternatives], probs[i][order], rtol=1e-4, atol=1e-6)
    # where the scored token is among the student's top 3, its probability is exp(student_logp)
    for i, token in enumerate(report.token_ids):
        for a in report.student_top[i]:
            if a.token_id == token:
                assert a.prob == pytest.approx(np.exp(report.student_logp[i]), rel=1e-4)


def test_tooltips_and_top_table_show_both_roles_alternatives():
    student = ((Alternative(9, "9", 0.99), Alternative(8, "8", 0.01), Alternative(4, "4", 0.0)),)
    teacher = ((Alternative(8, "8", 0.998), Alternative(9, "9", 0.001), Alternative(4, "4", 0.001)),)
    report = TokenReport((9,), ("9",), (-0.01,), (-6.9,), (6.89,), (6.8,), 0.0, KlSettings("reverse", 0.5, 64),
                         student_top=student, teacher_top=teacher)
    page = render_html(report, top_n=1)
    tip = "#0 id 9: log p_s - log p_t = +6.890, KL = 6.8000&#10;Generator (student): &#x27;9&#x27; 0.99, &#x27;8&#x27; 0.01"
    assert tip in page and "Reviser (teacher): &#x27;8&#x27; 1.00, &#x27;9&#x27; 0.00" in page
    assert "<th>Reviser's top 3</th>" in page and "<td><code>&#x27;8&#x27; 1.00, &#x27;9&#x27; 0.00, &#x27;4&#x27; 0.00</code></td>" in page
    assert "Reviser's top" not in render_html(fake_report([1.0], 0.0))  # an old report without alternatives


def test_index_page_rows_and_sort_keys():
    reports = [fake_report([9, 1, 0, 0], 0.0), fake_report([1, 1, 1, 1], 1.0)]
    page = render_index(reports, ["response-000-r0", "response-001-r1"], top_frac=0.25)
    assert page.count("<tr><td data-value=") == 2
    # reward, tokens, total KL and top-25% share: each cell carries its number for sorting
    assert '<td data-value="0">0</td><td data-value="4">4</td><td data-value="10">10.0000</td><td data-value="0.9">0.900</td>' in page
    assert '<td data-value="1">1</td><td data-value="4">4</td><td data-value="4">4.0000</td><td data-value="0.25">0.250</td>' in page
    assert page.count('th data-sort="number"') == 5 and "<script>" in page
    assert '<a href="response-001-r1.html">page</a>' in page
    assert page.count("<i style=") == 8  # one strip cell per token
    assert "src=" not in page and "http" not in page  # nothing fetched: the machine may be offline


def test_explaining_a_mixed_recipe_uses_its_forward_weight(tiny_model_dir, tiny_recipe, tiny_data, tmp_path):
    """`sdzero explain --recipe` gives the per-token KL the distill loss trains with: at the recipe's
    distill.forward_weight (0.9 here), not at 0.5 whatever the recipe says."""
    from typer.testing import CliRunner

    from sdzero_mlx.cli import app

    raw = yaml.safe_load(tiny_recipe.read_text())
    raw["distill"].update(kl="mixed", forward_weight=0.9, top_k=16)
    recipe = tmp_path / "mixed.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    teacher_dir = make_model_dir(tmp_path / "t", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, seed=7)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", str(tiny_model_dir), "--teacher", str(teacher_dir), "--data",
                                      str(tiny_data), "--limit", "2", "--max-tokens", "6", "--recipe", str(recipe),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in (out / "reports.jsonl").read_text().splitlines()]
    assert len(reports) == 2 and reports[0]["kl_settings"] == {"kind": "mixed", "forward_weight": 0.9, "top_k": 16, "beta": 0.5,
                                                         "top_k_from": "teacher", "tail": False}

    student, tok = mlx_lm.load(str(tiny_model_dir))
    teacher, _ = mlx_lm.load(str(teacher_dir))
    seps = separators(tok, PromptConfig())
    for r in reports:
        scored = tuple(r["token_ids"])
        eos = scored[-1] if scored[-1] in set(tok.eos_token_ids) else None
        y = scored[:-1] if eos is not None else scored
        prompt = prompt_ids(tok, r["problem"], PromptConfig())
        sep = seps.for_reward(r["reward"])
        at_09, _ = by_hand(student, teacher, prompt, y, eos, sep, KlSettings("mixed", 0.9, 16))
        at_05, _ = by_hand(student, teacher, prompt, y, eos, sep, KlSettings("mixed", 0.5, 16))
        np.testing.assert_allclose(r["kl"], at_09, rtol=1e-4, atol=1e-6)
        assert np.abs(at_09 - at_05).max() > 1e-3  # the weight shows in the numbers


def test_a_sampled_token_report_is_the_log_prob_gap(student_and_teacher):
    # k1 on the sampled token is log p_s(y_t) - log p_t(y_t): exactly the report's delta, token by token
    model, tok, base_lora = student_and_teacher
    pc = PromptConfig()
    y = tuple(tok.encode("3 plus 4 is 8. \\boxed{8}", add_special_tokens=False))
    report = token_report(model, tok, base_lora, prompt_ids(tok, "What is 3 + 4?", pc), y + (tok.eos_token_id,), 0.0,
                          separators(tok, pc), KlSettings("k1", 0.5, 64))
    assert max(abs(d) for d in report.delta) > 1e-3
    np.testing.assert_allclose(report.kl, report.delta, rtol=1e-5, atol=1e-6)

"""`sdzero pass-curve`: pass@k up to k = n and distinct final answers, on hand-made rows and on a real sweep."""

import json

import pytest
import yaml
from matplotlib import image as mpimg
from typer.testing import CliRunner

from sdzero_mlx.cli import app
from sdzero_mlx.passk import final_answer, ks, plot_pass_curves, problem_values
from sdzero_mlx.verifier.config import VerifierConfig

from scripted import scripted_model_dir, write_data

runner = CliRunner()


def test_ks_are_the_powers_of_two_up_to_n_and_n():
    assert ks(16) == [1, 2, 4, 8, 16] and ks(6) == [1, 2, 4, 6] and ks(1) == [1]
    with pytest.raises(ValueError, match="--n must be >= 1"):
        ks(0)


def test_final_answers_are_the_ones_the_verifier_grades():
    v = VerifierConfig()
    assert final_answer("so x = 3, \\boxed{7}", v) == final_answer("The answer is 7.", v) == "7"
    assert final_answer("\\boxed{ 7 }", v) == "7" and final_answer("\\boxed{50\\%}", v) == "50%"
    assert final_answer("no number here", v) is None


def test_pass_at_k_and_distinct_answers_by_hand():
    """4 samples each. p0: 1 right: pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2, pass@4 1; answers 7, 7, 8 and none:
    2 distinct, 1/4 without. p1: none right, all four 3: 0, 0, 0; 1 distinct. p2: 2 right: 1/2, 1 - 1/6 = 5/6, 1;
    answers 5, 5, 6, 6.0 (normalised apart): 3 distinct."""
    rows = [
        {"id": "p0", "rewards": [1, 0, 0, 0], "texts": ["\\boxed{7}", "The answer is 7.", "\\boxed{8}", "I give up"]},
        {"id": "p1", "rewards": [0, 0, 0, 0], "texts": ["\\boxed{3}"] * 4},
        {"id": "p2", "rewards": [1, 0, 1, 0], "texts": ["\\boxed{5}", "\\boxed{6}", "\\boxed{5}", "\\boxed{6.0}"]},
    ]
    v = problem_values(rows, 4, VerifierConfig())
    assert v["pass@1"] == {"p0": 0.25, "p1": 0.0, "p2": 0.5}
    assert v["pass@2"] == pytest.approx({"p0": 0.5, "p1": 0.0, "p2": 5 / 6})
    assert v["pass@4"] == {"p0": 1.0, "p1": 0.0, "p2": 1.0}
    assert v["distinct_answers"] == {"p0": 2.0, "p1": 1.0, "p2": 3.0}
    assert v["no_answer"] == {"p0": 0.25, "p1": 0.0, "p2": 0.0}
    with pytest.raises(ValueError, match="has 4 samples, not 8"):
        problem_values(rows, 8, VerifierConfig())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A finished sweep of the base and RFT over two seeds (RFT at a set budget: no chain to train)."""
    root = tmp_path_factory.mktemp("passk")
    write_data(root / "d.jsonl", 60)
    raw = {
        "model": {"path": str(scripted_model_dir(tmp_path_factory))},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id"}, "phase1_size": 8, "phase2_size": 8,
                 "eval_size": 6, "validation_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.7, "max_tokens": 10, "batch_size": 16},
        "rft": {"questions_per_step": 2, "samples_per_question": 2},
        "eval": {"k": 2, "max_tokens": 10, "greedy": False, "revise": False, "temperature": 1.0},
        "optim": {"learning_rate": 1e-2},
        "compare": {"methods": ["base", "rft"], "budget_generations": 8},
        "run": {"output_dir": str(root / "w"), "seed": 0},
    }
    (root / "r.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["sweep", str(root / "r.yaml"), "--seeds", "0,1"])
    assert result.exit_code == 0, result.output
    return root / "w"


def _rows(run, method, n):
    return [json.loads(line) for line in (run / "eval" / f"{method}.pass{n}.sample.rows.jsonl").read_text().splitlines()]


def test_a_sweep_gets_its_pass_curve_from_n_samples_per_problem(swept):
    avg_files = {p.name: p.read_bytes() for p in (swept / "seed-0" / "eval").iterdir()}
    result = runner.invoke(app, ["pass-curve", str(swept), "--n", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads((swept / "pass-curve.json").read_text())
    assert data["n"] == 4 and data["k"] == [1, 2, 4] and data["seeds"] == [0, 1]
    assert list(data["methods"]) == ["base", "RFT"]
    for label, method in (("base", "base"), ("RFT", "rft")):
        rec = data["methods"][label]
        per_seed = {"pass@1": [], "pass@4": [], "distinct": []}
        for seed in (0, 1):
            rows = _rows(swept / f"seed-{seed}", method, 4)
            assert len(rows) == 6 and all(len(r["rewards"]) == 4 for r in rows)
            # pass@1 from 4 samples is the share of right samples; pass@4 the share of problems with one right
            per_seed["pass@1"].append(sum(sum(r["rewards"]) for r in rows) / 24)
            per_seed["pass@4"].append(sum(max(r["rewards"]) for r in rows) / 6)
            per_seed["distinct"].append(sum(len({final_answer(t, VerifierConfig()) for t in r["texts"]} - {None})
                                            for r in rows) / 6)
        assert rec["pass@1"]["per_seed"] == pytest.approx(per_seed["pass@1"])
        assert rec["pass@4"]["per_seed"] == pytest.approx(per_seed["pass@4"])
        assert rec["distinct_answers"]["per_seed"] == pytest.approx(per_seed["distinct"])
        assert rec["pass@1"]["mean"] <= rec["pass@2"]["mean"] <= rec["pass@4"]["mean"]
        assert rec["pass@4"]["seeds_problems_ci_low"] <= rec["pass@4"]["mean"] <= rec["pass@4"]["seeds_problems_ci_high"]
    table = (swept / "pass-curve.md").read_text()
    assert "| model | pass@1 | pass@2 | pass@4 | distinct answers | no answer |" in table and "| RFT | " in table
    assert mpimg.imread(swept / "pass-curve.png").ndim == 3
    # the avg@k evaluations were neither rewritten nor read: their files are as they were, next to the new ones
    after = {p.name: p.read_bytes() for p in (swept / "seed-0" / "eval").iterdir()}
    assert {k: v for k, v in after.items() if k in avg_files} == avg_files
    assert sorted(set(after) - set(avg_files)) == ["base.pass4.json", "base.pass4.sample.rows.jsonl",
                                                   "rft.pass4.json", "rft.pass4.sample.rows.jsonl"]
    # a rerun reads the cached samples back; one seed's compare run alone gets its curve too
    again = runner.invoke(app, ["pass-curve", str(swept), "--n", "4", "--methods", "rft", "--seeds", "1"])
    assert again.exit_code == 0, again.output
    assert "eval rft.pass4: done, skipped" in again.output
    one = runner.invoke(app, ["pass-curve", str(swept / "seed-0"), "--n", "4", "--methods", "base"])
    assert one.exit_code == 0, one.output
    single = json.loads((swept / "seed-0" / "pass-curve.json").read_text())["methods"]["base"]["pass@4"]
    assert single["mean"] == data["methods"]["base"]["pass@4"]["per_seed"][0] and single["seeds_problems_ci_low"] is None


def test_pass_curve_refuses_what_it_cannot_read(swept, tmp_path):
    nothing = runner.invoke(app, ["pass-curve", str(tmp_path), "--n", "4"])
    assert nothing.exit_code == 2 and "neither a compare run" in nothing.output
    untrained = runner.invoke(app, ["pass-curve", str(swept), "--n", "4", "--methods", "grpo"])
    assert untrained.exit_code == 2 and "no finished grpo model" in untrained.output


def test_the_plot_draws_one_run_without_seeds(tmp_path):
    rec = lambda m: {"mean": m, "ci_low": m - 0.1, "ci_high": m + 0.1, "seeds_problems_ci_low": None, "per_seed": [m]}  # noqa: E731
    data = {"n": 2, "k": [1, 2], "seeds": None,
            "methods": {"base": {"pass@1": rec(0.2), "pass@2": rec(0.3), "distinct_answers": rec(1.5), "no_answer": rec(0)}}}
    plot_pass_curves(data, tmp_path / "p.png")
    assert mpimg.imread(tmp_path / "p.png").ndim == 3

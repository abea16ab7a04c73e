"""`sdzero doctor`: the verdict on hand-made measurements, the hindsight and cost arithmetic by hand, and a
whole doctor run on the scripted model (answers \\boxed{7}; after "not correct" \\boxed{8}), whose every
headline number is known from the data alone."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scripted import scripted_model_dir, write_data
from sdzero_mlx.cli import app
from sdzero_mlx.recipe import load_recipe
from sdzero_mlx.doctor.cost import (
    RunRates, StageEstimate, StepCost, estimate_run, memory_warning, run_peak_gb, run_seconds, srt_step_count,
    workers_warning,
)
from sdzero_mlx.doctor.sequences import cue_in_context
from sdzero_mlx.doctor.run import sft_without_solutions
from sdzero_mlx.doctor.signal import reward_stats
from sdzero_mlx.doctor.verdict import Measures, beats, correction_se, decide
from sdzero_mlx.hindsight import AnswerHindsight, answer_position, summarize_hindsight
from sdzero_mlx.platform.device import memory_limit_for, ram_gb
from sdzero_mlx.stages import stage_spec
from sdzero_mlx.verifier.extract import answer_span
from sdzero_mlx.types import Example, Rollout

runner = CliRunner()


# -- the verdict, on hand-made measurements ------------------------------------------------------

def singles(corrected: int, wrong: int) -> tuple[tuple[int, int], ...]:
    """`wrong` problems with one wrong first attempt each, `corrected` of them corrected."""
    return ((1, 1),) * corrected + ((0, 1),) * (wrong - corrected)


INVERSE = Measures(  # the demo's inverse base, as doctor measured it (docs/doctor.md)
    reward_rate=0.21, truncated_share=0.0, corrections=singles(18, 101), resample_rate=0.19,
    hindsight_answers=64, gold_student=0.000, gold_teacher=0.293, own_student=0.987, own_teacher=0.172,
    gold_raised=0.30, mixed_groups=0.56, kl_concentration_wrong=0.92, kl_concentration_right=0.88,
)
CHAIN = replace(INVERSE, reward_rate=0.38, corrections=singles(10, 79), resample_rate=0.21, gold_student=0.0002,
                gold_teacher=0.0001, own_student=0.999, own_teacher=0.999, gold_raised=0.0, kl_concentration_wrong=0.70,
                kl_concentration_right=0.78)


def test_verdict_separates_the_demo_tasks():
    inverse, chain = decide(INVERSE), decide(CHAIN)
    assert inverse.label == "helps" and "0.293" in inverse.reasons[0]
    assert chain.label == "unlikely" and "run SRT (sdzero collect + srt)" in chain.reasons[0] and "after SRT" in chain.reasons[0]
    assert any("70.0% of the teacher's KL on wrong answers and 78.0% on right ones" in r for r in chain.reasons)


def test_verdict_edges():
    # some gain on the gold, short of the demo's: unclear
    assert decide(replace(CHAIN, gold_teacher=0.03)).label == "unclear"
    # no hindsight, but a Reviser that corrects far more than a resample: unclear, not unlikely
    assert decide(replace(CHAIN, corrections=singles(60, 100))).label == "unclear"
    # code answers have no box to measure hindsight at
    code = decide(replace(INVERSE, boxed_answers=False))
    assert code.label == "unclear" and "code answers have none" in code.reasons[0]
    # too few wrong answers with a box
    assert decide(replace(INVERSE, hindsight_answers=3)).label == "unclear"
    # most answers cut, or nothing left to fix: unlikely whatever the Reviser does
    cut = decide(replace(INVERSE, truncated_share=0.6))
    assert cut.label == "unlikely" and "sampling.max_tokens" in cut.reasons[0]
    assert decide(replace(INVERSE, reward_rate=0.97)).label == "unlikely"
    # reward 1%: the baselines' problem, said as a reason
    rare = decide(replace(INVERSE, reward_rate=0.01))
    assert rare.label == "helps" and any("RFT and GRPO get almost no signal" in r for r in rare.reasons)


def test_correction_beats_resample_by_two_standard_errors():
    assert beats(0.2, singles(40, 100))  # 0.4 - 0.2 > 2 * sqrt(0.24 / 100) = 0.098
    assert not beats(0.2, singles(6, 20))  # 0.3 - 0.2 < 2 * sqrt(0.21 / 20) = 0.205
    assert not beats(None, singles(5, 10)) and not beats(0.2, ())


def test_the_correction_rate_error_is_clustered_by_problem():
    # one attempt per problem: the binomial error, sqrt(p (1 - p) / N)
    assert correction_se(singles(40, 100)) == pytest.approx((0.4, math.sqrt(0.24 / 100)))
    # 4 identical attempts at each problem carry no more information than one: the same error
    four = ((4, 4),) * 40 + ((0, 4),) * 60
    assert correction_se(four) == pytest.approx((0.4, math.sqrt(0.24 / 100)))
    # 25 problems, 10 corrected on every attempt: 0.4 against 0.25 is 0.15 < 2 * sqrt(0.24 / 25) = 0.196 ...
    assert not beats(0.25, ((4, 4),) * 10 + ((0, 4),) * 15)
    # ... while 100 independent problems at the same rate pass (0.15 > 2 * 0.049)
    assert beats(0.25, singles(40, 100))
    # mixed clusters by hand: (1 of 2), (0 of 1), (2 of 2): p = 3/5; residuals -0.2, -0.6, 0.8 -> var 1.04 / 25
    assert correction_se(((1, 2), (0, 1), (2, 2))) == pytest.approx((0.6, math.sqrt(1.04) / 5))
    # a rate of 0 is not certain: the variance floor 0.01 / N
    assert correction_se(singles(0, 25)) == pytest.approx((0.0, math.sqrt(0.01 / 25)))
    m = replace(INVERSE, corrections=((1, 2), (0, 1)))
    assert m.first_wrong == 3 and m.correction_rate == pytest.approx(1 / 3)
    assert replace(INVERSE, corrections=()).correction_rate is None


def test_corrections_are_counted_per_problem():
    from sdzero_mlx.doctor.signal import corrections_by_problem
    from sdzero_mlx.evaluate import ReviseResult, ReviseRow

    row = lambda pid, first, revised: ReviseRow(pid, "1", first, revised, 1, 1, "", "")  # noqa: E731
    rows = (row("a", 0.0, 1.0), row("a", 0.0, 0.0), row("b", 1.0, 0.0), row("c", 0.0, 1.0), row("a", 0.0, 1.0))
    result = ReviseResult(0.2, 0.6, 0.75, 1.0, 1.0, 1.0, 5, 4, 1, 3, 1, 0.0, 5, 5, rows)
    assert corrections_by_problem(result) == ((2, 3), (1, 1))


# -- hindsight and reward arithmetic ---------------------------------------------------------------


def test_box_answer_span():  # hindsight finds a boxed answer where the verifier does
    assert answer_span("so \\boxed{12}.") == (10, 12)
    assert answer_span("\\boxed{\\frac{1}{2}} end") == (7, 18)
    assert answer_span("\\boxed{3") is None and answer_span("no box") is None


def test_answer_position_on_the_tiny_tokenizer(tiny_model_dir):
    from sdzero_mlx.modeling import load_model
    from sdzero_mlx.config import ModelConfig

    _, tok = load_model(ModelConfig(str(tiny_model_dir)))
    y = tuple(tok.encode("x=3\n\\boxed{37}", add_special_tokens=False))
    pos = answer_position(tok, y, "41")
    # every character of "\boxed{" is before the answer: the answer starts at the token of "3" in "37"
    assert tok.decode(list(y[:pos.start])) == "x=3\n\\boxed{"
    assert tok.decode(list(pos.own)) == "37" and tok.decode(list(pos.gold)) == "41"
    assert answer_position(tok, tuple(tok.encode("no box", add_special_tokens=False)), "4") is None
    # "Answer: N" (the SmolLM2 recipe's template) and the last-number fallback are found as the verifier finds them
    y = tuple(tok.encode("so Answer: 37", add_special_tokens=False))
    pos = answer_position(tok, y, "41")
    assert tok.decode(list(pos.own)).strip() == "37" and tok.decode(list(pos.gold)).strip() == "41"
    y = tuple(tok.encode("1 + 5 = 37", add_special_tokens=False))
    assert answer_position(tok, y, "6") is None
    pos = answer_position(tok, y, "6", last_number_fallback=True)
    assert tok.decode(list(y[:pos.start] + pos.own)) == "1 + 5 = 37" and tok.decode(list(pos.gold)).strip() == "6"


def test_summarize_hindsight_by_hand():
    values = [AnswerHindsight(math.log(0.1), math.log(0.9), math.log(0.8), math.log(0.05)),
              AnswerHindsight(math.log(0.2), math.log(0.25), math.log(0.6), math.log(0.55))]
    s = summarize_hindsight(values, missing=3)
    assert s.answers == 2 and s.no_final_answer == 3
    assert s.gold_student == pytest.approx(0.15) and s.gold_teacher == pytest.approx(0.575)
    assert s.gold_gain == pytest.approx(0.425) and s.own_drop == pytest.approx(0.4)
    assert s.gold_raised == 0.5  # only the first adds >= 0.1
    assert s.redirected == pytest.approx(0.425 / 0.4)


def _rollout(i: int, ids: tuple[int, ...], cut: bool = False) -> Rollout:
    return Rollout(Example(f"q{i}", "p", "1"), (1,), ids, "", "length" if cut else "stop", None if cut else 3)


def test_reward_stats_by_hand():
    rollouts = [_rollout(0, (5,)), _rollout(0, (6,)), _rollout(1, (7,), cut=True), _rollout(1, (7,))]
    s = reward_stats([1.0, 0.0, 0.0, 0.0], rollouts, k=2)
    assert s.reward_rate == 0.25 and s.pass_at_k == 0.5 and s.mixed_groups == 0.5 and s.truncated_share == 0.25
    assert s.resample_rate == pytest.approx(1 / 3)  # wrong samples: 1 (the other is right), 0, 0
    assert s.distinct_right == 1.0 and s.mean_tokens == 1.0


def test_cue_in_context(tiny_model_dir):
    from sdzero_mlx.config import ModelConfig, PromptConfig
    from sdzero_mlx.modeling import load_model
    from sdzero_mlx.prompts import separators

    _, tok = load_model(ModelConfig(str(tiny_model_dir)))
    sep = separators(tok, PromptConfig()).wrong
    y = tuple(tok.encode("x=3\n\\boxed{3}", add_special_tokens=False))
    assert cue_in_context(tok, y, sep, y) is None  # the tokenizer writes the cue with these very ids
    # the same text sent character by character: the fresh encoding differs at the cue
    spelled = tuple(i for ch in tok.decode(list(sep)) for i in tok.encode(ch, add_special_tokens=False))
    assert spelled != sep
    assert cue_in_context(tok, y, spelled, y) == sep


# -- the cost arithmetic -------------------------------------------------------------------------


def test_estimate_counts_the_run_like_compare(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["data.phase1_size=10", "collect.revisions=3", "srt.batch_size=4",
                                       "srt.epochs=2", "distill.steps=5", "distill.questions_per_step=4",
                                       "rft.questions_per_step=2", "rft.samples_per_question=2",
                                       "compare.methods=[base,srt,distill,rft]", "eval.k=2", "eval.greedy=true",
                                       "eval.revise=true", "data.eval_size=6", "run.probe_every=0"])
    rates = RunRates(seconds_per_sampled_token=0.01, answer_tokens=10, revision_tokens=20, accuracy=0.5,
                     correction_rate=0.2, rephrase_rate=0.8, distinct_share=1.0, sampling_peak_gb=0.5, load_seconds=1.0)
    steps = {"srt": StepCost("srt", 2.0, 1.0), "distill": StepCost("distill", 3.0, 0.7), "rft": StepCost("rft", 1.0, 0.6)}
    est = {s.name: s for s in estimate_run(recipe, rates, steps, n_solutions=0)}
    # collect: 10 answers + 30 revisions; 10 x 10 + 30 x 20 = 700 tokens at 0.01 s, + load
    assert est["collect"].work == "40 generations" and est["collect"].seconds == pytest.approx(8.0)
    # kept: 10 x 3 x (0.5 x 0.8 + 0.5 x 0.2) = 15 tuples -> 2 epochs x ceil(15 / 4) = 8 steps
    assert srt_step_count(recipe, 15) == 8 and est["srt"].seconds == pytest.approx(1 + 8 * 2.0)
    assert est["distill"].seconds == pytest.approx(1 + 5 * 3.0)
    # budget 40 + 5 x 4 = 60 generations; RFT spends 4 per step -> 15 steps
    assert est["rft"].work == "15 steps" and est["rft"].seconds == pytest.approx(1 + 15 * 1.0)
    # eval: 6 problems x (2 samples + 1 greedy + 1 revision) generations; tokens 6 x (3 x 10 + 20) = 300
    assert est["eval base"].work == "24 generations" and est["eval base"].seconds == pytest.approx(1 + 3.0)
    assert set(est) == {"collect", "srt", "distill", "rft", "eval base", "eval srt", "eval distill", "eval rft"}
    # a group of 3 answers per question: 40 + 5 x 4 x 3 = 100 generations; RFT's 4 per step -> 25 steps
    grouped = replace(recipe, distill=replace(recipe.distill, teacher_context="sibling", group_size=3))
    assert {s.name: s for s in estimate_run(grouped, rates, steps, n_solutions=0)}["rft"].work == "25 steps"
    # one process: the stages' sum; two workers: compare's schedule of them (schedule.makespan)
    stages = list(est.values())
    assert run_seconds(recipe, stages) == pytest.approx(sum(s.seconds for s in stages))
    two = replace(recipe, run=replace(recipe.run, workers=2))
    chain = est["collect"].seconds + est["srt"].seconds + est["distill"].seconds + est["eval distill"].seconds
    assert chain <= run_seconds(two, stages) < run_seconds(recipe, stages)
    assert run_peak_gb(two, stages) == pytest.approx(1.0 + 0.7)  # SRT's and distill's peaks, the two largest


def test_estimate_counts_a_variant_at_its_stage_step_with_its_own_settings(tiny_recipe):
    """A variant of distill alone runs collect and SRT but not the chain's distill; with 4 steps of its own it
    costs 4 distill steps. An RFT variant at 4 generations per step gets the matched budget: collect's 40 + 5
    distill steps x 4 = 60 -> 15 steps. Two workers schedule both without a task of their own missing."""
    variants = ('compare.variants=[{name: "SD-Zero (4 steps)", stage: distill, set: [distill.steps=4]}, '
                '{name: "RFT (fast)", stage: rft, set: [rft.optim.learning_rate=1e-3]}]')
    recipe = load_recipe(tiny_recipe, ["data.phase1_size=10", "collect.revisions=3", "distill.steps=5",
                                       "distill.questions_per_step=4", "rft.questions_per_step=2",
                                       "rft.samples_per_question=2", variants, "run.probe_every=0",
                                       "compare.methods=[base, srt, SD-Zero (4 steps), rft-fast]"])
    rates = RunRates(seconds_per_sampled_token=0.01, answer_tokens=10, revision_tokens=20, accuracy=0.5,
                     correction_rate=0.2, rephrase_rate=0.8, distinct_share=1.0, sampling_peak_gb=0.5, load_seconds=1.0)
    steps = {"srt": StepCost("srt", 2.0, 1.0), "distill": StepCost("distill", 3.0, 0.7), "rft": StepCost("rft", 1.0, 0.6)}
    est = {s.name: s for s in estimate_run(recipe, rates, steps, n_solutions=0)}
    assert {"collect", "srt", "distill"} <= set(est)  # srt is compared: the whole chain, as compare runs it
    assert est["sd-zero-4-steps"].work == "4 steps" and est["sd-zero-4-steps"].seconds == pytest.approx(1 + 4 * 3.0)
    assert est["rft-fast"].work == "15 steps" and est["rft-fast"].seconds == pytest.approx(1 + 15 * 1.0)
    assert {"eval sd-zero-4-steps", "eval rft-fast"} <= set(est)
    stages = list(est.values())
    two = replace(recipe, run=replace(recipe.run, workers=2))
    assert run_seconds(two, stages) < run_seconds(recipe, stages) == pytest.approx(sum(s.seconds for s in stages))
    alone = replace(recipe, compare=replace(recipe.compare, methods=("sd-zero-4-steps",)))
    assert {s.name for s in estimate_run(alone, rates, steps, 0)} == {"collect", "srt", "sd-zero-4-steps",
                                                                      "eval sd-zero-4-steps"}


def test_sft_without_solutions_is_flagged_for_a_variant_of_sft_too(tiny_recipe):
    """compare stops at an SFT row when no training row has a solution, a variant of SFT as much as SFT itself."""
    variant = 'compare.variants=[{name: "SFT (lr 1e-3)", stage: sft, set: [sft.optim.learning_rate=1e-3]}]'
    recipe = load_recipe(tiny_recipe, [variant, "compare.methods=[base, distill, SFT (lr 1e-3)]"])
    flag = sft_without_solutions(recipe, n_solutions=0)
    assert flag is not None and "compare.methods has SFT (lr 1e-3)" in flag.message, flag
    assert sft_without_solutions(recipe, n_solutions=3) is None
    assert sft_without_solutions(load_recipe(tiny_recipe, [variant, "compare.methods=[base, distill]"]), 0) is None
    assert "compare.methods has SFT" in sft_without_solutions(load_recipe(tiny_recipe, ["compare.methods=[sft]"]), 0).message


def test_memory_advice_for_a_variant_names_its_stage_fields(tiny_recipe):
    """A variant's row is named by its id, but the fields that lower its memory are its stage's: a variant of
    distill over the limit is told distill's, not a section named after the variant (there is none)."""
    variants = 'compare.variants=[{name: "SD-Zero (4 steps)", stage: distill, set: [distill.steps=4]}]'
    recipe = load_recipe(tiny_recipe, [variants, "run.probe_every=0", "compare.methods=[base, sd-zero-4-steps]"])
    rates = RunRates(seconds_per_sampled_token=0.01, answer_tokens=10, revision_tokens=20, accuracy=0.5,
                     correction_rate=0.2, rephrase_rate=0.8, distinct_share=1.0, sampling_peak_gb=0.5, load_seconds=1.0)
    steps = {"srt": StepCost("srt", 2.0, 1.0), "distill": StepCost("distill", 3.0, 7.0)}
    text = memory_warning(estimate_run(recipe, rates, steps, n_solutions=0), memory_limit_for("cpu", {}, ram_gb=8.0))
    assert "sd-zero-4-steps peaks at 7.0 GB" in text
    assert f"sd-zero-4-steps: {stage_spec('distill').memory_fields}" in text, text
    assert "sd-zero-4-steps.micro_batch_size" not in text


def stage(name: str, peak_gb: float, seconds: float = 1.0) -> StageEstimate:
    return StageEstimate(name, "", seconds, peak_gb)


def test_memory_warning_names_the_fields():
    stages = [stage("distill", 7.0), stage("eval base", 2.0)]
    assert memory_warning(stages, memory_limit_for("cpu", {}, ram_gb=16.0)) is None  # under 12.8 GB
    text = memory_warning(stages, memory_limit_for("cpu", {}, ram_gb=8.0))
    assert "distill peaks at 7.0 GB, over 80% of this machine's 8.0 GB of RAM (6.4 GB)" in text
    assert "distill.micro_batch_size" in text and "eval" not in text.split("Lower")[1]
    assert memory_warning(stages, None) is None


# a 16 GB Mac as mx.device_info() describes it: Metal lets the GPU keep 10.7 GB resident
METAL_16GB = {"memory_size": 17_179_869_184, "max_recommended_working_set_size": 10_737_418_240}


def test_on_metal_the_limit_is_the_working_set_and_workers_add_their_models():
    metal = memory_limit_for("metal", METAL_16GB, ram_gb=17.18)
    # 12 GB fits 80% of the RAM (13.7 GB) but not Metal's working set
    assert memory_warning([stage("distill", 12.0)], memory_limit_for("cpu", {}, ram_gb=17.18)) is None
    text = memory_warning([stage("distill", 12.0)], metal)
    assert "distill peaks at 12.0 GB, over Metal's recommended working set on this 17.2 GB Mac (10.7 GB)" in text
    # each of 2 workers loads its own model: 6 + 5 GB at once pass 10.7 GB, though each stage alone fits
    both = [stage("distill", 6.0), stage("rft", 5.0), stage("eval base", 1.0)]
    assert memory_warning(both, metal, workers=1) is None
    text = memory_warning(both, metal, workers=2)
    assert "with run.workers = 2 the 2 largest stages can run at once, each with its own model: 11.0 GB" in text
    assert "Set run.workers: 1" in text


def test_workers_on_one_gpu_are_counted_one_after_another(tiny_recipe):
    one = load_recipe(tiny_recipe, ["compare.methods=[base,srt,distill,rft]"])
    two = replace(one, run=replace(one.run, workers=2))
    stages = [stage(n, 1.0, s) for n, s in (("collect", 5), ("srt", 7), ("distill", 9), ("rft", 20), ("eval base", 2),
                                             ("eval srt", 2), ("eval distill", 2), ("eval rft", 2))]
    total = sum(s.seconds for s in stages)
    assert run_seconds(two, stages, device="cpu") < total  # a core per worker: side by side
    assert run_seconds(two, stages, device="gpu (metal)") == pytest.approx(total)  # one GPU: no faster
    text = workers_warning(two, "gpu (metal)")
    assert text.startswith("run.workers = 2 on one GPU (gpu (metal))") and "run.workers: 1" in text
    assert workers_warning(two, "cpu") is None and workers_warning(one, "gpu (metal)") is None


# -- a whole run on the scripted model -----------------------------------------------------------


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scripted_doctor_recipe(tmp_path_factory):
    model = scripted_model_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("doctor")
    write_data(root / "d.jsonl", 24)
    raw = {
        "model": {"path": str(model)},
        "data": {"source": str(root / "d.jsonl"), "fields": {"id": "id"}, "phase1_size": 8, "phase2_size": 8,
                 "eval_size": 4},
        "lora": {"rank": 4, "scale": 10.0},
        "sampling": {"temperature": 0.0, "max_tokens": 10, "batch_size": 16},
        "distill": {"steps": 3, "questions_per_step": 4, "micro_batch_size": 2, "top_k": 8, "max_teacher_tokens": 160},
        "srt": {"batch_size": 4, "micro_batch_size": 4},
        "rft": {"questions_per_step": 4, "samples_per_question": 2, "micro_batch_size": 4},
        "eval": {"k": 2, "temperature": 0.0, "max_tokens": 10},
        "compare": {"methods": ["base", "srt", "distill", "rft"]},
        "optim": {"learning_rate": 1e-2},
        "run": {"output_dir": str(root / "run"), "seed": 0},
    }
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_doctor_on_the_scripted_model(scripted_doctor_recipe, tmp_path):
    from sdzero_mlx.data import make_splits

    recipe = load_recipe(scripted_doctor_recipe)
    model_dir = Path(recipe.model.path)
    before = tree_digest(model_dir)
    out = tmp_path / "out"
    result = runner.invoke(app, ["doctor", str(scripted_doctor_recipe), "--n", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "doctor: [1/5]" in result.output and "Verdict:" in result.output  # progress, then the report

    data = json.loads((out / "doctor.json").read_text())
    for field in ("reward_rate", "truncated_share", "correction_rate", "step_seconds", "peak_memory_gb",
                  "estimated_run_seconds", "verdict", "reasons"):
        assert field in data, field
    assert (out / "doctor.md").read_text().startswith("# sdzero doctor")
    # by hand: the model answers 7 to everything; after "not correct" it answers 8
    answers = [ex.answer for ex in make_splits(recipe.data).training[:8]]
    sevens, eights = answers.count("7"), answers.count("8")
    assert data["reward_rate"] == sevens / 8
    assert data["correction_rate"] == pytest.approx(eights / (8 - sevens))
    assert data["truncated_share"] == 0.0 and data["resample_rate"] == 0.0  # greedy: a second try repeats the first
    # hindsight: the Reviser moves the box to 8, so the gold gains exactly on the 8-questions
    assert data["gold_prob_reviser"] > data["gold_prob_generator"] + 0.5 * eights / (8 - sevens)
    assert data["verdict"] == "helps"
    assert set(data["step_seconds_by_stage"]) == {"srt", "distill", "rft"} and data["step_seconds"] > 0
    assert data["peak_memory_gb"] > 0 and data["estimated_run_seconds"] > 0
    # held against the limit of the device it ran on: this CPU's 80% of the RAM; one worker, no warning
    assert data["device"] == "cpu" and data["memory_limit_gb"] == pytest.approx(0.8 * ram_gb())
    assert data["memory_limit_source"].startswith("80% of this machine's") and data["workers_warning"] is None
    # the sequences: the teacher's parts are the prompt, y, sep(r) and y again with its stop token
    teacher = data["sequences"][-1]["parts"]
    assert [p["name"] for p in teacher] == ["prompt", "answer", "cue", "answer (scored)"]
    assert teacher[3]["ids"] == teacher[1]["ids"] + [teacher[3]["ids"][-1]] and "<|im_end|>" in teacher[3]["text"]
    assert "Wait, this response is not correct" in teacher[2]["text"]
    assert data["flags"] == []  # a ChatML template whose end of turn is the eos, a cue that keeps its ids, no cut
    # hindsight at the first wrong step: "\\boxed{7}" holds no equation, so no wrong answer has one (coverage 0)
    first = data["hindsight_first_error"]
    assert first["wrong_answers"] == 8 * 2 - data["rewards"]["reward_rate"] * 16 and first["found"] == 0
    assert first["coverage"] == 0.0 and first["scored"] == 0 and first["kl_top_tokens_on_step"] is None
    assert "wrong answers with a first wrong step (coverage) | 0.0% of" in (out / "doctor.md").read_text()
    # each teacher context, on the same wrong answers: every wrong group answers 7 twice (greedy), so none has a
    # verified sibling; the rows have no solution; self shows a wrong answer nothing; answer and cue show all of them
    contexts = data["teacher_contexts"]
    assert list(contexts) == ["cue", "sibling", "gold", "self", "answer"]
    wrong = first["wrong_answers"]
    assert [contexts[c]["covered"] for c in contexts] == [wrong, 0, 0, 0, wrong]
    assert contexts["cue"]["gold_prob_reviser"] == data["gold_prob_reviser"]  # the cue's is the measure above
    assert contexts["answer"]["scored"] == data["hindsight"]["answers"]
    # the cue moves the box to 8: the one context that raises the gold (the scripted model never read the answer's
    # sentence); the others have nothing to score
    assert (data["recommended_context"], data["recommended_place"]) == ("cue", "the answer")
    assert data["context_scores"]["cue"] == pytest.approx(contexts["cue"]["gold_gain"])  # coverage 1
    assert data["context_scores"]["cue"] > data["context_scores"]["answer"]
    assert data["context_scores"]["sibling"] is None  # nothing to score
    assert "## The teacher's contexts" in (out / "doctor.md").read_text()
    # no SRT in this run: the base is what the verdict read, and the report says so
    assert data["teacher"] is None and data["verdict_read"] == "base" and "not measured" in data["teacher_source"]
    # nothing written into the run directory, the model folder untouched
    assert not Path(recipe.run.output_dir).exists()
    assert tree_digest(model_dir) == before


def test_doctor_reads_the_teacher_after_srt(scripted_doctor_recipe, tmp_path):
    """A run that has finished SRT: doctor measures RUN/srt/model beside the base and the verdict reads it;
    --teacher none measures the base only; --teacher naming the recipe's own model reads it as the teacher."""
    recipe = load_recipe(scripted_doctor_recipe)
    run = tmp_path / "run"
    at = ["--set", f"run.output_dir={run}"]
    for stage in ("collect", "srt"):
        done = runner.invoke(app, [stage, str(scripted_doctor_recipe), *at])
        assert done.exit_code == 0, done.output
    result = runner.invoke(app, ["doctor", str(scripted_doctor_recipe), "--n", "8", "--out", str(tmp_path / "a"), *at])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "a" / "doctor.json").read_text())
    assert data["verdict_read"] == "teacher" and data["teacher"]["model"] == str(run / "srt" / "model")
    assert data["teacher_source"].startswith("RUN/srt/model") and data["model"] == recipe.model.path
    teacher = data["teacher"]
    for key in ("reward_rate", "correction_rate", "gold_prob_reviser", "hindsight", "hindsight_first_error", "kl"):
        assert key in teacher, key
    md = (tmp_path / "a" / "doctor.md").read_text()
    assert f"(read on the teacher after SRT, {run / 'srt' / 'model'})" in md and "| measure | base | teacher (after SRT) |" in md

    result = runner.invoke(app, ["doctor", str(scripted_doctor_recipe), "--n", "8", "--out", str(tmp_path / "b"),
                                 "--teacher", "none", *at])
    data = json.loads((tmp_path / "b" / "doctor.json").read_text())
    assert result.exit_code == 0 and data["teacher"] is None and data["verdict_read"] == "base"
    # the SRT model as the recipe's own model: it is the teacher, measured once
    result = runner.invoke(app, ["doctor", str(scripted_doctor_recipe), "--n", "8", "--out", str(tmp_path / "c"),
                                 "--set", f"model.path={run / 'srt' / 'model'}", *at])
    data = json.loads((tmp_path / "c" / "doctor.json").read_text())
    assert result.exit_code == 0 and data["teacher"] is None and data["verdict_read"] == "teacher"
    bad = runner.invoke(app, ["doctor", str(scripted_doctor_recipe), "--out", str(tmp_path / "d"), "--teacher",
                              str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "is not a model folder (no config.json)" in bad.output and "Traceback" not in bad.output


def test_doctor_refuses_an_out_inside_the_run_directory(scripted_doctor_recipe):
    run_dir = load_recipe(scripted_doctor_recipe).run.output_dir
    result = runner.invoke(app, ["doctor", str(scripted_doctor_recipe), "--out", f"{run_dir}/doctor"])
    assert result.exit_code == 2 and "inside run.output_dir" in result.output and "Traceback" not in result.output
    assert not Path(run_dir).exists()


def test_bad_recipe_gives_one_error_line(tmp_path, tiny_recipe):
    raw = yaml.safe_load(tiny_recipe.read_text())
    raw["distill"]["micro_batch_sise"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["doctor", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "micro_batch_sise" in errors[0]
    assert not (tmp_path / "o").exists()


# -- the checks on sequences ---------------------------------------------------------------------


def test_caps_flag_teacher_sequences_and_cut_answers(tiny_recipe):
    from sdzero_mlx.doctor.sequences import caps_flags
    from sdzero_mlx.prompts import Separators

    recipe = load_recipe(tiny_recipe, ["distill.max_teacher_tokens=40", "sampling.max_tokens=12", "eval.max_tokens=12"])
    seps = Separators(right=(9,) * 4, wrong=(8,) * 5)
    fits = Rollout(Example("a", "p", "1"), (1,) * 10, (5,) * 7, "", "stop", 3)  # 10 + 2 x 8 + 5 = 31 tokens
    long = Rollout(Example("b", "p", "1"), (1,) * 10, (5,) * 12, "", "length", None)  # 10 + 2 x 12 + 5 = 39
    longer = Rollout(Example("c", "p", "1"), (1,) * 20, (5,) * 12, "", "length", None)  # 49 > 40
    cut = caps_flags(recipe, [fits, long], [], seps)
    assert len(cut) == 1 and "50% of answers stop at sampling.max_tokens=12" in cut[0].message
    checks = [f.check for f in caps_flags(recipe, [fits, longer], [12, 3], seps)]
    assert checks == ["answers cut", "revisions cut", "teacher sequences cut"]
    assert caps_flags(recipe, [fits, fits], [3, 3], seps) == []


def test_turn_closed_before_the_cue(tiny_model_dir, tmp_path, tiny_recipe):
    """A model whose eos is not the template's end of turn: its answers would hold <|im_end|> before the cue."""
    import shutil

    from sdzero_mlx.config import ModelConfig
    from sdzero_mlx.doctor.sequences import check_turn
    from sdzero_mlx.modeling import load_model

    recipe = load_recipe(tiny_recipe)
    _, tok = load_model(ModelConfig(str(tiny_model_dir)))
    described, flags = check_turn(tok, recipe, [])
    assert "'<|im_end|>\\n'" in described and flags == []
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    for name, key, value in (("tokenizer_config.json", "eos_token", "<|unk|>"), ("config.json", "eos_token_id", 1)):
        cfg = json.loads((broken / name).read_text())
        cfg[key] = value
        (broken / name).write_text(json.dumps(cfg))
    _, tok = load_model(ModelConfig(str(broken)))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    holding = Rollout(Example("a", "p", "1"), (5,), (7, im_end, 8), "", "length", None)
    _, flags = check_turn(tok, recipe, [holding])
    assert [f.check for f in flags] == ["turn closed before the cue", "special tokens inside answers"]
    assert f"(id {im_end})" in flags[0].message

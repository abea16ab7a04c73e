"""The doctor's job: load the recipe's model, sample, measure, step each stage once, decide, write the report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import mlx.core as mx

from ..compare import baseline_specs
from ..config import Recipe
from ..data import make_splits
from ..evaluate import ReviseResult
from ..explain import BucketStats
from ..hindsight import HindsightSummary
from ..modeling import load_model, padding_id
from ..outputs import OutputError, check_output_dir
from ..prompts import separators, template_args
from ..stages.collect import generation_counter
from .cost import (
    RunRates, StageEstimate, StepCost, estimate_run, measure_steps, memory_warning, run_peak_gb, run_seconds,
    total_memory_gb,
)
from .sequences import Flag, ShownSequence, caps_flags, check_cue, check_system, check_thinking, check_turn, shown_sequences
from .signal import RewardStats, answer_hindsight, kl_buckets, revise, reward_stats, sample_answers
from .verdict import Measures, Verdict, decide

DEFAULT_N = 32


@dataclass(frozen=True)
class Template:
    has_template: bool
    args: dict  # extra chat-template variables (enable_thinking)
    turn: str  # how an assistant turn ends
    system: str  # the system prompt check


@dataclass(frozen=True)
class DoctorReport:
    recipe: str
    model: str
    split: str  # which problems were sampled
    n_problems: int
    k: int
    template: Template
    sequences: tuple[ShownSequence, ...]
    flags: tuple[Flag, ...]
    rewards: RewardStats
    revision: ReviseResult
    hindsight: HindsightSummary
    kl: dict[str, BucketStats]
    steps: dict[str, StepCost]
    estimate: tuple[StageEstimate, ...]
    machine_memory_gb: Optional[float]
    memory_warning: Optional[str]
    load_average: Optional[float]  # the machine's 1-minute load average when the steps were timed
    cores: int
    verdict: Verdict
    seconds: float
    estimated_run_seconds: float  # cost.run_seconds: the stages in sequence, or side by side with run.workers > 1
    peak_memory_gb: float  # cost.run_peak_gb
    workers: int  # run.workers


def check_out_dir(out_dir: Path, run_dir: str) -> Path:
    """--out must be writable and must not lie inside the recipe's run directory (doctor never writes there)."""
    out, run = Path(out_dir).expanduser().resolve(), Path(run_dir).expanduser().resolve()
    if out == run or run in out.parents:
        raise OutputError(f"--out {out_dir} lies inside run.output_dir {run_dir}; doctor never writes into a run "
                          "directory. Choose another --out.")
    return check_output_dir(out_dir, "--out")


def doctor_problems(recipe: Recipe, n: int):
    """(split name, the first n problems): the validation split when the recipe has one, else the training
    split (phase 1 + phase 2); never the evaluation split."""
    splits = make_splits(recipe.data)
    validation = getattr(splits, "validation", ())
    name, pool = ("validation", validation) if validation else ("training (phase 1 + phase 2)", splits.training)
    if not pool:
        raise ValueError("The recipe's training split is empty: set data.phase1_size or data.phase2_size.")
    return name, tuple(pool[:n])


def run_doctor(recipe: Recipe, recipe_path: str, n: int = DEFAULT_N, out_dir: Path = Path("doctor"),
               log: Callable[[str], None] = print) -> DoctorReport:
    """Measure, step, decide; writes OUT/doctor.md and OUT/doctor.json and returns the report."""
    from .report import write_report

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}.")
    tic = time.perf_counter()
    out_dir = check_out_dir(out_dir, recipe.run.output_dir)  # before any work
    split, examples = doctor_problems(recipe, n)
    k = recipe.eval.k
    log(f"doctor: {len(examples)} problems of the {split} split, {k} answers each; model {recipe.model.path}")
    load_tic = time.perf_counter()
    model, tokenizer = load_model(recipe.model)
    load_seconds = time.perf_counter() - load_tic
    seps, pad = separators(tokenizer, recipe.prompts), padding_id(tokenizer)

    log(f"doctor: [1/5] sampling {len(examples) * k} answers (training sampling: T={recipe.sampling.temperature}, "
        f"max_tokens={recipe.sampling.max_tokens})")
    samples = sample_answers(model, tokenizer, examples, recipe, k, generation_counter(log))
    stats = reward_stats(samples.rewards, samples.rollouts, k)
    log(f"doctor: reward rate {100 * stats.reward_rate:.1f}%, cut at max_tokens {100 * stats.truncated_share:.1f}%")
    log(f"doctor: [2/5] generate-then-revise, {k} first attempts per problem")
    revision = revise(model, tokenizer, examples, recipe, k, generation_counter(log))
    log("doctor: [3/5] the Reviser's hindsight on wrong answers, KL concentration")
    hindsight = answer_hindsight(model, tokenizer, samples.graded, seps, pad,
                                 last_number_fallback=recipe.verifier.last_number_fallback)
    kl = kl_buckets(model, tokenizer, samples.graded, seps, recipe)

    log("doctor: [4/5] sequences and template checks")
    wrong = next((g for g in samples.graded if g.reward < 0.5), None)
    right = next((g for g in samples.graded if g.reward >= 0.5), None)
    sequences = shown_sequences(tokenizer, right, wrong, seps, recipe.distill.max_teacher_tokens)
    turn, flags = check_turn(tokenizer, recipe, samples.rollouts)
    system, system_flag = check_system(model, tokenizer, recipe, samples.rollouts, pad)
    flags += [f for f in (check_cue(tokenizer, samples.graded, seps), check_thinking(tokenizer, recipe), system_flag) if f]
    flags += caps_flags(recipe, samples.rollouts, [row.revised_tokens for row in revision.rows], seps)
    n_solutions = sum(ex.solution is not None for ex in make_splits(recipe.data).training)
    if "sft" in recipe.compare.methods and not n_solutions:
        flags.append(Flag("SFT without solutions", "compare.methods has sft but no training row has a solution: "
                          "compare stops there. Set data.fields.solution or drop sft from compare.methods."))
    template = Template(bool(getattr(tokenizer, "chat_template", None)), template_args(tokenizer, recipe.prompts), turn, system)
    vocab = int(model(mx.array([[0]])).shape[-1])  # the logits' width: what the loss's targets span
    del model
    mx.clear_cache()

    baselines = baseline_specs()
    stages = ["srt", "distill"] + [m for m in recipe.compare.methods if m in baselines and (m != "sft" or n_solutions)]
    log(f"doctor: [5/5] one step of each stage ({', '.join(stages)}) in a temporary folder")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    steps = measure_steps(recipe, samples.graded, k, seps, stages, log)
    rates = RunRates(
        seconds_per_sampled_token=samples.seconds / max(samples.sampled_tokens, 1),
        answer_tokens=stats.mean_tokens,
        revision_tokens=revision.revised_tokens,
        accuracy=stats.reward_rate,
        correction_rate=revision.correction_rate or 0.0,
        rephrase_rate=1.0 - (revision.degradation_rate or 0.0),
        distinct_share=stats.distinct_right,
        sampling_peak_gb=samples.peak_memory_gb,
        load_seconds=load_seconds,
        vocab_size=vocab,
    )
    estimate = tuple(estimate_run(recipe, rates, steps, n_solutions))
    machine = total_memory_gb()
    warning = memory_warning(estimate, machine)
    verdict = decide(Measures(
        reward_rate=stats.reward_rate, truncated_share=stats.truncated_share, correction_rate=revision.correction_rate,
        first_wrong=revision.n_first_wrong, resample_rate=stats.resample_rate, hindsight_answers=hindsight.answers, gold_student=hindsight.gold_student,
        gold_teacher=hindsight.gold_teacher, own_student=hindsight.own_student, own_teacher=hindsight.own_teacher,
        gold_raised=hindsight.gold_raised, mixed_groups=stats.mixed_groups, boxed_answers=recipe.verifier.kind != "code",
        kl_concentration_wrong=kl["wrong"].concentration if "wrong" in kl else None,
        kl_concentration_right=kl["right"].concentration if "right" in kl else None,
    ))
    report = DoctorReport(
        recipe=recipe_path, model=recipe.model.path, split=split, n_problems=len(examples), k=k, template=template,
        sequences=tuple(sequences), flags=tuple(flags), rewards=stats, revision=revision, hindsight=hindsight, kl=kl,
        steps=steps, estimate=estimate, machine_memory_gb=machine, memory_warning=warning, load_average=load, cores=os.cpu_count() or 1, verdict=verdict,
        seconds=time.perf_counter() - tic, estimated_run_seconds=run_seconds(recipe, estimate),
        peak_memory_gb=run_peak_gb(recipe, estimate), workers=recipe.run.workers,
    )
    write_report(report, out_dir)
    return report

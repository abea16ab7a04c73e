"""The doctor's job: load the recipe's model, sample, measure, step each stage once, decide, write the report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import mlx.core as mx

from ..config import Recipe
from ..data import make_splits
from ..modeling import load_model, padding_id
from ..platform.device import device_name, memory_limit, ram_gb
from ..prompts import separators, template_args
from ..recipe import method_labels
from ..stages import chain, stage_spec
from ..tasks import trained_specs
from ..writable import OutputError, check_output_dir
from .cost import RunRates, estimate_run, measure_steps, memory_warning, run_peak_gb, run_seconds, workers_warning
from .report import DoctorReport, Template, write_report
from .sequences import (
    Flag, caps_flags, check_cue, check_system, check_thinking, check_turn, phase2_item, shown_sequences,
)
from .signal import Signal, corrections_by_problem, measure_signal
from .verdict import Measures, decide, recommend_context

DEFAULT_N = 32


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


@dataclass(frozen=True)
class TeacherChoice:
    """The model phase 2's teacher will be (the model after SRT), as doctor found it."""

    path: Optional[str]  # a second model to measure; None: none (see source)
    source: str  # how it was chosen, or why none is measured
    is_base: bool = False  # the recipe's own model is the teacher (model.path set to RUN/srt/model)


def teacher_model(recipe: Recipe, teacher: Optional[str]) -> TeacherChoice:
    """`teacher` when given ("none": no teacher), else RUN/srt/model when the recipe's run has finished SRT."""
    if teacher == "none":
        return TeacherChoice(None, "not measured (--teacher none)")
    if teacher:
        if not (Path(teacher).expanduser() / "config.json").is_file():
            raise FileNotFoundError(f"--teacher {teacher} is not a model folder (no config.json). Give the fused SRT "
                                    "model, RUN/srt/model, or --teacher none.")
        path, source = Path(teacher).expanduser(), "--teacher"
    else:
        srt = Path(recipe.run.output_dir).expanduser() / "srt"
        if not (stage_spec("srt").run_dir(srt).finished() and (srt / "model" / "config.json").is_file()):
            return TeacherChoice(None, "not measured: the recipe's run has no finished SRT model (RUN/srt/model); "
                                       "after `sdzero collect` and `sdzero srt` doctor reads it, or pass --teacher PATH")
        path, source = srt / "model", "RUN/srt/model: the recipe's run has finished SRT"
    if path.resolve() == Path(recipe.model.path).expanduser().resolve():
        return TeacherChoice(None, f"the recipe's model is the teacher ({source})", is_base=True)
    return TeacherChoice(str(path), source)


def sft_without_solutions(recipe: Recipe, n_solutions: int) -> Optional[Flag]:
    """The flag for a compared method trained by SFT (sft, or a variant of it) when no training row has a solution."""
    trained = trained_specs(recipe)
    sft = [method_labels(recipe)[m] for m in recipe.compare.methods if m in trained and trained[m].name == "sft"]
    if not sft or n_solutions:
        return None
    return Flag("SFT without solutions", f"compare.methods has {', '.join(sft)}, which trains on gold solutions, but no "
                "training row has one: compare stops there. Set data.fields.solution or drop it from compare.methods.")


def measures(signal: Signal, recipe: Recipe, read: str) -> Measures:
    """What the verdict reads, from one model's signal."""
    stats, h, f, kl = signal.rewards, signal.hindsight, signal.first_error, signal.kl
    return Measures(
        reward_rate=stats.reward_rate, truncated_share=stats.truncated_share,
        corrections=corrections_by_problem(signal.revision), resample_rate=stats.resample_rate,
        hindsight_answers=h.answers, gold_student=h.gold_student, gold_teacher=h.gold_teacher,
        own_student=h.own_student, own_teacher=h.own_teacher, gold_raised=h.gold_raised,
        mixed_groups=stats.mixed_groups, boxed_answers=recipe.verifier.kind != "code",
        kl_concentration_wrong=kl["wrong"].concentration if "wrong" in kl else None,
        kl_concentration_right=kl["right"].concentration if "right" in kl else None,
        step_coverage=None if f is None else f.coverage,
        step_answers=0 if f is None else f.hindsight.answers,
        step_gold_student=0.0 if f is None else f.hindsight.gold_student,
        step_gold_teacher=0.0 if f is None else f.hindsight.gold_teacher,
        step_gold_raised=0.0 if f is None else f.hindsight.gold_raised,
        step_kl_hits=None if f is None or not f.localisation.answers else f.localisation.hit_share,
        step_kl_chance=None if f is None or not f.localisation.answers else f.localisation.chance_share,
        read=read,
    )


def run_doctor(recipe: Recipe, recipe_path: str, n: int = DEFAULT_N, out_dir: Path = Path("doctor"),
               log: Callable[[str], None] = print, teacher: Optional[str] = None) -> DoctorReport:
    """Measure, step, decide; writes OUT/doctor.md and OUT/doctor.json and returns the report."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}.")
    tic = time.perf_counter()
    out_dir = check_out_dir(out_dir, recipe.run.output_dir)  # before any work
    split, examples = doctor_problems(recipe, n)
    k = recipe.eval.k
    log(f"doctor: {len(examples)} problems of the {split} split, {k} answers each; model {recipe.model.path}")
    choice = teacher_model(recipe, teacher)
    log(f"doctor: the teacher after SRT: {choice.path or '-'} ({choice.source})")
    load_tic = time.perf_counter()
    model, tokenizer = load_model(recipe.model)
    load_seconds = time.perf_counter() - load_tic
    seps, pad = separators(tokenizer, recipe.prompts), padding_id(tokenizer)

    base = measure_signal(model, tokenizer, recipe.model.path, examples, recipe, k, seps, pad, log)
    samples, stats, revision = base.samples, base.rewards, base.revision

    log("doctor: [4/5] sequences and template checks")
    wrong = next((g for g in samples.graded if g.reward < 0.5), None)
    right = next((g for g in samples.graded if g.reward >= 0.5), None)
    sequences = shown_sequences(tokenizer, right, wrong, seps, recipe.distill.max_teacher_tokens,
                                phase2_item(recipe, tokenizer, seps, samples.graded, k))
    turn, flags = check_turn(tokenizer, recipe, samples.rollouts)
    system, system_flag = check_system(model, tokenizer, recipe, samples.rollouts, pad)
    flags += [f for f in (check_cue(tokenizer, samples.graded, seps), check_thinking(tokenizer, recipe), system_flag) if f]
    flags += caps_flags(recipe, samples.rollouts, [row.revised_tokens for row in revision.rows], seps)
    n_solutions = sum(ex.solution is not None for ex in make_splits(recipe.data).training)
    flags += [f for f in (sft_without_solutions(recipe, n_solutions),) if f]
    template = Template(bool(getattr(tokenizer, "chat_template", None)), template_args(tokenizer, recipe.prompts), turn, system)
    vocab = int(model(mx.array([[0]])).shape[-1])  # the logits' width: what the loss's targets span
    del model
    mx.clear_cache()
    teacher_signal = None
    if choice.path is not None:
        log(f"doctor: the same measures on the teacher after SRT, {choice.path}")
        t_model, t_tokenizer = load_model(replace(recipe.model, path=choice.path))
        teacher_signal = measure_signal(t_model, t_tokenizer, choice.path, examples, recipe, k,
                                        separators(t_tokenizer, recipe.prompts), padding_id(t_tokenizer), log,
                                        prefix="doctor (teacher):")
        del t_model
        mx.clear_cache()

    trained = trained_specs(recipe)  # baselines and variants: one step of each stage they train
    chain_trained = [s.name for s in chain() if s.run is not None]  # srt, distill
    stages = list(dict.fromkeys(chain_trained + [trained[m].name for m in recipe.compare.methods if m in trained
                                                 and (trained[m].name != "sft" or n_solutions)]))
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
    machine, limit, device = ram_gb(), memory_limit(), device_name()
    warning = memory_warning(estimate, limit, recipe.run.workers)
    read = "teacher" if teacher_signal is not None or choice.is_base else "base"
    read_signal = base if teacher_signal is None else teacher_signal
    verdict = decide(measures(read_signal, recipe, read))
    report = DoctorReport(
        recipe=recipe_path, model=recipe.model.path, split=split, n_problems=len(examples), k=k, template=template,
        sequences=tuple(sequences), flags=tuple(flags), base=base, teacher=teacher_signal,
        teacher_source=choice.source, read=read,
        steps=steps, estimate=estimate, machine_memory_gb=machine, memory_limit=limit, memory_warning=warning,
        device=device, workers_warning=workers_warning(recipe, device), load_average=load, cores=os.cpu_count() or 1,
        verdict=verdict, context_choice=recommend_context(read_signal.contexts), seconds=time.perf_counter() - tic, estimated_run_seconds=run_seconds(recipe, estimate, device),
        peak_memory_gb=run_peak_gb(recipe, estimate), workers=recipe.run.workers,
    )
    write_report(report, out_dir)
    return report

"""Baseline: self-distillation from demonstrations (SDFT), phase 2's code with another teacher context.

Per step, as in distill.py: one answer y per question from the current student (questions from the
training pool, phase 1 + phase 2), graded for the metrics only. The teacher is the frozen initial
model (same weights, initial values of the trained parameters) reading a demonstration instead of
the student's own attempt and the verifier's cue:
  context = user (SDFT's form):  chat(demo_template(problem, demonstration)) + y
  context = rephrase:            chat(x) + demonstration + sep(r = 1) + y   (SD-Zero's layout, right answer)
The student, chat(x) + y, is trained to the teacher's distributions on y with the KL settings of the
distill section (direction, top-k, teacher cap, micro-batch size), through the same step (kd.py).
Demonstration: the dataset's gold solution (`sdft.demonstration: gold`, where the row has one) or a
verified own answer: this step's y when it verifies. A question with neither is taught by the
teacher reading nothing more than the student (its KL is zero): counted as `no_demonstration`.

Departures: the SDFT paper's teacher is the current model; here it is frozen at the start, like
SD-Zero's teacher, so the two differ only in context; the KL is distill's (reverse on the teacher's
top-64 by default; SDFT's paper: over the full vocabulary); LoRA by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..checkpoint import TrainingState
from ..config import PromptConfig, SdftConfig
from ..data import make_splits
from ..kd import distill_step, item_with_context
from .loop import StepOutcome, restore, sample_and_grade, sampled_outcome, start_stage, train_loop
from ..metrics import StepRecord
from ..modeling import trainable
from ..probe import make_probe
from ..prompts import prompt_ids, separators, text_answer_ids
from ..update import make_optimizer
from ..types import DistillItem, Rollout
from . import StageSpec

if TYPE_CHECKING:
    from ..config import Recipe

SDFT_SECTIONS = ("model", "data", "lora", "prompts", "sampling", "distill", "sdft", "verifier")


def generations_per_step(recipe: Recipe) -> int:
    return recipe.sdft.questions_per_step


def sdft_item(recipe: Recipe, tokenizer, rollout: Rollout, reward: float, right_sep: tuple[int, ...]) -> tuple[DistillItem, bool]:
    """The student / teacher pair of one sampled answer; the flag says whether a demonstration was found."""
    cfg, ex = recipe.sdft, rollout.example
    demo_text, demo_ids = None, None
    if cfg.demonstration == "gold" and ex.solution:
        demo_text = ex.solution
        demo_ids = text_answer_ids(tokenizer, ex.solution)[0]
    elif reward >= 0.5:  # a verified own answer: this very sample
        demo_text, demo_ids = rollout.text, rollout.completion_ids
    cap = recipe.distill.max_teacher_tokens
    if demo_ids is None:  # nothing to show: the teacher reads what the student reads
        return item_with_context(rollout.prompt_ids, (), rollout.target_ids, rollout.prompt_ids, (), cap, reward), False
    if cfg.context == "rephrase":
        return item_with_context(rollout.prompt_ids, demo_ids, rollout.target_ids, rollout.prompt_ids, right_sep, cap, reward), True
    template = cfg.demo_template.replace("{demonstration}", demo_text)
    teacher_prompt = prompt_ids(tokenizer, ex.problem, PromptConfig(
        system=recipe.prompts.system, template=template.replace("{problem}", recipe.prompts.template),
        enable_thinking=recipe.prompts.enable_thinking))
    return item_with_context(rollout.prompt_ids, (), rollout.target_ids, teacher_prompt, (), cap, reward), True


def run_sdft(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train by SDFT into run_dir (adapters, metrics, checkpoint); resumable like distill."""
    run = start_stage(recipe, run_dir, resume, SDFT_SECTIONS, ignore=("sdft.steps",))
    run_dir, model, tokenizer, pad = run.run_dir, run.model, run.tokenizer, run.pad_id
    cfg = recipe.sdft
    right_sep = separators(tokenizer, recipe.prompts).right
    pool = make_splits(recipe.data).training
    optimizer = make_optimizer(cfg.optim, cfg.steps)
    teacher = trainable(model)  # frozen initial values
    state = restore(run_dir, model, optimizer)[0] if resume else TrainingState()

    def step_fn(step: int) -> StepOutcome:
        rollouts, rewards, sample_s = sample_and_grade(model, tokenizer, recipe, pool, step, cfg.questions_per_step)
        built = [sdft_item(recipe, tokenizer, r, w, right_sep) for r, w in zip(rollouts, rewards)]
        items = [item for item, _ in built]
        result = distill_step(model, optimizer, teacher, items, recipe.distill, pad, cfg.optim, teacher)
        return sampled_outcome(result, rollouts, rewards, sample_s,
                               trained_tokens=sum(it.student_span[1] - it.student_span[0] for it in items),
                               details=(("no_demonstration", float(sum(not found for _, found in built))),))

    return train_loop(
        recipe=recipe, run_dir=run_dir, stage="sdft", steps=cfg.steps, model=model,
        optimizer_for_step=lambda _: optimizer, step_fn=step_fn, state=state,
        probe=make_probe(recipe, tokenizer), on_step=on_step, stop_after=stop_after,
    )


SPEC = StageSpec(
    name="sdft", label="SDFT", help="Baseline: self-distillation from demonstrations (section sdft; KL settings from distill).",
    section=SdftConfig, sections=SDFT_SECTIONS, order=70, run=run_sdft, generations_per_step=generations_per_step,
)

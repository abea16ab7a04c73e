"""Phase 2 of SD-Zero: on-policy self-distillation from the frozen Reviser into the Generator.

For each question (one sample each, no filtering, with the defaults):
  y ~ student(. | chat(x));  r = verify(y, a)
  student positions: chat(x) + y            predicting every token of y (and its end-of-turn token)
  teacher positions: chat(x) + y + sep(r) + y  predicting the same tokens in the second copy
  loss = mean over all scored tokens of the optimizer step of KL(student || stopgrad teacher)
The teacher is the same weights with the teacher's own values of the trained parameters (see
teacher.py), so the only external signal is the verifier's bit, which picks the control phrase.
Roles: the method's Generator is the `student` here, its Reviser the `teacher`.

Departures from the paper are recipe fields (see config.py): LoRA by default instead of full
fine-tuning (`lora.fine_tune_type`),
teacher top-k 64 renormalised (reference code) instead of the full vocabulary, shorter lengths,
a larger learning rate. When prompt + y + sep + y exceeds `distill.max_teacher_tokens`, y is cut
to the same length in all three places. What the teacher reads before the scored y is
`distill.teacher_context` (contexts.py: the paper's cue, a verified sibling answer, the gold
solution, y itself when it verifies, or the cue stating the gold answer), from
`distill.group_size` answers per question (paper: 1; every one counts as a generation), and
`distill.advantage_weight` adds GRPO's policy-gradient term on the same samples (paper: none).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import mlx.core as mx

from ..checkpoint import TrainingState
from ..config import DistillConfig
from ..data import make_splits
from ..contexts import Reading, cue_context, item_in, teacher_items
from ..kd import distill_step
from .loop import StepOutcome, sample_and_grade, sampled_outcome, start_training
from ..loss import group_advantages
from ..metrics import StepRecord
from ..modeling import trainable
from ..prompts import Separators, separators
from ..teacher import next_teacher
from ..types import DistillItem, Graded
from . import StageSpec

if TYPE_CHECKING:
    from ..config import Recipe


def distill_item(graded: Graded, seps: Separators, max_teacher_tokens: int) -> DistillItem:
    """Build the student and teacher sequences of one graded rollout from token ids only (the paper's cue)."""
    return item_in(cue_context(graded, seps), graded, max_teacher_tokens)  # y itself, then sep(r)


# What phase 2 depends on: a resumed run must agree on all of it except the number of steps.
DISTILL_SECTIONS = ("model", "data", "lora", "prompts", "sampling", "distill", "verifier")


def run_distill(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train the generator by self-distillation; returns the final budget/step state.

    `stop_after` ends the run after that many steps of this call (tests use it to interrupt).
    """
    cfg, kl_settings = recipe.distill, recipe.distill.kl_settings
    run = start_training(recipe, run_dir, resume, "distill", DISTILL_SECTIONS, cfg.steps, extra_names=("teacher",))
    model, tokenizer, pad, optimizer = run.model, run.tokenizer, run.pad_id, run.optimizer
    seps = separators(tokenizer, recipe.prompts)
    pool = make_splits(recipe.data).phase2
    reading = distill_reading(recipe, tokenizer, seps, pool)

    # the teacher's values of the trained parameters: the initial ones (LoRA B = 0: the base model), until a sync
    # (a resumed run's: its checkpoint's, taken out of `run` so that a sync frees it); the penalty's reference
    # (run.initial) keeps the initial ones past a sync only when optim.kl_to_initial is on
    teacher = {"values": run.extras.pop("teacher") if resume else trainable(model)}

    def step_fn(step: int) -> StepOutcome:
        # 1. rollouts from the current student, seeded by (seed, step) so a resume repeats them; 2. binary reward
        rollouts, rewards, sample_s = sample_and_grade(model, tokenizer, recipe, pool, step, cfg.questions_per_step,
                                                       cfg.group_size)
        # 3. teacher and student sequences from ids, in the recipe's teacher context
        graded = [Graded(r, w) for r, w in zip(rollouts, rewards)]
        built = teacher_items(reading, graded, cfg.group_size, cfg.max_teacher_tokens)
        items = with_advantages(built.items, built.answers, rewards, cfg.group_size) if cfg.advantage_weight else built.items
        # 4. teacher targets, then one accumulated student step; 5. teacher sync rule
        result = distill_step(model, optimizer, teacher["values"], items, kl_settings, cfg.micro_batch_size, pad,
                              cfg.optim, run.initial, cfg.advantage_weight)
        teacher["values"] = next_teacher(teacher["values"], trainable(model), cfg, step + 1)
        details = () if cfg.teacher_context == "cue" else (("without_hint", float(built.without_hint)),
                                                            ("skipped_answers", float(built.skipped)))
        return sampled_outcome(result, rollouts, rewards, sample_s,
                               trained_tokens=sum(it.student_span[1] - it.student_span[0] for it in items),
                               details=details)

    return run.train(cfg.steps, step_fn, on_step, stop_after, extra_state=lambda: {"teacher": teacher["values"]})


def distill_reading(recipe: Recipe, tokenizer, seps: Separators, pool) -> Reading:
    """How phase 2's teacher reads (contexts.py); gold refused on a split without solutions, which would make it self."""
    cfg = recipe.distill
    if cfg.teacher_context == "gold" and not any(ex.solution for ex in pool):
        raise ValueError("distill.teacher_context: gold shows the row's solution, and no phase-2 question has one. Set "
                         "data.fields.solution, or use teacher_context: answer (the gold final answer, which every row "
                         "has) or sibling.")
    return Reading(cfg.teacher_context, seps, tokenizer, recipe.prompts, cfg.no_sibling, cfg.answer_phrase)


def with_advantages(items: Sequence[DistillItem], answers: Sequence[int], rewards: Sequence[float],
                    group_size: int) -> list[DistillItem]:
    """The items with their answer's GRPO advantage (loss.group_advantages over its group, scaled by the std).

    Example: group rewards (1, 0, 0, 1) -> advantages (1, -1, -1, 1) (up to the std's epsilon).
    """
    adv = group_advantages(mx.array(rewards, dtype=mx.float32).reshape(-1, group_size)).reshape(-1).tolist()
    return [replace(it, advantage=adv[i]) for it, i in zip(items, answers)]


def generations_per_step(recipe: Recipe) -> int:
    """Every sampled answer counts, a whole group per question."""
    return recipe.distill.questions_per_step * recipe.distill.group_size


def check_recipe(recipe: Recipe) -> None:
    """What phase 2 needs from the other sections."""
    if recipe.distill.questions_per_step > recipe.data.phase2_size:
        raise ValueError(
            f"distill.questions_per_step ({recipe.distill.questions_per_step}) exceeds data.phase2_size "
            f"({recipe.data.phase2_size}); lower it or enlarge the phase-2 split."
        )
    if recipe.distill.max_teacher_tokens <= recipe.sampling.max_tokens:
        raise ValueError(
            "distill.max_teacher_tokens must exceed sampling.max_tokens (the teacher sees y twice); "
            f"got {recipe.distill.max_teacher_tokens} <= {recipe.sampling.max_tokens}."
        )


SPEC = StageSpec(
    name="distill", label="SD-Zero", help="Phase 2: on-policy self-distillation of the Reviser into the Generator.",
    section=DistillConfig, sections=DISTILL_SECTIONS, order=30, run=run_distill,
    generations_per_step=generations_per_step, baseline=False, check=check_recipe,
)

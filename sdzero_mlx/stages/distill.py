"""Phase 2 of SD-Zero: on-policy self-distillation from the frozen Reviser into the Generator.

For each question (one sample each, no filtering):
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
to the same length in all three places.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..checkpoint import TrainingState
from ..config import DistillConfig
from ..data import make_splits
from ..kd import distill_step, item_with_context
from .loop import StepOutcome, restore, sample_and_grade, sampled_outcome, start_stage, train_loop
from ..metrics import StepRecord
from ..modeling import trainable
from ..probe import make_probe
from ..prompts import Separators, separators
from ..teacher import next_teacher
from ..update import make_optimizer
from ..types import DistillItem, Graded
from . import StageSpec

if TYPE_CHECKING:
    from ..config import Recipe


def distill_item(graded: Graded, seps: Separators, max_teacher_tokens: int) -> DistillItem:
    """Build the student and teacher sequences of one graded rollout from token ids only."""
    rollout = graded.rollout  # the Reviser reads y itself, then sep(r): teacher prompt = student prompt
    return item_with_context(rollout.prompt_ids, rollout.completion_ids, rollout.target_ids, rollout.prompt_ids,
                             seps.for_reward(graded.reward), max_teacher_tokens, graded.reward)


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
    run = start_stage(recipe, run_dir, resume, DISTILL_SECTIONS, ignore=("distill.steps",))
    run_dir, model, tokenizer, pad = run.run_dir, run.model, run.tokenizer, run.pad_id
    cfg = recipe.distill
    seps = separators(tokenizer, recipe.prompts)
    pool = make_splits(recipe.data).phase2
    optimizer = make_optimizer(cfg.optim, cfg.steps)

    # the teacher's values of the trained parameters: the initial ones (LoRA B = 0: the base model), until a sync;
    # the penalty's reference keeps them past a sync only when optim.kl_to_initial is on
    teacher = {"values": trainable(model)}
    initial = teacher["values"] if cfg.optim.kl_to_initial > 0 else None
    state = TrainingState()
    if resume:
        state, extras = restore(run_dir, model, optimizer, ("teacher",))
        teacher["values"] = extras["teacher"]

    def step_fn(step: int) -> StepOutcome:
        # 1. rollouts from the current student, seeded by (seed, step) so a resume repeats them; 2. binary reward
        rollouts, rewards, sample_s = sample_and_grade(model, tokenizer, recipe, pool, step, cfg.questions_per_step)
        # 3. teacher and student sequences from ids
        items = [distill_item(Graded(r, w), seps, cfg.max_teacher_tokens) for r, w in zip(rollouts, rewards)]
        # 4. teacher targets, then one accumulated student step; 5. teacher sync rule
        result = distill_step(model, optimizer, teacher["values"], items, cfg, pad, cfg.optim, initial)
        teacher["values"] = next_teacher(teacher["values"], trainable(model), cfg, step + 1)
        return sampled_outcome(result, rollouts, rewards, sample_s,
                               trained_tokens=sum(it.student_span[1] - it.student_span[0] for it in items))

    return train_loop(
        recipe=recipe, run_dir=run_dir, stage="distill", steps=cfg.steps, model=model,
        optimizer_for_step=lambda _: optimizer, step_fn=step_fn, state=state,
        extra_state=lambda: {"teacher": teacher["values"]}, probe=make_probe(recipe, tokenizer),
        on_step=on_step, stop_after=stop_after,
    )


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
    generations_per_step=lambda recipe: recipe.distill.questions_per_step, baseline=False, check=check_recipe,
)

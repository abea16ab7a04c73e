"""Baseline: self-distillation from demonstrations (SDFT), phase 2's code with another teacher context.

Per step, as in distill.py: one answer y per question from the current student (questions from the
training pool, phase 1 + phase 2), graded for the metrics only. The teacher is the frozen initial
model (same weights, initial values of the trained parameters) reading a demonstration instead of
the student's own attempt and the verifier's cue: `sdft.demonstration` gold is phase 2's
`distill.teacher_context: gold`, own is its `self` (contexts.py builds both), laid out as
  context = user (SDFT's form):  chat(demo_template(problem, demonstration)) + y
  context = rephrase:            chat(x) + demonstration + sep(r = 1) + y   (SD-Zero's layout, right answer)
The student, chat(x) + y, is trained to the teacher's distributions on y with the KL settings of the
distill section (direction, top-k, teacher cap, micro-batch size), through the same step (kd.py).
Demonstration: the dataset's gold solution (`sdft.demonstration: gold`, where the row has one) or a
verified own answer: this step's y when it verifies. A question with neither is taught by the
teacher reading nothing more than the student (its KL is zero): counted as `no_demonstration`.
So this stage is SDFT as a baseline from the base model; the same contexts from the SRT model are
`sdzero distill` with `distill.teacher_context: gold` or `self` (rephrase layout).

Departures: the SDFT paper's teacher is the current model; here it is frozen at the start, like
SD-Zero's teacher, so the two differ only in context; the KL is distill's (reverse on the teacher's
top-64 by default; SDFT's paper: over the full vocabulary); LoRA by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional

from ..config import OptimConfig, optim_field
from ..contexts import Reading, teacher_items
from ..data import make_splits
from ..kd import distill_step
from ..loss import Penalty
from ..metrics import StepRecord
from ..modeling import trainable
from ..prompts import separators
from ..types import Graded, TrainingState
from ..update import make_optimizer
from . import StageSpec
from .loop import StepOutcome, open_stage, sample_and_grade, sampled_outcome

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class SdftConfig:
    """Self-distillation from demonstrations: phase 2's code, whose teacher reads a demonstration
    instead of the student's own attempt and cue. KL direction, top-k, teacher cap and micro-batch
    size come from the distill section, so the two differ only in the teacher's context."""

    steps: int = 10
    questions_per_step: int = 8
    demonstration: Literal["gold", "own"] = field(
        default="gold",
        metadata={"help": "gold: the dataset's solution where it has one, else a verified own sample from this step "
                  "(a question with neither is taught by the plain model); own: always a verified own sample."},
    )
    context: Literal["user", "rephrase"] = field(
        default="user",
        metadata={"help": "user (SDFT's form): the demonstration is shown in the user turn with demo_template; rephrase: "
                  "it stands as a first attempt followed by sep(r=1), SD-Zero's layout with a correct answer."},
    )
    demo_template: str = field(
        default="{problem}\n\nThis is an example of a correct solution:\n{demonstration}\n\nNow answer with a solution of your own.",
        metadata={"help": "Teacher's user turn for context=user; {problem} and {demonstration} are replaced."},
    )
    optim: OptimConfig = optim_field("SDFT")

    def __post_init__(self):
        if self.steps < 1 or self.questions_per_step < 1:
            raise ValueError("sdft.steps and questions_per_step must be >= 1.")
        if "{demonstration}" not in self.demo_template:
            raise ValueError("sdft.demo_template must contain {demonstration}.")


SDFT_SECTIONS = ("model", "data", "lora", "prompts", "sampling", "sdft", "verifier")
# what SDFT reads of the distill section: its loss (KlSettings), the teacher's cap and the micro-batch, no more (a
# change of distill's steps or context leaves SDFT's model as it was)
SDFT_READS = ("distill.kl", "distill.forward_weight", "distill.beta", "distill.top_k", "distill.top_k_from",
              "distill.tail", "distill.max_teacher_tokens", "distill.micro_batch_size")


def generations_per_step(recipe: Recipe) -> int:
    return recipe.sdft.questions_per_step


def sdft_reading(recipe: Recipe, tokenizer) -> Reading:
    """SDFT's teacher as a phase-2 reading: gold or self, in the user turn or after the answer (sdft.context)."""
    cfg = recipe.sdft
    return Reading(DEMONSTRATION_CONTEXTS[cfg.demonstration], separators(tokenizer, recipe.prompts), tokenizer,
                   recipe.prompts, demo_template=cfg.demo_template if cfg.context == "user" else None)


# sdft.demonstration's names for distill.teacher_context's
DEMONSTRATION_CONTEXTS = {"gold": "gold", "own": "self"}


def run_sdft(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train by SDFT into run_dir (adapters, metrics, checkpoint); resumable like distill."""
    cfg, kl_settings = recipe.sdft, recipe.distill.kl_settings  # SDFT trains with distill's KL
    with open_stage(recipe, run_dir, resume, SPEC) as run:
        model, tokenizer, pad = run.model, run.tokenizer, run.pad_id
        teacher = trainable(model)  # frozen initial values, taken before any resume: also the penalty's reference
        kl = Penalty(cfg.optim.kl_to_initial, teacher)
        optimizer = make_optimizer(cfg.optim, cfg.steps)
        state, _ = run.restore([optimizer])
        reading = sdft_reading(recipe, tokenizer)
        pool = make_splits(recipe.data).training

        def step_fn(step: int) -> StepOutcome:
            sampled = sample_and_grade(model, tokenizer, recipe, pool, step, cfg.questions_per_step)
            built = teacher_items(reading, [Graded(r, w) for r, w in zip(sampled.rollouts, sampled.rewards)], 1,
                                  recipe.distill.max_teacher_tokens)
            items = built.items
            result = distill_step(model, optimizer, teacher, items, kl_settings, recipe.distill.micro_batch_size, pad,
                                  cfg.optim.grad_clip, kl)
            return sampled_outcome(result, sampled, trained_tokens=sum(it.student_span[1] - it.student_span[0]
                                                                       for it in items),
                                   details=(("no_demonstration", float(built.without_hint)),))

        return run.train(cfg.steps, step_fn, [optimizer], state=state, on_step=on_step, stop_after=stop_after)


SPEC = StageSpec(
    name="sdft", label="SDFT", help="Baseline: self-distillation from demonstrations (section sdft; KL settings from distill).",
    section=SdftConfig, sections=SDFT_SECTIONS, order=70, run=run_sdft, generations_per_step=generations_per_step,
    caps=("distill.max_teacher_tokens",), reads=SDFT_READS,
    memory="distill.micro_batch_size, distill.max_teacher_tokens, and distill's loss (as for distill)",
)

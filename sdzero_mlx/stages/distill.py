"""Phase 2 of SD-Zero: on-policy self-distillation from the frozen Reviser into the Generator.

For each question (one sample each, no filtering, with the defaults):
  y ~ student(. | chat(x));  r = verify(y, a)
  student positions: chat(x) + y            predicting every token of y (and its end-of-turn token)
  teacher positions: chat(x) + y + sep(r) + y  predicting the same tokens in the second copy
  loss = mean over all scored tokens of the optimizer step of KL(student || stopgrad teacher)
The teacher is the same weights with the teacher's own values of the trained parameters (see
teacher.py), so the only external signal is the verifier's bit, which picks the control phrase.
Roles: the method's Generator is the `student` here, its Reviser the `teacher`.

Departures from the paper are recipe fields (the section below; config.py for the shared ones): LoRA by
default instead of full fine-tuning (`lora.fine_tune_type`), a larger learning rate, shorter lengths;
- `distill.kl` "reverse" (paper; reference code "mixed" with forward weight 0.5); it also offers jsd
  (`distill.beta`, TRL's) and the sampled-token estimators k1 / k3 (verl's): not in the paper.
- `distill.top_k` 64 renormalised (reference code); 0 means the full vocabulary (paper).
  `distill.top_k_from` teacher, `distill.tail` false (reference code).
- `distill.teacher_context` "cue" (paper: y and sep(r)); sibling / gold / self / answer are other
  contexts (contexts.py: a verified sibling answer, the gold solution, y itself when it verifies, or
  the cue stating the gold answer), from `distill.group_size` answers per question (paper: 1; every
  one counts as a generation); `distill.advantage_weight` adds GRPO's policy-gradient term on the same
  samples (paper: none).
- `distill.teacher_sync` "none" (paper's main results); "hard" / "ema" are the paper's "iterative
  self-evolution" (hard sync after ~400 steps in the paper).
When prompt + y + sep + y exceeds `distill.max_teacher_tokens`, y is cut to the same length in all
three places.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional, Sequence

import mlx.core as mx

from ..config import KlSettings, OptimConfig, optim_field
from ..contexts import Reading, teacher_items
from ..data import make_splits
from ..kd import distill_step
from ..loss import group_advantages
from ..metrics import StepRecord
from ..modeling import trainable
from ..prompts import Separators, separators
from ..teacher import next_teacher
from ..types import DistillItem, Graded, TrainingState
from ..update import make_optimizer
from . import StageSpec
from .loop import StepOutcome, open_stage, penalty, sample_and_grade, sampled_outcome

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 10
    questions_per_step: int = field(default=8, metadata={"help": "Questions per optimizer step, group_size answers each."})
    micro_batch_size: int = field(default=8, metadata={"help": "Sequences per forward/backward; accumulation."})
    teacher_context: Literal["cue", "sibling", "gold", "self", "answer"] = field(
        default="cue",
        metadata={"help": "What the teacher reads before the student's answer y (contexts.py; docs/configuration.md#the-"
                  "teachers-context): cue (paper): y and sep(r); sibling: another answer of the same question that "
                  "verified (groups of group_size), then sep(1); gold: the row's solution, then sep(1) (SDFT's gold); "
                  "self: y itself, then sep(1), when it verifies (SDFT's own); answer: y, then sep(r) stating the gold "
                  "final answer (answer_phrase)."},
    )
    group_size: int = field(
        default=1,
        metadata={"help": "Answers sampled per question, each trained (paper: 1); generations per step = questions_per_step "
                  "x group_size. teacher_context sibling and advantage_weight need >= 2 (GRPO's: 4)."},
    )
    no_sibling: Literal["cue", "skip"] = field(
        default="cue",
        metadata={"help": "teacher_context sibling, a group in which no answer verifies: cue (its answers are taught by the "
                  "paper's context) or skip (left out of the step; their generations still count). Not in the paper."},
    )
    answer_phrase: str = field(
        default="The correct final answer is {answer}.",
        metadata={"help": "teacher_context answer: the sentence after P_r in the cue; {answer} is the row's gold answer. "
                  "Not in the paper (its cue states only right or wrong)."},
    )
    advantage_weight: float = field(
        default=0.0,
        metadata={"help": "Adds GRPO's policy-gradient term on the same samples to the distillation: weight x "
                  "-A x log p(y_t) on each token (A: the group-normalised reward, one update, temperature 1), over "
                  "the step's tokens like the KL. Paper: 0 (distillation alone); needs group_size >= 2."},
    )
    kl: Literal["reverse", "forward", "mixed", "jsd", "k1", "k3"] = field(
        default="reverse",
        metadata={"help": "reverse KL(s || t), forward KL(t || s), mixed (forward_weight), jsd (TRL's generalized JSD, "
                  "beta), or a sampled-token estimator of KL(s || t) that reads only log p(y_t): k1 (trained by its "
                  "score-function gradient, as verl's policy-gradient distillation) or k3 (loss.k3_kl, as the "
                  "kl_to_initial penalty: its expected gradient is the forward KL's). Paper: reverse; reference code: mixed."},
    )
    forward_weight: float = field(default=0.5, metadata={"help": "Weight of forward KL when kl = mixed."})
    beta: float = field(
        default=0.5,
        metadata={"help": "kl = jsd: beta KL(t || m) + (1 - beta) KL(s || m), m = beta p_t + (1 - beta) p_s (TRL's GKD "
                  "beta: 0 = forward KL, 1 = reverse KL exactly). Not in the paper (reverse KL)."},
    )
    top_k: int = field(
        default=64,
        metadata={"help": "Support of the divergence: top-k ids, renormalised over them unless tail (reference code: the "
                  "teacher's 64); 0 = the full vocabulary (paper). Not read by k1 / k3."},
    )
    top_k_from: Literal["teacher", "student"] = field(
        default="teacher",
        metadata={"help": "Whose top-k ids make the support: the teacher's (reference code) or the student's (SDPO's; "
                  "one more student forward per micro-batch). Paper: the full vocabulary."},
    )
    tail: bool = field(
        default=False,
        metadata={"help": "Keep the mass outside the top-k as one more category, log(1 - sum p) clamped below 1 (SDPO), "
                  "instead of renormalising over the top-k (reference code). Paper: the full vocabulary, no tail."},
    )
    max_teacher_tokens: int = field(
        default=2048, metadata={"help": "Cap on prompt + y + sep + y; y is truncated identically in both."}
    )
    teacher_sync: Literal["none", "hard", "ema"] = field(default="none", metadata={"help": "Paper main results: none."})
    sync_every: int = field(default=0, metadata={"help": "Steps between hard syncs."})
    ema_decay: float = field(default=0.99, metadata={"help": "Teacher <- decay * teacher + (1 - decay) * student."})
    optim: OptimConfig = optim_field("Distill")

    def __post_init__(self):
        if self.steps < 1 or self.questions_per_step < 1 or self.micro_batch_size < 1 or self.group_size < 1:
            raise ValueError("distill.steps, questions_per_step, micro_batch_size and group_size must be >= 1.")
        self.kl_settings  # checks kl, forward_weight, beta, top_k, top_k_from and tail
        if self.teacher_context == "sibling" and self.group_size < 2:
            raise ValueError("distill.teacher_context: sibling reads another answer to the same question, and "
                             f"distill.group_size is {self.group_size}: set distill.group_size >= 2 (GRPO's 4).")
        if self.no_sibling != "cue" and self.teacher_context != "sibling":
            raise ValueError(f"distill.no_sibling is read only with teacher_context: sibling (it is "
                             f"{self.teacher_context}); remove it or set teacher_context: sibling.")
        if "{answer}" not in self.answer_phrase:
            raise ValueError(f"distill.answer_phrase must contain {{answer}} (the row's gold answer), got {self.answer_phrase!r}.")
        if self.advantage_weight < 0:
            raise ValueError(f"distill.advantage_weight must be >= 0, got {self.advantage_weight}.")
        if self.advantage_weight > 0 and self.group_size < 2:
            raise ValueError("distill.advantage_weight compares the answers of a group (GRPO's advantage), and "
                             f"distill.group_size is {self.group_size}: set distill.group_size >= 2 (GRPO's 4).")
        if self.teacher_sync == "hard" and self.sync_every < 1:
            raise ValueError("distill.teacher_sync = hard needs distill.sync_every >= 1 (steps between syncs).")
        if self.teacher_sync != "hard" and self.sync_every:
            raise ValueError("distill.sync_every is only used with distill.teacher_sync = hard; remove it or set hard.")
        if self.teacher_sync == "ema" and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"distill.ema_decay must be in (0, 1), got {self.ema_decay}.")

    @property
    def kl_settings(self) -> KlSettings:
        """The KL of this section as one record (distill and SDFT train with it, explain shows it)."""
        return KlSettings(kind=self.kl, forward_weight=self.forward_weight, top_k=self.top_k, beta=self.beta,
                          top_k_from=self.top_k_from, tail=self.tail)


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
    with open_stage(recipe, run_dir, resume, SPEC) as run:
        model, tokenizer, pad = run.model, run.tokenizer, run.pad_id
        kl = penalty(model, cfg.optim)
        optimizer = make_optimizer(cfg.optim, cfg.steps)
        state, extras = run.restore([optimizer], extra_names=("teacher",))
        seps = separators(tokenizer, recipe.prompts)
        pool = make_splits(recipe.data).phase2
        reading = distill_reading(recipe, tokenizer, seps, pool)

        # the teacher's values of the trained parameters: the initial ones (LoRA B = 0: the base model), until a
        # sync (a resumed run's: its checkpoint's, held here alone so that a sync frees them); the penalty's
        # reference keeps the initial ones past a sync only when optim.kl_to_initial is on
        teacher = {"values": extras.pop("teacher") if resume else trainable(model)}

        def step_fn(step: int) -> StepOutcome:
            # 1. rollouts from the current student, seeded by (seed, step) so a resume repeats them; 2. binary reward
            sampled = sample_and_grade(model, tokenizer, recipe, pool, step, cfg.questions_per_step, cfg.group_size)
            # 3. teacher and student sequences from ids, in the recipe's teacher context
            graded = [Graded(r, w) for r, w in zip(sampled.rollouts, sampled.rewards)]
            built = teacher_items(reading, graded, cfg.group_size, cfg.max_teacher_tokens)
            items = (with_advantages(built.items, built.answers, sampled.rewards, cfg.group_size)
                     if cfg.advantage_weight else built.items)
            # 4. teacher targets, then one accumulated student step; 5. teacher sync rule
            result = distill_step(model, optimizer, teacher["values"], items, kl_settings, cfg.micro_batch_size, pad,
                                  cfg.optim.grad_clip, kl, cfg.advantage_weight)
            teacher["values"] = next_teacher(teacher["values"], trainable(model), cfg, step + 1)
            details = () if cfg.teacher_context == "cue" else (("without_hint", float(built.without_hint)),
                                                                ("skipped_answers", float(built.skipped)))
            return sampled_outcome(result, sampled, trained_tokens=sum(it.student_span[1] - it.student_span[0]
                                                                       for it in items), details=details)

        return run.train(cfg.steps, step_fn, [optimizer], state=state, extra_state=lambda: {"teacher": teacher["values"]},
                         on_step=on_step, stop_after=stop_after)


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
    caps=("distill.max_teacher_tokens",), starts_from="srt",
    memory="distill.micro_batch_size, sampling.max_tokens, distill.max_teacher_tokens, lora.grad_checkpoint: true, "
           "and the loss: a top-k without tail holds the least (distill.top_k > 0, distill.tail: false), the full "
           "vocabulary (distill.top_k: 0) the most, jsd most of all",
)

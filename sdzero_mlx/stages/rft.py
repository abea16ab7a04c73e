"""Baseline: rejection-sampling fine-tuning (RFT), iterated on-policy.

Per optimizer step: take `rft.questions_per_step` questions (seeded by (seed, step)) from the
training pool (phase 1 + phase 2: every question SD-Zero trains on), sample `rft.samples_per_question`
answers to each from the current model (one shared prefill per question), verify them, and take one
NLL step on the verified answers' own token ids, end-of-turn token included (the token mean over
the step's kept tokens). A step with no verified answer makes no update (its generations still count
in the budget).

Departures from the paper's RFT (which fine-tunes once on a fixed set of verified samples): the
iterated, on-policy form, so that it spends generations at the same pace as SD-Zero's phase 2;
LoRA by default (`lora.fine_tune_type`); a step's kept answers may include duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..config import OptimConfig, optim_field
from ..data import make_splits
from ..loss import nll_batches, weighted_nll, with_reference
from ..metrics import StepRecord
from ..types import TrainingState
from ..update import make_optimizer, optimizer_step
from . import StageSpec
from .loop import StepOutcome, open_stage, penalty, sample_and_grade, sampled_outcome

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class RftConfig:
    """Rejection-sampling fine-tuning, iterated on-policy: sample k answers per question from the
    current model, keep the verified ones, one NLL step on them (end-of-turn token included)."""

    steps: int = 10
    questions_per_step: int = 8
    samples_per_question: int = field(default=4, metadata={"help": "k answers sampled per question (the paper's RFT keeps every verified one)."})
    micro_batch_size: int = 8
    optim: OptimConfig = optim_field("RFT")

    def __post_init__(self):
        if min(self.steps, self.questions_per_step, self.samples_per_question, self.micro_batch_size) < 1:
            raise ValueError("rft.steps, questions_per_step, samples_per_question and micro_batch_size must be >= 1.")


RFT_SECTIONS = ("model", "data", "lora", "prompts", "sampling", "rft", "verifier")


def generations_per_step(recipe: Recipe) -> int:
    return recipe.rft.questions_per_step * recipe.rft.samples_per_question


def run_rft(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train by RFT into run_dir (adapters, metrics, checkpoint); resumable like distill."""
    cfg = recipe.rft
    pool = make_splits(recipe.data).training
    with open_stage(recipe, run_dir, resume, SPEC) as run:
        model, pad = run.model, run.pad_id
        kl = penalty(model, cfg.optim)
        optimizer = make_optimizer(cfg.optim, cfg.steps)
        state, _ = run.restore([optimizer])

        def step_fn(step: int) -> StepOutcome:
            sampled = sample_and_grade(model, run.tokenizer, recipe, pool, step, cfg.questions_per_step,
                                       cfg.samples_per_question)
            kept = [r for r, w in zip(sampled.rollouts, sampled.rewards) if w >= 0.5]
            sequences = [r.prompt_ids + r.target_ids for r in kept]
            spans = [(len(r.prompt_ids), len(r.prompt_ids) + len(r.target_ids)) for r in kept]
            batches = with_reference(model, kl, nll_batches(sequences, spans, cfg.micro_batch_size, pad))  # every rank
            loss = partial(weighted_nll, kl_to_initial=kl.weight)
            result = optimizer_step(model, optimizer, loss, batches, cfg.optim.grad_clip)
            return sampled_outcome(result, sampled, trained_tokens=sum(e - s for s, e in spans),
                                   details=(("kept", float(len(kept))),))

        return run.train(cfg.steps, step_fn, [optimizer], state=state, on_step=on_step, stop_after=stop_after)


SPEC = StageSpec(
    name="rft", label="RFT", help="Baseline: rejection-sampling fine-tuning, on-policy (section rft).",
    section=RftConfig, sections=RFT_SECTIONS, order=40, run=run_rft, generations_per_step=generations_per_step,
    memory="rft.micro_batch_size, sampling.max_tokens",
)

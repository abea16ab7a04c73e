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

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..checkpoint import TrainingState
from ..config import RftConfig
from ..data import make_splits
from .loop import StepOutcome, penalty_reference, restore, sample_and_grade, sampled_outcome, start_stage, train_loop
from ..metrics import StepRecord
from ..probe import make_probe
from ..loss import nll_batches, weighted_nll, with_reference
from ..update import make_optimizer, optimizer_step
from . import StageSpec

if TYPE_CHECKING:
    from ..config import Recipe

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
    run = start_stage(recipe, run_dir, resume, RFT_SECTIONS, ignore=("rft.steps",))
    run_dir, model, tokenizer, pad = run.run_dir, run.model, run.tokenizer, run.pad_id
    cfg = recipe.rft
    pool = make_splits(recipe.data).training
    initial = penalty_reference(model, cfg.optim)  # taken before any resume
    optimizer = make_optimizer(cfg.optim, cfg.steps)
    state = restore(run_dir, model, optimizer)[0] if resume else TrainingState()

    def step_fn(step: int) -> StepOutcome:
        rollouts, rewards, sample_s = sample_and_grade(model, tokenizer, recipe, pool, step, cfg.questions_per_step,
                                                       cfg.samples_per_question)
        kept = [r for r, w in zip(rollouts, rewards) if w >= 0.5]
        sequences = [r.prompt_ids + r.target_ids for r in kept]
        spans = [(len(r.prompt_ids), len(r.prompt_ids) + len(r.target_ids)) for r in kept]
        batches = nll_batches(sequences, spans, cfg.micro_batch_size, pad)  # every rank, kept or not
        batches = with_reference(model, initial, batches, cfg.optim.kl_to_initial)
        loss = partial(weighted_nll, kl_to_initial=cfg.optim.kl_to_initial)
        result = optimizer_step(model, optimizer, loss, batches, cfg.optim.grad_clip)
        return sampled_outcome(result, rollouts, rewards, sample_s, trained_tokens=sum(e - s for s, e in spans),
                               details=(("kept", float(len(kept))),))

    return train_loop(
        recipe=recipe, run_dir=run_dir, stage="rft", steps=cfg.steps, model=model,
        optimizer_for_step=lambda _: optimizer, step_fn=step_fn, state=state,
        probe=make_probe(recipe, tokenizer), on_step=on_step, stop_after=stop_after,
    )


SPEC = StageSpec(
    name="rft", label="RFT", help="Baseline: rejection-sampling fine-tuning, on-policy (section rft).",
    section=RftConfig, sections=RFT_SECTIONS, order=40, run=run_rft, generations_per_step=generations_per_step,
)

"""Baseline: supervised fine-tuning (SFT) on the dataset's gold solutions.

The training pool is the same as every other method's (phase 1 + phase 2 questions); questions
whose row has no solution (`data.fields.solution`) are skipped and counted. Each solution is the
target of one sequence chat(x) + solution + end-of-turn, trained with the token-mean NLL of the
step, `sft.batch_size` solutions per step in a seeded order per epoch. SFT samples nothing: its
budget is trained tokens, not generations.

Departures: LoRA by default (`lora.fine_tune_type`); solutions are encoded from text
(`prompts.text_answer_ids`), since they were never sampled.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..config import OptimConfig, optim_field
from ..data import epoch_order, make_splits
from ..lengths import context_length
from ..loss import nll_batches, weighted_nll, with_reference
from ..metrics import StepRecord
from ..platform.distributed import shard
from ..prompts import prompt_ids, text_answer_ids
from ..types import TrainingState
from ..update import make_optimizer, optimizer_step
from . import StageSpec
from .loop import StepOutcome, open_stage, penalty

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class SftConfig:
    """Supervised fine-tuning on the dataset's gold solutions (data.fields.solution), NLL with the
    end-of-turn token, over the same training questions the other methods use."""

    epochs: int = 1
    batch_size: int = field(default=8, metadata={"help": "Solutions per optimizer step."})
    micro_batch_size: int = 8
    steps: int = field(default=0, metadata={"help": "Optimizer steps; 0 = epochs x (questions / batch_size)."})
    optim: OptimConfig = optim_field("SFT")

    def __post_init__(self):
        if min(self.epochs, self.batch_size, self.micro_batch_size) < 1 or self.steps < 0:
            raise ValueError("sft.epochs, batch_size and micro_batch_size must be >= 1, steps >= 0.")


SFT_SECTIONS = ("model", "data", "lora", "prompts", "sft")


def sft_steps(recipe: Recipe, n_solutions: int) -> int:
    cfg = recipe.sft
    return cfg.steps or cfg.epochs * -(-n_solutions // cfg.batch_size)


def run_sft(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Fine-tune on gold solutions into run_dir (adapters, metrics, checkpoint); resumable."""
    cfg, seed = recipe.sft, recipe.run.seed
    pool = [ex for ex in make_splits(recipe.data).training if ex.solution]
    if not pool:
        raise ValueError(
            f"SFT needs gold solutions, and no training row of {recipe.data.source} has one. "
            "Set data.fields.solution to the row field that holds a worked solution (GSM8K: answer)."
        )
    with open_stage(recipe, run_dir, resume, SPEC) as run:
        model, tokenizer, pad = run.model, run.tokenizer, run.pad_id
        sequences, spans, fits = [], [], []
        context = context_length(model) or float("inf")  # a long problem must not pass the model's positions
        for ex in pool:
            prompt = prompt_ids(tokenizer, ex.problem, recipe.prompts)
            ids, eot = text_answer_ids(tokenizer, ex.solution)
            if len(prompt) > recipe.data.max_prompt_tokens or len(prompt) + len(ids) + 1 > context:
                continue
            fits.append(ex)
            sequences.append(prompt + ids + (eot,))
            spans.append((len(prompt), len(prompt) + len(ids) + 1))
        if len(fits) < len(pool):
            print(f"sft: skipped {len(pool) - len(fits)} of {len(pool)} solutions longer than data.max_prompt_tokens "
                  "or the model's context", file=sys.stderr)
        if not fits:
            raise ValueError("Every SFT solution is too long for data.max_prompt_tokens or the model's context.")
        pool = fits
        steps = sft_steps(recipe, len(pool))  # the solutions that fit: known once the model is
        kl = penalty(model, cfg.optim)
        optimizer = make_optimizer(cfg.optim, steps)
        state, _ = run.restore([optimizer])
        per_epoch = -(-len(pool) // cfg.batch_size)

        def step_fn(step: int) -> StepOutcome:
            epoch, b = divmod(step, per_epoch)
            picked = shard(epoch_order(len(pool), seed, epoch)[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            batches = nll_batches([sequences[i] for i in picked], [spans[i] for i in picked], cfg.micro_batch_size, pad)
            batches = with_reference(model, kl, batches)
            loss = partial(weighted_nll, kl_to_initial=kl.weight)
            result = optimizer_step(model, optimizer, loss, batches, cfg.optim.grad_clip)
            return StepOutcome(result=result, trained_tokens=sum(spans[i][1] - spans[i][0] for i in picked),
                               details=(("solutions", float(len(picked))),))

        return run.train(steps, step_fn, [optimizer], state=state, on_step=on_step, stop_after=stop_after)


SPEC = StageSpec(
    name="sft", label="SFT",
    help="Baseline: supervised fine-tuning on the data's gold solutions (section sft, data.fields.solution).",
    section=SftConfig, sections=SFT_SECTIONS, order=60, run=run_sft, memory="sft.micro_batch_size",
)

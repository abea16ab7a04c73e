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

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..checkpoint import TrainingState
from ..config import SftConfig
from ..data import epoch_order, make_splits
from ..platform.distributed import shard
from .loop import StepOutcome, penalty_reference, restore, start_stage, train_loop
from ..metrics import StepRecord
from ..probe import make_probe
from ..prompts import prompt_ids, text_answer_ids
from ..loss import nll_batches, weighted_nll, with_reference
from ..update import make_optimizer, optimizer_step
from . import StageSpec

if TYPE_CHECKING:
    from ..config import Recipe

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
    run = start_stage(recipe, run_dir, resume, SFT_SECTIONS, ignore=("sft.steps",))
    run_dir, model, tokenizer, pad = run.run_dir, run.model, run.tokenizer, run.pad_id
    sequences, spans = [], []
    for ex in pool:
        prompt = prompt_ids(tokenizer, ex.problem, recipe.prompts)
        ids, eot = text_answer_ids(tokenizer, ex.solution)
        sequences.append(prompt + ids + (eot,))
        spans.append((len(prompt), len(prompt) + len(ids) + 1))
    steps = sft_steps(recipe, len(pool))
    initial = penalty_reference(model, cfg.optim)  # taken before any resume
    optimizer = make_optimizer(cfg.optim, steps)
    state = restore(run_dir, model, optimizer)[0] if resume else TrainingState()
    per_epoch = -(-len(pool) // cfg.batch_size)

    def step_fn(step: int) -> StepOutcome:
        epoch, b = divmod(step, per_epoch)
        picked = shard(epoch_order(len(pool), seed, epoch)[b * cfg.batch_size : (b + 1) * cfg.batch_size])
        batches = nll_batches([sequences[i] for i in picked], [spans[i] for i in picked], cfg.micro_batch_size, pad)
        batches = with_reference(model, initial, batches, cfg.optim.kl_to_initial)
        loss = partial(weighted_nll, kl_to_initial=cfg.optim.kl_to_initial)
        result = optimizer_step(model, optimizer, loss, batches, cfg.optim.grad_clip)
        return StepOutcome(result=result, trained_tokens=sum(spans[i][1] - spans[i][0] for i in picked),
                           details=(("solutions", float(len(picked))),))

    return train_loop(
        recipe=recipe, run_dir=run_dir, stage="sft", steps=steps, model=model,
        optimizer_for_step=lambda _: optimizer, step_fn=step_fn, state=state,
        probe=make_probe(recipe, tokenizer), on_step=on_step, stop_after=stop_after,
    )


SPEC = StageSpec(
    name="sft", label="SFT",
    help="Baseline: supervised fine-tuning on the data's gold solutions (section sft, data.fields.solution).",
    section=SftConfig, sections=SFT_SECTIONS, order=60, run=run_sft,
)

"""The loop every training stage shares: run directory, resume, steps, monitors, metrics, checkpoints.

A stage (distill.py, srt.py, rft.py, grpo.py, sft.py, sdft.py) loads its model, builds its optimizer
and writes one function, `step_fn(step) -> StepOutcome`, that does that stage's work for one
optimizer step (sample, grade, build batches, call `update.optimizer_step`). `train_loop` does
the rest identically for all of them:
  for each step: step_fn -> budget and monitors -> metrics.jsonl -> checkpoint (+ adapters)
Data order and sampling seeds are functions of (seed, step) inside each stage, so the step counter
restored from a checkpoint is all a resume needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from ..checkpoint import TrainingState, check_same_recipe, checkpoint_dir, load_checkpoint, save_adapters, save_checkpoint
from ..configio import write_yaml
from ..platform.device import device_name, use_device
from ..data import questions_for_step
from ..platform.distributed import is_writer, outcome_across_ranks, shard, world
from ..metrics import StepRecord
from ..modeling import load_model, lora_num_layers, make_trainable, padding_id, set_params, trainable
from ..outputs import check_output_dir
from ..rollout import sample_groups
from ..seeds import derive_seed
from ..sinks import Sinks, open_sinks
from ..update import StepResult
from ..types import Rollout
from ..verifier import verify_batch


@dataclass(frozen=True)
class SampleStats:
    """What one step's on-policy samples looked like."""

    reward: float  # mean verifier reward
    response_tokens: float  # mean sampled tokens per answer
    truncated: float  # share cut by max_tokens


def sample_stats(rollouts: Sequence[Rollout], rewards: Sequence[float]) -> SampleStats:
    n = max(len(rollouts), 1)
    return SampleStats(
        reward=sum(rewards) / n,
        response_tokens=sum(len(r.completion_ids) for r in rollouts) / n,
        truncated=sum(r.finish_reason == "length" for r in rollouts) / n,
    )


@dataclass(frozen=True)
class StepOutcome:
    """What a stage's step did, for the budget and the metrics."""

    result: StepResult
    trained_tokens: int
    generations: int = 0
    sampled_tokens: int = 0
    sample_s: float = 0.0  # seconds spent sampling (for sampled tokens/s)
    samples: Optional[SampleStats] = None
    part: Optional[str] = None
    details: tuple[tuple[str, float], ...] = ()  # counts on this rank: summed over ranks (distributed.py)
    global_details: tuple[tuple[str, float], ...] = ()  # already the same on every rank (e.g. a loss)


def sample_and_grade(
    model: nn.Module, tokenizer, recipe, pool: Sequence, step: int, per_step: int, group_size: int = 1
) -> tuple[list[Rollout], list[float], float]:
    """An on-policy step's samples: `per_step` questions of the pool (seeded by (seed, step), so a resume
    repeats them; sharded over ranks), `group_size` answers each from the current model, and their
    verifier rewards. Returns (rollouts, rewards, seconds spent sampling)."""
    seed = recipe.run.seed
    tic = time.perf_counter()
    questions = shard(questions_for_step(pool, step, per_step, seed))
    rollouts = sample_groups(model, tokenizer, questions, group_size, recipe.prompts, recipe.sampling,
                             derive_seed(seed, "step_sampling", step))
    sample_s = time.perf_counter() - tic
    rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], recipe.verifier)
    return rollouts, rewards, sample_s


def sampled_outcome(
    result: StepResult, rollouts: Sequence[Rollout], rewards: Sequence[float], sample_s: float, trained_tokens: int,
    details: tuple[tuple[str, float], ...] = (), global_details: tuple[tuple[str, float], ...] = (),
) -> StepOutcome:
    """The StepOutcome of an on-policy step: its budget and sample statistics from the rollouts."""
    return StepOutcome(
        result=result,
        trained_tokens=trained_tokens,
        generations=len(rollouts),
        sampled_tokens=sum(len(r.completion_ids) for r in rollouts),
        sample_s=sample_s,
        samples=sample_stats(rollouts, rewards),
        details=details,
        global_details=global_details,
    )


def open_run_dir(recipe, run_dir: Path, resume: bool, sections: Sequence[str], ignore: Sequence[str] = ()) -> Path:
    """Check the folder can hold results (before any work: a bad location costs nothing), that a resumed
    run was started with the same recipe or a new one is empty; write recipe.yaml (rank 0). Select run.device."""
    use_device(recipe.run.device)
    run_dir = check_output_dir(run_dir, "run.output_dir")
    if resume:
        check_same_recipe(recipe, run_dir / "recipe.yaml", sections, ignore=ignore)
    elif checkpoint_dir(run_dir) is not None:
        raise FileExistsError(f"{run_dir} already holds a run. Resume it (--resume {run_dir}) or choose another run.output_dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_writer():
        write_yaml(recipe, run_dir / "recipe.yaml")
    return run_dir


@dataclass(frozen=True)
class Trainee:
    """What every stage starts from: its checked run directory, the model with its trained parameters
    opened (lora / dora / full, seeded), the tokenizer and the padding id."""

    run_dir: Path
    model: nn.Module
    tokenizer: object
    pad_id: int


def start_stage(recipe, run_dir: Path, resume: bool, sections: Sequence[str], ignore: Sequence[str] = ()) -> Trainee:
    """open_run_dir, then load recipe.model and make it trainable: the first lines of every stage."""
    run_dir = open_run_dir(recipe, run_dir, resume, sections, ignore)
    model, tokenizer = load_model(recipe.model)
    make_trainable(model, recipe.lora, recipe.run.seed)
    return Trainee(run_dir, model, tokenizer, padding_id(tokenizer))


def penalty_reference(model: nn.Module, optim_config) -> Optional[dict[str, mx.array]]:
    """The starting values of the trained parameters, the reference of optim.kl_to_initial, only when it is on:
    with full fine-tuning they are a second copy of the trained weights."""
    return trainable(model) if optim_config.kl_to_initial > 0 else None


def restore(run_dir: Path, model: nn.Module, optimizer: optim.Optimizer, extra_names: tuple[str, ...] = ()):
    """Load the last checkpoint into the model and optimizer; returns (state, extras)."""
    state, params, extras = load_checkpoint(run_dir, optimizer, extra_names)
    set_params(model, params)
    return state, extras


ProbeFn = Callable[[nn.Module], float]


def train_loop(
    *,
    recipe,
    run_dir: Path,
    stage: str,
    steps: int,
    model: nn.Module,
    optimizer_for_step: Callable[[int], optim.Optimizer],
    step_fn: Callable[[int], StepOutcome],
    state: TrainingState = TrainingState(),
    extra_state: Callable[[], dict[str, dict[str, mx.array]]] = dict,
    probe: Optional[ProbeFn] = None,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Run steps state.step .. steps-1 (or `stop_after` of them), logging and checkpointing each.

    With several processes (distributed.py) every rank trains; rank 0 alone probes and writes.
    """
    writer = is_writer()
    probe_every = recipe.run.probe_every
    model.train()
    last = steps if stop_after is None else min(steps, state.step + stop_after)
    # the sinks end (W&B: finished, or failed when a step raised) however the loop ends
    with (open_sinks(recipe, run_dir, stage, state.step) if writer else Sinks([])) as metrics:
        for step in range(state.step, last):
            tic = time.perf_counter()
            mx.reset_peak_memory()
            out = outcome_across_ranks(step_fn(step))
            elapsed = time.perf_counter() - tic
            state = replace(
                state,
                step=step + 1,
                generations=state.generations + out.generations,
                sampled_tokens=state.sampled_tokens + out.sampled_tokens,
                trained_tokens=state.trained_tokens + out.trained_tokens,
                elapsed_s=state.elapsed_s + elapsed,
            )
            probe_value = None
            if probe is not None and writer and probe_every and ((step + 1) % probe_every == 0 or step + 1 == steps):
                probe_value = probe(model)  # not part of the training budget, nor of step_s
            s = out.samples
            record = StepRecord(
                step=step + 1,
                total_steps=steps,
                stage=stage,
                loss=out.result.loss,
                grad_norm=out.result.grad_norm,
                learning_rate=out.result.learning_rate,
                weight_change=out.result.weight_change,
                entropy=out.result.entropy if out.trained_tokens else None,
                step_s=elapsed,
                trained_tokens_per_s=out.trained_tokens / max(elapsed - out.sample_s, 1e-9),
                peak_memory_gb=mx.get_peak_memory() / 1e9,
                generations=state.generations,
                sampled_tokens=state.sampled_tokens,
                trained_tokens=state.trained_tokens,
                elapsed_s=state.elapsed_s,
                part=out.part,
                reward=None if s is None else s.reward,
                response_tokens=None if s is None else s.response_tokens,
                truncated=None if s is None else s.truncated,
                sampled_tokens_per_s=None if s is None else out.sampled_tokens / max(out.sample_s, 1e-9),
                probe_accuracy=probe_value,
                details=out.details + out.global_details,
                device=device_name(),
                world_size=world(),
            )
            if writer:
                metrics.log(record)
            if writer and ((step + 1) % recipe.run.save_every == 0 or step + 1 == last):
                params = trainable(model)
                save_checkpoint(run_dir, state, params, optimizer_for_step(step), extra_state())
                save_adapters(run_dir / "adapters", params, recipe.lora, lora_num_layers(model, recipe.lora),
                              recipe.model.path)
            if on_step is not None and writer:  # one progress line per step, not one per rank
                on_step(record)
    return state

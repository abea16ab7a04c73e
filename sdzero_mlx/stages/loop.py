"""The loop every training stage shares: run directory, resume, steps, monitors, metrics, checkpoints.

A stage (distill.py, srt.py, rft.py, grpo.py, sft.py, sdft.py) starts with `start_training` (run
directory, model, optimizer, the penalty's reference, resume; SRT, with an optimizer per part, with
`start_stage`) and writes one function, `step_fn(step) -> StepOutcome`, that does that stage's work
for one optimizer step (sample, grade, build batches, call `update.optimizer_step`). `train_loop`
(`Started.train`) does the rest identically for all of them:
  for each step: step_fn -> budget and monitors -> metrics.jsonl -> checkpoint (+ adapters)
Data order and sampling seeds are functions of (seed, step) inside each stage, so the step counter
restored from a checkpoint is all a resume needs.

Reliability (rundir.py, atomic.py): `open_run_dir` takes the folder's lock (one writer; released when
train_loop ends or the process dies) and checks and writes RUN/run.json (the stage, the command, the
data's hash). Each save writes the adapters, then outputs.json (their size and hash), then the
checkpoint, all atomically: a checkpoint at step N means step N's adapters are on disk. A resume with
nothing left to train checks them against outputs.json and rewrites them from the checkpoint if they
are missing or damaged. A non-finite loss or gradient norm stops the run before the update, so the
last checkpoint stays the last good one. Questions whose prompt does not fit (lengths.py) are skipped
and counted (`skipped_long_prompts` in the step's record).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from ..checkpoint import TrainingState, checkpoint_dir, load_checkpoint, save_adapters, save_checkpoint
from ..configio import write_yaml
from ..platform.device import device_name, use_device
from ..data import questions_for_step
from ..platform.distributed import is_writer, outcome_across_ranks, shard, world
from ..metrics import StepRecord
from ..modeling import load_model, lora_num_layers, make_trainable, padding_id, set_params, trainable
from ..lengths import check_fits_context, fitting, prompt_limit
from ..outputs import check_output_dir
from ..probe import make_probe
from ..rundir import begin, check_made_by, check_stage, damaged_outputs, lock_run_dir, made_by, record_outputs, unlock_run_dir
from ..rollout import sample_groups
from ..seeds import derive_seed
from ..sinks import Sinks, open_sinks
from ..update import NonFiniteStep, StepResult, make_optimizer
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
    limit = prompt_limit(model, recipe.data.max_prompt_tokens, recipe.sampling.max_tokens)
    questions, skipped = fitting(tokenizer, questions, recipe.prompts, limit)
    _skipped_this_step.append(skipped)
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


# questions skipped by sample_and_grade during the current step (train_loop adds them to the record)
_skipped_this_step: list[int] = []


def open_run_dir(
    recipe, run_dir: Path, resume: bool, sections: Sequence[str], ignore: Sequence[str] = (), *, stage: str,
    inputs: Mapping[str, Path] = {},
) -> Path:
    """Check the folder can hold results (before any work: a bad location costs nothing), take its lock
    (rank 0), check that a resumed run is a `stage` run made from the same record (the recipe's `sections` but
    `ignore`, the starting model's and the data's bytes, `inputs` by role), or that a new one is empty; write
    recipe.yaml and run.json with that record (rank 0). Select run.device.

    The lock is released by train_loop, or by `unlock_run_dir` when the stage fails before it."""
    use_device(recipe.run.device)
    run_dir = check_output_dir(run_dir, "run.output_dir")
    writer = is_writer()  # every rank checks (all refuse together); rank 0 alone locks and writes
    if writer:
        lock_run_dir(run_dir)
    try:
        if resume and checkpoint_dir(run_dir) is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from (a run stopped before its first "
                                    "save, at step run.save_every): run the same command without --resume to start it.")
        record = made_by(recipe, sections, inputs)
        if resume:
            check_stage(run_dir, stage, resume)  # another stage's run: say so before comparing records
            check_made_by(run_dir, record, ignore=ignore)
        elif checkpoint_dir(run_dir) is not None:
            raise FileExistsError(f"{run_dir} already holds a run. Resume it (--resume {run_dir}) or choose another run.output_dir.")
        begin(run_dir, stage, resume, record, write=writer)
        if writer:
            write_yaml(recipe, run_dir / "recipe.yaml")
    except BaseException:
        if writer:
            unlock_run_dir(run_dir)
        raise
    return run_dir


@dataclass(frozen=True)
class Trainee:
    """What every stage starts from: its checked run directory, the model with its trained parameters
    opened (lora / dora / full, seeded), the tokenizer and the padding id."""

    run_dir: Path
    model: nn.Module
    tokenizer: object
    pad_id: int


# the sequence caps a stage's section sets, each bounded by the model's context
SEQUENCE_CAPS = {"distill": ("distill.max_teacher_tokens",), "sdft": ("distill.max_teacher_tokens",),
                 "srt": ("srt.max_tokens",)}


def stage_of(sections: Sequence[str]) -> str:
    """The registered stage that declares these resume sections (a stage passes its own tuple), else the last section."""
    from . import stage_specs

    named = [s.name for s in stage_specs() if tuple(s.sections) == tuple(sections)]
    return named[-1] if named else sections[-1]


def start_stage(
    recipe, run_dir: Path, resume: bool, sections: Sequence[str], ignore: Sequence[str] = (), *,
    stage: Optional[str] = None, inputs: Mapping[str, Path] = {},
) -> Trainee:
    """open_run_dir, then load recipe.model and make it trainable: the first lines of every stage.
    `stage`: the name run.json records (default: the registered stage with these sections); `inputs`: files
    besides the data by role, whose change refuses a resume ({"tuples": ...}: SRT's)."""
    stage = stage or stage_of(sections)
    run_dir = open_run_dir(recipe, run_dir, resume, sections, ignore, stage=stage, inputs=inputs)
    try:
        model, tokenizer = load_model(recipe.model)
        for setting in SEQUENCE_CAPS.get(stage, ()):
            section, key = setting.split(".")
            check_fits_context(model, getattr(getattr(recipe, section), key), setting)
        make_trainable(model, recipe.lora, recipe.run.seed)
    except BaseException:
        if is_writer():
            unlock_run_dir(run_dir)
        raise
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


@dataclass(frozen=True)
class Started:
    """A stage with one optimizer, ready for its first (or next) step: `train` runs its steps."""

    recipe: object
    stage: str  # its name and recipe section
    run_dir: Path
    model: nn.Module
    tokenizer: object
    pad_id: int
    optimizer: optim.Optimizer
    initial: Optional[dict[str, mx.array]]  # the trained parameters' starting values (None: nothing uses them)
    state: TrainingState  # restored from the last checkpoint, or a new run's
    extras: dict[str, dict[str, mx.array]]  # the checkpoint's extra state (`extra_names`); {} for a new run

    def train(
        self, steps: int, step_fn: Callable[[int], StepOutcome], on_step: Optional[Callable[[StepRecord], None]],
        stop_after: Optional[int], extra_state: Callable[[], dict[str, dict[str, mx.array]]] = dict,
    ) -> TrainingState:
        """train_loop with this optimizer at every step and the recipe's probe."""
        return train_loop(recipe=self.recipe, run_dir=self.run_dir, stage=self.stage, steps=steps, model=self.model,
                          optimizer_for_step=lambda _: self.optimizer, step_fn=step_fn, state=self.state,
                          extra_state=extra_state, probe=make_probe(self.recipe, self.tokenizer), on_step=on_step,
                          stop_after=stop_after)


def start_training(
    recipe, run_dir: Path, resume: bool, stage: str, sections: Sequence[str], updates: int,
    keep_initial: bool = False, extra_names: tuple[str, ...] = (),
) -> Started:
    """What a stage with one optimizer does before its first step: start_stage (a resume may change
    STAGE.steps), then ready_to_train."""
    run = start_stage(recipe, run_dir, resume, sections, ignore=(f"{stage}.steps",), stage=stage)
    return ready_to_train(recipe, run, resume, stage, updates, keep_initial, extra_names)


def ready_to_train(
    recipe, run: Trainee, resume: bool, stage: str, updates: int, keep_initial: bool = False,
    extra_names: tuple[str, ...] = (),
) -> Started:
    """The trained parameters' starting values (taken before any resume; kept when `keep_initial` (a
    teacher) or optim.kl_to_initial uses them), the optimizer of the stage section's `optim` for
    `updates` updates, and on resume the last checkpoint with `extra_names`. Called alone by a stage
    that needs its model to know its number of updates (SFT: the solutions that fit)."""
    optim_config = getattr(recipe, stage).optim
    initial = trainable(run.model) if keep_initial else penalty_reference(run.model, optim_config)
    optimizer = make_optimizer(optim_config, updates)
    state, extras = restore(run.run_dir, run.model, optimizer, extra_names) if resume else (TrainingState(), {})
    return Started(recipe, stage, run.run_dir, run.model, run.tokenizer, run.pad_id, optimizer, initial, state, extras)


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
    Releases the run directory's lock (open_run_dir) however it ends.
    """
    try:
        return _train_loop(recipe, run_dir, stage, steps, model, optimizer_for_step, step_fn, state, extra_state,
                           probe, on_step, stop_after)
    finally:
        if is_writer():
            unlock_run_dir(run_dir)


def save_outputs(run_dir: Path, recipe, model: nn.Module, state: TrainingState, optimizer: optim.Optimizer,
                 extra: dict[str, dict[str, mx.array]]) -> None:
    """Adapters, then outputs.json, then the checkpoint: a checkpoint at step N vouches for step N's adapters."""
    params = trainable(model)
    files = save_adapters(run_dir / "adapters", params, recipe.lora, lora_num_layers(model, recipe.lora),
                          recipe.model.path)
    record_outputs(run_dir, files)
    save_checkpoint(run_dir, state, params, optimizer, extra)


ADAPTER_FILES = ("adapters/adapters.safetensors", "adapters/adapter_config.json")


def repair_outputs(run_dir: Path, recipe, model: nn.Module) -> None:
    """A finished run's adapters, checked against outputs.json; rewritten from the (restored) checkpoint if
    missing or damaged, so that a resume says "done" only over sound files."""
    bad = damaged_outputs(run_dir, ADAPTER_FILES)
    if bad:
        files = save_adapters(run_dir / "adapters", trainable(model), recipe.lora, lora_num_layers(model, recipe.lora),
                              recipe.model.path)
        record_outputs(run_dir, files)
        print(f"warning: {', '.join(str(run_dir / b) for b in bad)} missing or damaged: rewritten from "
              f"{checkpoint_dir(run_dir)}.", file=sys.stderr)


def _train_loop(recipe, run_dir, stage, steps, model, optimizer_for_step, step_fn, state, extra_state, probe,
                on_step, stop_after) -> TrainingState:
    writer = is_writer()
    probe_every = recipe.run.probe_every
    model.train()
    if state.step > steps:
        raise ValueError(f"{run_dir} has trained {state.step} steps but this command asks for {steps}: nothing "
                         f"to do, and its adapters are those of step {state.step}. Ask for {state.step} steps or "
                         f"more (e.g. --set {stage}.steps={state.step}) to continue it, or use another run.output_dir.")
    if state.step == steps and writer:
        repair_outputs(run_dir, recipe, model)
    last = steps if stop_after is None else min(steps, state.step + stop_after)
    # the sinks end (W&B: finished, or failed when a step raised) however the loop ends
    with (open_sinks(recipe, run_dir, stage, state.step) if writer else Sinks([])) as metrics:
        for step in range(state.step, last):
            tic = time.perf_counter()
            mx.reset_peak_memory()
            _skipped_this_step.clear()
            try:
                out = step_fn(step)
            except NonFiniteStep as err:
                kept = f"{checkpoint_dir(run_dir)} keeps step {state.step}" if state.step else "nothing was saved"
                raise NonFiniteStep(
                    f"{stage} step {step + 1}: {err}; the run stopped without applying it ({kept}). Lower the "
                    f"learning rate ({stage}.optim.learning_rate) or set {stage}.optim.grad_clip, then resume.") from None
            if _skipped_this_step:
                out = replace(out, details=out.details + (("skipped_long_prompts", float(sum(_skipped_this_step))),))
            out = outcome_across_ranks(out)
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
                save_outputs(run_dir, recipe, model, state, optimizer_for_step(step), extra_state())
            if on_step is not None and writer:  # one progress line per step, not one per rank
                on_step(record)
    return state

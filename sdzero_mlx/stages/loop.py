"""The loop every training stage shares: run directory, resume, steps, monitors, metrics, checkpoints.

A stage (distill.py, srt.py, rft.py, grpo.py, sft.py, sdft.py) opens its run with `open_stage`, a
context manager that holds the run directory's lock while the stage runs and yields a `Trainee`
(the checked run directory, the model with its trained parameters opened, its tokenizer); it takes
its penalty (`penalty`), makes its optimizer(s), restores a resumed run (`Trainee.restore`), and
writes one function, `step_fn(step) -> StepOutcome`, that does that stage's work for one optimizer
step (sample, grade, build batches, call `update.optimizer_step`). `Trainee.train`, the one entry
into the loop, does the rest identically for all of them:
  for each step: step_fn -> budget and monitors -> metrics.jsonl -> checkpoint (+ adapters)
and, once the last step is saved, marks the run done (rundir.RunDir). SRT passes its optimizers, one
per part, and which part a step belongs to. Data order and sampling seeds are functions of (seed,
step) inside each stage, so the step counter restored from a checkpoint is all a resume needs.

Reliability (rundir.py, atomic.py): `open_stage` checks and writes RUN/run.json (the stage, the
command, what made it). Each save writes the adapters, then outputs.json (their size and hash), then
the checkpoint, all atomically: a checkpoint at step N means step N's adapters are on disk. A resume
with nothing left to train checks them against outputs.json and rewrites them from the checkpoint if
they are missing or damaged. A non-finite loss or gradient norm stops the run before the update, so
the last checkpoint stays the last good one. Questions whose prompt does not fit (lengths.py) are
skipped and counted (`skipped_long_prompts` in the step's record).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from ..checkpoint import load_checkpoint, read_state, save_adapters, save_checkpoint
from ..configio import write_yaml
from ..data import questions_for_step
from ..lengths import check_fits_context, fitting, prompt_limit
from ..loss import Penalty
from ..metrics import StepRecord
from ..modeling import load_model, lora_num_layers, make_trainable, padding_id, set_params, trainable
from ..platform.device import device_name, use_device
from ..platform.distributed import is_writer, outcome_across_ranks, shard, world
from ..probe import make_probe
from ..rollout import sample_groups
from ..rundir import ADAPTER_FILES, RunDir
from ..seeds import derive_seed
from ..sinks import Sinks, open_sinks
from ..types import Rollout, TrainingState
from ..update import NonFiniteStep, StepResult
from ..verifier import verify_batch
from ..writable import check_output_dir
from . import continue_command

if TYPE_CHECKING:
    from . import StageSpec


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


@dataclass(frozen=True)
class Sampled:
    """An on-policy step's samples: the rollouts, their verifier rewards (aligned), the questions skipped because
    their prompt does not fit, and the seconds spent sampling."""

    rollouts: list[Rollout]
    rewards: list[float]
    skipped: int
    seconds: float


def sample_and_grade(
    model: nn.Module, tokenizer, recipe, pool: Sequence, step: int, per_step: int, group_size: int = 1
) -> Sampled:
    """An on-policy step's samples: `per_step` questions of the pool (seeded by (seed, step), so a resume
    repeats them; sharded over ranks), `group_size` answers each from the current model, and their
    verifier rewards."""
    seed = recipe.run.seed
    tic = time.perf_counter()
    questions = shard(questions_for_step(pool, step, per_step, seed))
    limit = prompt_limit(model, recipe.data.max_prompt_tokens, recipe.sampling.max_tokens)
    questions, skipped = fitting(tokenizer, questions, recipe.prompts, limit)
    rollouts = sample_groups(model, tokenizer, questions, group_size, recipe.prompts, recipe.sampling,
                             derive_seed(seed, "step_sampling", step))
    seconds = time.perf_counter() - tic
    rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], recipe.verifier)
    return Sampled(rollouts, rewards, skipped, seconds)


def sampled_outcome(
    result: StepResult, sampled: Sampled, trained_tokens: int,
    details: tuple[tuple[str, float], ...] = (), global_details: tuple[tuple[str, float], ...] = (),
) -> StepOutcome:
    """The StepOutcome of an on-policy step: its budget and sample statistics from the rollouts, and the questions
    skipped for a prompt that does not fit."""
    return StepOutcome(
        result=result,
        trained_tokens=trained_tokens,
        generations=len(sampled.rollouts),
        sampled_tokens=sum(len(r.completion_ids) for r in sampled.rollouts),
        sample_s=sampled.seconds,
        samples=sample_stats(sampled.rollouts, sampled.rewards),
        details=details + (("skipped_long_prompts", float(sampled.skipped)),),
        global_details=global_details,
    )


def penalty(model: nn.Module, optim_config) -> Penalty:
    """optim.kl_to_initial with the trained parameters' values now (taken before any resume), kept only when it
    is on: with full fine-tuning they are a second copy of the trained weights."""
    weight = optim_config.kl_to_initial
    return Penalty(weight, trainable(model) if weight > 0 else None)


ProbeFn = Callable[[nn.Module], float]


@dataclass(frozen=True)
class Trainee:
    """A stage's run, open: its checked run directory (locked while open_stage's block runs), the model with its
    trained parameters opened (lora / dora / full, seeded), the tokenizer and the padding id."""

    recipe: object
    spec: "StageSpec"
    run: RunDir
    model: nn.Module
    tokenizer: object
    pad_id: int
    resume: bool

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def restore(self, optimizers: Sequence[optim.Optimizer], part_at: Callable[[int], int] = lambda step: 0,
                extra_names: tuple[str, ...] = ()) -> tuple[TrainingState, dict[str, dict[str, mx.array]]]:
        """A resumed run's last checkpoint, loaded into the model and into the optimizer of the part its last
        finished step belongs to (`part_at`), with the checkpoint's extra state (`extra_names`); a new run's
        fresh state and no extras."""
        if not self.resume:
            return TrainingState(), {}
        saved_step = read_state(self.run.resume_from() / "state.json").step
        optimizer = optimizers[part_at(max(saved_step - 1, 0))]
        state, params, extras = load_checkpoint(self.run_dir, optimizer, extra_names)
        set_params(self.model, params)
        return state, extras

    def train(
        self, steps: int, step_fn: Callable[[int], StepOutcome], optimizers: Sequence[optim.Optimizer],
        part_at: Callable[[int], int] = lambda step: 0, state: TrainingState = TrainingState(),
        extra_state: Callable[[], dict[str, dict[str, mx.array]]] = dict,
        on_step: Optional[Callable[[StepRecord], None]] = None, stop_after: Optional[int] = None,
        final_outputs: Optional[Callable[[TrainingState], list[Path]]] = None,
    ) -> TrainingState:
        """Run steps state.step .. steps-1 (or `stop_after` of them) with the optimizer of each step's part, logging
        and checkpointing each; after the last one, `final_outputs` (files beyond the adapters, written then) and
        the done marker. With several processes (distributed.py) every rank trains; rank 0 alone probes and
        writes."""
        recipe, run, model, stage = self.recipe, self.run, self.model, self.spec.name
        writer = is_writer()
        probe, probe_every = make_probe(recipe, self.tokenizer), recipe.run.probe_every
        model.train()
        if state.step > steps:
            raise ValueError(f"{run.path} has trained {state.step} steps but this command asks for {steps}: nothing "
                             f"to do, and its adapters are those of step {state.step}. Ask for {state.step} steps or "
                             f"more (e.g. --set {stage}.steps={state.step}) to continue it, or use another run.output_dir.")
        if writer and state.step == steps:
            repair_outputs(run, recipe, model)
        elif writer:
            run.unmark_done()  # more steps change what a done marker vouched for
        last = steps if stop_after is None else min(steps, state.step + stop_after)
        # the sinks end (W&B: finished, or failed when a step raised) however the loop ends
        with (open_sinks(recipe, run.path, stage, state.step) if writer else Sinks([])) as metrics:
            for step in range(state.step, last):
                tic = time.perf_counter()
                mx.reset_peak_memory()
                try:
                    out = step_fn(step)
                except NonFiniteStep as err:
                    kept = f"{run.resume_from()} keeps step {state.step}" if state.step else "nothing was saved"
                    raise NonFiniteStep(
                        f"{stage} step {step + 1}: {err}; the run stopped without applying it ({kept}). Lower the "
                        f"learning rate ({stage}.optim.learning_rate) or set {stage}.optim.grad_clip, then resume.") from None
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
                record = step_record(stage, steps, state, out, elapsed, probe_value)
                if writer:
                    metrics.log(record)
                if writer and ((step + 1) % recipe.run.save_every == 0 or step + 1 == last):
                    save_outputs(run, recipe, model, state, optimizers[part_at(step)], extra_state())
                if on_step is not None and writer:  # one progress line per step, not one per rank
                    on_step(record)
        if writer and state.step == steps:
            if final_outputs is not None:  # every file atomically, outputs.json before the marker
                run.record_outputs([run.path / f for f in ADAPTER_FILES] + final_outputs(state))
            run.mark_done()
        return state


def step_record(stage: str, steps: int, state: TrainingState, out: StepOutcome, elapsed: float,
                probe_value: Optional[float]) -> StepRecord:
    """A step's line of metrics.jsonl."""
    s = out.samples
    return StepRecord(
        step=state.step,
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


@contextmanager
def open_stage(recipe, run_dir: Path, resume: bool, spec: "StageSpec") -> Iterator[Trainee]:
    """What every stage does first, its run directory held (rank 0 locks it) until the block ends: select
    run.device; check the folder can hold results (before any work: a bad location costs nothing); check that
    a resumed run is a `spec` run made from the same record (spec.made_by: its sections and the fields it reads,
    but what a resume may change; the starting model's, the data's and its inputs' bytes), or that a new one
    holds no run; write recipe.yaml and run.json with that record (rank 0); load recipe.model, check that the
    stage's sequence caps fit its context, and make its trained parameters (seeded)."""
    use_device(recipe.run.device)
    run = spec.run_dir(check_output_dir(run_dir, "run.output_dir"))
    writer = is_writer()  # every rank checks (all refuse together); rank 0 alone locks and writes
    with run.writing() if writer else nullcontext():
        if resume and run.resume_from() is None:
            raise FileNotFoundError(f"{run.path} has no checkpoint to resume from (a run stopped before its first "
                                    "save, at step run.save_every): run the same command without --resume to start it.")
        record = spec.made_by(recipe, run.path)
        if resume:
            run.check_stage(spec.name, resume, continue_command)  # another stage's run: say so before comparing
            run.check_made_by(record, ignore=spec.resume_ignore)
        elif run.resume_from() is not None:
            raise FileExistsError(f"{run.path} already holds a run. Resume it (--resume {run.path}) or choose another "
                                  "run.output_dir.")
        run.begin(spec.name, resume, continue_command, record, write=writer)
        if writer:
            write_yaml(recipe, run.path / "recipe.yaml")
        model, tokenizer = load_model(recipe.model)
        for setting in spec.caps:
            section, key = setting.split(".")
            check_fits_context(model, getattr(getattr(recipe, section), key), setting)
        make_trainable(model, recipe.lora, recipe.run.seed)
        yield Trainee(recipe, spec, run, model, tokenizer, padding_id(tokenizer), resume)


def write_adapters(run: RunDir, recipe, model: nn.Module) -> list[Path]:
    """RUN/adapters from the model's trained parameters, in mlx-lm's format; returns the files written."""
    return save_adapters(run.adapters, trainable(model), recipe.lora, lora_num_layers(model, recipe.lora),
                         recipe.model.path)


def save_outputs(run: RunDir, recipe, model: nn.Module, state: TrainingState, optimizer: optim.Optimizer,
                 extra: dict[str, dict[str, mx.array]]) -> None:
    """Adapters, then outputs.json, then the checkpoint: a checkpoint at step N vouches for step N's adapters."""
    run.record_outputs(write_adapters(run, recipe, model))
    save_checkpoint(run.path, state, trainable(model), optimizer, extra)


def repair_outputs(run: RunDir, recipe, model: nn.Module) -> None:
    """A finished run's adapters, checked against outputs.json; rewritten from the (restored) checkpoint if
    missing or damaged, so that a resume says "done" only over sound files."""
    bad = run.damaged_outputs(ADAPTER_FILES)
    if bad:
        run.record_outputs(write_adapters(run, recipe, model))
        print(f"warning: {', '.join(str(run.path / b) for b in bad)} missing or damaged: rewritten from "
              f"{run.resume_from()}.", file=sys.stderr)

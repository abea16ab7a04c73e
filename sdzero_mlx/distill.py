"""Phase 2 of SD-Zero: on-policy self-distillation from the frozen Reviser into the Generator.

For each question (one sample each, no filtering):
  y ~ student(. | chat(x));  r = verify(y, a)
  student positions: chat(x) + y            predicting every token of y (and its end-of-turn token)
  teacher positions: chat(x) + y + sep(r) + y  predicting the same tokens in the second copy
  loss = mean over all scored tokens of the optimizer step of KL(student || stopgrad teacher)
The teacher is the same weights with the teacher's LoRA values (see teacher.py), so the only
external signal is the verifier's bit, which picks the control phrase.

Departures from the paper are recipe fields (see config.py): LoRA instead of full fine-tuning,
teacher top-k 64 renormalised (reference code) instead of the full vocabulary, shorter lengths,
a larger learning rate. When prompt + y + sep + y exceeds `distill.max_teacher_tokens`, y is cut
to the same length in all three places.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from .checkpoint import TrainingState, check_same_recipe, load_checkpoint, save_adapters, save_checkpoint
from .config import DistillConfig, Recipe
from .configio import write_yaml
from .data import make_splits, questions_for_step
from .loss import TeacherTargets, distill_token_kl, masked_sum, teacher_targets
from .outputs import check_output_dir
from .modeling import add_lora, load_model, lora_num_layers, padding_id, set_params, trainable
from .prompts import Separators, separators, teacher_sequence
from .rollout import sample_rollouts
from .teacher import lora_values, next_teacher
from .trainer import make_optimizer, optimizer_step
from .types import DistillItem, Graded
from .verifier import verify_batch


def distill_item(graded: Graded, seps: Separators, max_teacher_tokens: int) -> DistillItem:
    """Build the student and teacher sequences of one graded rollout from token ids only."""
    rollout = graded.rollout
    prompt, sep = rollout.prompt_ids, seps.for_reward(graded.reward)
    y_read, y_scored = rollout.completion_ids, rollout.target_ids
    budget = max_teacher_tokens - len(prompt) - len(sep)
    if len(y_read) + len(y_scored) > budget:
        keep = max(budget // 2, 0)
        y_read, y_scored = y_scored[:keep], y_scored[:keep]  # the same cut in both copies
    return DistillItem(
        student_ids=prompt + y_scored,
        student_span=(len(prompt), len(prompt) + len(y_scored)),
        teacher=teacher_sequence(prompt, y_read, sep, y_scored),
        reward=graded.reward,
    )


@dataclass(frozen=True)
class ScoredBatch:
    """Padded sequences plus, for each scored token, the logit position that predicts it."""

    ids: mx.array  # (B, T)
    positions: mx.array  # (B, L): logits[b, positions[b, j]] predicts token j of the span
    mask: mx.array  # (B, L): 1 on real tokens, 0 on padding


def scored_batch(sequences: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], pad_id: int) -> ScoredBatch:
    """Right-pad sequences; causal attention keeps padding from touching earlier positions."""
    width = max(len(s) for s in sequences)
    span_len = max(max(end - start for start, end in spans), 1)
    ids, positions, mask = [], [], []
    for seq, (start, end) in zip(sequences, spans):
        ids.append(list(seq) + [pad_id] * (width - len(seq)))
        n = end - start
        positions.append([start - 1 + j for j in range(n)] + [0] * (span_len - n))
        mask.append([1] * n + [0] * (span_len - n))
    return ScoredBatch(mx.array(ids), mx.array(positions), mx.array(mask, dtype=mx.float32))


def logits_at(model: nn.Module, batch: ScoredBatch) -> mx.array:
    """Logits at the scored positions only, (B, L, V)."""
    logits = model(batch.ids)
    return mx.take_along_axis(logits, batch.positions[..., None], axis=1)


def student_batch(items: Sequence[DistillItem], pad_id: int) -> ScoredBatch:
    return scored_batch([it.student_ids for it in items], [it.student_span for it in items], pad_id)


def teacher_batch(items: Sequence[DistillItem], pad_id: int) -> ScoredBatch:
    return scored_batch([it.teacher.ids for it in items], [it.teacher.second for it in items], pad_id)


def compute_teacher_targets(
    model: nn.Module, teacher: dict[str, mx.array], items: Sequence[DistillItem], pad_id: int, top_k: int
) -> TeacherTargets:
    """The Reviser's distributions on the second copy of y, as constants."""
    with lora_values(model, teacher):
        logits = logits_at(model, teacher_batch(items, pad_id))
    return teacher_targets(logits, top_k)


def distill_loss(
    model: nn.Module, batch: ScoredBatch, targets: TeacherTargets, kind: str, forward_weight: float, step_tokens: int
) -> mx.array:
    """Sum of per-token KL over this micro-batch divided by the tokens of the whole step."""
    per_token = distill_token_kl(logits_at(model, batch), targets, kind, forward_weight)
    return masked_sum(per_token, batch.mask) / step_tokens


def micro_batches(
    model: nn.Module,
    teacher: dict[str, mx.array],
    items: Sequence[DistillItem],
    config: DistillConfig,
    pad_id: int,
) -> list[tuple]:
    """(student batch, teacher targets, kind, forward weight, step tokens) per micro-batch."""
    step_tokens = max(sum(it.student_span[1] - it.student_span[0] for it in items), 1)
    out = []
    for i in range(0, len(items), config.micro_batch_size):
        chunk = items[i : i + config.micro_batch_size]
        targets = compute_teacher_targets(model, teacher, chunk, pad_id, config.top_k)
        out.append((student_batch(chunk, pad_id), targets, config.kl, config.forward_weight, step_tokens))
    return out


# ---------------------------------------------------------------------------------------------
# The run: rollout -> verify -> build batch -> teacher targets -> student step -> log -> save
# ---------------------------------------------------------------------------------------------


class MetricsLog:
    """metrics.jsonl, one JSON object per optimizer step; on resume, later lines are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        if resume_step and path.exists():
            kept = [l for l in path.read_text().splitlines() if l and json.loads(l)["step"] <= resume_step]
            path.write_text("".join(l + "\n" for l in kept))
        elif not resume_step:
            path.write_text("")

    def log(self, step: int, values: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")


# What phase 2 depends on: a resumed run must agree on all of it except the number of steps.
DISTILL_SECTIONS = ("model", "data", "lora", "prompts", "sampling", "distill", "optim", "verifier")


def run_distill(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[int, dict], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train the generator by self-distillation; returns the final budget/step state.

    `stop_after` ends the run after that many steps of this call (tests use it to interrupt).
    """
    run_dir = check_output_dir(run_dir, "run.output_dir")  # before any work: a bad location costs nothing
    if resume:
        check_same_recipe(recipe, run_dir / "recipe.yaml", DISTILL_SECTIONS, ignore=("distill.steps",))
    elif (run_dir / "checkpoint").exists():
        raise FileExistsError(f"{run_dir} already holds a run. Pass --resume {run_dir} or choose another run.output_dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(recipe, run_dir / "recipe.yaml")

    cfg, seed = recipe.distill, recipe.run.seed
    model, tokenizer = load_model(recipe.model)
    add_lora(model, recipe.lora, seed)
    pad = padding_id(tokenizer)
    seps = separators(tokenizer, recipe.prompts)
    pool = make_splits(recipe.data).phase2
    optimizer = make_optimizer(recipe.optim, cfg.steps)

    teacher = trainable(model)  # initial LoRA values: B = 0, so the teacher is the base model
    state = TrainingState()
    if resume:
        state, lora, extras = load_checkpoint(run_dir, optimizer, ("teacher",))
        set_params(model, lora)
        teacher = extras["teacher"]
    metrics = MetricsLog(run_dir / "metrics.jsonl", state.step)
    model.train()

    last_step = cfg.steps if stop_after is None else min(cfg.steps, state.step + stop_after)
    for step in range(state.step, last_step):
        tic = time.perf_counter()
        mx.reset_peak_memory()
        # 1. rollouts from the current student, seeded by (seed, step) so a resume repeats them
        questions = questions_for_step(pool, step, cfg.questions_per_step, seed)
        rollouts = sample_rollouts(model, tokenizer, questions, recipe.prompts, recipe.sampling, seed * 100_003 + step)
        gen_time = time.perf_counter() - tic
        # 2. binary reward
        rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], recipe.verifier)
        graded = [Graded(r, s) for r, s in zip(rollouts, rewards)]
        # 3. sequences from ids; 4. teacher targets and accumulated student step
        items = [distill_item(g, seps, cfg.max_teacher_tokens) for g in graded]
        batches = micro_batches(model, teacher, items, cfg, pad)
        result = optimizer_step(model, optimizer, distill_loss, batches, recipe.optim.grad_clip)
        teacher = next_teacher(teacher, trainable(model), cfg, step + 1)

        sampled = sum(len(r.completion_ids) for r in rollouts)
        trained = sum(it.student_span[1] - it.student_span[0] for it in items)
        elapsed = time.perf_counter() - tic
        state = replace(
            state,
            step=step + 1,
            generations=state.generations + len(rollouts),
            sampled_tokens=state.sampled_tokens + sampled,
            trained_tokens=state.trained_tokens + trained,
            elapsed_s=state.elapsed_s + elapsed,
        )
        values = {
            "reward": sum(rewards) / len(rewards),
            "kl": result.loss,
            "response_tokens": sampled / len(rollouts),
            "truncated": sum(r.finish_reason == "length" for r in rollouts) / len(rollouts),
            "grad_norm": result.grad_norm,
            "learning_rate": result.learning_rate,
            "sampled_tokens_per_s": sampled / max(gen_time, 1e-9),
            "trained_tokens_per_s": trained / max(elapsed - gen_time, 1e-9),
            "step_s": elapsed,
            "peak_memory_gb": mx.get_peak_memory() / 1e9,
            **{k: v for k, v in asdict(state).items() if k != "step"},
        }
        metrics.log(step + 1, values)
        if (step + 1) % recipe.run.save_every == 0 or step + 1 == last_step:
            save_checkpoint(run_dir, state, trainable(model), optimizer, {"teacher": teacher})
            save_adapters(
                run_dir / "adapters", trainable(model), recipe.lora, lora_num_layers(model, recipe.lora), recipe.model.path
            )
        if on_step is not None:
            on_step(step + 1, values)
    return state

"""Baseline: GRPO with DAPO's choices, from the binary verifier reward.

Per sampled batch (one loop step): `grpo.questions_per_step` questions from the training pool
(phase 1 + phase 2), `grpo.group_size` answers each from the current policy (one shared prefill per
question), verified. Advantages per answer: reward minus its group's mean, divided by the group's
std (`scale_advantages`; off = Dr. GRPO). With `dynamic_sampling` (DAPO) groups whose rewards are all
equal are dropped: their advantages are zero. Then `updates_per_batch` optimizer steps on that batch,
each minimising
    sum over kept tokens of  -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
                           + optim.kl_to_initial * k3(pi, pi_ref)     (loss.k3_kl, both at T = 1)
divided by the number of kept tokens in the batch (DAPO's token-level normalisation), where
ratio = pi(token) / pi_old(token). pi_old, the behaviour policy, is the model that sampled, scored
on the sampled ids themselves (no re-tokenisation) before the first update, with logits divided by
the sampling temperature as the sampler did; pi_ref is the initial policy, scored like pi in the penalty at
temperature 1 as in every stage, so one optim.kl_to_initial means the same thing everywhere (kept like distill's
teacher, see teacher.py). With one update per batch the ratio is 1 and clipping never acts.
Every pass (pi_old, pi_ref, the loss: loss.policy_loss) takes the logits a block of positions at a
time (forward.logit_chunks): no (batch, length, vocabulary) array exists at once.

Departures (recipe fields): DAPO resamples to refill a batch after dynamic sampling, here the step
trains on fewer groups; DAPO's overlong reward shaping is not applied; group size 4 (DAPO 16);
LoRA by default; top_p is not reflected in pi_old (keep sampling.top_p = 1 for exact ratios); the group's
std is the population std (over G; TRL and verl divide by G - 1, so their advantages are smaller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import mlx.core as mx

from ..config import OptimConfig, optim_field
from ..data import make_splits
from ..forward import chunks, scored_batch
from ..loss import PolicyBatch, constant_logprobs, group_advantages, initial_logprobs, policy_loss
from ..metrics import StepRecord
from ..platform.distributed import step_tokens as global_step_tokens
from ..types import TrainingState
from ..update import make_optimizer, optimizer_step
from . import StageSpec
from .loop import StepOutcome, open_stage, penalty, sample_and_grade, sampled_outcome

if TYPE_CHECKING:
    from ..config import Recipe


@dataclass(frozen=True)
class GrpoConfig:
    """GRPO with DAPO's choices: group-normalised advantages from the binary reward, token-level
    loss normalisation, clip-higher, optional dynamic sampling, no KL term by default (grpo.optim.kl_to_initial)."""

    steps: int = 10
    questions_per_step: int = 8
    group_size: int = field(default=4, metadata={"help": "G samples per question (DAPO: 16)."})
    micro_batch_size: int = 8
    scale_advantages: bool = field(
        default=True, metadata={"help": "Divide by the group's reward std (GRPO, DAPO); false = Dr. GRPO (mean only)."}
    )
    clip_low: float = field(default=0.2, metadata={"help": "Ratio clip below: 1 - clip_low (PPO / DAPO: 0.2)."})
    clip_high: float = field(default=0.28, metadata={"help": "Ratio clip above: 1 + clip_high (DAPO clip-higher: 0.28)."})
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop groups whose rewards are all equal (they carry no advantage). DAPO also resamples to "
                  "refill the batch; here the step trains on fewer groups (and skips the update if none is left)."},
    )
    updates_per_batch: int = field(
        default=1, metadata={"help": "Optimizer steps on each sampled batch (>1: the ratio and clipping take effect)."}
    )
    optim: OptimConfig = optim_field("GRPO")

    def __post_init__(self):
        if min(self.steps, self.questions_per_step, self.micro_batch_size, self.updates_per_batch) < 1:
            raise ValueError("grpo.steps, questions_per_step, micro_batch_size and updates_per_batch must be >= 1.")
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 (advantages compare samples of a group), got {self.group_size}.")
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0):
            raise ValueError(f"grpo.clip_low must be in [0, 1) and clip_high >= 0, got {self.clip_low}, {self.clip_high}.")


GRPO_SECTIONS = ("model", "data", "lora", "prompts", "sampling", "grpo", "verifier")


def generations_per_step(recipe: Recipe) -> int:
    return recipe.grpo.questions_per_step * recipe.grpo.group_size


def kept_groups(rewards: Sequence[float], group_size: int, dynamic_sampling: bool) -> list[int]:
    """Indices of the groups that train: all, or (dynamic sampling) those whose rewards differ."""
    groups = [rewards[i : i + group_size] for i in range(0, len(rewards), group_size)]
    return [g for g, rs in enumerate(groups) if not dynamic_sampling or max(rs) != min(rs)]


def run_grpo(
    recipe: Recipe,
    run_dir: Path,
    resume: bool = False,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    stop_after: Optional[int] = None,
) -> TrainingState:
    """Train by GRPO into run_dir (adapters, metrics, checkpoint); resumable like distill."""
    cfg, temp = recipe.grpo, recipe.sampling.temperature
    pool = make_splits(recipe.data).training
    with open_stage(recipe, run_dir, resume, SPEC) as run:
        model, pad = run.model, run.pad_id
        kl = penalty(model, cfg.optim)
        optimizer = make_optimizer(cfg.optim, cfg.steps * cfg.updates_per_batch)
        state, _ = run.restore([optimizer])

        def step_fn(step: int) -> StepOutcome:
            sampled = sample_and_grade(model, run.tokenizer, recipe, pool, step, cfg.questions_per_step, cfg.group_size)
            rollouts, rewards = sampled.rollouts, sampled.rewards
            advantages = group_advantages(mx.array(rewards, dtype=mx.float32).reshape(-1, cfg.group_size),
                                          cfg.scale_advantages).reshape(-1)
            keep = [g * cfg.group_size + j for g in kept_groups(rewards, cfg.group_size, cfg.dynamic_sampling)
                    for j in range(cfg.group_size)]
            spans = [(len(rollouts[i].prompt_ids), len(rollouts[i].prompt_ids) + len(rollouts[i].target_ids)) for i in keep]
            step_tokens = global_step_tokens(spans)
            batches = []
            model.eval()
            for idx in chunks(list(range(len(keep))), cfg.micro_batch_size):
                rows = [keep[i] for i in idx]
                batch = scored_batch([rollouts[i].prompt_ids + rollouts[i].target_ids for i in rows],
                                     [spans[i] for i in idx], pad)
                old = constant_logprobs(model, batch, temp)  # the policy that sampled, before any update
                ref = initial_logprobs(model, kl.reference, batch) if kl.on else None  # T = 1, as every stage
                batches.append(PolicyBatch(batch, advantages[mx.array(rows)], old, ref))
            model.train()
            loss = partial(policy_loss, clip_low=cfg.clip_low, clip_high=cfg.clip_high, temperature=temp,
                           step_tokens=step_tokens, kl_to_initial=kl.weight)
            results = [optimizer_step(model, optimizer, loss, batches, cfg.optim.grad_clip)
                       for _ in range(cfg.updates_per_batch)]
            return sampled_outcome(results[-1], sampled, trained_tokens=sum(e - s for s, e in spans) * cfg.updates_per_batch,
                                   details=(("groups_kept", float(len(keep) // cfg.group_size)),),
                                   global_details=(("first_update_loss", results[0].loss),))

        return run.train(cfg.steps, step_fn, [optimizer], state=state, on_step=on_step, stop_after=stop_after)


SPEC = StageSpec(
    name="grpo", label="GRPO", help="Baseline: GRPO with DAPO's choices (section grpo).",
    section=GrpoConfig, sections=GRPO_SECTIONS, order=50, run=run_grpo, generations_per_step=generations_per_step,
    memory="grpo.micro_batch_size, sampling.max_tokens",
)

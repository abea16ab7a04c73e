"""The teacher without a second model: the same weights with the teacher's own values of the trained parameters.

The student is the model with its trained parameters (LoRA / DoRA factors, or whole blocks with
full fine-tuning; modeling.make_trainable). The teacher is the same model with its own values of
exactly those parameters: at the start they are the student's initial values (LoRA: B = 0, so the
teacher is exactly the base, i.e. the SRT model in phase 2). A teacher forward swaps the teacher's
arrays in, builds the graph, and swaps the student's back. MLX arrays are immutable and an optimizer
step replaces them, so holding the initial arrays is the frozen copy: nothing is copied for LoRA,
and with full fine-tuning the teacher costs one more copy of the trained blocks.

Sync ("iterative self-evolution" in the paper; main results: none):
- hard: every `sync_every` steps the teacher's values become the student's (exact: teacher =
  current student).
- ema: teacher <- decay * teacher + (1 - decay) * student, on the trained parameters. With full
  fine-tuning this is the EMA of the weights. Departure with LoRA: an EMA of the factors A and B is
  not the EMA of the weight delta B·A (that is not low rank); it tracks it closely for decays near 1
  and costs nothing extra.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Protocol

import mlx.core as mx
import mlx.nn as nn

from .modeling import set_params, trainable


class SyncRule(Protocol):
    """The fields of the distill section (stages/distill.py) that say when the teacher follows the student."""

    teacher_sync: str  # none / hard / ema
    sync_every: int
    ema_decay: float


@contextmanager
def lora_values(model: nn.Module, params: dict[str, mx.array]):
    """Run a block with the given LoRA values in place, then restore the current ones."""
    current = trainable(model)
    was_training = model.training
    set_params(model, params)
    model.eval()
    try:
        yield model
    finally:
        set_params(model, current)
        model.train(was_training)


def next_teacher(
    teacher: dict[str, mx.array], student: dict[str, mx.array], config: SyncRule, steps_done: int
) -> dict[str, mx.array]:
    """The teacher's LoRA values after `steps_done` optimizer steps."""
    if config.teacher_sync == "hard" and steps_done % config.sync_every == 0:
        return dict(student)
    if config.teacher_sync == "ema":
        d = config.ema_decay
        return {k: d * teacher[k] + (1.0 - d) * student[k] for k in teacher}
    return teacher

"""The teacher without a second model copy.

The student is base + LoRA. The teacher is the same base with its own LoRA values: at the start
they are the student's initial values, whose B factor is zero, so the teacher is exactly the base
(the SRT model in phase 2). A teacher forward swaps the teacher's LoRA arrays in, builds the graph,
and swaps the student's back; the graph keeps the arrays it was built on, so no weights are copied.

Sync ("iterative self-evolution" in the paper; main results: none):
- hard: every `sync_every` steps the teacher's LoRA becomes a copy of the student's (exact:
  teacher = current student).
- ema: teacher <- decay * teacher + (1 - decay) * student, applied to the LoRA factors A and B.
  Departure: an EMA of the factors is not the EMA of the weight delta B·A (that is not low rank);
  it tracks it closely for decays near 1 and costs nothing extra.
"""

from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn

from .config import DistillConfig
from .modeling import set_params, trainable


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
    teacher: dict[str, mx.array], student: dict[str, mx.array], config: DistillConfig, steps_done: int
) -> dict[str, mx.array]:
    """The teacher's LoRA values after `steps_done` optimizer steps."""
    if config.teacher_sync == "hard" and steps_done % config.sync_every == 0:
        return dict(student)
    if config.teacher_sync == "ema":
        d = config.ema_decay
        return {k: d * teacher[k] + (1.0 - d) * student[k] for k in teacher}
    return teacher

"""What every phase shares: the optimizer, its schedule, and one accumulated optimizer step.

Losses passed to `optimizer_step` are already divided by the token count of the whole optimizer
step, so summing micro-batch gradients gives exactly the gradient of the step's token mean:
1 x 4 and 4 x 1 accumulation produce the same update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_map

from .config import OptimConfig


@dataclass(frozen=True)
class StepResult:
    loss: float  # sum of the micro-batch losses: the step's token-mean loss
    grad_norm: float  # before clipping
    learning_rate: float


def make_optimizer(config: OptimConfig, total_steps: int) -> optim.Optimizer:
    """AdamW with optional linear warmup and constant or cosine decay.

    Warmup rises linearly from lr / warmup_steps at the first update to lr at update warmup_steps
    (not from 0): a run of one step must still move the weights.
    Example: lr 1e-3, warmup 4 -> the first four updates use 2.5e-4, 5e-4, 7.5e-4, 1e-3.
    """
    if config.schedule == "cosine":
        main = optim.cosine_decay(config.learning_rate, max(total_steps - config.warmup_steps, 1))
    else:
        main = lambda step: mx.array(config.learning_rate, dtype=mx.float32)  # noqa: E731
    if config.warmup_steps:
        # mlx calls the schedule with the update count before incrementing it (0 at the first update)
        warmup = lambda step: config.learning_rate * (step + 1) / config.warmup_steps  # noqa: E731
        schedule = optim.join_schedules([warmup, main], [config.warmup_steps])
    else:
        schedule = main
    return optim.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)


def optimizer_step(
    model: nn.Module,
    optimizer: optim.Optimizer,
    loss_fn: Callable[..., mx.array],
    micro_batches: Sequence[tuple],
    grad_clip: float,
) -> StepResult:
    """Accumulate gradients of `loss_fn(model, *mb)` over micro-batches, clip, update.

    Gradients are evaluated after each micro-batch so that only one micro-batch's activations
    are alive at a time (that is what accumulation is for); the update is evaluated once.
    """
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    total_loss, total_grads = None, None
    for mb in micro_batches:
        loss, grads = loss_and_grad(model, *mb)
        if total_grads is None:
            total_loss, total_grads = loss, grads
        else:
            total_loss = total_loss + loss
            total_grads = tree_map(mx.add, total_grads, grads)
        mx.eval(total_loss, total_grads)
    if grad_clip > 0:
        total_grads, grad_norm = optim.clip_grad_norm(total_grads, grad_clip)
    else:
        _, grad_norm = optim.clip_grad_norm(total_grads, float("inf"))
    optimizer.update(model, total_grads)
    mx.eval(model.parameters(), optimizer.state, grad_norm)
    # The schedule sets learning_rate inside update(): read it afterwards to report the one used.
    return StepResult(
        loss=total_loss.item(), grad_norm=grad_norm.item(), learning_rate=float(optimizer.learning_rate)
    )

"""What every training stage shares: the optimizer, its schedule, and one accumulated optimizer step.

A stage's loss is a plain function `loss_fn(model, micro_batch) -> (loss, (entropy_sum, tokens))`
with its scalars bound beforehand (functools.partial), so the trainer never needs to know which
arguments a loss takes. Losses are already divided by the token count of the whole optimizer step,
so summing micro-batch gradients gives exactly the gradient of the step's token mean: 1 x 4 and
4 x 1 accumulation produce the same update (a departure: the paper writes its losses as sums over
tokens; no field, the token mean is what makes accumulation exact). The second output is for
monitoring only: the sum of the policy's per-token entropies (no gradient) and the number of tokens
it covers.

Data parallelism (distributed.py) keeps that rule: the step's token count is the GLOBAL one (the
all_sum of every rank's count), so each rank's gradient is its share of the global token mean and
the ranks' gradients are SUMMED (not averaged): N ranks give the gradient, loss and entropy of one
rank holding the whole batch, whatever each rank's token count.

A step whose loss or gradient norm is not finite raises NonFiniteStep before the update: NaN weights
would be saved and every later step would be NaN too. (mlx-lm's trainer has a guard under review that
drops such a step with a warning; here the run stops, naming the step, and its last checkpoint is the
last good state: stages/loop.py.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from .config import OptimConfig
from .platform.distributed import all_sum_values, sum_across_ranks
from .grad_checkpoint import backward_pass


@dataclass(frozen=True)
class StepResult:
    loss: float  # sum of the micro-batch losses: the step's token-mean loss
    grad_norm: float  # before clipping
    learning_rate: float
    weight_change: float  # ||theta_after - theta_before|| / ||theta_before||, trained parameters only
    entropy: float  # mean per-token entropy of the policy on the loss's support (monitor)


class NonFiniteStep(RuntimeError):
    """A loss or gradient norm that is NaN or infinite."""


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
    loss_fn: Callable[[nn.Module, Any], tuple[mx.array, tuple[mx.array, mx.array]]],
    micro_batches: Sequence[Any],
    grad_clip: float,
) -> StepResult:
    """Accumulate gradients of `loss_fn(model, mb)` over micro-batches, clip, update.

    Gradients are evaluated after each micro-batch so that only one micro-batch's activations
    are alive at a time (that is what accumulation is for); the update is evaluated once.
    An empty list of micro-batches (e.g. RFT with no verified sample) changes nothing, unless another
    rank has some: then this rank adds zeros to the sum of gradients.
    """
    if all_sum_values(len(micro_batches))[0] == 0:
        return StepResult(0.0, 0.0, float(optimizer.learning_rate), 0.0, 0.0)
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    total_loss = total_grads = entropy_sum = tokens = None
    for mb in micro_batches:
        with backward_pass():  # blocks under lora.grad_checkpoint recompute their activations
            (loss, (ent, n)), grads = loss_and_grad(model, mb)
        if total_grads is None:
            total_loss, total_grads, entropy_sum, tokens = loss, grads, ent, n
        else:
            total_loss, entropy_sum, tokens = total_loss + loss, entropy_sum + ent, tokens + n
            total_grads = tree_map(mx.add, total_grads, grads)
        mx.eval(total_loss, total_grads, entropy_sum, tokens)
    if total_grads is None:  # nothing on this rank this step; the others have batches
        total_loss, entropy_sum, tokens = mx.array(0.0), mx.array(0.0), mx.array(0.0)
        total_grads = tree_map(mx.zeros_like, model.trainable_parameters())
    total_grads, total_loss, entropy_sum, tokens = sum_across_ranks((total_grads, total_loss, entropy_sum, tokens))
    if grad_clip > 0:
        total_grads, grad_norm = optim.clip_grad_norm(total_grads, grad_clip)
    else:
        _, grad_norm = optim.clip_grad_norm(total_grads, float("inf"))
    loss_value, norm_value = total_loss.item(), grad_norm.item()  # the gradients are evaluated: a cheap read
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
        raise NonFiniteStep(f"the loss is {loss_value} and the gradient norm {norm_value}")
    before = tree_flatten(model.trainable_parameters())
    optimizer.update(model, total_grads)
    after = tree_flatten(model.trainable_parameters())
    moved = sum(((a - b) ** 2).sum() for (_, a), (_, b) in zip(after, before))
    size = sum((b**2).sum() for _, b in before)
    change = mx.sqrt(moved) / mx.maximum(mx.sqrt(size), 1e-12)
    mx.eval(model.parameters(), optimizer.state, grad_norm, change)
    # The schedule sets learning_rate inside update(): read it afterwards to report the one used.
    return StepResult(
        loss=loss_value,
        grad_norm=norm_value,
        learning_rate=float(optimizer.learning_rate),
        weight_change=change.item(),
        entropy=(entropy_sum / mx.maximum(tokens, 1)).item(),
    )

"""Gradient checkpointing of the transformer blocks (`lora.grad_checkpoint`), during backward passes only.

A block's activations are the bulk of a training step's memory once logits are computed in blocks
(forward.logit_chunks): SmolLM2-135M at 4 answers x 1024 tokens peaked at ~11 GB in float32. With
checkpointing only each block's input is kept and the block is recomputed in the backward pass:
less memory for about one more forward pass of time.

mlx-lm's own `tuner.trainer.grad_checkpoint` wraps the block class's __call__ for every instance, for
good. Here the same mx.checkpoint wrapping is installed once per block class, but it acts only on the
blocks of a model that asked for it and only inside `backward_pass()` (update.optimizer_step):
sampling (which passes a KV cache that the block mutates), the teacher's pass and evaluation run the
plain call. Not in the paper (a memory/time trade that leaves the gradients unchanged).
"""

from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn

_ACTIVE = [False]  # inside update.optimizer_step's value_and_grad
_FLAG = "_sdzero_grad_checkpoint"
_WRAPPED = "_sdzero_plain_call"


def enable(model: nn.Module, on: bool = True) -> None:
    """Checkpoint every block of `model` (model.layers) in backward passes from now on (on=False: stop)."""
    for layer in model.layers:
        cls = type(layer)
        if _WRAPPED not in cls.__dict__:
            plain = cls.__call__
            setattr(cls, _WRAPPED, plain)

            def call(self, *args, _plain=plain, **kwargs):
                if not (_ACTIVE[0] and getattr(self, _FLAG, False)) or kwargs.get("cache") is not None:
                    return _plain(self, *args, **kwargs)

                def inner(params, *inner_args):
                    self.update(params)
                    return _plain(self, *inner_args, **kwargs)

                return mx.checkpoint(inner)(self.trainable_parameters(), *args)

            cls.__call__ = call
        object.__setattr__(layer, _FLAG, on)  # a plain attribute, not a parameter


@contextmanager
def backward_pass():
    """Checkpointing is on for enabled blocks while this is open."""
    previous = _ACTIVE[0]
    _ACTIVE[0] = True
    try:
        yield
    finally:
        _ACTIVE[0] = previous

"""Sampling from the current model with mlx-lm's BatchGenerator: exact ids, text, finish reason.

EOS handling, decided once for the whole project: generation stops at any of the tokenizer's
end-of-turn ids; the stop token is not part of `completion_ids` (so y can be followed by sep(r)
inside the same assistant turn) but is kept as `stop_id`, and `Rollout.target_ids` appends it so
the student learns where to stop. A completion cut by `max_tokens` has no stop token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from mlx_lm.sample_utils import make_sampler

from .config import PromptConfig, SamplingConfig
from .prompts import prompt_ids
from .types import Example, Rollout


@dataclass(frozen=True)
class Completion:
    ids: tuple[int, ...]
    finish_reason: str  # "stop" or "length"
    stop_id: Optional[int]


def generate_completions(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig,
    seed: int,
    on_finish: Optional[Callable[[int], None]] = None,
) -> list[Completion]:
    """Sample one completion per prompt (batched, seeded). Order matches `prompts`."""
    if not prompts:
        return []
    mx.random.seed(seed)
    stop_ids = sorted(tokenizer.eos_token_ids)
    generator = BatchGenerator(
        model,
        max_tokens=sampling.max_tokens,
        stop_tokens=[[t] for t in stop_ids],
        sampler=make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.top_p < 1.0 else 0.0),
        completion_batch_size=sampling.batch_size,
        prefill_batch_size=min(sampling.batch_size, 8),
    )
    was_training = model.training
    model.eval()  # no LoRA dropout while sampling
    try:
        uids = generator.insert([list(p) for p in prompts])
        tokens = {uid: [] for uid in uids}
        done: dict[int, Completion] = {}
        while responses := generator.next_generated():
            for r in responses:
                if r.finish_reason == "stop":
                    done[r.uid] = Completion(tuple(tokens[r.uid]), "stop", int(r.token))
                else:
                    tokens[r.uid].append(int(r.token))
                    if r.finish_reason is not None:
                        done[r.uid] = Completion(tuple(tokens[r.uid]), "length", None)
                if r.finish_reason is not None and on_finish is not None:
                    on_finish(1)
    finally:
        generator.close()
        model.train(was_training)
    return [done[uid] for uid in uids]


def sample_rollouts(
    model,
    tokenizer,
    examples: Sequence[Example],
    prompts: PromptConfig,
    sampling: SamplingConfig,
    seed: int,
    on_finish: Optional[Callable[[int], None]] = None,
) -> list[Rollout]:
    """One generator-role sample per example."""
    ids = [prompt_ids(tokenizer, ex.problem, prompts) for ex in examples]
    completions = generate_completions(model, tokenizer, ids, sampling, seed, on_finish)
    return [
        Rollout(
            example=ex,
            prompt_ids=p,
            completion_ids=c.ids,
            text=tokenizer.decode(list(c.ids)),
            finish_reason=c.finish_reason,
            stop_id=c.stop_id,
        )
        for ex, p, c in zip(examples, ids, completions)
    ]

"""Sampling from the current model: exact ids, text, finish reason; in waves (waves.py), or through mlx-lm's
BatchGenerator for models whose caches waves do not batch.

EOS handling, decided once for the whole project: generation stops at any of the tokenizer's
end-of-turn ids; the stop token is not part of `completion_ids` (so y can be followed by sep(r)
inside the same assistant turn) but is kept as `stop_id`, and `Rollout.target_ids` appends it so
the student learns where to stop. A completion cut by `max_tokens` has no stop token.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import make_sampler
from mlx_lm.tuner.lora import LoRALinear

from .config import PromptConfig, SamplingConfig
from .platform.device import sampling_stream
from .platform.distributed import rank_seed
from .prompts import prompt_ids
from .types import Example, Rollout
from .waves import PREFILL_TOKENS, decode, plain_kv_cache


class Generator(BatchGenerator):
    """mlx-lm's BatchGenerator whose finaliser stays quiet when Ctrl-C cut its __init__ short (no
    `_old_wired_limit` yet) or lands inside close(): the interrupt is already being reported, and
    "Exception ignored in BatchGenerator.__del__" tracebacks would bury the resume hint."""

    def __del__(self):
        if "_old_wired_limit" in self.__dict__:
            try:
                self.close()
            except BaseException:  # noqa: BLE001  (a finaliser must not raise; the interrupt is handled above)
                pass


@dataclass(frozen=True)
class Completion:
    ids: tuple[int, ...]
    finish_reason: str  # "stop" or "length"
    stop_id: Optional[int]


@contextmanager
def fused_lora(model):
    """Sample through plain linears holding W + scale * (A B)^T, then put the LoRA layers back.

    A LoRA layer costs a decoding step three matmuls and two element-wise operations where the fused
    weight costs one matmul; on the tiny demo model, whose steps are per-operation overhead, that
    made a decoding step 1.3x and whole sampling calls 1.1-1.2x faster (docs/performance.md). The
    logits move by float rounding only (~1e-6 relative), so a near tie could pick another token;
    tests/test_rollout.py checks that the demo model's samples are unchanged. Skipped for quantized bases (fusing would re-quantize)
    and DoRA; the trained parameters are untouched: the same LoRA modules go back afterwards.
    """
    lora = [(name, m) for name, m in model.named_modules()
            if type(m) is LoRALinear and type(m.linear) is nn.Linear]
    if not lora:
        yield
        return
    model.update_modules(tree_unflatten([(name, m.fuse()) for name, m in lora]))
    try:
        yield
    finally:
        model.update_modules(tree_unflatten(lora))


def shared_prefix_caches(model, prompts: Sequence[Sequence[int]], copies: int) -> list[list]:
    """KV caches of every prompt but its last token, computed once and copied `copies` times.

    The k revisions of one answer share chat(x) + y_init + sep: prefilling that once instead of k
    times made phase-1 collection 1.2-1.7x faster on CPU (SmolLM2-135M, see collect.py).
    """
    caches = []
    for prompt in prompts:
        cache = make_prompt_cache(model)
        if len(prompt) > 1:
            model(mx.array([list(prompt[:-1])]), cache=cache)
            mx.eval([c.state for c in cache])
        caches.extend([cache] + [copy.deepcopy(cache) for _ in range(copies - 1)])
    return caches


def generate_completions(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig,
    seed: int,
    on_finish: Optional[Callable[[int], None]] = None,
    copies: int = 1,
    fuse: Optional[bool] = None,
    greedy_copy: bool = False,
) -> list[Completion]:
    """Sample `copies` completions per prompt (batched, seeded), prompt-major order:
    completion j of prompt i is at i * copies + j. With copies > 1 each prompt is prefilled once.
    `greedy_copy`: a greedy completion after each prompt's samples (i * (copies + 1) + copies), sharing its prefill.
    `fuse`: sample through LoRA-fused weights (fused_lora; False: through the LoRA layers); None: sampling.fuse_lora."""
    if not prompts:
        return []
    was_training = model.training
    model.eval()  # no LoRA dropout while sampling
    try:
        # fused before seeding: nn.Linear's constructor draws its (discarded) initial weight
        with fused_lora(model) if (sampling.fuse_lora if fuse is None else fuse) else nullcontext():
            mx.random.seed(rank_seed(seed))  # each process its own stream (1 process: the seed)
            return _sample(model, tokenizer, prompts, sampling, copies, on_finish, greedy_copy)
    finally:
        model.train(was_training)


# BatchGenerator prefills up to batch_size prompts at once, fewer when they are long (waves.PREFILL_TOKENS): its
# default, 8 prompts whatever their length, let a batch of 64 short prompts join the decoding 8 per step.
def prefill_batch_size(prompts: Sequence[Sequence[int]], batch_size: int) -> int:
    """How many prompts to prefill together: all of a batch, or as many of the longest as fit PREFILL_TOKENS.

    Example: 22-token prompts at batch 64 -> 64; 1,000-token prompts -> 8; 10,000 -> 1."""
    longest = max((len(p) for p in prompts), default=1)
    return max(1, min(batch_size, PREFILL_TOKENS // max(longest, 1)))


def _sample(model, tokenizer, prompts, sampling, copies, on_finish, greedy_copy=False) -> list[Completion]:
    """generate_completions' loop, on the model as it is: in waves (waves.py) where every layer keeps a plain
    KV cache, else through mlx-lm's BatchGenerator."""
    if not plain_kv_cache(model):
        out = sample_with_generator(model, tokenizer, prompts, sampling, copies, on_finish)
        if not greedy_copy:
            return out
        greedy = sample_with_generator(model, tokenizer, prompts, replace(sampling, temperature=0.0), 1, on_finish)
        return [c for i, g in enumerate(greedy) for c in (*out[i * copies:(i + 1) * copies], g)]
    with mx.stream(sampling_stream()):
        ended = decode(model, prompts, copies, sampling.batch_size, sampling.max_tokens, sorted(tokenizer.eos_token_ids),
                       sampling.temperature, sampling.top_p, on_finish, greedy_copy)
    return [Completion(e.ids, e.finish_reason, e.stop_id) for e in ended]


def sample_with_generator(model, tokenizer, prompts, sampling, copies, on_finish=None) -> list[Completion]:
    """generate_completions' loop through mlx-lm's BatchGenerator: for caches waves do not batch (rotating,
    recurrent), and as the baseline of benchmarks/bench_waves.py."""
    stop_ids = sorted(tokenizer.eos_token_ids)
    generator = Generator(
        model,
        max_tokens=sampling.max_tokens,
        stop_tokens=[[t] for t in stop_ids],
        sampler=make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.top_p < 1.0 else 0.0),
        completion_batch_size=sampling.batch_size,
        # with copies the generator sees one-token prompts (the rest is in the shared caches)
        prefill_batch_size=prefill_batch_size([[0]] if copies > 1 else prompts, sampling.batch_size),
        stream=sampling_stream(),  # run.device's (mlx-lm's default stream is on the device current at its import)
    )
    try:
        return _run(generator, model, prompts, copies, on_finish)
    finally:
        generator.close()


def _run(generator, model, prompts, copies, on_finish) -> list[Completion]:
    if copies == 1:
        uids = generator.insert([list(p) for p in prompts])
    else:
        caches = shared_prefix_caches(model, prompts, copies)
        rest = [list(p[-1:]) for p in prompts for _ in range(copies)]
        uids = generator.insert(rest, caches=caches, all_tokens=[list(p[:-1]) for p in prompts for _ in range(copies)])
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
    return sample_groups(model, tokenizer, examples, 1, prompts, sampling, seed, on_finish)


def sample_groups(
    model,
    tokenizer,
    examples: Sequence[Example],
    group_size: int,
    prompts: PromptConfig,
    sampling: SamplingConfig,
    seed: int,
    on_finish: Optional[Callable[[int], None]] = None,
) -> list[Rollout]:
    """`group_size` generator-role samples per example (one shared prefill each when > 1), example-major:
    sample j of example i is at i * group_size + j."""
    ids = [prompt_ids(tokenizer, ex.problem, prompts) for ex in examples]
    completions = generate_completions(model, tokenizer, ids, sampling, seed, on_finish, copies=group_size)
    return [
        Rollout(
            example=examples[i // group_size],
            prompt_ids=ids[i // group_size],
            completion_ids=c.ids,
            text=tokenizer.decode(list(c.ids)),
            finish_reason=c.finish_reason,
            stop_id=c.stop_id,
        )
        for i, c in enumerate(completions)
    ]

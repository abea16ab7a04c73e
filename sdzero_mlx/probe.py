"""Monitors that show a collapse while training runs, before the final table does.

Per step (update.py and stages/loop.py): relative weight change, policy entropy, answer length, share of
answers cut by max_tokens (no end-of-turn token). Every `run.probe_every` steps: greedy accuracy on
a fixed probe set, the first `run.probe_size` problems of the validation split (never the test
split: the probe guides choices), the same for every
stage and method, so probe curves can be laid side by side (`sdzero compare`'s accuracy-vs-budget
picture). Probe generations are not counted in the training budget.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

import mlx.nn as nn

from .data import make_splits
from .lengths import fitting, prompt_limit
from .rollout import sample_rollouts
from .verifier import verify_batch


def probe_examples(recipe) -> tuple:
    """The probe set: the first run.probe_size problems of the validation split."""
    return make_splits(recipe.data).validation[: recipe.run.probe_size]


def make_probe(recipe, tokenizer) -> Optional[Callable[[nn.Module], float]]:
    """probe(model) -> greedy accuracy on the probe set, or None when run.probe_every is 0."""
    if not recipe.run.probe_every:
        return None
    examples = probe_examples(recipe)
    if not examples:
        return None
    sampling = replace(recipe.sampling, temperature=0.0, max_tokens=recipe.eval.max_tokens)

    def probe(model: nn.Module) -> Optional[float]:
        limit = prompt_limit(model, recipe.data.max_prompt_tokens, sampling.max_tokens)
        fit = fitting(tokenizer, examples, recipe.prompts, limit)[0]  # a long problem must not pass the context
        if not fit:
            return None
        rollouts = sample_rollouts(model, tokenizer, fit, recipe.prompts, sampling, recipe.run.seed)
        rewards = verify_batch([r.text for r in rollouts], [r.example.answer for r in rollouts], recipe.verifier)
        return sum(rewards) / len(rewards)

    return probe

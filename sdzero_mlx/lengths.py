"""Prompts that fit: no stage, probe or evaluation hands the model more positions than it has.

One 8,416-token problem on a 4,096-position model asked attention for 28 GB and killed distill with
a segfault. So every place that samples from questions drops (and counts) the questions whose
prompt is longer than `prompt_limit`: data.max_prompt_tokens, and the model's own context length
(config.json's max_position_embeddings, as mlx-lm reads it into `model.args`) less the tokens that
follow the prompt (the answer, or answer + cue + revision). Departure from the paper (which has no
such bound): `data.max_prompt_tokens`, default 4096.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .prompts import prompt_ids
from .types import Example

CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")


def context_length(model) -> Optional[int]:
    """The model's positions from its config (mlx-lm keeps it in `model.args`), or None when it names none."""
    args = getattr(model, "args", None)
    for name in CONTEXT_FIELDS:
        value = getattr(args, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_limit(model, max_prompt_tokens: int, after_prompt: int) -> int:
    """Longest prompt allowed: data.max_prompt_tokens, and the context less the `after_prompt` tokens that follow."""
    context = context_length(model)
    if context is None:
        return max_prompt_tokens
    if context - after_prompt < 1:
        raise ValueError(f"The model has {context} positions, and the answers alone may take {after_prompt} "
                         f"(sampling.max_tokens / eval.max_tokens): lower max_tokens below {context}.")
    return min(max_prompt_tokens, context - after_prompt)


def check_fits_context(model, tokens: int, setting: str) -> None:
    """Refuse a sequence cap (e.g. distill.max_teacher_tokens) longer than the model's context."""
    context = context_length(model)
    if context is not None and tokens > context:
        raise ValueError(f"{setting}={tokens} exceeds the model's {context} positions (config.json "
                         f"max_position_embeddings); set {setting} to {context} or less.")


def fitting(tokenizer, examples: Sequence[Example], prompts, limit: int) -> tuple[list[Example], int]:
    """The examples whose prompt fits `limit` tokens, and how many were skipped.

    Text longer than 64 characters per allowed token is skipped without tokenizing it (a 5 MB
    problem would take seconds to tokenize; no tokenizer averages 64 characters a token).
    """
    kept = [ex for ex in examples
            if len(ex.problem) <= 64 * limit and len(prompt_ids(tokenizer, ex.problem, prompts)) <= limit]
    return kept, len(examples) - len(kept)

"""The two roles of one model, built from token ids only.

Generator: chat(x), the tokenizer's chat template with a generation prompt.
Reviser:   chat(x) + y + sep(r) + ..., where sep(r) = "\\n\\n" + P_r + "\\n\\n" sits in the assistant
           turn right after y (no end-of-turn token between them), for phase 1 and phase 2 alike.
Model text is never re-tokenised: y enters every sequence as the exact ids that were sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import PromptConfig
from .types import TeacherSequence


@dataclass(frozen=True)
class Separators:
    """sep(r) token ids for both rewards, tokenised once per run."""

    right: tuple[int, ...]  # after a correct answer: rephrase
    wrong: tuple[int, ...]  # after a wrong answer: start over

    def for_reward(self, reward: float) -> tuple[int, ...]:
        return self.right if reward >= 0.5 else self.wrong


def user_message(problem: str, config: PromptConfig) -> str:
    # str.replace, not str.format: problem text may itself contain braces.
    return config.template.replace("{problem}", problem)


def template_args(tokenizer, config: PromptConfig) -> dict:
    """Extra chat-template variables from the recipe: {"enable_thinking": False} for Qwen3 non-thinking."""
    if config.enable_thinking is None:
        return {}
    # mlx-lm's TokenizerWrapper renames enable_thinking to a family's own switch ("thinking") itself.
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and "thinking" not in template:
        raise ValueError(
            "prompts.enable_thinking is set, but this model's chat template has no thinking switch "
            "(thinking models such as Qwen3 have one). Remove prompts.enable_thinking from the recipe."
        )
    return {"enable_thinking": config.enable_thinking}


def prompt_ids(tokenizer, problem: str, config: PromptConfig) -> tuple[int, ...]:
    """Generator prompt: the chat template applied to (system, user) with a generation prompt."""
    messages = []
    if config.system:
        messages.append({"role": "system", "content": config.system})
    messages.append({"role": "user", "content": user_message(problem, config)})
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **template_args(tokenizer, config))
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # some transformers versions return an encoding
        ids = ids["input_ids"]
    return tuple(int(t) for t in ids)


def text_answer_ids(tokenizer, text: str) -> tuple[tuple[int, ...], int]:
    """(ids, end-of-turn id) of an answer given as text: a dataset's gold solution or a user's response.

    Such text has no sampled ids, so it is encoded here (the only place the project tokenises an
    answer; model samples never are). The end-of-turn id is the tokenizer's eos token, the one a
    chat model stops on.
    """
    ids = tuple(int(t) for t in tokenizer.encode(text, add_special_tokens=False))
    return ids, int(tokenizer.eos_token_id)


def separator_text(phrase: str) -> str:
    return "\n\n" + phrase + "\n\n"


def separators(tokenizer, config: PromptConfig) -> Separators:
    def encode(phrase):
        return tuple(int(t) for t in tokenizer.encode(separator_text(phrase), add_special_tokens=False))

    return Separators(right=encode(config.phrase_right), wrong=encode(config.phrase_wrong))


def answer_separator(tokenizer, config: PromptConfig, reward: float, answer: str, phrase: str) -> tuple[int, ...]:
    """sep(r) with the gold final answer stated after P_r: "\\n\\n" + P_r + " " + phrase(answer) + "\\n\\n".

    The phrase holds data text (the row's answer), so the whole cue is encoded here, once per answer.
    Example: P_0 = "Wait, ...", phrase "The correct final answer is {answer}.", answer 7 ->
    "\\n\\nWait, ... The correct final answer is 7.\\n\\n".
    """
    p_r = config.phrase_right if reward >= 0.5 else config.phrase_wrong
    text = separator_text(p_r + " " + phrase.replace("{answer}", answer))
    return tuple(int(t) for t in tokenizer.encode(text, add_special_tokens=False))


def teacher_sequence(
    prompt: tuple[int, ...], y_read: tuple[int, ...], sep: tuple[int, ...], y_scored: tuple[int, ...]
) -> TeacherSequence:
    """prompt + y_read + sep + y_scored, with both spans.

    `y_read` is the answer the reviser reads (without its end-of-turn token); `y_scored` is the same
    answer with its end-of-turn token, so the teacher also says where the answer should stop.

    Example: teacher_sequence((1, 2), (7, 8), (5,), (7, 8, 3)).ids == (1, 2, 7, 8, 5, 7, 8, 3)
    """
    first_start = len(prompt)
    second_start = first_start + len(y_read) + len(sep)
    ids = tuple(prompt) + tuple(y_read) + tuple(sep) + tuple(y_scored)
    return TeacherSequence(
        ids=ids,
        first=(first_start, first_start + len(y_read)),
        second=(second_start, second_start + len(y_scored)),
    )

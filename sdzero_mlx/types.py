"""Records that cross stage boundaries: data -> rollout -> grading -> distillation batch, and what training spent.

Roles, named once: the paper's Generator (answers) and Reviser (reads an answer and a cue, then
revises) are the same weights. Method-level text (docstrings of collect/srt, prompts.py, README)
says Generator / Reviser; training code says student (the Generator being trained) / teacher
(the frozen Reviser, or a baseline's teacher).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional


@dataclass(frozen=True)
class Budget:
    """What training spent, the paper's accounting: sequences sampled, tokens sampled, tokens trained."""

    generations: int = 0
    sampled_tokens: int = 0
    trained_tokens: int = 0

    def __add__(self, other: "Budget") -> "Budget":
        return Budget(self.generations + other.generations, self.sampled_tokens + other.sampled_tokens,
                      self.trained_tokens + other.trained_tokens)


@dataclass(frozen=True)
class TrainingState:
    """Where a training stage stands: its optimizer steps and its budget so far (a checkpoint's state.json)."""

    step: int = 0  # optimizer steps completed
    generations: int = 0  # budget accounting (the paper's): sequences sampled
    sampled_tokens: int = 0
    trained_tokens: int = 0
    elapsed_s: float = 0.0

    @property
    def budget(self) -> Budget:
        return Budget(self.generations, self.sampled_tokens, self.trained_tokens)


@dataclass(frozen=True)
class Example:
    id: str
    problem: str
    answer: str  # the gold final answer the verifier compares with
    solution: Optional[str] = None  # a worked gold solution, when the data has one (SFT, SDFT)


@dataclass(frozen=True)
class Rollout:
    """One sampled completion: exact token ids as sampled, never re-tokenised."""

    example: Example
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]  # sampled tokens, without the stop token
    text: str  # decode(completion_ids)
    finish_reason: Literal["stop", "length"]
    stop_id: Optional[int] = None  # the end-of-turn token that ended it, when finish_reason == "stop"

    @property
    def target_ids(self) -> tuple[int, ...]:
        """Tokens the generator is trained to produce: y plus its end-of-turn token if it stopped."""
        if self.stop_id is None:
            return self.completion_ids
        return self.completion_ids + (self.stop_id,)


@dataclass(frozen=True)
class Graded:
    rollout: Rollout
    reward: float  # verify(text, answer) in {0.0, 1.0}


@dataclass(frozen=True)
class TeacherSequence:
    """teacher ids = prompt + y + sep(r) + y, with both spans of y recorded.

    `first` covers the answer the reviser reads; `second` the copy whose tokens are scored.
    """

    ids: tuple[int, ...]
    first: tuple[int, int]  # [start, end) of the first copy of y
    second: tuple[int, int]  # [start, end) of the scored copy


@dataclass(frozen=True)
class DistillItem:
    """One training sequence pair: the student and teacher see the same scored tokens."""

    student_ids: tuple[int, ...]  # prompt + y
    student_span: tuple[int, int]  # [start, end) of y in student_ids
    teacher: TeacherSequence
    reward: float
    advantage: float = 0.0  # its group's normalised reward (loss.group_advantages), read by distill.advantage_weight


@dataclass(frozen=True)
class RevisionTuple:
    """One phase-1 training tuple, as exact token ids (text fields are decodes of them)."""

    id: str  # question id
    problem: str
    answer: str
    prompt_ids: tuple[int, ...]  # chat(x) with the generation prompt
    y_init: tuple[int, ...]  # initial answer, without a stop token
    r_init: float  # verify(y_init, answer) as sampled
    phrase: str  # P_r chosen by r_init
    sep_ids: tuple[int, ...]  # sep(r_init) = "\n\n" + P_r + "\n\n"
    y_rev: tuple[int, ...]  # revision, without its stop token
    rev_stop: Optional[int]  # end-of-turn token after y_rev; None when cut by max_tokens
    y_init_text: str = ""
    y_rev_text: str = ""
    init_index: int = 0  # which of the n initial answers
    rev_index: int = 0  # which of the k revisions
    cleaned: tuple[str, ...] = ()  # what cleaning changed: trimmed_init, trimmed_rev, opener

    @property
    def rev_target(self) -> tuple[int, ...]:
        """y_rev plus its end-of-turn token, when it has one."""
        return self.y_rev + (() if self.rev_stop is None else (self.rev_stop,))

    @property
    def key(self) -> tuple:
        return (self.id, self.y_init, self.y_rev)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict) -> "RevisionTuple":
        tuples = ("prompt_ids", "y_init", "sep_ids", "y_rev", "cleaned")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in row.items()})


def load_tuples(path: Path) -> list[RevisionTuple]:
    """Rows of a tuples.jsonl file (phase 1 writes it, SRT reads it)."""
    rows = []
    with Path(path).open() as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(RevisionTuple.from_json(json.loads(line)))
                except (json.JSONDecodeError, TypeError) as err:
                    raise ValueError(f"Line {lineno} of {path} is not a revision tuple: {err}") from None
    return rows

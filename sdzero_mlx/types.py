"""Records that cross stage boundaries: data -> rollout -> grading -> distillation batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class Example:
    id: str
    problem: str
    answer: str


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

"""The demo tasks as a generated data source: `data.source: demo://inverse` (or `demo://chain`).

Each data seed draws its own problems: the task's seeded stream for that seed, without every problem
the shipped base model was pretrained on (its build_info.json records the stream and the slice), so a
seed sweep measures how much of a result depends on which problems were drawn, on problems the base
model never saw. Seed 0's stream is the one the base model was built from; its held-out part comes
first, so seed 0's test problems are the demo's historical test problems.
"""

from __future__ import annotations

import functools
import json

from ..types import Example
from . import task


def _build(name: str) -> dict:
    from .app import base_model_dir

    return json.loads((base_model_dir(name) / "build_info.json").read_text())["config"]


@functools.lru_cache(maxsize=4)
def pretrained_problems(name: str) -> frozenset[str]:
    """Problem texts the task's shipped base model was pretrained on (the stream after its held-out splits)."""
    cfg = _build(name)
    held_out = sum(n for _, n in cfg["held_out"])
    stream = task.generate(cfg["task_seed"], held_out + cfg["pretrain_problems"], task.Difficulty(**cfg["difficulty"]))
    return frozenset(p.problem for p in stream[held_out:])


def examples(name: str, seed: int, n: int) -> list[Example]:
    """The first `n` problems of seed's stream that the base model never saw in pretraining.

    Example: examples("inverse", 0, 2)[0].problem == task.generate(0, 1, inverse difficulty)[0].problem
    """
    from .app import TASKS

    if name not in TASKS:
        raise ValueError(f"Unknown demo task in demo://{name}; use one of {[f'demo://{t}' for t in sorted(TASKS)]}.")
    difficulty = task.Difficulty(**_build(name)["difficulty"])
    seen = pretrained_problems(name)
    drawn = 2 * n + 100
    while True:  # the stream is deterministic, so a longer draw extends a shorter one
        stream = task.generate(seed, drawn, difficulty)
        fresh = [p for p in stream if p.problem not in seen]
        if len(fresh) >= n or len(stream) < drawn:
            break
        drawn *= 2
    if len(fresh) < n:
        raise ValueError(f"demo://{name} has only {len(fresh)} problems the base model never saw; ask for fewer.")
    return [Example(id=f"{name}-{seed}-{i}", problem=p.problem, answer=p.answer, solution=p.solution)
            for i, p in enumerate(fresh[:n])]

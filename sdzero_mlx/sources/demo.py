"""The demo tasks as a generated data source: `data.source: demo://inverse` (or `demo://chain`).

Each data seed draws its own problems: the task's seeded stream for that seed, without every problem
the shipped base model was pretrained on (its build_info.json records the stream and the slice), so a
seed sweep measures how much of a result depends on which problems were drawn, on problems the base
model never saw. Seed 0's stream is the one the base model was built from; its held-out part comes
first, so seed 0's test problems are the demo's historical test problems.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path

from ..types import Example
from . import demo_tasks as task

# The shipped base models, one per task, in the demo package (demo/app.py's TASKS): the problems each was
# pretrained on are not drawn (build_info.json names them).
MODELS_DIR = Path(__file__).resolve().parent.parent / "demo"
MODELS = {"inverse": MODELS_DIR / "base_model_inverse", "chain": MODELS_DIR / "base_model"}

# Beside each shipped base model: the texts it was pretrained on, one per line, sorted, after a header
# line naming the build it belongs to (pretrain.py writes it). Reading it takes milliseconds where
# regenerating the stream takes 2 s, which every process that draws demo:// problems would pay
# (compare's workers, schedule.py). A file of another build (a model rebuilt with other arguments) is
# not used; tests/test_trustworthy.py checks that the shipped ones equal the regenerated sets.
PRETRAINED_FILE = "pretrained_problems.txt.gz"


def _build(name: str) -> dict:
    return json.loads((MODELS[name] / "build_info.json").read_text())["config"]


@functools.lru_cache(maxsize=4)
def pretrained_problems(name: str) -> frozenset[str]:
    """Problem texts the task's shipped base model was pretrained on (the stream after its held-out splits):
    read from the model's PRETRAINED_FILE, or regenerated when it has none."""
    shipped = MODELS[name] / PRETRAINED_FILE
    if shipped.is_file():
        header, _, texts = gzip.decompress(shipped.read_bytes()).decode("utf-8").partition("\n")
        if header == _header(_build(name)):
            return frozenset(texts.split("\n"))
    return regenerate_pretrained_problems(name)


def _header(build_config: dict) -> str:
    """The first line of PRETRAINED_FILE: the build it belongs to (sha256 of build_info.json's config)."""
    digest = hashlib.sha256(json.dumps(build_config, sort_keys=True).encode("utf-8")).hexdigest()
    return f"# build {digest}"


def regenerate_pretrained_problems(name: str) -> frozenset[str]:
    """pretrained_problems from the task's seeded stream and the model's build_info.json."""
    cfg = _build(name)
    held_out = sum(n for _, n in cfg["held_out"])
    stream = task.generate(cfg["task_seed"], held_out + cfg["pretrain_problems"], task.Difficulty(**cfg["difficulty"]))
    return frozenset(p.problem for p in stream[held_out:])


def write_pretrained_problems(problems, model_dir: Path, build_config: dict) -> Path:
    """MODEL/PRETRAINED_FILE: a header naming the build, then the texts sorted, one per line; gzip with no
    timestamp (the same bytes every build)."""
    texts = sorted(problems)
    if any("\n" in t for t in texts):
        raise ValueError("a problem text holds a newline; pretrained_problems.txt.gz keeps one text per line.")
    path = Path(model_dir) / PRETRAINED_FILE
    body = "\n".join([_header(build_config), *texts]).encode("utf-8")
    path.write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
    return path


def examples(name: str, seed: int, n: int) -> list[Example]:
    """The first `n` problems of seed's stream that the base model never saw in pretraining.

    Example: examples("inverse", 0, 2)[0].problem == task.generate(0, 1, inverse difficulty)[0].problem
    """
    if name not in MODELS:
        raise ValueError(f"Unknown demo task in demo://{name}; use one of {[f'demo://{t}' for t in sorted(MODELS)]}.")
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

